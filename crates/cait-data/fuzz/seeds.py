#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/ (Python standard library only).

Small valid inputs for each parser: the fuzzer mutates from there. Run from anywhere:
    python3 crates/cait-data/fuzz/seeds.py
"""

import gzip
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


# --- .npy -------------------------------------------------------------------------------------


def npy(descr, shape, payload, version=1):
    dims = "(%d,)" % shape[0] if len(shape) == 1 else "(%s)" % ", ".join(map(str, shape))
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, dims)
    width = 2 if version == 1 else 4
    prefix = 6 + 2 + width
    total = -(-(prefix + len(header) + 1) // 64) * 64
    header = header + " " * (total - prefix - len(header) - 1) + "\n"
    out = b"\x93NUMPY" + bytes([version, 0])
    out += struct.pack("<H" if version == 1 else "<I", len(header))
    return out + header.encode() + payload


def floats(fmt, values):
    return b"".join(struct.pack(fmt, v) for v in values)


write("npy", "f4_2x1x2x2.npy", npy("<f4", [2, 1, 2, 2], floats("<f", [i * 0.25 - 1 for i in range(8)])))
write("npy", "f8_3.npy", npy("<f8", [3], floats("<d", [1.5, -2.25, 0.0])))
write("npy", "f2_v2_1x2.npy", npy("<f2", [1, 2], floats("<e", [0.5, -4.0]), version=2))
write("npy", "be_f4_v3.npy", npy(">f4", [2], floats(">f", [3.0, -1.0]), version=3))
write("npy", "scalar.npy", npy("<f4", [], floats("<f", [7.5])))
write("npy", "i8_labels.npy", npy("<i8", [3], floats("<q", [3, 0, 9])))
write("npy", "u1_labels.npy", npy("|u1", [4], bytes([0, 9, 255, 1])))

# --- labels -----------------------------------------------------------------------------------

write("labels", "i8.npy", npy("<i8", [4], floats("<q", [9, 0, 3, -1])))
write("labels", "u1.npy", npy("|u1", [3], bytes([0, 1, 7])))
write("labels", "be_i2.npy", npy(">i2", [2], floats(">h", [3, -1])))
write("labels", "u8_big.npy", npy("<u8", [1], floats("<Q", [2**63])))
write(
    "labels",
    "folder_names.txt",
    "\n".join(["Ankle_boot", "bag", "T-shirt top", "Trouser", "coat", "unknown"]).encode(),
)

# --- IDX --------------------------------------------------------------------------------------


def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


images = idx([2, 3, 3], range(18))
labels = idx([2], [9, 0])
write("idx", "images-idx3-ubyte", images)
write("idx", "labels-idx1-ubyte", labels)
write("idx", "images-idx3-ubyte.gz", gzip.compress(images, mtime=0))
write("idx", "labels-idx1-ubyte.gz", gzip.compress(labels, mtime=0))

# --- images -----------------------------------------------------------------------------------


def png(width, height, color_type, bit_depth, rows, palette=None):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
    if palette:
        out += chunk(b"PLTE", palette)
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


write("image", "gray8x8.png", png(8, 8, 0, 8, [bytes((x * 32 + y * 4) % 256 for x in range(8)) for y in range(8)]))
write("image", "rgb5x3.png", png(5, 3, 2, 8, [bytes((x * 50 + y * 80 + c * 30) % 256 for x in range(5) for c in range(3)) for y in range(3)]))
write("image", "rgba16_2x2.png", png(2, 2, 6, 16, [bytes(range(y * 16, y * 16 + 16)) for y in range(2)]))
write("image", "graya_tall_1x40.png", png(1, 40, 4, 8, [bytes([y * 6, 255]) for y in range(40)]))
write("image", "palette1bit_16x2.png", png(16, 2, 3, 1, [b"\xa5\x5a", b"\x0f\xf0"], palette=b"\x00\x00\x00\xff\x80\x00"))


def jpeg(width, height, components):
    """Baseline JPEG whose every block is flat grey: one-code Huffman tables (DC diff 0, EOB)."""

    def seg(marker, data):
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(data) + 2) + data

    out = b"\xff\xd8"
    out += seg(0xDB, b"\x00" + bytes([1] * 64))
    sof = struct.pack(">BHHB", 8, height, width, components)
    for c in range(components):
        sof += bytes([c + 1, 0x11, 0])
    out += seg(0xC0, sof)
    one_code = bytes([1] + [0] * 15) + b"\x00"
    out += seg(0xC4, b"\x00" + one_code) + seg(0xC4, b"\x10" + one_code)
    sos = bytes([components])
    for c in range(components):
        sos += bytes([c + 1, 0x00])
    out += seg(0xDA, sos + b"\x00\x3f\x00")
    blocks = -(-width // 8) * -(-height // 8) * components
    bits = "00" * blocks
    bits += "1" * (-len(bits) % 8)
    out += bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
    return out + b"\xff\xd9"


write("image", "gray8x8.jpg", jpeg(8, 8, 1))
write("image", "rgb16x8.jpg", jpeg(16, 8, 3))


def raw(width, height, kind, crop_pct, pixels):
    return b"RAW" + struct.pack("<HHBf", width, height, kind, crop_pct) + bytes(pixels)


write("image", "raw_gray_1x300", raw(1, 300, 0, 0.875, range(0, 256, 3)))
write("image", "raw_rgb_40x30", raw(40, 30, 2, 1.0, range(1, 200, 7)))
write("image", "raw_rgba_33x64", raw(33, 64, 3, 0.9, range(5, 255, 11)))
write("image", "raw_graya_64x20", raw(64, 20, 1, 1.15, range(9, 250, 13)))
