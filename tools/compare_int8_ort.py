#!/usr/bin/env python3
"""Int8 quantizers against the float timm model on held-out images: ONNX Runtime's dynamic and
static quantization beside `cait quantize --precision int8`, calibrated on the same images.

    pip install torch timm onnx onnxruntime safetensors
    python3 tools/compare_int8_ort.py --model DIR --calib calib.npy --holdout holdout.npy \
        [--cait target/release/cait] [--cait-args "--method mse"] [--skip-cait] [--json]

DIR is a timm hub folder (config.json with `architecture` and `model_args`, plus
model.safetensors); calib.npy and holdout.npy are float32 [N, C, H, W] batches already normalized.
The int8 fixture family, with its calibration and unseen test images, is written by
    cargo run --release -p cait-quant --example int8_family -- --img 224 --write OUT
as OUT/<member>/{config.json, model.safetensors, calib.npy, test.npy}.
The reference is timm's float model (TIMM_FUSED_ATTN=0) on the holdout images. Rows:

  ort_dynamic  onnxruntime quantize_dynamic: int8 weights per channel, activations quantized per
               tensor at run time (DynamicQuantizeLinear + MatMulInteger/ConvInteger).
  ort_static   onnxruntime quantize_static: QDQ format, int8 weights per channel, int8
               activations (ORT's recommended S8S8 default) with MinMax ranges over calib.npy.
  cait_int8    `cait quantize DIR --precision int8 --calib calib.npy`, then `cait classify`.
  cait_f32     `cait classify --model DIR`: the project's f32 engine on the checkpoint, a sanity
               row that should match timm to ~1e-4.

Columns: worst-image and mean cosine of the logits to timm's, logit SQNR in dB over all holdout
images (10 log10(sum ref^2 / sum (ref - q)^2)), top-1 agreement with timm, number of images.
The ONNX graph is exported at batch 1 and every image runs on its own (one thread per session),
so dynamic activation scales never mix images. Both ORT quantizers start from the graph after
onnxruntime.quantization.shape_inference.quant_pre_process, as ORT's docs recommend.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

os.environ["TIMM_FUSED_ATTN"] = "0"  # plain attention ops, as the project's fixtures use

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from bench_onnxruntime import session  # noqa: E402  (one place for the single-thread ORT options)


def die(msg):
    print(f"compare_int8_ort: error: {msg}", file=sys.stderr)
    sys.exit(2)


def load_npy(path, what):
    if not Path(path).is_file():
        die(f"{what} file not found: {path}")
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - one line for any unreadable file
        die(f"{what} {path}: not a readable .npy ({e})")
    if x.dtype != np.float32 or x.ndim != 4 or x.shape[0] == 0:
        die(f"{what} {path}: expected a non-empty float32 [N, C, H, W] batch, got {x.dtype} {list(x.shape)}")
    return np.ascontiguousarray(x)


def build_timm(model_dir):
    """timm model from a hub folder (config.json + model.safetensors), in eval mode."""
    import torch
    import timm
    from safetensors.torch import load_file

    cfg_path, weights = model_dir / "config.json", model_dir / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            die(f"{p} not found (the model folder needs config.json and model.safetensors)")
    cfg = json.loads(cfg_path.read_text())
    if "architecture" not in cfg:
        die(f"{cfg_path}: no `architecture` key")
    model = timm.create_model(cfg["architecture"], pretrained=False, **cfg.get("model_args", {}))
    try:
        model.load_state_dict(load_file(str(weights)))
    except RuntimeError as e:
        die(f"{weights} does not fit {cfg['architecture']} with {cfg.get('model_args', {})}: "
            + str(e).splitlines()[0])
    model.eval()
    c = model.patch_embed.proj.in_channels
    h, w = model.patch_embed.img_size
    return model, cfg["architecture"], (c, h, w)


def export(model, shape, path):
    """ONNX at batch 1, opset 17, TorchScript exporter (as tools/bench_onnxruntime.py)."""
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy-exporter deprecation and tracer warnings
        torch.onnx.export(
            model, (torch.zeros(1, *shape),), str(path), input_names=["input"],
            output_names=["logits"], opset_version=17, dynamo=False,
        )


def run_onnx(path, images):
    sess = session(path)
    return np.stack([sess.run(None, {"input": img[None]})[0][0] for img in images])


def ort_quantize(f32_path, calib, work):
    """quant_pre_process, then the dynamic and static int8 models. Returns (dyn, static) paths."""
    from onnxruntime.quantization import (
        CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        """The calibration images one at a time, like the holdout images at run time."""

        def __init__(self, images):
            self.it = iter(images)

        def get_next(self):
            img = next(self.it, None)
            return None if img is None else {"input": img[None]}

    pre = work / "model.pre.onnx"
    quant_pre_process(str(f32_path), str(pre))
    dyn, static = work / "model.dynamic.onnx", work / "model.static.onnx"
    quantize_dynamic(str(pre), str(dyn), per_channel=True, weight_type=QuantType.QInt8)
    quantize_static(
        str(pre), str(static), Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
    )
    return dyn, static


def float_ops(path, dynamic):
    """What ORT left in float. Dynamic: the MatMul/Gemm/Conv still float (and how many of them
    multiply two activations, e.g. attention's q·kᵀ and attn·v). Static QDQ: the op types with no
    DequantizeLinear input (they run on float values between QDQ pairs)."""
    import onnx

    graph = onnx.load(str(path)).graph
    consts = {i.name for i in graph.initializer}
    consts |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    dq_out = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    skip = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Constant", "Cast"}
    left, act_act = {}, 0
    for n in graph.node:
        if dynamic and n.op_type in ("MatMul", "Gemm", "Conv"):
            left[n.op_type] = left.get(n.op_type, 0) + 1
            act_act += not any(i in consts for i in n.input[:2])
        elif not dynamic and n.op_type not in skip and not any(i in dq_out for i in n.input):
            left[n.op_type] = left.get(n.op_type, 0) + 1
    out = {"float_ops": left}
    if dynamic:
        out["float_activation_matmuls"] = act_act
    return out


def cait(binary, *args):
    """Run the cait CLI; its stdout parsed as JSON."""
    cmd = [str(binary), *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        die(f"`{shlex.join(cmd)}` failed ({p.returncode}): {last}")
    return json.loads(p.stdout)


def cait_logits(out, m):
    logits = np.array([r["logits"] for r in out["results"]], dtype=np.float32)
    if len(logits) != m:
        die(f"cait classify returned {len(logits)} results for {m} holdout images")
    return logits


def metrics(ref, q):
    """Cosines per image, logit SQNR over all images, top-1 agreement."""
    ref, q = ref.astype(np.float64), q.astype(np.float64)
    cos = (ref * q).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(q, axis=1) + 1e-30)
    err = ((ref - q) ** 2).sum()
    sqnr = float("inf") if err == 0 else 10 * np.log10((ref ** 2).sum() / err)
    agree = int((ref.argmax(1) == q.argmax(1)).sum())
    return {"worst_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
            "sqnr_db": float(sqnr), "top1_agreement": agree / len(ref), "images": len(ref)}


def versions():
    import onnx
    import onnxruntime
    import timm
    import torch

    return {"torch": torch.__version__, "timm": timm.__version__,
            "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__}


def print_table(result, notes):
    print(f"model {result['model']} ({result['architecture']}), "
          f"calibration {result['calib_images']} images, holdout {result['holdout_images']} images")
    print(f"  {'row':<12} {'worst cos':>10} {'mean cos':>10} {'SQNR dB':>8} {'top-1':>11} {'n':>4}")
    for name, r in result["rows"].items():
        top1 = f"{round(r['top1_agreement'] * r['images'])}/{r['images']}"
        print(f"  {name:<12} {r['worst_cosine']:>10.6f} {r['mean_cosine']:>10.6f} "
              f"{r['sqnr_db']:>8.2f} {top1:>11} {r['images']:>4}")
    for line in notes:
        print(f"  * {line}")
    print("  versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, type=Path, help="timm hub folder")
    ap.add_argument("--calib", required=True, type=Path, help="calibration .npy [N, C, H, W]")
    ap.add_argument("--holdout", required=True, type=Path, help="held-out .npy [M, C, H, W]")
    ap.add_argument("--cait", type=Path, default=ROOT / "target/release/cait", help="cait binary")
    ap.add_argument("--cait-args", default="", help="extra `cait quantize` arguments (one string)")
    ap.add_argument("--skip-cait", action="store_true", help="only the ORT rows")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--work", type=Path, help="keep the ONNX models and pack here (default: temp)")
    args = ap.parse_args()

    if not args.model.is_dir():
        die(f"model folder not found: {args.model}")
    if not args.skip_cait and not args.cait.is_file():
        die(f"cait binary not found: {args.cait} (build it with `cargo build --release` or pass --skip-cait)")
    calib, holdout = load_npy(args.calib, "--calib"), load_npy(args.holdout, "--holdout")

    import torch

    torch.set_num_threads(1)
    model, arch, shape = build_timm(args.model)
    for what, x, path in (("--calib", calib, args.calib), ("--holdout", holdout, args.holdout)):
        if tuple(x.shape[1:]) != shape:
            die(f"{what} {path}: images are {list(x.shape[1:])}, the model takes {list(shape)}")
    with torch.no_grad():
        ref = model(torch.from_numpy(holdout)).numpy()

    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="compare_int8_ort.")
        args.work = Path(tmp.name)
    args.work.mkdir(parents=True, exist_ok=True)

    # ONNX Runtime rows.
    f32_onnx = args.work / "model.onnx"
    export(model, shape, f32_onnx)
    dyn, static = ort_quantize(f32_onnx, calib, args.work)
    rows = {"ort_dynamic": metrics(ref, run_onnx(dyn, holdout)),
            "ort_static": metrics(ref, run_onnx(static, holdout))}
    rows["ort_dynamic"].update(float_ops(dyn, dynamic=True))
    rows["ort_static"].update(float_ops(static, dynamic=False))
    onnx_f32 = metrics(ref, run_onnx(f32_onnx, holdout))  # exporter check, not a row
    notes = [
        "ORT models start from quant_pre_process (symbolic shape inference + ONNX optimisation)",
        "ort_dynamic: quantize_dynamic(per_channel=True, weight_type=QInt8)",
        "ort_static: quantize_static(QDQ, per_channel=True, activation QInt8 (ORT default S8S8), "
        f"weight QInt8, MinMax) on the {len(calib)} calibration images",
        f"ONNX f32 export vs timm: worst cosine {onnx_f32['worst_cosine']:.8f}, "
        f"SQNR {onnx_f32['sqnr_db']:.1f} dB",
    ]
    if rows["ort_dynamic"]["float_ops"]:
        notes.append(f"ort_dynamic left float: {rows['ort_dynamic']['float_ops']} "
                     f"({rows['ort_dynamic']['float_activation_matmuls']} multiply two activations)")
    if rows["ort_static"]["float_ops"]:
        notes.append(f"ort_static ops with no int8 input: {rows['ort_static']['float_ops']}")

    # The project's CLI: int8 pack from the same calibration images, and the f32 engine.
    quant_summary = None
    if not args.skip_cait:
        pack = args.work / "model-int8.cait"
        quant_summary = cait(args.cait, "quantize", args.model, "--precision", "int8",
                             "--calib", args.calib, "--calib-count", len(calib), "-o", pack,
                             "--json", *shlex.split(args.cait_args))
        rows["cait_int8"] = metrics(ref, cait_logits(
            cait(args.cait, "classify", "--model", pack, args.holdout, "--json"), len(holdout)))
        rows["cait_f32"] = metrics(ref, cait_logits(
            cait(args.cait, "classify", "--model", args.model, args.holdout, "--json"), len(holdout)))
        notes.append(f"cait_int8: `cait quantize --precision int8 --calib-count {len(calib)}"
                     + (f" {args.cait_args}`" if args.cait_args else "`"))

    result = {"model": str(args.model), "architecture": arch, "calib_images": len(calib),
              "holdout_images": len(holdout), "rows": rows, "onnx_f32_export": onnx_f32,
              "versions": versions()}
    if quant_summary is not None:
        result["cait_quantize"] = quant_summary
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result, notes)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
