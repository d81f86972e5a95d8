#!/usr/bin/env python3
"""Golden CaiT fixtures from timm (the reference implementation).

Run (re-runnable; rewrites tests/fixtures/timm/*):

    pip install -r tools/requirements-fixtures.txt
    TIMM_FUSED_ATTN=0 python3 tools/make_fixtures.py [--out DIR] [--only NAME ...]

For every fixture in FIXTURES it builds the model with `timm.create_model`, fills every tensor from
the deterministic PRNG recipe below (never from timm's own init: timm's LayerScale init of 1e-5 would
make every block vanish), runs timm in eval mode in float32 with the non-fused attention path, and
writes into tests/fixtures/timm/<name>/:

    spec.json       model args, seed, batch, file list, per-tensor fingerprints, output statistics
    logits.npy      [B, num_classes] float32: model(input)
    features.npy    [B, embed_dim] float32: forward_head(forward_features(input), pre_logits=True)
  committed (small) fixtures also:
    input.npy           [B, C, H, W] float32 (equals the recipe's "input" tensor)
    model.safetensors   timm state dict, safetensors (timm key order)
    model.pth           torch.save(state_dict) (zip format)             -- `tiny` only (size budget)
    release.pth         {"model": {"module." + key: tensor}} (DeiT/CaiT release layout) -- `tiny` only
    config.json         timm hub config written by timm's own save_for_hf (where noted)

Large architectures (cait_xxs24_224 = 11,956,264 parameters = 48 MB, and `wide288`) are NOT committed:
only spec.json + logits.npy + features.npy are. The Rust test suite synthesizes their weights and
input from the same recipe (tests/src/synth.rs), proves the Rust generator agrees with this script by
checking the fingerprints stored in spec.json (first 4 values as f32 bits, the f64 sum and a
position-weighted checksum of every tensor), and then holds the engine's logits to timm's.

PRNG recipe "cait-edge-synth-v1" (implemented identically in tests/src/synth.rs; change both or none)
----------------------------------------------------------------------------------------------------
All integer arithmetic is modulo 2^64.
  fnv1a64(bytes):   h = 0xCBF29CE484222325; for b in bytes: h = (h ^ b) * 0x100000001B3
  mix64(z):         z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
                    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
                    return z ^ (z >> 31)
  stream per tensor: state = mix64(fixture_seed ^ fnv1a64(tensor_name as UTF-8))
  next():           state = state + 0x9E3779B97F4A7C15; return mix64(state)      (SplitMix64)
  uniform u:        (next() >> 11) * 2^-53                  (f64, exact, in [0, 1))
  normal n:         ((((0.0 + u1) + u2) + ... + u12)) - 6.0 (f64, summed left to right; Irwin-Hall)
Elements are drawn in C (row-major) order, one draw (u) or twelve draws (n) per element. Every value
is computed in f64 with +, -, *, / and sqrt only (correctly rounded in both languages, no FMA) and
then rounded to nearest f32.
  cls_token                       1.0 * n          [1, 1, D]
  pos_embed                       1.0 * n          [1, N, D]
  *.gamma_1 (attention branch)    0.02 + 0.18 * u  (LayerScale ~ U(0.02, 0.2))
  *.gamma_2 (MLP branch)          0.1 + 0.9 * u    (LayerScale ~ U(0.1, 1))
  *.attn.proj_l.weight, proj_w    I[i, j] + 0.1 * n  (identity + noise; H x H)
  LayerNorm *.norm*.weight        1.0 + 0.2 * (2.0 * u - 1.0)
  LayerNorm *.norm*.bias          0.1 * (2.0 * u - 1.0)
  every other weight (Linear, Conv2d patch_embed.proj)
                                  n * scale,  scale = gain * sqrt(1.0 / fan_in)  (scale computed first)
                                  fan_in = product of shape[1:] (in_features; in_chans*p*p for the conv)
                                  gain = 1.25 for *.attn.qkv.weight, *.attn.q.weight, *.attn.k.weight
                                  (sharper attention), gain = 1.0 for every other weight
  every other bias (Linear, Conv, proj_l/proj_w)  0.02 * n
  input (tensor name "input")     0.8 * n          [B, C, H, W]
The scales keep logits O(1) and attention neither saturated nor uniform. A small attention-branch
LayerScale is what keeps a 24-block stack from collapsing to identical tokens (with gamma_1 ~ U(0.1, 1)
the attention of cait_xxs24_224 went uniform, normalized entropy 0.999, from block 5 on). spec.json records, per
fixture, the normalized attention entropy (H / ln(keys)) and the largest attention probability of the
self-attention (after softmax, before proj_w) and class-attention softmaxes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np

if os.environ.get("TIMM_FUSED_ATTN") != "0":
    print("TIMM_FUSED_ATTN=0 is required (timm's non-fused attention path); re-run with it set",
          file=sys.stderr)
    sys.exit(2)

import torch  # noqa: E402
import safetensors.torch  # noqa: E402
import timm  # noqa: E402
from timm.models import cait as timm_cait  # noqa: E402
from timm.models._hub import save_for_hf  # noqa: E402

RECIPE = "cait-edge-synth-v1"
MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
M1 = 0xBF58476D1CE4E5B9
M2 = 0x94D049BB133111EB
TOKEN_SCALE = 1.0  # cls_token and pos_embed
QK_GAIN = 1.25  # attn.qkv.weight, attn.q.weight, attn.k.weight
INPUT_SCALE = 0.8

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# Fixtures. `timm_args` is passed to timm.create_model(architecture, **timm_args); it is recorded
# verbatim in spec.json. Everything else the Rust side needs is in spec.json["model"].
# ---------------------------------------------------------------------------------------------
FIXTURES = [
    dict(name="tiny", seed=0x7151, batch=2, committed=True, config_json=True,
         formats=("safetensors", "pth", "release"),
         label_names=["airplane", "automobile", "bird", "cat", "deer",
                      "dog", "frog", "horse", "ship", "truck"],
         architecture="cait_xxs24_224",
         timm_args=dict(img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=16,
                        depth=2, num_heads=4, mlp_ratio=4.0, global_pool="token")),
    # mlp_ratio=3 is what a user passes; timm keeps mlp_ratio_token_only at its default 4.0, so the
    # class-attention MLP (64) is wider than the self-attention MLP (48).
    dict(name="tiny_avg", seed=0xA76, batch=2, committed=True, config_json=True,
         formats=("safetensors",),
         architecture="cait_xxs24_224",
         timm_args=dict(img_size=24, patch_size=4, in_chans=3, num_classes=5, embed_dim=16,
                        depth=3, num_heads=2, mlp_ratio=3, global_pool="avg")),
    dict(name="gray", seed=0x6EA7, batch=2, committed=True, config_json=False,
         formats=("safetensors",),
         architecture="cait_xxs24_224",
         timm_args=dict(img_size=28, patch_size=7, in_chans=1, num_classes=7, embed_dim=24,
                        depth=2, num_heads=8, global_pool="token")),
    dict(name="noqkvbias", seed=0x0B1A5, batch=2, committed=True, config_json=False,
         formats=("safetensors",),
         architecture="cait_xxs24_224",
         timm_args=dict(img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=16,
                        depth=2, num_heads=4, qkv_bias=False, global_pool="token")),
    dict(name="wide288", seed=0x288, batch=2, committed=False, config_json=False, formats=(),
         architecture="cait_xs24_384",
         timm_args=dict(img_size=64, patch_size=16, in_chans=3, num_classes=100, embed_dim=288,
                        depth=2, num_heads=6, global_pool="token")),
    dict(name="xxs24_224", seed=0x224, batch=1, committed=False, config_json=False, formats=(),
         architecture="cait_xxs24_224", timm_args=dict()),
]


# ---------------------------------------------------------------------------------------------
# PRNG (vectorized with numpy uint64, which wraps modulo 2^64)
# ---------------------------------------------------------------------------------------------
def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * M1) & MASK
    z = ((z ^ (z >> 27)) * M2) & MASK
    return z ^ (z >> 31)


def _mix64_np(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(M2)
    return z ^ (z >> np.uint64(31))


class Stream:
    """SplitMix64 stream for one tensor; next() number k (1-based) is mix64(seed + k * GOLDEN)."""

    def __init__(self, fixture_seed: int, name: str):
        self.state = mix64((fixture_seed ^ fnv1a64(name.encode("utf-8"))) & MASK)

    def raw(self, count: int) -> np.ndarray:
        with np.errstate(over="ignore"):
            k = np.arange(1, count + 1, dtype=np.uint64)
            states = np.uint64(self.state) + k * np.uint64(GOLDEN)
            out = _mix64_np(states)
        self.state = (self.state + count * GOLDEN) & MASK
        return out

    def uniform(self, count: int) -> np.ndarray:
        return (self.raw(count) >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)

    def normal(self, count: int) -> np.ndarray:
        u = self.uniform(12 * count).reshape(count, 12)
        s = 0.0 + u[:, 0]
        for j in range(1, 12):
            s = s + u[:, j]
        return s - 6.0


# ---------------------------------------------------------------------------------------------
# The timm tensor list, built from the model args alone (mirrors synth.rs; checked against timm)
# ---------------------------------------------------------------------------------------------
def model_shape(arch: str, timm_args: dict) -> dict:
    """Resolved model args (what the Rust SynthSpec holds) for architecture + overrides."""
    m = timm.create_model(arch, pretrained=False, device="meta", **timm_args)
    sa, ca = m.blocks[0], m.blocks_token_only[0]
    return dict(
        img_size=m.patch_embed.img_size[0],
        patch_size=m.patch_embed.patch_size[0],
        in_chans=m.in_chans,
        num_classes=m.num_classes,
        global_pool=m.global_pool,
        embed_dim=m.embed_dim,
        depth=len(m.blocks),
        num_heads=sa.attn.num_heads,
        mlp_hidden=sa.mlp.fc1.out_features,
        depth_token_only=len(m.blocks_token_only),
        mlp_hidden_token_only=ca.mlp.fc1.out_features,
        qkv_bias=sa.attn.qkv.bias is not None,
        num_patches=m.patch_embed.num_patches,
    )


def tensor_list(s: dict):
    """[(name, shape, kind)] in timm state-dict order. kind: token|gamma_1|gamma_2|talk|ln_w|ln_b|weight|bias."""
    d, h, c, p = s["embed_dim"], s["num_heads"], s["in_chans"], s["patch_size"]
    out = [("cls_token", [1, 1, d], "token"),
           ("pos_embed", [1, s["num_patches"], d], "token"),
           ("patch_embed.proj.weight", [d, c, p, p], "weight"),
           ("patch_embed.proj.bias", [d], "bias")]

    def common_head(pre):
        out.append((f"{pre}.gamma_1", [d], "gamma_1"))
        out.append((f"{pre}.gamma_2", [d], "gamma_2"))
        out.append((f"{pre}.norm1.weight", [d], "ln_w"))
        out.append((f"{pre}.norm1.bias", [d], "ln_b"))

    def mlp_tail(pre, hidden):
        out.append((f"{pre}.norm2.weight", [d], "ln_w"))
        out.append((f"{pre}.norm2.bias", [d], "ln_b"))
        out.append((f"{pre}.mlp.fc1.weight", [hidden, d], "weight"))
        out.append((f"{pre}.mlp.fc1.bias", [hidden], "bias"))
        out.append((f"{pre}.mlp.fc2.weight", [d, hidden], "weight"))
        out.append((f"{pre}.mlp.fc2.bias", [d], "bias"))

    for i in range(s["depth"]):
        pre = f"blocks.{i}"
        common_head(pre)
        out.append((f"{pre}.attn.qkv.weight", [3 * d, d], "weight"))
        if s["qkv_bias"]:
            out.append((f"{pre}.attn.qkv.bias", [3 * d], "bias"))
        out.append((f"{pre}.attn.proj.weight", [d, d], "weight"))
        out.append((f"{pre}.attn.proj.bias", [d], "bias"))
        out.append((f"{pre}.attn.proj_l.weight", [h, h], "talk"))
        out.append((f"{pre}.attn.proj_l.bias", [h], "bias"))
        out.append((f"{pre}.attn.proj_w.weight", [h, h], "talk"))
        out.append((f"{pre}.attn.proj_w.bias", [h], "bias"))
        mlp_tail(pre, s["mlp_hidden"])
    for i in range(s["depth_token_only"]):
        pre = f"blocks_token_only.{i}"
        common_head(pre)
        for q in ("q", "k", "v"):
            out.append((f"{pre}.attn.{q}.weight", [d, d], "weight"))
            if s["qkv_bias"]:
                out.append((f"{pre}.attn.{q}.bias", [d], "bias"))
        out.append((f"{pre}.attn.proj.weight", [d, d], "weight"))
        out.append((f"{pre}.attn.proj.bias", [d], "bias"))
        mlp_tail(pre, s["mlp_hidden_token_only"])
    out.append(("norm.weight", [d], "ln_w"))
    out.append(("norm.bias", [d], "ln_b"))
    if s["num_classes"] > 0:
        out.append(("head.weight", [s["num_classes"], d], "weight"))
        out.append(("head.bias", [s["num_classes"]], "bias"))
    return out


def synth_tensor(seed: int, name: str, shape, kind: str) -> np.ndarray:
    count = int(np.prod(shape))
    st = Stream(seed, name)
    if kind == "token":
        v = TOKEN_SCALE * st.normal(count)
    elif kind == "input":
        v = INPUT_SCALE * st.normal(count)
    elif kind == "gamma_1":
        v = 0.02 + 0.18 * st.uniform(count)
    elif kind == "gamma_2":
        v = 0.1 + 0.9 * st.uniform(count)
    elif kind == "talk":
        eye = np.eye(shape[0], shape[1], dtype=np.float64).reshape(-1)
        v = eye + 0.1 * st.normal(count)
    elif kind == "ln_w":
        v = 1.0 + 0.2 * (2.0 * st.uniform(count) - 1.0)
    elif kind == "ln_b":
        v = 0.1 * (2.0 * st.uniform(count) - 1.0)
    elif kind == "weight":
        fan_in = int(np.prod(shape[1:]))
        qk = name.endswith((".attn.qkv.weight", ".attn.q.weight", ".attn.k.weight"))
        scale = (QK_GAIN if qk else 1.0) * math.sqrt(1.0 / fan_in)
        v = st.normal(count) * scale
    elif kind == "bias":
        v = 0.02 * st.normal(count)
    else:
        raise ValueError(kind)
    return v.astype(np.float32).reshape(shape)


def fingerprint(name: str, a: np.ndarray) -> dict:
    flat = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    bits = flat.view(np.uint32)
    total = float(np.cumsum(flat.astype(np.float64))[-1])  # sequential, left to right
    with np.errstate(over="ignore"):
        weights = np.arange(flat.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        checksum = int(np.sum(bits.astype(np.uint64) * weights, dtype=np.uint64))
    return dict(name=name, shape=list(a.shape), first4_bits=[int(b) for b in bits[:4]],
                sum_bits=f"{np.float64(total).view(np.uint64):016x}",
                checksum=f"{checksum:016x}")


# ---------------------------------------------------------------------------------------------
def write_npy(path: Path, a: np.ndarray):
    a = np.ascontiguousarray(a, dtype="<f4")
    with open(path, "wb") as f:
        np.lib.format.write_array(f, a, version=(1, 0), allow_pickle=False)


def attention_stats(model, x):
    """Normalized entropy / max prob of SA softmax (input of proj_w) and CA softmax (attn_drop)."""
    sa, ca = [], []

    def sa_hook(_m, inp):
        p = inp[0].double()  # [B, Nq, Nk, H], softmax over Nk (dim 2)
        ent = -(p * p.clamp_min(1e-300).log()).sum(2) / math.log(p.shape[2])
        sa.append((ent.mean().item(), ent.min().item(), p.max().item()))

    def ca_hook(_m, inp):
        p = inp[0].double()  # [B, H, 1, N+1]
        ent = -(p * p.clamp_min(1e-300).log()).sum(-1) / math.log(p.shape[-1])
        ca.append((ent.mean().item(), ent.min().item(), p.max().item()))

    hs = [b.attn.proj_w.register_forward_pre_hook(sa_hook) for b in model.blocks]
    hs += [b.attn.attn_drop.register_forward_pre_hook(ca_hook) for b in model.blocks_token_only]
    with torch.no_grad():
        model(x)
    for hd in hs:
        hd.remove()

    def summary(rows):
        return dict(entropy_mean=round(float(np.mean([r[0] for r in rows])), 4),
                    entropy_min=round(float(min(r[1] for r in rows)), 4),
                    max_prob=round(float(max(r[2] for r in rows)), 4),
                    per_layer_entropy=[round(r[0], 3) for r in rows])

    return dict(self_attention=summary(sa), class_attention=summary(ca))


def run_timm(model, x):
    with torch.no_grad():
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
        assert torch.equal(model.head(feats), logits)
    return logits, feats


def load_into(model, sd):
    missing, unexpected = model.load_state_dict(sd, strict=True)
    assert not missing and not unexpected


def make(fx: dict, out_root: Path):
    name, seed, arch, targs = fx["name"], fx["seed"], fx["architecture"], fx["timm_args"]
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, **targs).eval()
    shape = model_shape(arch, targs)
    tl = tensor_list(shape)
    sd_ref = model.state_dict()
    assert [(n, s) for n, s, _ in tl] == [(k, list(v.shape)) for k, v in sd_ref.items()], \
        "recipe tensor list disagrees with timm's state dict"
    arrays = {n: synth_tensor(seed, n, s, k) for n, s, k in tl}
    sd = {n: torch.from_numpy(a.copy()) for n, a in arrays.items()}
    load_into(model, sd)
    model.eval()

    b = fx["batch"]
    in_shape = [b, shape["in_chans"], shape["img_size"], shape["img_size"]]
    x_np = synth_tensor(seed, "input", in_shape, "input")
    x = torch.from_numpy(x_np.copy())
    logits, feats = run_timm(model, x)

    # float64 run: how far timm's own float32 result is from exact arithmetic
    m64 = timm.create_model(arch, pretrained=False, **targs).eval().double()
    load_into(m64, {k: v.double() for k, v in sd.items()})
    with torch.no_grad():
        l64 = m64(x.double())
    f32_vs_f64 = float((logits.double() - l64).abs().max())

    files = []

    def wrote(fname):
        files.append(fname)
        print(f"  wrote {out / fname} ({(out / fname).stat().st_size} bytes)")

    write_npy(out / "logits.npy", logits.numpy()); wrote("logits.npy")
    write_npy(out / "features.npy", feats.numpy()); wrote("features.npy")

    if fx["committed"]:
        write_npy(out / "input.npy", x_np); wrote("input.npy")
        clean_sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        if fx["config_json"]:
            # timm's own writer (weights + config.json); keep its safetensors as model.safetensors
            model_config = {}
            if fx.get("label_names"):
                model_config["label_names"] = fx["label_names"]
            tmp = out / "_hf"
            save_for_hf(model, tmp, model_config=model_config, safe_serialization=True)
            shutil.move(str(tmp / "config.json"), out / "config.json"); wrote("config.json")
            shutil.move(str(tmp / "model.safetensors"), out / "model.safetensors")
            shutil.rmtree(tmp)
            wrote("model.safetensors")
        elif "safetensors" in fx["formats"]:
            safetensors.torch.save_file(clean_sd, out / "model.safetensors"); wrote("model.safetensors")
        if "pth" in fx["formats"]:
            torch.save(clean_sd, out / "model.pth"); wrote("model.pth")
        if "release" in fx["formats"]:
            torch.save({"model": {"module." + k: v for k, v in clean_sd.items()}}, out / "release.pth")
            wrote("release.pth")

    fps = [fingerprint(n, arrays[n]) for n, _, _ in tl] + [fingerprint("input", x_np)]
    spec = dict(
        name=name,
        recipe=RECIPE,
        seed=seed,
        batch=b,
        committed=fx["committed"],
        architecture=arch,
        timm_args=targs,
        model=shape,
        input_shape=in_shape,
        param_count=sum(p.numel() for p in model.parameters()),
        files=sorted(files + ["spec.json"]),
        label_names=fx.get("label_names"),
        generator=dict(timm=timm.__version__, torch=torch.__version__, numpy=np.__version__,
                       TIMM_FUSED_ATTN=os.environ.get("TIMM_FUSED_ATTN")),
        stats=dict(
            logits_std=round(float(logits.std()), 4),
            logits_absmax=round(float(logits.abs().max()), 4),
            features_absmax=round(float(feats.abs().max()), 4),
            timm_f32_vs_f64_logits_maxabs=f32_vs_f64,
            **attention_stats(model, x),
        ),
        fingerprints=fps,
    )
    with open(out / "spec.json", "w") as f:
        f.write(json.dumps({k: v for k, v in spec.items() if k != "fingerprints"}, indent=2)[:-2])
        f.write(',\n  "fingerprints": [\n')
        f.write(",\n".join("    " + json.dumps(fp, separators=(",", ":")) for fp in fps))
        f.write("\n  ]\n}\n")
    print(f"  wrote {out / 'spec.json'} ({(out / 'spec.json').stat().st_size} bytes)")
    print(f"  params {spec['param_count']:,}  logits std {spec['stats']['logits_std']}  "
          f"f32-vs-f64 {f32_vs_f64:.2e}  SA entropy {spec['stats']['self_attention']['entropy_mean']}"
          f"  CA entropy {spec['stats']['class_attention']['entropy_mean']}")
    verify(fx, out, shape, x, logits)


def verify(fx, out: Path, shape: dict, x, logits):
    """Reload committed weight files into fresh timm models; logits must be identical."""
    arch, targs = fx["architecture"], fx["timm_args"]
    ref = np.load(out / "logits.npy")
    assert np.array_equal(ref, logits.numpy())
    if not fx["committed"]:
        return
    assert np.array_equal(np.load(out / "input.npy"), x.numpy())
    checks = []
    if (out / "model.safetensors").exists():
        checks.append(("model.safetensors", safetensors.torch.load_file(out / "model.safetensors")))
    if (out / "model.pth").exists():
        checks.append(("model.pth", torch.load(out / "model.pth", weights_only=True)))
    if (out / "release.pth").exists():
        raw = torch.load(out / "release.pth", weights_only=True)
        checks.append(("release.pth", timm_cait.checkpoint_filter_fn(raw)))
    for fname, sd in checks:
        m = timm.create_model(arch, pretrained=False, **targs).eval()
        load_into(m, sd)
        with torch.no_grad():
            assert torch.equal(m(x), logits), fname
        print(f"  verified {fname}: fresh timm model gives identical logits")
    if (out / "config.json").exists():
        # timm's own loader: architecture + model_args + pretrained_cfg from config.json
        m = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
        with torch.no_grad():
            assert torch.equal(m(x), logits)
        print("  verified config.json: timm.create_model('local-dir:...') gives identical logits")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "timm")
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    print(f"timm {timm.__version__}, torch {torch.__version__}, numpy {np.__version__}; "
          f"recipe {RECIPE}; out {args.out}")
    for fx in FIXTURES:
        if args.only and fx["name"] not in args.only:
            continue
        print(f"{fx['name']}:")
        make(fx, args.out)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"total size of {args.out}: {total:,} bytes")


if __name__ == "__main__":
    main()
