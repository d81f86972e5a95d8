//! The trainer on a small synthetic task: it learns, its output is a timm hub folder that the
//! import path and the reference read back, a resumed run is bit-identical to an uninterrupted
//! one, and bad input stops with a clear error.

mod common;

use std::path::Path;

use cait_burn::train::{Event, TrainConfig, TrainData, train};
use cait_burn::{BackendKind, Error, Reference};
use cait_import::{ImportOptions, load_checkpoint};
use cait_pack::{GlobalPool, ModelConfig};

const SIDE: usize = 8;
const CLASSES: usize = 4;

fn model_config() -> ModelConfig {
    ModelConfig {
        img_size: [SIDE as u32; 2],
        patch_size: 4,
        in_chans: 1,
        num_classes: CLASSES as u32,
        embed_dim: 16,
        depth: 2,
        num_heads: 2,
        mlp_hidden_dim: 32,
        depth_token_only: 1,
        mlp_hidden_dim_token_only: 32,
        qkv_bias: true,
        global_pool: GlobalPool::Token,
    }
}

/// Four position-independent textures (any patch tells the class): horizontal stripes,
/// vertical stripes, a checkerboard, flat; ±1 with uniform noise in [-0.5, 0.5].
fn dataset(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = cait_burn::rng::Rng::new(seed);
    let mut images = Vec::with_capacity(n * SIDE * SIDE);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % CLASSES;
        for y in 0..SIDE {
            for x in 0..SIDE {
                let on = match class {
                    0 => y % 2 == 0,
                    1 => x % 2 == 0,
                    2 => (x + y) % 2 == 0,
                    _ => true,
                };
                let noise = rng.uniform() as f32 - 0.5;
                images.push(if on { 1.0 + noise } else { -1.0 + noise });
            }
        }
        labels.push(class as u32);
    }
    (images, labels)
}

fn config(output: &Path) -> TrainConfig {
    let cfg = model_config();
    let mut preprocess = cait_pack::timm::default_preprocess(&cfg);
    preprocess.mean[0] = 0.5;
    preprocess.std[0] = 0.25;
    let mut t = TrainConfig::new(cfg, preprocess, output.to_path_buf());
    t.backend = BackendKind::Cpu;
    t.epochs = 12;
    t.batch_size = 32;
    t.lr = 3e-3;
    t.warmup_epochs = 1.0;
    t.hflip = 0.5;
    t.crop_padding = 1;
    t.drop_path_rate = 0.1;
    t.labels = Some((0..CLASSES).map(|c| format!("quadrant{c}")).collect());
    t
}

fn data<'a>(images: &'a [f32], labels: &'a [u32]) -> TrainData<'a> {
    TrainData {
        images,
        labels,
        n: labels.len(),
        sample_shape: [1, SIDE, SIDE],
    }
}

#[test]
fn learns_and_exports_a_timm_hub_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let (train_x, train_y) = dataset(384, 1);
    let (test_x, test_y) = dataset(64, 2);
    let mut steps = 0;
    let cfg = config(&out);
    let summary = train(
        &cfg,
        data(&train_x, &train_y),
        Some(data(&test_x, &test_y)),
        &mut |e| {
            if let Event::Step(s) = e {
                assert!(s.loss.is_finite() && s.images_per_sec > 0.0);
                steps += 1;
            }
        },
    )
    .unwrap();
    assert_eq!(steps, cfg.epochs * 12);
    let last = summary.epochs.last().unwrap();
    let top1 = last.eval_top1.unwrap();
    // Chance is 0.25; 144 steps of a 7k-parameter CaiT reach 0.75 (the last class comes later).
    assert!(top1 >= 0.7, "eval top-1 {top1} after {:?}", summary.epochs);

    // The import path reads the same config back from the exported folder.
    let ckpt = load_checkpoint(&out, &ImportOptions::default()).unwrap();
    assert_eq!(ckpt.config, model_config());
    assert_eq!(ckpt.labels.as_ref().unwrap()[3], "quadrant3");
    assert_eq!(ckpt.preprocess.mean[0], 0.5);
    assert_eq!(ckpt.timm_architecture.as_deref(), Some("cait_xxs24_224"));

    // The reference on the exported folder classifies the eval set as the trainer measured.
    let reference = Reference::load(&out, &ImportOptions::default(), BackendKind::Cpu).unwrap();
    let logits = reference.forward(&test_x, test_y.len()).unwrap().logits;
    let correct = logits
        .chunks_exact(CLASSES)
        .zip(&test_y)
        .filter(|(row, y)| {
            let best = (0..CLASSES)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap();
            best as u32 == **y
        })
        .count();
    assert_eq!(correct as f64 / test_y.len() as f64, top1);
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (x, y) = dataset(96, 3);
    let full = tmp.path().join("full");
    let resumed = tmp.path().join("resumed");
    let mut cfg = config(&full);
    cfg.epochs = 2;
    cfg.eval_every_epoch = false;
    // Keep the state after epoch 1 as an interrupted run would have left it.
    train(&cfg, data(&x, &y), None, &mut |e| {
        if let Event::Epoch(s) = e
            && s.epoch == 0
        {
            copy_dir(&full.join("checkpoint"), &resumed.join("checkpoint"));
        }
    })
    .unwrap();

    let mut cfg2 = cfg.clone();
    cfg2.output = resumed.clone();
    cfg2.resume = true;
    let mut resumed_at = None;
    let summary = train(&cfg2, data(&x, &y), None, &mut |e| {
        if let Event::Resumed { epochs_done } = e {
            resumed_at = Some(*epochs_done);
        }
    })
    .unwrap();
    assert_eq!(resumed_at, Some(1));
    assert_eq!(summary.epochs.len(), 2);
    // Bit-identical weights (the files' metadata order may differ, so compare tensors).
    let a = load_checkpoint(&full, &ImportOptions::default())
        .unwrap()
        .tensors;
    let b = load_checkpoint(&resumed, &ImportOptions::default())
        .unwrap()
        .tensors;
    assert!(
        a == b,
        "resumed weights differ from the uninterrupted run's"
    );

    // Changing the recipe is refused, naming the option.
    let mut cfg3 = cfg2.clone();
    cfg3.lr *= 2.0;
    let err = train(&cfg3, data(&x, &y), None, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("lr was"), "{err}");
}

#[test]
fn nan_loss_names_the_step() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut x, y) = dataset(64, 4);
    for image in x.chunks_mut(SIDE * SIDE) {
        image[5] = f32::NAN; // in every image, so that the first batch has one
    }
    let mut cfg = config(&tmp.path().join("nan"));
    cfg.drop_path_rate = 0.0;
    let err = train(&cfg, data(&x, &y), None, &mut |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NonFiniteLoss {
                step: 0,
                epoch: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("at step 0"), "{err}");
}

#[test]
fn data_that_does_not_fit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp.path().join("bad"));
    let (x, y) = dataset(8, 5);
    let wrong = TrainData {
        sample_shape: [1, 4, 16],
        ..data(&x, &y)
    };
    let err = train(&cfg, wrong, None, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[1, 4, 16]") && err.contains("[1, 8, 8]"),
        "{err}"
    );

    let bad_labels = vec![7u32; 8];
    let err = train(&cfg, data(&x, &bad_labels), None, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("label 7"), "{err}");
}

#[test]
fn fine_tunes_with_a_new_head() {
    let tmp = tempfile::tempdir().unwrap();
    let (x, y) = dataset(64, 6);
    let base = tmp.path().join("base");
    let mut cfg = config(&base);
    cfg.epochs = 1;
    train(&cfg, data(&x, &y), None, &mut |_| {}).unwrap();

    // Two classes now: stripes or not.
    let y2: Vec<u32> = y.iter().map(|&c| c / 2).collect();
    let mut ft = config(&tmp.path().join("ft"));
    ft.finetune = Some(base.clone());
    ft.model.num_classes = 2;
    ft.labels = None;
    ft.epochs = 1;
    let summary = train(&ft, data(&x, &y2), Some(data(&x, &y2)), &mut |_| {}).unwrap();
    assert!(summary.epochs[0].eval_top1.is_some());
    let ckpt = load_checkpoint(&tmp.path().join("ft"), &ImportOptions::default()).unwrap();
    assert_eq!(ckpt.config.num_classes, 2);
    assert_eq!(ckpt.config.embed_dim, 16);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
