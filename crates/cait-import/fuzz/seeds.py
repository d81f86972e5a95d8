#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/ (Python standard library only).

Small valid inputs for each parser: the fuzzer mutates from there. Run from anywhere:
    python3 crates/cait-import/fuzz/seeds.py
"""

import io
import json
import struct
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
REPO = HERE.parents[2]


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def floats(fmt, values):
    return b"".join(struct.pack(fmt, v) for v in values)


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
