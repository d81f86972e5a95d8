//! The quantizer on small random checkpoints built in memory: accuracy of every fixed choice, the
//! measured (automatic) choices, the pack's record, and every error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cait_core::Model;
use cait_data::progress::Silent;
use cait_import::{CheckpointFormat, ConfigSource, Tensor};
use cait_pack::int8::{META_AV, META_QK};
use cait_pack::timm::default_preprocess;
use cait_pack::{BlockParam, GlobalPool, ModelConfig, Pack, Precision, TensorId};

use super::*;

fn config() -> ModelConfig {
    ModelConfig {
        img_size: [32, 32],
        patch_size: 8,
        in_chans: 3,
        num_classes: 10,
        embed_dim: 32,
        depth: 2,
        num_heads: 4,
        mlp_hidden_dim: 128,
        depth_token_only: 2,
        mlp_hidden_dim_token_only: 128,
        qkv_bias: true,
        global_pool: GlobalPool::Token,
    }
}

struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A checkpoint of `cfg` with timm-fixture-like random weights (LayerScale 0.02-1, unit-gain
/// linears); `outliers` LayerNorm channels scaled by 25 with the consumers' columns divided by 25
/// (the float function unchanged).
fn checkpoint(cfg: ModelConfig, seed: u64, outliers: &[usize]) -> Checkpoint {
    let mut rng = Rng(seed);
    let mut tensors = BTreeMap::new();
    for spec in cfg.tensors() {
        let dims = spec.shape.dims();
        let n = spec.shape.numel().unwrap();
        let fan_in = if dims.len() >= 2 {
            n / dims[0] as usize
        } else {
            1
        };
        let unit = (3.0 / fan_in as f32).sqrt();
        let (scale, offset) = match spec.id {
            TensorId::NormWeight => (0.2, 1.0),
            TensorId::Block(_, p) | TensorId::TokenBlock(_, p) => match p {
                BlockParam::Gamma1 => (0.09, 0.11),
                BlockParam::Gamma2 => (0.45, 0.55),
                BlockParam::Norm1Weight | BlockParam::Norm2Weight => (0.2, 1.0),
                BlockParam::ProjLWeight | BlockParam::ProjWWeight => (unit, 0.0),
                _ if dims.len() == 1 => (0.1, 0.0),
                _ => (unit, 0.0),
            },
            _ if dims.len() == 1 => (0.1, 0.0),
            TensorId::ClsToken | TensorId::PosEmbed => (1.0, 0.0),
            _ => (unit, 0.0),
        };
        let data: Vec<f32> = (0..n).map(|_| offset + scale * rng.uniform()).collect();
        let shape = dims.iter().map(|&d| d as usize).collect();
        tensors.insert(spec.id.to_string(), Tensor::new(shape, data));
    }
    let d = cfg.embed_dim as usize;
    let mut scale_channels = |norm: String, consumers: &[String]| {
        for &c in outliers {
            for p in ["weight", "bias"] {
                tensors.get_mut(&format!("{norm}.{p}")).unwrap().data[c] *= 25.0;
            }
            for w in consumers {
                let t = tensors.get_mut(w).unwrap();
                for row in t.data.chunks_exact_mut(d) {
                    row[c] /= 25.0;
                }
            }
        }
    };
    for i in 0..cfg.depth {
        scale_channels(
            format!("blocks.{i}.norm1"),
            &[format!("blocks.{i}.attn.qkv.weight")],
        );
        scale_channels(
            format!("blocks.{i}.norm2"),
            &[format!("blocks.{i}.mlp.fc1.weight")],
        );
    }
    for i in 0..cfg.depth_token_only {
        let p = format!("blocks_token_only.{i}");
        let qkv = ["q", "k", "v"].map(|x| format!("{p}.attn.{x}.weight"));
        scale_channels(format!("{p}.norm1"), &qkv);
        scale_channels(format!("{p}.norm2"), &[format!("{p}.mlp.fc1.weight")]);
    }
    Checkpoint {
        config: cfg,
        preprocess: default_preprocess(&cfg),
        architecture: None,
        timm_architecture: None,
        labels: None,
        tensors,
        source: PathBuf::from("random.safetensors"),
        format: CheckpointFormat::Safetensors,
        config_source: ConfigSource::Inferred,
        guessed: Vec::new(),
    }
}

fn images(cfg: &ModelConfig, n: usize, seed: u64) -> Dataset {
    let mut rng = Rng(seed);
    let shape = [
        cfg.in_chans as usize,
        cfg.img_size[0] as usize,
        cfg.img_size[1] as usize,
    ];
    let len: usize = shape.iter().product();
    Dataset {
        images: (0..n * len).map(|_| 1.4 * rng.uniform()).collect(),
        labels: None,
        n,
        sample_shape: shape,
        class_names: None,
    }
}

fn logits(bytes: &[u8], data: &Dataset) -> Vec<Vec<f32>> {
    let buf = observe::PackBuf::new(bytes);
    let model: Model<'_> = buf.model().unwrap();
    let mut runner = Runner::new(model);
    (0..data.n)
        .map(|i| {
            runner.run(data.image(i), None).unwrap();
            runner.logits.clone()
        })
        .collect()
}

fn cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (mut dot, mut na, mut nb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        dot += *x as f64 * *y as f64;
        na += *x as f64 * *x as f64;
        nb += *y as f64 * *y as f64;
    }
    dot / (na * nb).sqrt()
}

fn fixed(method: CalibMethod, smoothing: Smoothing) -> Int8Options {
    Int8Options {
        method: Some(method),
        smoothing: Some(smoothing),
        qk: Some(AttnMode::Int8),
        av: Some(AttnMode::Int8),
        threads: 2,
        ..Int8Options::default()
    }
}

/// Every calibration method and smoothing, on held-out images: int8 logits within cosine 0.99 of
/// the float model; on outlier channels smoothing cuts the error (1 - cosine) at least 3x
/// (measured 7x; this small, shallow model is far less sensitive than cait_xxs24_224).
#[test]
fn every_fixed_choice_tracks_the_float_model() {
    let cfg = config();
    let calib = images(&cfg, 24, 1);
    let test = images(&cfg, 8, 2);
    for outliers in [&[][..], &[3, 17, 30]] {
        let ckpt = checkpoint(cfg, 7, outliers);
        let float = logits(&cait_import::write_pack_f32(&ckpt).unwrap(), &test);
        let mut by_smoothing = Vec::new();
        for method in CalibMethod::ALL {
            for smoothing in Smoothing::CANDIDATES {
                let q = quantize_int8(&ckpt, &calib, &fixed(method, smoothing), &Silent).unwrap();
                let c = cosine(&logits(&q.bytes, &test), &float);
                by_smoothing.push((method, smoothing, c));
            }
        }
        for &(m, s, c) in &by_smoothing {
            // Measured: without outliers every choice gives >= 0.99997; with them, smoothing
            // (alpha 0.5 or 1) still >= 0.99997 while off drops to 0.9998 (7x the error).
            if outliers.is_empty() || s != Smoothing::Off {
                assert!(c > 0.99, "{outliers:?} {m:?} {s:?}: cosine {c}");
            }
        }
        if !outliers.is_empty() {
            let off = by_smoothing
                .iter()
                .filter(|x| x.1 == Smoothing::Off)
                .map(|x| x.2);
            let on = by_smoothing
                .iter()
                .filter(|x| x.1 != Smoothing::Off)
                .map(|x| x.2);
            let (worst_on, best_off) = (on.fold(1.0, f64::min), off.fold(0.0, f64::max));
            assert!(
                1.0 - best_off > 3.0 * (1.0 - worst_on),
                "smoothing should cut the error: off {best_off}, on {worst_on}"
            );
        }
    }
}

/// Automatic choices measure every candidate, keep the best logit SQNR, and the pack records
/// them; the engine reads the attention modes back.
#[test]
fn automatic_choices_are_measured_and_recorded() {
    let cfg = config();
    let ckpt = checkpoint(cfg, 8, &[5, 20]);
    let calib = images(&cfg, 16, 3);
    let opts = Int8Options {
        threads: 2,
        select_images: 8,
        report: true,
        calib_source: "random".into(),
        ..Int8Options::default()
    };
    let q = quantize_int8(&ckpt, &calib, &opts, &Silent).unwrap();
    let r = &q.report;
    let names: Vec<&str> = r.choices.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["calibration", "smoothing", "attention", "activation_scales"]
    );
    for c in &r.choices {
        let best = c
            .candidates
            .iter()
            .map(|k| k.logit_sqnr_db)
            .fold(f64::NEG_INFINITY, f64::max);
        // An activation-scales candidate names the attention modes measured with it.
        let chosen = c
            .candidates
            .iter()
            .find(|k| k.value == c.chosen || k.value.starts_with(&format!("{} (", c.chosen)))
            .unwrap();
        if c.name == "attention" {
            // int8 unless f32 wins by the margin.
            assert!(chosen.logit_sqnr_db + 2.0 * ATTENTION_F32_MARGIN_DB >= best);
        } else {
            assert_eq!(chosen.logit_sqnr_db, best, "{}", c.name);
        }
    }
    assert_eq!(r.choices[0].candidates.len(), 3);
    assert_eq!(r.choices[1].candidates.len(), 3);
    assert_eq!(r.choices[2].candidates.len(), 4);
    assert_eq!(r.choices[3].candidates.len(), 2);
    assert_ne!(
        r.choices[1].chosen, "off",
        "outlier channels need smoothing"
    );
    let pack = Pack::parse(&q.bytes).unwrap();
    assert_eq!(pack.precision(), Precision::Int8);
    let meta = pack.metadata();
    assert_eq!(
        meta.get("quant.calibration"),
        Some(r.choices[0].chosen.as_str())
    );
    assert_eq!(
        meta.get("quant.smoothing"),
        Some(r.choices[1].chosen.as_str())
    );
    let attention = format!(
        "qk={} av={}",
        meta.get(META_QK).unwrap(),
        meta.get(META_AV).unwrap()
    );
    assert_eq!(attention, r.choices[2].chosen);
    assert_eq!(
        meta.get(cait_pack::int8::META_ACTIVATION_SCALES),
        Some(r.choices[3].chosen.as_str())
    );
    for key in [
        "quant.measured.calibration",
        "quant.measured.smoothing",
        "quant.measured.attention",
        "quant.measured.activation_scales",
    ] {
        assert!(meta.get(key).is_some_and(|v| v.contains("dB")), "{key}");
    }
    // 16 images dealt round-robin: 8 fit, 4 select, 4 report; the record says so.
    assert_eq!(
        meta.get("quant.calibration_data"),
        Some("16 images from random: 8 fitted the ranges, 4 chose, 4 held out for the report")
    );
    assert!(
        meta.get("quant.held_out")
            .is_some_and(|v| v.ends_with("on 4 held-out images"))
    );
    // The report: every linear layer's weights, every activation, the logits.
    let json = r.to_json();
    assert_eq!(
        (&json["images"], &json["fit_images"], &json["select_images"]),
        (&4.into(), &8.into(), &4.into())
    );
    assert_eq!(
        r.warnings.len(),
        1,
        "4 report images are few: {:?}",
        r.warnings
    );
    let layers = json["layers"].as_array().unwrap();
    let qkv = layers
        .iter()
        .find(|l| l["name"] == "blocks.1.attn.qkv")
        .unwrap();
    assert!(qkv["weight_sqnr_db"].as_f64().unwrap() > 30.0);
    assert!(qkv["activation_sqnr_db"]["norm1"].as_f64().unwrap() > 20.0);
    let qk = layers
        .iter()
        .find(|l| l["name"] == "blocks.0.attn.q@k")
        .unwrap();
    assert!(qk["activation_sqnr_db"]["q"].as_f64().is_some());
    assert!(r.logit_sqnr_db.unwrap() > 20.0);
    assert!(r.top1_agreement.unwrap() >= 0.9);
    let table = r.to_table();
    assert!(table.contains("blocks_token_only.1.mlp.fc2") && table.contains("logits: SQNR"));
}

#[test]
fn f16_packs_store_linear_weights_in_f16() {
    let cfg = config();
    let ckpt = checkpoint(cfg, 9, &[]);
    let calib = images(&cfg, 4, 4);
    let q = quantize_f16(&ckpt, Some(&calib), 2, &Silent).unwrap();
    let pack = Pack::parse(&q.bytes).unwrap();
    assert_eq!(pack.precision(), Precision::F16);
    for t in pack.tensors() {
        let id = TensorId::parse(t.name).unwrap();
        let want = if id.is_linear_weight() {
            cait_pack::DType::F16
        } else {
            cait_pack::DType::F32
        };
        assert_eq!(t.dtype, want, "{}", t.name);
    }
    // f16 keeps 11 bits of mantissa: ~68 dB on weights; the logits lose little more.
    let r = &q.report;
    assert!(
        r.layers
            .iter()
            .all(|l| l.weight_sqnr_db.is_none_or(|w| w > 60.0))
    );
    assert!(r.logit_sqnr_db.unwrap() > 50.0, "{:?}", r.logit_sqnr_db);
    assert_eq!(r.top1_agreement, Some(1.0));
    let no_data = quantize_f16(&ckpt, None, 2, &Silent).unwrap();
    assert_eq!(no_data.bytes, q.bytes);
    assert_eq!(no_data.report.logit_sqnr_db, None);
}

#[test]
fn bad_calibration_and_weights_are_refused() {
    let cfg = config();
    let ckpt = checkpoint(cfg, 10, &[]);
    let opts = fixed(CalibMethod::MinMax, Smoothing::Off);
    let mut empty = images(&cfg, 1, 5);
    empty.n = 0;
    empty.images.clear();
    assert!(matches!(
        quantize_int8(&ckpt, &empty, &opts, &Silent),
        Err(QuantError::EmptyCalibration)
    ));
    let mut gray = images(&cfg, 2, 5);
    gray.sample_shape = [1, 32, 32];
    gray.images.truncate(2 * 32 * 32);
    let e = quantize_int8(&ckpt, &gray, &opts, &Silent).unwrap_err();
    assert!(matches!(
        e,
        QuantError::CalibrationShape {
            found: [1, 32, 32],
            expected: [3, 32, 32]
        }
    ));
    assert_eq!(
        e.to_string(),
        "calibration images are [1, 32, 32] (C, H, W) but the model takes [3, 32, 32]"
    );
    let mut nan = images(&cfg, 3, 5);
    nan.images[2 * 3 * 32 * 32 + 7] = f32::NAN;
    assert!(matches!(
        quantize_int8(&ckpt, &nan, &opts, &Silent),
        Err(QuantError::CalibrationNotFinite { image: 2 })
    ));
    let mut broken = checkpoint(cfg, 10, &[]);
    broken
        .tensors
        .get_mut("blocks.1.mlp.fc2.weight")
        .unwrap()
        .data[4] = f32::INFINITY;
    let data = images(&cfg, 2, 6);
    for e in [
        quantize_int8(&broken, &data, &opts, &Silent).unwrap_err(),
        quantize_f16(&broken, None, 1, &Silent).unwrap_err(),
    ] {
        assert!(
            matches!(&e, QuantError::Import(cait_import::ImportError::NonFinite { tensor, index: 4, .. }) if tensor == "blocks.1.mlp.fc2.weight"),
            "{e:?}"
        );
    }
}

/// With a hold-out set, every calibration image fits, the hold-out images select (even) and
/// report (odd); the figures say so, and a wrong hold-out set is refused with its own error.
#[test]
fn a_holdout_set_selects_and_reports() {
    let cfg = config();
    let ckpt = checkpoint(cfg, 11, &[]);
    let calib = images(&cfg, 6, 7);
    let opts = Int8Options {
        holdout: Some(images(&cfg, 9, 8)),
        calib_source: "random".into(),
        ..fixed(CalibMethod::MinMax, Smoothing::Off)
    };
    let q = quantize_int8(&ckpt, &calib, &opts, &Silent).unwrap();
    let r = &q.report;
    assert_eq!((r.fit_images, r.select_images, r.images), (6, 5, 4));
    let pack = Pack::parse(&q.bytes).unwrap();
    assert_eq!(
        pack.metadata().get("quant.calibration_data"),
        Some(
            "6 images from random fitted the ranges; of 9 hold-out images, 5 chose and 4 reported"
        )
    );
    // The held-out figure is the pack's own: its logits on the odd hold-out images.
    let h = images(&cfg, 9, 8);
    let odd = split::split(&calib, Some(&h), 0).unwrap().report;
    let float = logits(&cait_import::write_pack_f32(&ckpt).unwrap(), &odd);
    let (sqnr, agree) = agreement(&float, &logits(&q.bytes, &odd));
    assert_eq!(r.logit_sqnr_db, Some(sqnr));
    assert_eq!(r.top1_agreement, Some(agree));

    let mut gray = images(&cfg, 4, 9);
    gray.sample_shape = [1, 32, 32];
    gray.images.truncate(4 * 32 * 32);
    let mut nan = images(&cfg, 4, 9);
    nan.images[3 * 3 * 32 * 32] = f32::INFINITY;
    let run = |h: Dataset| {
        let opts = Int8Options {
            holdout: Some(h),
            ..fixed(CalibMethod::MinMax, Smoothing::Off)
        };
        quantize_int8(&ckpt, &calib, &opts, &Silent).unwrap_err()
    };
    let e = run(gray);
    assert!(
        matches!(
            e,
            QuantError::HoldoutShape {
                found: [1, 32, 32],
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().starts_with("hold-out images are [1, 32, 32]"));
    assert!(matches!(
        run(nan),
        QuantError::HoldoutNotFinite { image: 3 }
    ));
    let e = run(images(&cfg, 3, 9));
    assert!(
        matches!(
            e,
            QuantError::TooFewImages {
                parts: [6, 2, 1],
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("--holdout with at least 4"), "{e}");
}

/// Too few calibration images for three disjoint parts is an error naming the counts, not a
/// silent overfit.
#[test]
fn too_few_calibration_images_are_refused() {
    let cfg = config();
    let ckpt = checkpoint(cfg, 12, &[]);
    let e = quantize_int8(
        &ckpt,
        &images(&cfg, 6, 10),
        &fixed(CalibMethod::MinMax, Smoothing::Off),
        &Silent,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        QuantError::TooFewImages {
            parts: [4, 1, 1],
            holdout: None,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "6 calibration images are too few to fit, select and report on different images (fit 4, select 1, report 1; each needs at least 2): give at least 8 calibration images, or --holdout with at least 4"
    );
}

/// Where a LayerNorm output's channels were seen fewer than `MIN_CHANNEL_SAMPLES` times (here
/// every one: 16 tokens × 12 fit images), the smoothing factors come from its affine weights, not
/// from the images: two disjoint calibration sets give the same factors, `|γ_c|` normalised to a
/// geometric mean of 1 for α = 1, centred on `β_c`.
#[test]
fn few_sample_smoothing_comes_from_the_layer_norm() {
    let cfg = config();
    let ckpt = checkpoint(cfg, 13, &[2, 9]);
    let opts = fixed(CalibMethod::MinMax, Smoothing::Alpha(1.0));
    let smooth_of = |bytes: &[u8]| -> Vec<f32> {
        let pack = Pack::parse(bytes).unwrap();
        let t = pack.tensor_by_name("norm.smooth").unwrap();
        t.as_f32().unwrap().to_vec()
    };
    let a = quantize_int8(&ckpt, &images(&cfg, 24, 20), &opts, &Silent).unwrap();
    let b = quantize_int8(&ckpt, &images(&cfg, 24, 21), &opts, &Silent).unwrap();
    let (sa, sb) = (smooth_of(&a.bytes), smooth_of(&b.bytes));
    assert_eq!(sa, sb);
    let d = cfg.embed_dim as usize;
    let gamma = &ckpt.tensor(TensorId::NormWeight).unwrap().data;
    let beta = &ckpt.tensor(TensorId::NormBias).unwrap().data;
    let mean_log = gamma.iter().map(|g| (g.abs() as f64).ln()).sum::<f64>() / d as f64;
    for c in 0..d {
        let want = gamma[c].abs() as f64 / mean_log.exp();
        assert!((sa[c] as f64 - want).abs() < 1e-5 * want, "scale {c}");
        assert!(
            (sa[d + c] - beta[c]).abs() <= 1e-6 * beta[c].abs().max(1.0),
            "shift {c}"
        );
    }
    // In the blocks, α = 1 divides each channel by its |γ_c|: the folded LayerNorm weights all
    // have one magnitude, outlier channels 2 and 9 (γ × 25) included.
    let pack = Pack::parse(&a.bytes).unwrap();
    let w = pack
        .tensor(TensorId::Block(1, BlockParam::Norm2Weight))
        .unwrap()
        .as_f32()
        .unwrap();
    for c in 0..d {
        assert!(
            (w[c].abs() - w[0].abs()).abs() < 1e-5 * w[0].abs(),
            "{c}: {w:?}"
        );
    }
}

/// Mixed precision on an outlier checkpoint whose all-int8 pack misses a logit SQNR budget: blocks
/// are kept in f16, most sensitive first; the pack marks exactly those (f16 weights, no activation
/// table); the model needs the mixed workspace and refuses one byte less; the held-out figures
/// are the pack's own; an unreachable budget is a stated best effort, not an error.
#[test]
fn a_sqnr_budget_keeps_the_most_sensitive_blocks_in_f16() {
    let cfg = config();
    let ckpt = checkpoint(cfg, 5, &[3, 17]);
    let calib = images(&cfg, 48, 2);
    let plain = quantize_int8(
        &ckpt,
        &calib,
        &fixed(CalibMethod::MinMax, Smoothing::Off),
        &Silent,
    )
    .unwrap();
    assert!(plain.report.mixed.is_none());
    // The const header reading (a firmware's static workspace) tells all-int8 from mixed packs.
    assert_eq!(
        cait_core::try_workspace_bytes_for(&plain.bytes),
        Ok(cait_core::workspace_bytes(&cfg, Precision::Int8))
    );
    let target = plain.report.logit_sqnr_db.unwrap() + 4.0;
    let opts = Int8Options {
        budget: Some(Budget::MinSqnr(target)),
        ..fixed(CalibMethod::MinMax, Smoothing::Off)
    };
    let q = quantize_int8(&ckpt, &calib, &opts, &Silent).unwrap();
    let m = q.report.mixed.as_ref().unwrap();
    assert_eq!(m.unit, "dB");
    assert!(!m.kept.is_empty(), "{m:?}");
    assert_eq!(m.sensitivity.len(), 4, "every block measured: {m:?}");
    assert!(m.sensitivity.windows(2).all(|w| w[0].1 >= w[1].1));
    assert_eq!(m.kept[0], m.sensitivity[0].0, "most sensitive first");
    assert!(m.selection.1 > m.selection.0, "{m:?}");
    assert_eq!(m.met_on_selection, m.selection.1 >= target);
    assert!(m.added_bytes > 0);

    let pack = Pack::parse(&q.bytes).unwrap();
    let kept: Vec<String> = cait_pack::int8::f16_blocks(&pack)
        .map(|(t, i)| {
            mixed::block_name(if t {
                Site::TokenBlock(i)
            } else {
                Site::Block(i)
            })
        })
        .collect();
    let mut want = m.kept.clone();
    want.sort();
    assert_eq!(kept, want);
    for name in &m.kept {
        assert!(pack.tensor_by_name(&format!("{name}.act_quant")).is_none());
        assert!(pack.tensor_by_name(&format!("{name}.gamma_1")).is_some());
    }
    let model = Model::from_pack(&pack).unwrap();
    let ws = model.workspace_bytes();
    assert_eq!(ws, cait_core::mixed_workspace_bytes(&cfg));
    assert_eq!(ws, cait_core::pack_workspace_bytes(&pack));
    assert_eq!(cait_core::try_workspace_bytes_for(&q.bytes), Ok(ws));
    assert!(ws > cait_core::workspace_bytes(&cfg, Precision::Int8));
    let mut buf = vec![0u64; ws.div_ceil(8)];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
    let mut out = vec![0.0f32; 10];
    let image = &calib.images[..calib.sample_len()];
    assert!(matches!(
        model.forward(image, &mut bytes[..ws - 1], &mut out),
        Err(cait_core::Error::WorkspaceTooSmall { .. })
    ));
    model.forward(image, &mut bytes[..ws], &mut out).unwrap();

    // The held-out figures are the mixed pack's own, on the report images.
    let report = split::split(&calib, None, opts.select_images)
        .unwrap()
        .report;
    let float = logits(&cait_import::write_pack_f32(&ckpt).unwrap(), &report);
    let (sqnr, _) = agreement(&float, &logits(&q.bytes, &report));
    assert_eq!(q.report.logit_sqnr_db, Some(sqnr));
    assert_eq!(m.held_out, sqnr);
    assert_eq!(m.met_on_held_out, sqnr >= target);
    assert!(
        pack.metadata()
            .get("quant.mixed")
            .is_some_and(|v| v.contains(&m.kept[0]))
    );

    // No mix reaches 200 dB: the best measured, and a warning that says so.
    let opts = Int8Options {
        budget: Some(Budget::MinSqnr(200.0)),
        ..fixed(CalibMethod::MinMax, Smoothing::Off)
    };
    let q = quantize_int8(&ckpt, &calib, &opts, &Silent).unwrap();
    let m = q.report.mixed.as_ref().unwrap();
    assert!(!m.met_on_selection && !m.met_on_held_out);
    assert!(
        q.report
            .warnings
            .iter()
            .any(|w| w.starts_with("no mix of f16 blocks meets logit SQNR ≥ 200 dB")),
        "{:?}",
        q.report.warnings
    );
}

/// A top-1 budget needs labels; a budget must be a finite, non-negative number.
#[test]
fn bad_budgets_are_refused() {
    let cfg = config();
    let ckpt = checkpoint(cfg, 5, &[]);
    let calib = images(&cfg, 16, 2);
    let run = |b: Budget| {
        let opts = Int8Options {
            budget: Some(b),
            ..fixed(CalibMethod::MinMax, Smoothing::Off)
        };
        quantize_int8(&ckpt, &calib, &opts, &Silent).unwrap_err()
    };
    let e = run(Budget::MaxDrop(0.1));
    assert!(matches!(e, QuantError::BudgetNeedsLabels), "{e:?}");
    assert!(
        e.to_string().contains("--min-sqnr, which needs none"),
        "{e}"
    );
    assert!(matches!(
        run(Budget::MaxDrop(-1.0)),
        QuantError::BadBudget(_)
    ));
    let e = run(Budget::MinSqnr(f64::NAN));
    assert_eq!(
        e.to_string(),
        "budget logit SQNR ≥ NaN dB is not a finite, non-negative number"
    );
}

/// A top-1 budget on labelled images: the drop is measured against the labels, and a budget the
/// all-int8 pack meets keeps nothing.
#[test]
fn a_drop_budget_the_int8_pack_meets_keeps_nothing() {
    let cfg = config();
    let ckpt = checkpoint(cfg, 5, &[]);
    let mut calib = images(&cfg, 32, 2);
    // Labels: the float model's own classes, so the float accuracy is 100%.
    let float = logits(&cait_import::write_pack_f32(&ckpt).unwrap(), &calib);
    calib.labels = Some(float.iter().map(|l| observe::argmax(l) as u32).collect());
    let opts = Int8Options {
        budget: Some(Budget::MaxDrop(100.0)),
        ..fixed(CalibMethod::MinMax, Smoothing::Off)
    };
    let q = quantize_int8(&ckpt, &calib, &opts, &Silent).unwrap();
    let m = q.report.mixed.as_ref().unwrap();
    assert!(m.kept.is_empty() && m.sensitivity.is_empty());
    assert_eq!(m.unit, "points");
    // With the float model's classes as labels, the drop is the disagreement.
    let agree = q.report.top1_agreement.unwrap();
    assert!((m.held_out - 100.0 * (1.0 - agree)).abs() < 1e-9, "{m:?}");
    assert!(m.met_on_held_out && m.added_bytes == 0);
}
