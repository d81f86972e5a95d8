#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/ (Python standard library only).

Small valid inputs for each parser: the fuzzer mutates from there. Run from anywhere:
    python3 crates/cait-quant/fuzz/seeds.py
"""

import gzip
import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
REPO = HERE.parents[2]


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

# --- config.json ------------------------------------------------------------------------------

write("hub_config", "tiny.json", (REPO / "tests/fixtures/timm/tiny/config.json").read_bytes())
write(
    "hub_config",
    "older.json",
    json.dumps(
        {
            "architecture": "cait_s24_224",
            "num_classes": 3,
            "num_features": 384,
            "pretrained_cfg": {
                "input_size": [1, 28, 28],
                "interpolation": "bilinear",
                "crop_pct": 0.875,
                "mean": 0.5,
                "std": [0.25],
            },
            "label_names": {"0": "a", "2": "c"},
        }
    ).encode(),
)
write(
    "hub_config",
    "args.json",
    json.dumps(
        {
            "architecture": "cait_xxs24_224",
            "global_pool": "avg",
            "model_args": {
                "img_size": 48,
                "patch_size": 16.0,
                "qkv_bias": False,
                "depth_token_only": 2,
                "mlp_ratio_token_only": 4.0,
                "num_heads": 2,
            },
            "labels": ["x", "y"],
        }
    ).encode(),
)
write("hub_config", "foreign.json", b'{"architectures": ["BertModel"], "hidden_size": 8}')

# --- pickles (laid out as torch.save's protocol 2 writes them) --------------------------------


class Pickle:
    def __init__(self, proto=2):
        self.out = bytearray([0x80, proto])
        self.memo = 0

    def op(self, *ops):
        self.out += bytes(ops)
        return self

    def put(self):
        k = self.memo
        self.memo += 1
        self.out += bytes([ord("q"), k]) if k < 256 else b"r" + struct.pack("<I", k)
        return self

    def get(self, k):
        self.out += bytes([ord("h"), k])
        return self

    def str(self, s):
        b = s.encode()
        self.out += b"X" + struct.pack("<I", len(b)) + b
        return self.put()

    def int(self, v):
        if 0 <= v < 256:
            self.out += bytes([ord("K"), v])
        elif 0 <= v < 65536:
            self.out += b"M" + struct.pack("<H", v)
        else:
            self.out += b"J" + struct.pack("<i", v)
        return self

    def glob(self, module, name):
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        return self.put()

    def tuple(self, values):
        if 1 <= len(values) <= 3:
            for v in values:
                self.int(v)
            self.op(0x84 + len(values))
        else:
            self.op(ord("("))
            for v in values:
                self.int(v)
            self.op(ord("t"))
        return self.put()

    def tensor(self, storage, key, numel, offset, size, stride):
        self.glob("torch._utils", "_rebuild_tensor_v2")
        self.op(ord("("), ord("("))
        self.str("storage").glob("torch", storage).str(key).str("cpu").int(numel)
        self.op(ord("t")).put().op(ord("Q"))
        self.int(offset).tuple(size).tuple(stride)
        self.op(0x89)
        self.glob("collections", "OrderedDict").op(ord(")"), ord("R")).put()
        self.op(ord("t")).put().op(ord("R")).put()
        return self

    def ordered_dict(self, items):
        """items: list of (key, callable writing the value)."""
        self.glob("collections", "OrderedDict").op(ord(")"), ord("R")).put()
        self.op(ord("("))
        for key, value in items:
            self.str(key)
            value(self)
        self.op(ord("u"))
        # OrderedDict's _metadata arrives through BUILD.
        self.op(ord("}")).put().str("_metadata").op(ord("}")).put().op(ord("s"), ord("b"))
        return self

    def finish(self):
        return bytes(self.out + b".")


def state_dict(p):
    return p.ordered_dict(
        [
            ("cls_token", lambda p: p.tensor("FloatStorage", "0", 64, 0, [1, 1, 16], [16, 16, 1])),
            # A transposed view of storage 1.
            ("head.weight", lambda p: p.tensor("FloatStorage", "1", 64, 0, [4, 8], [1, 4])),
            ("head.bias", lambda p: p.tensor("FloatStorage", "1", 64, 60, [4], [1])),
            ("norm.weight", lambda p: p.tensor("HalfStorage", "2", 64, 0, [16], [1])),
            ("norm.bias", lambda p: p.tensor("BFloat16Storage", "3", 64, 2, [2, 2], [0, 1])),
        ]
    )


flat = state_dict(Pickle()).finish()

release = Pickle()
release.op(ord("}")).put().op(ord("("))
release.str("model")
release.ordered_dict(
    [("module.pos_embed", lambda p: p.tensor("DoubleStorage", "0", 32, 0, [1, 2, 16], [32, 16, 1]))]
)
release.str("epoch").int(299)
release.str("args").glob("argparse", "Namespace").op(ord(")"), 0x81).op(ord("}")).put()
release.str("lr").int(1).op(ord("s"), ord("b"))
release.op(ord("u"))
release = release.finish()

param = Pickle()
param.glob("torch._utils", "_rebuild_parameter").op(ord("("))
param.tensor("FloatStorage", "2", 64, 0, [8, 8], [8, 1])
param.op(0x88).glob("collections", "OrderedDict").op(ord(")"), ord("R"), ord("t"), ord("R")).put()
param = param.finish()

# Protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, EMPTY_SET/ADDITEMS, BINFLOAT, LONG1,
# BINBYTES, NEWOBJ.
p4 = bytearray([0x80, 4, 0x95]) + struct.pack("<Q", 0)
p4 += b"}\x94(\x8c\x01l\x94](G" + struct.pack(">d", 1.5)
p4 += b"\x8a\x02\x00\x80\x8a\x09" + bytes(8) + b"\x01\x88\x89Ne"
p4 += b"\x8c\x01s\x94\x8f\x94(K\x01K\x02\x90"
p4 += b"\x8c\x01b\x94B\x03\x00\x00\x00abc"
p4 += b"\x8c\x02ns\x94\x8c\x08argparse\x8c\x09Namespace\x93)\x81}b"
p4 += b"u."
p4 = bytes(p4)

# Protocol 0 text opcodes: INT, LONG, FLOAT, STRING, UNICODE, PUT/GET, DICT, LIST, TUPLE, INST,
# _codecs.encode bytes.
p0 = (
    b"(S'int'\np0\nI42\nS'long'\np1\nL12345678901L\nS'float'\np2\nF-0.125\n"
    b"S'text'\np3\nVhello\np4\nS'list'\n(I1\nI01\ng4\nl"
    b"S'tuple'\n(I1\nI2\ntS'obj'\n(ios\nsystem\nS'bytes'\nc_codecs\nencode\n(Vab\nVlatin1\ntR"
    b"d."
)

for name, data in [("flat.pkl", flat), ("release.pkl", release), ("param.pkl", param),
                   ("proto4.pkl", p4), ("proto0.pkl", p0)]:
    write("pickle", name, data)

# --- checkpoints ------------------------------------------------------------------------------


def safetensors(tensors):
    header, data = {}, b""
    for name, dtype, shape, payload in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def torch_zip(pickle, storages, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        z.writestr("archive/data.pkl", pickle)
        z.writestr("archive/byteorder", "little")
        for key, payload in storages.items():
            z.writestr("archive/data/%s" % key, payload)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


f32 = floats("<f", [i * 0.5 - 8 for i in range(64)])
f16 = floats("<e", [i * 0.25 - 4 for i in range(64)])
write(
    "checkpoint",
    "tiny.safetensors",
    safetensors(
        [
            ("head.weight", "F32", [2, 4], f32[:32]),
            ("head.bias", "F16", [2], f16[:4]),
            ("norm.weight", "BF16", [2], bytes([0x80, 0x3F, 0x00, 0xC0])),
            ("norm.bias", "F64", [1], floats("<d", [0.5])),
        ]
    ),
)
write("checkpoint", "int.safetensors", safetensors([("steps", "I64", [1], floats("<q", [7]))]))
write("checkpoint", "flat.pth", torch_zip(flat, {"0": f32, "1": f32, "2": f16, "3": f16}))
write("checkpoint", "release.pth", torch_zip(release, {"0": f32 + f32}))
write("checkpoint", "deflated.pth", torch_zip(flat, {"0": f32, "1": f32, "2": f16, "3": f16}, zipfile.ZIP_DEFLATED))
# Pickles for the target's own well-formed zip (storages 0-3, 64 float32 each).
write("checkpoint", "pkl_flat", b"PKL" + flat)
write("checkpoint", "pkl_release", b"PKL" + release)

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
