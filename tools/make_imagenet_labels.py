"""Writes crates/cait-import/data/imagenet1k_labels.txt: ImageNet-1k class names in timm's class-index
order (timm.data.ImageNetInfo descriptions), one per line. The file is committed; cait-import bundles
it for the ten published CaiT variants, whose heads are ImageNet-1k.

    pip install timm && python3 tools/make_imagenet_labels.py
"""
import pathlib

from timm.data import ImageNetInfo

out = pathlib.Path(__file__).resolve().parent.parent / "crates/cait-import/data/imagenet1k_labels.txt"
info = ImageNetInfo()
names = [info.index_to_description(i) for i in range(1000)]
# ImageNet has a few repeated names ("crane", "maillot"): indices, not names, identify classes.
assert len(names) == 1000 and all("\n" not in n for n in names)
out.write_text("\n".join(names) + "\n")
print(f"wrote {out} ({len(names)} classes)")
