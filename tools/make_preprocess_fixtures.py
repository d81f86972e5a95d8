#!/usr/bin/env python3
"""Golden preprocessing fixtures from timm + torchvision + Pillow (the reference eval transform).

Run (re-runnable; rewrites tests/fixtures/preprocess/* except the input photos unless asked):

    TIMM_FUSED_ATTN=0 python3 tools/make_preprocess_fixtures.py [--skimage-data DIR]

Input photos (committed, they ARE the inputs): two real photos from scikit-image's data directory
(`pip download --no-deps scikit-image`, unzip `skimage/data/chelsea.png` and `skimage/data/coffee.png`),
reduced once with Pillow so the fixture stays small:

    chelsea.png   chelsea.png (451x300 RGB) center-cropped to 400x300, resized to 300x225 (BICUBIC):
                  landscape, shorter side 225 > 224, so the 224 cfg downsamples (barely) both ways
    coffee.png    coffee.png (600x400 RGB), a 300x400 portrait window at x=150, resized to 150x200
                  (BICUBIC): portrait, shorter side 150 < 224, so the 224 cfg upsamples

`--skimage-data DIR` (the `skimage/data` folder) re-derives those two PNGs; without it the committed
ones are used.

For every photo and every cfg in CFGS, timm's own eval pipeline (`timm.data.create_transform`, i.e.
torchvision Resize/ResizeKeepRatio + CenterCrop on a PIL image) is run with the ToTensor/Normalize
steps stripped off, and the uint8 PIL image that would be fed to ToTensor is saved as
`<photo>_<cfg>.png` (mode RGB, or L for the 1-channel cfg: timm's dataset converts the decoded image to
the model's `img_mode` before the transform). The Rust test (crates/cait-data/tests/preprocess_pil.rs)
runs `cait_data::preprocess` on the same photo with the same cfg and compares pixel for pixel.

Logits: for `cait_xxs24_224` (the cfg `xxs24_224`, resolved by `timm.data.resolve_data_config` from the
model's pretrained cfg: 224, crop_pct 1.0, bicubic, ImageNet mean/std), the weights of the fixture
`xxs24_224` of tools/make_fixtures.py (PRNG recipe cait-edge-synth-v1, seed 0x224) are synthesized with
that script's own functions, and timm's logits for each photo (full transform, incl. ToTensor and
Normalize, float32, non-fused attention) are saved as `<photo>_xxs24_logits.npy` (float32 [1, 1000]).
The synthesized model is first checked against tests/fixtures/timm/xxs24_224/logits.npy.

`manifest.json` records the cfgs, the resulting sizes, the library versions and the file list.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

if os.environ.get("TIMM_FUSED_ATTN") != "0":
    print("TIMM_FUSED_ATTN=0 is required (timm's non-fused attention path); re-run with it set",
          file=sys.stderr)
    sys.exit(2)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import make_fixtures as mf  # noqa: E402  (the PRNG recipe; never duplicated here)
import PIL  # noqa: E402
from PIL import Image  # noqa: E402
import timm  # noqa: E402
import timm.data  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "preprocess"
PHOTOS = ["chelsea", "coffee"]

# name -> create_transform kwargs (besides is_training=False) and the image mode fed to it.
# `xxs24_224` is filled from resolve_data_config(model=cait_xxs24_224) below.
CFGS = {
    "xxs24_224": None,
    # crop_pct 0.875: shorter side -> floor(72 / 0.875) = 82, longer side 109: the crop offset
    # (109 - 72) / 2 = 18.5 rounds half to even (torchvision's Python round) to 18
    "bicubic72_0875": dict(input_size=(3, 72, 72), interpolation="bicubic", crop_pct=0.875),
    # non-square input: timm's ResizeKeepRatio (shorter-ratio side to floor(x / crop_pct)) + crop
    "bilinear48x64_09": dict(input_size=(3, 48, 64), interpolation="bilinear", crop_pct=0.9),
    "nearest48_0875": dict(input_size=(3, 48, 48), interpolation="nearest", crop_pct=0.875),
    # 1-channel model: PIL "L" conversion first (timm dataset img_mode="L"), then resize + crop
    "gray28_0875": dict(input_size=(1, 28, 28), interpolation="bicubic", crop_pct=0.875,
                        mean=(0.5,), std=(0.5,)),
}


def derive_inputs(skdata: Path):
    im = Image.open(skdata / "chelsea.png").convert("RGB")
    assert im.size == (451, 300), im.size
    left = (451 - 400) // 2
    im = im.crop((left, 0, left + 400, 300)).resize((300, 225), Image.BICUBIC)
    im.save(OUT / "chelsea.png", optimize=True)
    im = Image.open(skdata / "coffee.png").convert("RGB")
    assert im.size == (600, 400), im.size
    im = im.crop((150, 0, 450, 400)).resize((150, 200), Image.BICUBIC)
    im.save(OUT / "coffee.png", optimize=True)


def eval_transform(kw: dict, with_tensor: bool):
    t = timm.data.create_transform(is_training=False, **kw)
    steps = list(t.transforms)
    if not with_tensor:
        names = [type(s).__name__ for s in steps]
        assert names[-2:] == ["MaybeToTensor", "Normalize"] or names[-2:] == ["ToTensor", "Normalize"], names
        steps = steps[:-2]
    return torchvision.transforms.Compose(steps), [repr(s) for s in t.transforms]


def synth_xxs24():
    fx = next(f for f in mf.FIXTURES if f["name"] == "xxs24_224")
    arch, targs, seed = fx["architecture"], fx["timm_args"], fx["seed"]
    model = timm.create_model(arch, pretrained=False, **targs).eval()
    shape = mf.model_shape(arch, targs)
    sd = {n: torch.from_numpy(mf.synth_tensor(seed, n, s, k).copy())
          for n, s, k in mf.tensor_list(shape)}
    mf.load_into(model, sd)
    model.eval()
    # the same model as the committed golden logits (recipe input)
    x = torch.from_numpy(mf.synth_tensor(seed, "input", [fx["batch"], shape["in_chans"],
                                                         shape["img_size"], shape["img_size"]],
                                         "input").copy())
    with torch.no_grad():
        ref = model(x).numpy()
    golden = np.load(ROOT / "tests" / "fixtures" / "timm" / "xxs24_224" / "logits.npy")
    assert np.array_equal(ref, golden), "synthesized xxs24_224 disagrees with the committed logits"
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skimage-data", type=Path, default=None,
                    help="scikit-image's skimage/data folder: re-derive the input photos")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    OUT.mkdir(parents=True, exist_ok=True)
    if args.skimage_data is not None:
        derive_inputs(args.skimage_data)

    model_cfg = timm.data.resolve_data_config(model=timm.create_model("cait_xxs24_224",
                                                                      pretrained=False))
    CFGS["xxs24_224"] = dict(input_size=model_cfg["input_size"],
                             interpolation=model_cfg["interpolation"],
                             crop_pct=model_cfg["crop_pct"],
                             mean=model_cfg["mean"], std=model_cfg["std"])
    manifest = dict(
        generator=dict(timm=timm.__version__, torch=torch.__version__,
                       torchvision=torchvision.__version__, pillow=PIL.__version__,
                       numpy=np.__version__, TIMM_FUSED_ATTN=os.environ.get("TIMM_FUSED_ATTN")),
        photos={}, cfgs={}, files=[],
    )
    for name, kw in CFGS.items():
        kw = dict(kw)
        kw.setdefault("mean", timm.data.IMAGENET_DEFAULT_MEAN)
        kw.setdefault("std", timm.data.IMAGENET_DEFAULT_STD)
        CFGS[name] = kw
        _, steps = eval_transform(kw, True)
        manifest["cfgs"][name] = dict(kw, input_size=list(kw["input_size"]), mean=list(kw["mean"]),
                                      std=list(kw["std"]), timm_transform=steps)

    model = synth_xxs24()
    for photo in PHOTOS:
        src = Image.open(OUT / f"{photo}.png")
        src.load()
        assert src.mode == "RGB", src.mode
        manifest["photos"][photo] = dict(size=list(src.size), mode=src.mode)
        manifest["files"].append(f"{photo}.png")
        for name, kw in CFGS.items():
            mode = "L" if kw["input_size"][0] == 1 else "RGB"
            img = src.convert(mode)
            t_u8, _ = eval_transform(kw, False)
            out = t_u8(img)
            assert out.mode == mode and out.size == (kw["input_size"][2], kw["input_size"][1]), \
                (out.mode, out.size)
            fname = f"{photo}_{name}.png"
            out.save(OUT / fname, optimize=True)
            manifest["files"].append(fname)
            # the saved PNG reproduces timm's normalized tensor exactly (ToTensor: /255, Normalize)
            t_full, _ = eval_transform(kw, True)
            x = t_full(img)
            back = np.asarray(Image.open(OUT / fname), dtype=np.uint8)
            back = back[None] if back.ndim == 2 else back.transpose(2, 0, 1)
            mean = torch.tensor(kw["mean"], dtype=torch.float32)[:, None, None]
            std = torch.tensor(kw["std"], dtype=torch.float32)[:, None, None]
            y = (torch.from_numpy(back.copy()).float().div(255) - mean) / std
            assert torch.equal(x, y), f"{fname}: PNG does not reproduce timm's tensor"
            print(f"  {fname}: {out.mode} {out.size}")
            if name == "xxs24_224":
                with torch.no_grad():
                    logits = model(x[None]).numpy()
                assert logits.shape == (1, 1000)
                lname = f"{photo}_xxs24_logits.npy"
                mf.write_npy(OUT / lname, logits)
                manifest["files"].append(lname)
                top = np.argsort(-logits[0])[:5]
                print(f"  {lname}: top5 {top.tolist()} std {logits.std():.4f}")
    manifest["files"].sort()
    with open(OUT / "manifest.json", "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    total = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"total size of {OUT}: {total:,} bytes")


if __name__ == "__main__":
    main()
