#!/usr/bin/env python3
"""ONNX Runtime latency of timm's cait_xxs24_224 (f32 and dynamic int8), one thread, beside the
cait-core criterion benchmark, with the ratios.

    pip install torch timm onnx onnxruntime
    python3 tools/bench_onnxruntime.py [--runs 20] [--no-core] [--rustflags "-C target-cpu=native"]

Steps, all in one run so the numbers share the machine's state:
1. timm builds cait_xxs24_224 with the synthesized fixture weights (tools/make_fixtures.py's
   recipe; latency does not depend on the values) and exports it to ONNX (opset 17);
2. onnxruntime.quantization.quantize_dynamic makes the int8 model (int8 weights per tensor,
   activations quantized at run time, MatMulInteger / DynamicQuantizeLinear);
3. both run with intra_op_num_threads = inter_op_num_threads = 1, sequential execution, all graph
   optimisations; median of --runs timed runs after 3 warm-ups;
4. unless --no-core, `cargo bench -p cait-core --features std --bench forward` runs the core's f32 and int8
   forward passes of the same architecture (criterion, one thread) and its medians are read from
   target/criterion (or $CARGO_TARGET_DIR/criterion);
5. prints one JSON object with every latency (ms) and the ratios.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TIMM_FUSED_ATTN", "0")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))


def build_timm():
    import torch
    import timm
    import make_fixtures as mf

    spec = json.loads((ROOT / "tests/fixtures/timm/xxs24_224/spec.json").read_text())
    model = timm.create_model("cait_xxs24_224", pretrained=False).eval()
    tensors = {n: mf.synth_tensor(spec["seed"], n, s, k) for n, s, k in mf.tensor_list(spec["model"])}
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
    x = mf.synth_tensor(spec["seed"], "input", [1, 3, 224, 224], "input")
    return model, torch.from_numpy(x.copy())


def export(model, x, path):
    import torch

    with torch.no_grad():
        torch.onnx.export(
            model, (x,), str(path), input_names=["input"], output_names=["logits"],
            opset_version=17, dynamo=False,
        )


def session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def time_session(sess, x, runs):
    feed = {"input": x}
    for _ in range(3):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        out = sess.run(None, feed)[0]
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), out


def core_bench(rustflags):
    env = dict(os.environ)
    if rustflags:
        env["RUSTFLAGS"] = rustflags
    cmd = ["cargo", "bench", "-p", "cait-core", "--features", "std", "--bench", "forward", "--",
           "--warm-up-time", "2", "--measurement-time", "10", "cait_xxs24_224"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    target = Path(env.get("CARGO_TARGET_DIR", ROOT / "target"))
    out = {}
    for precision in ["f32", "int8", "f16"]:
        est = target / "criterion" / f"forward_{precision}" / "cait_xxs24_224" / "new" / "estimates.json"
        if est.is_file():
            out[precision] = json.loads(est.read_text())["median"]["point_estimate"] / 1e6
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-core", action="store_true", help="skip the cargo bench")
    ap.add_argument("--rustflags", default="", help="RUSTFLAGS for the core build")
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model, x = build_timm()
    with tempfile.TemporaryDirectory() as tmp:
        f32 = Path(tmp) / "cait_xxs24_224.onnx"
        int8 = Path(tmp) / "cait_xxs24_224.int8.onnx"
        export(model, x, f32)
        quantize_dynamic(str(f32), str(int8), weight_type=QuantType.QInt8)
        x_np = x.numpy()
        ms_f32, out_f32 = time_session(session(f32), x_np, args.runs)
        ms_int8, out_int8 = time_session(session(int8), x_np, args.runs)
        sizes = {"onnx_f32_bytes": f32.stat().st_size, "onnx_int8_bytes": int8.stat().st_size}

    a, b = out_f32.ravel().astype(np.float64), out_int8.ravel().astype(np.float64)
    result = {
        "model": "cait_xxs24_224 (timm, synthesized weights)",
        "threads": 1,
        "onnxruntime": ort.__version__,
        "ort_f32_ms": round(ms_f32, 2),
        "ort_int8_dynamic_ms": round(ms_int8, 2),
        "ort_int8_vs_f32_logit_cosine": round(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), 6),
        **sizes,
    }
    if not args.no_core:
        core = core_bench(args.rustflags)
        result["core_rustflags"] = args.rustflags or "(default)"
        for k, v in core.items():
            result[f"core_{k}_ms"] = round(v, 2)
        if "int8" in core:
            result["core_int8_over_core_f32"] = round(core["int8"] / core["f32"], 3)
            result["core_int8_over_ort_int8"] = round(core["int8"] / ms_int8, 3)
            result["core_f32_over_ort_f32"] = round(core["f32"] / ms_f32, 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
