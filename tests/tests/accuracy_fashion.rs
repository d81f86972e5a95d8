//! The accuracy regression suite: the bundled Fashion-MNIST model (`models/fashion-cait`, a timm
//! hub folder) over the full 10,000-image test set (`/usr/share/datasets/fashion-mnist`, Debian's
//! `dataset-fashion-mnist`):
//! - the f32 pack (cait-core) against the float reference (cait-burn, CPU);
//! - the f16 and int8 packs against the f32 pack;
//! - for each: top-1 accuracy, top-1 agreement, logit SQNR.
//!
//! Every image runs (no sample); the core runs on all cores, the test profile is optimised
//! (`[profile.dev] opt-level = 3`). The int8 pack is calibrated as the committed one is
//! (`models/fashion-cait/README.md`): on the first 4,096 *training* images, every choice measured
//! as `cait quantize` does by default (half of them fit the ranges, a quarter — all 1,024, no cap —
//! choose, a quarter report), so the test images are ones it never saw.

use std::path::{Path, PathBuf};

use cait_burn::{BackendKind, Reference};
use cait_core::Model;
use cait_data::progress::Silent;
use cait_data::{DataOptions, Dataset, Split};
use cait_import::{Checkpoint, ImportOptions, load_checkpoint, write_pack_f32};
use cait_pack::Pack;
use cait_quant::Int8Options;
use cait_tests::argmax;

const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Logits of every image through the core engine, image order, on every core.
fn core_logits(pack_bytes: &[u8], data: &Dataset) -> Vec<Vec<f32>> {
    let mut storage = vec![0u64; pack_bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut storage)[..pack_bytes.len()]
        .copy_from_slice(pack_bytes);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&storage)[..pack_bytes.len()];
    let pack = Pack::parse(bytes).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = data.n.div_ceil(threads);
    let mut out = vec![Vec::new(); data.n];
    std::thread::scope(|s| {
        for (t, slots) in out.chunks_mut(chunk).enumerate() {
            let model = &model;
            s.spawn(move || {
                let mut ws = vec![0u64; model.workspace_bytes().div_ceil(8)];
                for (j, slot) in slots.iter_mut().enumerate() {
                    let mut logits = vec![0.0; model.logits_len()];
                    let image = data.image(t * chunk + j);
                    model
                        .forward(image, bytemuck::cast_slice_mut(&mut ws), &mut logits)
                        .unwrap();
                    *slot = logits;
                }
            });
        }
    });
    out
}

/// The float reference's logits (cait-burn on the CPU).
fn reference_logits(ckpt: &Checkpoint, data: &Dataset) -> Vec<Vec<f32>> {
    let reference = Reference::from_checkpoint(ckpt, BackendKind::Cpu).unwrap();
    let classes = ckpt.config.logits_len();
    let out = reference.forward(&data.images, data.n).unwrap();
    out.logits
        .chunks_exact(classes)
        .map(|r| r.to_vec())
        .collect()
}

struct Scores {
    top1: f64,
    agreement: f64,
    sqnr_db: f64,
}

/// Top-1 accuracy of `got`, and its top-1 agreement and logit SQNR against `base`.
fn scores(got: &[Vec<f32>], base: &[Vec<f32>], labels: &[u32]) -> Scores {
    let n = labels.len() as f64;
    let correct = got
        .iter()
        .zip(labels)
        .filter(|(l, y)| argmax(l) == **y as usize)
        .count();
    let agree = got
        .iter()
        .zip(base)
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (a, b) in got.iter().flatten().zip(base.iter().flatten()) {
        signal += (*b as f64).powi(2);
        noise += (*a as f64 - *b as f64).powi(2);
    }
    Scores {
        top1: correct as f64 / n,
        agreement: agree as f64 / n,
        sqnr_db: 10.0 * (signal / noise.max(1e-300)).log10(),
    }
}

#[test]
fn fashion_mnist_f32_f16_int8() {
    // `CAIT_FASHION_MODEL` points the suite at another hub folder (a retrained model).
    let model_dir = std::env::var_os("CAIT_FASHION_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("models/fashion-cait"));
    assert!(
        model_dir.join("model.safetensors").is_file(),
        "the bundled model {} is missing (it is committed with the repository; models/fashion-cait/README.md gives the `cait train` command that retrains it)",
        model_dir.display()
    );
    assert!(
        Path::new(FASHION_MNIST).is_dir(),
        "Fashion-MNIST is missing: install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist), which puts it in {FASHION_MNIST}"
    );
    let ckpt = load_checkpoint(&model_dir, &ImportOptions::default()).unwrap();
    let (cfg, pre) = (ckpt.config, ckpt.preprocess);
    let test = cait_data::load(
        Path::new(FASHION_MNIST),
        &DataOptions::default(),
        &cfg,
        &pre,
    )
    .unwrap();
    assert_eq!(test.n, 10_000, "the full test set");
    let labels = test.labels.clone().unwrap();
    let calib_opts = DataOptions {
        split: Split::Train,
        limit: Some(4096),
        ..DataOptions::default()
    };
    let calib = cait_data::load(Path::new(FASHION_MNIST), &calib_opts, &cfg, &pre).unwrap();

    let reference = reference_logits(&ckpt, &test);
    let f32_logits = core_logits(&write_pack_f32(&ckpt).unwrap(), &test);
    let f16 = cait_quant::quantize_f16(&ckpt, None, 2, &Silent).unwrap();
    let f16_logits = core_logits(&f16.bytes, &test);
    let int8_opts = Int8Options {
        select_images: 0,
        ..Int8Options::default()
    };
    let int8 = cait_quant::quantize_int8(&ckpt, &calib, &int8_opts, &Silent).unwrap();
    let int8_logits = core_logits(&int8.bytes, &test);

    let max_abs = f32_logits
        .iter()
        .flatten()
        .zip(reference.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let float = scores(&reference, &reference, &labels);
    let s32 = scores(&f32_logits, &reference, &labels);
    let s16 = scores(&f16_logits, &f32_logits, &labels);
    let s8 = scores(&int8_logits, &f32_logits, &labels);
    eprintln!("Fashion-MNIST test set, 10,000 images");
    eprintln!("  float reference (burn): top-1 {:.2}%", 100.0 * float.top1);
    eprintln!("  f32 pack vs burn-cpu: max |logit difference| {max_abs:e}");
    for (name, s, base) in [
        ("f32 pack", &s32, "reference"),
        ("f16 pack", &s16, "f32"),
        ("int8 pack", &s8, "f32"),
    ] {
        eprintln!(
            "  {name:<9} top-1 {:.2}%, agreement with {base} {:.2}%, logit SQNR {:.1} dB",
            100.0 * s.top1,
            100.0 * s.agreement,
            s.sqnr_db
        );
    }
    eprintln!(
        "  int8 choices: {}",
        int8.report
            .choices
            .iter()
            .map(|c| format!("{} {}", c.name, c.chosen))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // f32 pack against the float reference: the same f32 model, summed in other orders, so the
    // logits differ by rounding only (~1e-6 relative: SQNR above 100 dB on the timm fixtures);
    // a top-1 can flip only where the two best logits are within that rounding. At most 2 of the
    // 10,000 images may flip (0.02 points), and the SQNR must stay above 80 dB.
    // Issue acceptance: the core's f32 pack and burn-cpu agree within 1e-4 on every logit.
    assert!(
        max_abs <= 1e-4,
        "f32 pack vs burn-cpu: max |logit difference| {max_abs:e}"
    );
    assert!(
        (s32.top1 - float.top1).abs() <= 0.0002,
        "f32 top-1 {} vs {}",
        s32.top1,
        float.top1
    );
    assert!(s32.agreement >= 0.9998, "f32 agreement {}", s32.agreement);
    assert!(s32.sqnr_db >= 80.0, "f32 logit SQNR {}", s32.sqnr_db);

    // f16 (issue acceptance): top-1 within 0.05 points of f32, agreement >= 99.9%. Logit SQNR:
    // f16 weights keep 11 significant bits (~68 dB each); through the network at least 40 dB.
    assert!(
        (s16.top1 - s32.top1).abs() <= 0.0005,
        "f16 top-1 {} vs f32 {}",
        s16.top1,
        s32.top1
    );
    assert!(s16.agreement >= 0.999, "f16 agreement {}", s16.agreement);
    assert!(s16.sqnr_db >= 40.0, "f16 logit SQNR {}", s16.sqnr_db);

    // int8, calibrated with the held-out protocol (2,048 images fit, 1,024 choose, 1,024 report):
    // top-1 within 0.1 points of f32 and agreement at least 99.8% (held-out int8 issue acceptance;
    // measured 0.07 points and 99.84%).
    // Logit SQNR: int8 activations and weights hold ~40 dB each; end to end at least 20 dB.
    assert!(
        (s8.top1 - s32.top1).abs() <= 0.001,
        "int8 top-1 {} vs f32 {}",
        s8.top1,
        s32.top1
    );
    assert!(s8.agreement >= 0.998, "int8 agreement {}", s8.agreement);

    // The documents state these figures as measured here (for the bundled model only: a retrained
    // one in CAIT_FASHION_MODEL has its own).
    if std::env::var_os("CAIT_FASHION_MODEL").is_none() {
        use cait_tests::docs::assert_documented;
        let pct = |x: f64| format!("{:.2}%", 100.0 * x);
        let docs = ["README.md", "models/fashion-cait/README.md"];
        assert_documented(&docs, &pct(float.top1), "float top-1");
        assert_documented(&docs, &pct(s8.top1), "int8 top-1");
        assert_documented(&docs, &pct(s8.agreement), "int8 top-1 agreement with f32");
        assert_documented(&docs, &format!("{:.1} dB", s8.sqnr_db), "int8 logit SQNR");
        assert_documented(&docs, &pct(s16.agreement), "f16 top-1 agreement with f32");
        assert_documented(&docs, &format!("{:.1} dB", s16.sqnr_db), "f16 logit SQNR");
    }
    assert!(s8.sqnr_db >= 20.0, "int8 logit SQNR {}", s8.sqnr_db);
}
