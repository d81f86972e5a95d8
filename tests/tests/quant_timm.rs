//! f16 and int8 packs of every golden timm fixture against timm's own logits, their sizes and the
//! int8 workspace, and the outlier-channel fixture that naive per-tensor int8 gets wrong.
//!
//! Calibration images come from the fixtures' input distribution (the synth recipe's `0.8 · n`)
//! under a different tensor name, so they never include the test images.

use std::path::PathBuf;

use cait_core::workspace_bytes;
use cait_data::Dataset;
use cait_data::progress::Silent;
use cait_import::{Checkpoint, ImportOptions, load_checkpoint, write_pack_f32};
use cait_pack::{Pack, Precision};
use cait_quant::{AttnMode, CalibMethod, Int8Options, Quantized, Smoothing};
use cait_tests::logits::run_pack as run;
use cait_tests::synth::{self, Kind, SynthSpec};

/// Issue acceptance: int8 logits cosine to timm's at least 0.99, f16 at least 0.9999.
const INT8_COSINE: f64 = 0.99;
const F16_COSINE: f64 = 0.9999;

fn fixture(name: &str) -> PathBuf {
    synth::fixtures_dir().join(name)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The worst per-image cosine of `got` against the flat `want` logits.
fn worst_cosine(got: &[Vec<f32>], want: &[f32]) -> f64 {
    let classes = got[0].len();
    assert_eq!(got.len() * classes, want.len());
    got.iter()
        .zip(want.chunks_exact(classes))
        .map(|(g, w)| cosine(g, w))
        .fold(1.0, f64::min)
}

/// `n` calibration images from the fixture's input distribution (a stream the test images never
/// come from).
fn calibration(spec: &SynthSpec, n: usize, stream: &str) -> Dataset {
    let shape = [spec.in_chans, spec.img_size, spec.img_size];
    let images = synth::tensor(
        spec.seed,
        stream,
        &[n, shape[0], shape[1], shape[2]],
        Kind::Input,
    );
    Dataset {
        images,
        labels: None,
        n,
        sample_shape: shape,
        class_names: None,
    }
}

struct Fixture {
    ckpt: Checkpoint,
    spec: SynthSpec,
    input: Vec<f32>,
    timm: Vec<f32>,
    _dir: Option<tempfile::TempDir>,
}

fn load(name: &str) -> Fixture {
    let dir = fixture(name);
    let spec = SynthSpec::load(&dir).unwrap();
    let timm = synth::read_npy_f32(&dir.join("logits.npy")).unwrap();
    let (ckpt_path, tmp) = if dir.join("model.safetensors").is_file() {
        (dir.join("model.safetensors"), None)
    } else {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.safetensors");
        synth::write_safetensors(&spec, &path).unwrap();
        (path, Some(tmp))
    };
    let ckpt = load_checkpoint(&ckpt_path, &ImportOptions::default()).unwrap();
    let (_, input) = synth::input(&spec, timm.0[0]);
    Fixture {
        ckpt,
        spec,
        input,
        timm: timm.1,
        _dir: tmp,
    }
}

fn int8(fx: &Fixture, calib: usize, select: usize) -> Quantized {
    let opts = Int8Options {
        select_images: select,
        ..Int8Options::default()
    };
    let data = calibration(&fx.spec, calib, "calibration");
    cait_quant::quantize_int8(&fx.ckpt, &data, &opts, &Silent).unwrap()
}

fn tensor_bytes(bytes: &[u8]) -> usize {
    Pack::parse(bytes).unwrap().tensor_bytes()
}

/// Every fixture, f16 and int8 (choices measured automatically on 64 calibration images, compared
/// on 32; 8 and 4 for the two large ones, to keep the test within a few minutes on two cores),
/// against timm's logits.
#[test]
fn f16_and_int8_packs_match_timm() {
    let mut lines = Vec::new();
    for name in synth::fixture_names() {
        let fx = load(&name);
        let big = fx.spec.param_count() > 1_000_000;
        let f16 = cait_quant::quantize_f16(&fx.ckpt, None, 2, &Silent).unwrap();
        let c16 = worst_cosine(&run(&f16.bytes, &fx.input), &fx.timm);
        let (calib, select) = if big { (8, 4) } else { (64, 32) };
        let q = int8(&fx, calib, select);
        let c8 = worst_cosine(&run(&q.bytes, &fx.input), &fx.timm);
        let f32_bytes = tensor_bytes(&write_pack_f32(&fx.ckpt).unwrap());
        lines.push(format!(
            "{name}: f16 cosine {c16:.7} ({:.1}% of f32), int8 cosine {c8:.5} ({:.1}% of f32; {})",
            100.0 * f16.bytes.len() as f64 / f32_bytes as f64,
            100.0 * q.bytes.len() as f64 / f32_bytes as f64,
            q.report
                .choices
                .iter()
                .map(|c| c.chosen.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        assert!(c16 >= F16_COSINE, "{name}: f16 cosine {c16}");
        assert!(c8 >= INT8_COSINE, "{name}: int8 cosine {c8}");
    }
    eprintln!("{}", lines.join("\n"));
}

/// Sizes (issue acceptance: int8 pack at most 27% of the f32 tensor bytes, f16 at most 51%) and
/// the int8 workspace (at most 512 KiB, goal 256 KiB) of cait_xxs24_224; wide288 (a 6-head,
/// 288-wide model) must meet the size bounds too. The tiny fixtures do not: their LayerNorm, bias
/// and position-embedding vectors, which stay f32, are a large share of their few weights.
#[test]
fn pack_sizes_and_int8_workspace() {
    for name in ["xxs24_224", "wide288"] {
        let fx = load(name);
        let f32_bytes = tensor_bytes(&write_pack_f32(&fx.ckpt).unwrap());
        let f16 = cait_quant::quantize_f16(&fx.ckpt, None, 2, &Silent).unwrap();
        // Sizes do not depend on the calibration: the fewest images the held-out split takes
        // (8: 4 fit, 2 select, 2 report), no choices measured.
        let opts = Int8Options {
            method: Some(CalibMethod::MinMax),
            smoothing: Some(Smoothing::Off),
            qk: Some(AttnMode::Int8),
            av: Some(AttnMode::Int8),
            ..Int8Options::default()
        };
        let data = calibration(&fx.spec, 8, "calibration");
        let q = cait_quant::quantize_int8(&fx.ckpt, &data, &opts, &Silent).unwrap();
        let (r16, r8) = (
            f16.bytes.len() as f64 / f32_bytes as f64,
            q.bytes.len() as f64 / f32_bytes as f64,
        );
        eprintln!(
            "{name}: f32 tensors {f32_bytes} B; f16 pack {} B ({:.2}%); int8 pack {} B ({:.2}%)",
            f16.bytes.len(),
            100.0 * r16,
            q.bytes.len(),
            100.0 * r8
        );
        assert!(
            r16 <= 0.51,
            "{name}: f16 pack is {:.2}% of f32",
            100.0 * r16
        );
        assert!(r8 <= 0.27, "{name}: int8 pack is {:.2}% of f32", 100.0 * r8);
        if name == "xxs24_224" {
            let ws = workspace_bytes(&fx.ckpt.config, Precision::Int8);
            eprintln!("{name}: int8 workspace {ws} B");
            assert_eq!(ws, 246_364);
            assert!(ws <= 512 * 1024);
        }
    }
}

/// The outlier-channel fixture: cait_xxs24_224's synthesized weights with channels 7, 61, 128
/// and 190 of every LayerNorm (norm1, norm2 of all blocks, the final norm) scaled by 25 (weight
/// and bias) and the matching input columns of their consumers (qkv / q, k, v; fc1; head)
/// divided by 25: the float function is unchanged, but those post-LayerNorm channels are 25x the
/// rest, as in trained ViTs.
fn outlier_checkpoint(mut ckpt: Checkpoint) -> Checkpoint {
    const CHANNELS: [usize; 4] = [7, 61, 128, 190];
    const FACTOR: f32 = 25.0;
    let d = ckpt.config.embed_dim as usize;
    let mut scale = |norm: &str, consumers: &[String]| {
        for &c in &CHANNELS {
            for p in ["weight", "bias"] {
                ckpt.tensors.get_mut(&format!("{norm}.{p}")).unwrap().data[c] *= FACTOR;
            }
            for w in consumers {
                let t = ckpt.tensors.get_mut(w).unwrap();
                for row in t.data.chunks_exact_mut(d) {
                    row[c] /= FACTOR;
                }
            }
        }
    };
    for i in 0..ckpt.config.depth {
        scale(
            &format!("blocks.{i}.norm1"),
            &[format!("blocks.{i}.attn.qkv.weight")],
        );
        scale(
            &format!("blocks.{i}.norm2"),
            &[format!("blocks.{i}.mlp.fc1.weight")],
        );
    }
    for i in 0..ckpt.config.depth_token_only {
        let p = format!("blocks_token_only.{i}");
        let qkv = ["q", "k", "v"].map(|x| format!("{p}.attn.{x}.weight"));
        scale(&format!("{p}.norm1"), &qkv);
        scale(&format!("{p}.norm2"), &[format!("{p}.mlp.fc1.weight")]);
    }
    scale("norm", &["head.weight".to_string()]);
    ckpt
}

/// Naive per-tensor int8 (no smoothing, min-max) against the quantizer's own choices on the
/// outlier fixture, both measured against the float model on the fixture image plus three
/// held-out ones. Ours must keep cosine >= 0.99 (issue acceptance).
#[test]
fn outlier_channels_need_smoothing() {
    let fx = load("xxs24_224");
    let ckpt = outlier_checkpoint(fx.ckpt);
    let float = write_pack_f32(&ckpt).unwrap();
    let mut input = fx.input.clone();
    input.extend(calibration(&fx.spec, 3, "held-out").images);
    let want: Vec<f32> = run(&float, &input).concat();
    // The float function is unchanged by the construction (f32 rounding only).
    let first = &want[..1000];
    assert!(cosine(first, &fx.timm) > 0.999_999);

    let data = calibration(&fx.spec, 16, "calibration");
    let naive = Int8Options {
        method: Some(CalibMethod::MinMax),
        smoothing: Some(Smoothing::Off),
        qk: Some(AttnMode::Int8),
        av: Some(AttnMode::Int8),
        ..Int8Options::default()
    };
    let naive = cait_quant::quantize_int8(&ckpt, &data, &naive, &Silent).unwrap();
    // Smoothing measured (off, alpha 0.5, alpha 1); the rest fixed to keep the test short.
    let ours = Int8Options {
        method: Some(CalibMethod::Percentile),
        qk: Some(AttnMode::Int8),
        av: Some(AttnMode::Int8),
        select_images: 8,
        ..Int8Options::default()
    };
    let ours = cait_quant::quantize_int8(&ckpt, &data, &ours, &Silent).unwrap();
    let c_naive = worst_cosine(&run(&naive.bytes, &input), &want);
    let c_ours = worst_cosine(&run(&ours.bytes, &input), &want);
    let smoothing = &ours.report.choices[1];
    eprintln!(
        "outlier fixture: naive per-tensor int8 cosine {c_naive:.5}, ours ({}, smoothing {}) {c_ours:.6}",
        ours.report.choices[0].chosen, smoothing.chosen
    );
    assert!(c_ours >= INT8_COSINE, "cosine {c_ours}");
    assert_ne!(smoothing.chosen, "off");
    // Measured 0.9977 naive against 0.99995: naive's error (1 - cosine) is far larger.
    assert!(
        1.0 - c_naive > 10.0 * (1.0 - c_ours),
        "naive {c_naive} vs ours {c_ours}"
    );
}
