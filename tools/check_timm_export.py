#!/usr/bin/env python3
"""Check a CaiT trained by `cait train` (cait-burn) with timm, the reference implementation.

    python3 tools/check_timm_export.py models/fashion-cait [--data /usr/share/datasets/fashion-mnist]
        [--logits LOGITS.npy] [--limit N] [--json]

1. Rebuilds the model as timm would from the hub folder: `timm.create_model(config["architecture"],
   pretrained=False, **config["model_args"])`, then `load_state_dict(safetensors, strict=True)`
   (every timm key present, none extra, every shape equal).
2. Evaluates it on the Fashion-MNIST test set (IDX files as Debian's dataset-fashion-mnist installs
   them), normalized with the folder's pretrained_cfg mean/std, in float32 eval mode.
3. With --logits (e.g. from `cait eval --backend burn-cpu --save-logits`), reports the max abs
   difference between timm's logits and those.

Prints top-1 (and the logits difference); exits non-zero if loading fails.
"""
import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch
import timm
from safetensors.torch import load_file


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(data_dir, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    sys.exit(f"{data_dir}: no {stem}[.gz]")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--logits", help="logits .npy [N, classes] to compare with timm's")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with open(os.path.join(args.model_dir, "config.json")) as f:
        cfg = json.load(f)
    model = timm.create_model(cfg["architecture"], pretrained=False, **cfg.get("model_args", {}))
    state = load_file(os.path.join(args.model_dir, "model.safetensors"))
    model.load_state_dict(state, strict=True)
    model.eval()

    images = read_idx(find(args.data, "t10k-images-idx3-ubyte")).astype(np.float32) / 255.0
    labels = read_idx(find(args.data, "t10k-labels-idx1-ubyte")).astype(np.int64)
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    pcfg = cfg["pretrained_cfg"]
    mean = np.float32(pcfg["mean"][0])
    std = np.float32(pcfg["std"][0])
    x = ((images - mean) / std)[:, None, :, :].astype(np.float32)

    outs = []
    with torch.no_grad():
        for i in range(0, len(x), 500):
            outs.append(model(torch.from_numpy(x[i:i + 500])).numpy())
    logits = np.concatenate(outs)
    top1 = float((logits.argmax(1) == labels).mean())
    result = {"n": int(len(labels)), "top1": top1, "params": sum(p.numel() for p in model.parameters())}
    if args.logits:
        other = np.load(args.logits)
        if other.shape != logits.shape:
            sys.exit(f"--logits has shape {other.shape}, timm's are {logits.shape}")
        result["logits_max_abs_diff"] = float(np.abs(other - logits).max())
        result["top1_other"] = float((other.argmax(1) == labels).mean())
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
