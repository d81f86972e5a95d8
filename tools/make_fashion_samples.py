#!/usr/bin/env python3
"""Write the bundled model's sample images from Debian's Fashion-MNIST test set.

    python3 tools/make_fashion_samples.py models/fashion-cait [--data /usr/share/datasets/fashion-mnist]

For each of the 10 classes, the first test image of that class becomes
`MODEL_DIR/images/NN-<class>.png` (28x28 grayscale, the original pixels), and all 10 together
`MODEL_DIR/samples.npy` (float32 [10, 1, 28, 28], normalized with the folder's config.json
mean/std, the firmware's input) with `MODEL_DIR/samples_labels.npy` (int64 [10]).
Needs numpy and Pillow; run once, the outputs are committed.
"""
import argparse
import gzip
import json
import os
import re
import struct

import numpy as np
from PIL import Image

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    ndim = struct.unpack(">I", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()

    images = read_idx(os.path.join(args.data, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(args.data, "t10k-labels-idx1-ubyte.gz"))
    with open(os.path.join(args.model_dir, "config.json")) as f:
        pcfg = json.load(f)["pretrained_cfg"]
    mean, std = np.float32(pcfg["mean"][0]), np.float32(pcfg["std"][0])

    out_dir = os.path.join(args.model_dir, "images")
    os.makedirs(out_dir, exist_ok=True)
    picked = []
    for c, name in enumerate(CLASSES):
        i = int(np.flatnonzero(labels == c)[0])
        picked.append(i)
        slug = re.sub(r"[^a-z]+", "-", name.lower()).strip("-")
        Image.fromarray(images[i], mode="L").save(os.path.join(out_dir, f"{c:02d}-{slug}.png"))
        print(f"{c:02d}-{slug}.png  test image {i}")
    x = (images[picked].astype(np.float32) / np.float32(255.0) - mean) / std
    np.save(os.path.join(args.model_dir, "samples.npy"), x[:, None, :, :].astype(np.float32))
    np.save(os.path.join(args.model_dir, "samples_labels.npy"), labels[picked].astype(np.int64))


if __name__ == "__main__":
    main()
