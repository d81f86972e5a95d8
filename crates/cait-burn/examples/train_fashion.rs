//! Trains a CaiT on Fashion-MNIST with cait-burn's trainer from Rust, without the CLI (`cait train`
//! is the command-line front end of the same `cait_burn::train::train`); `--max-steps` makes it the
//! recipe's throughput benchmark.
//!
//! ```text
//! cargo run -p cait-burn --example train_fashion -- --out models/fashion-cait \
//!     [--data /usr/share/datasets/fashion-mnist] [--backend burn-cpu|burn-wgpu] [--epochs 30]
//!     [--dim 96] [--depth 4] [--heads 4] [--mlp-ratio 3] [--batch 128] [--lr 1e-3]
//!     [--limit N] [--test-limit N] [--max-steps N] [--resume] [--seed 0]
//! ```
//! `--max-steps` stops after that many steps of the first epoch and prints images/s (benchmark).

use std::path::PathBuf;
use std::time::Instant;

use cait_burn::BackendKind;
use cait_burn::train::{Event, TrainConfig, TrainData, train};
use cait_data::{DataOptions, Split, load};
use cait_pack::{GlobalPool, ModelConfig, Precision};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut data_dir = PathBuf::from("/usr/share/datasets/fashion-mnist");
    let mut out = PathBuf::from("target/fashion-cait");
    let mut backend = BackendKind::Cpu;
    let (mut dim, mut depth, mut heads, mut mlp_ratio) = (96u32, 4u32, 4u32, 3u32);
    let mut patch = 4u32;
    let (mut epochs, mut batch, mut lr) = (30usize, 128usize, 1e-3f64);
    let (mut limit, mut test_limit, mut max_steps) = (None, None, None::<usize>);
    let mut resume = false;
    let mut seed = 0u64;
    let mut drop_path = 0.05f64;
    let mut init_values = 0.1f32;
    let mut wd = 0.05f64;
    let mut smoothing = 0.1f64;
    let mut warmup = 2.0f64;
    let mut pad = 2usize;
    let mut hflip = 0.5f64;
    while let Some(a) = args.next() {
        let mut v = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--data" => data_dir = v()?.into(),
            "--out" => out = v()?.into(),
            "--backend" => backend = v()?.parse()?,
            "--dim" => dim = v()?.parse()?,
            "--depth" => depth = v()?.parse()?,
            "--heads" => heads = v()?.parse()?,
            "--mlp-ratio" => mlp_ratio = v()?.parse()?,
            "--patch" => patch = v()?.parse()?,
            "--epochs" => epochs = v()?.parse()?,
            "--batch" => batch = v()?.parse()?,
            "--lr" => lr = v()?.parse()?,
            "--limit" => limit = Some(v()?.parse()?),
            "--test-limit" => test_limit = Some(v()?.parse()?),
            "--max-steps" => max_steps = Some(v()?.parse()?),
            "--seed" => seed = v()?.parse()?,
            "--drop-path" => drop_path = v()?.parse()?,
            "--init-values" => init_values = v()?.parse()?,
            "--weight-decay" => wd = v()?.parse()?,
            "--smoothing" => smoothing = v()?.parse()?,
            "--warmup" => warmup = v()?.parse()?,
            "--pad" => pad = v()?.parse()?,
            "--hflip" => hflip = v()?.parse()?,
            "--resume" => resume = true,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let model = ModelConfig {
        img_size: [28, 28],
        patch_size: patch,
        in_chans: 1,
        num_classes: 10,
        embed_dim: dim,
        depth,
        num_heads: heads,
        mlp_hidden_dim: dim * mlp_ratio,
        depth_token_only: 2,
        mlp_hidden_dim_token_only: dim * mlp_ratio,
        qkv_bias: true,
        global_pool: GlobalPool::Token,
    };
    model.validate().map_err(|e| format!("{e:?}"))?;
    let mut pre = cait_pack::timm::default_preprocess(&model);
    // Fashion-MNIST training-set statistics.
    pre.mean[0] = 0.2860;
    pre.std[0] = 0.3530;
    pre.crop_pct = 1.0;
    eprintln!(
        "model: {} params, f32 workspace {} B, int8 weights ≈ {} KiB",
        model.num_params(),
        cait_core::workspace_bytes(&model, Precision::F32),
        model.num_params() / 1024
    );

    let t0 = Instant::now();
    let train_set = load(
        &data_dir,
        &DataOptions {
            split: Split::Train,
            labels: None,
            limit,
        },
        &model,
        &pre,
    )?;
    let test_set = load(
        &data_dir,
        &DataOptions {
            split: Split::Test,
            labels: None,
            limit: test_limit,
        },
        &model,
        &pre,
    )?;
    eprintln!(
        "data: {} train, {} test ({:.1}s)",
        train_set.n,
        test_set.n,
        t0.elapsed().as_secs_f64()
    );

    let mut cfg = TrainConfig::new(model, pre, out);
    cfg.backend = backend;
    cfg.labels = train_set.class_names.clone();
    cfg.epochs = epochs;
    cfg.batch_size = batch;
    cfg.lr = lr;
    cfg.seed = seed;
    cfg.resume = resume;
    cfg.drop_path_rate = drop_path;
    cfg.init_values = init_values;
    cfg.weight_decay = wd;
    cfg.label_smoothing = smoothing;
    cfg.warmup_epochs = warmup;
    cfg.crop_padding = pad;
    cfg.hflip = hflip;
    cfg.eval_every_epoch = true;
    let train_labels = train_set.labels.clone().ok_or("train set has no labels")?;
    let test_labels = test_set.labels.clone().ok_or("test set has no labels")?;
    let data = TrainData {
        images: &train_set.images,
        labels: &train_labels,
        n: train_set.n,
        sample_shape: train_set.sample_shape,
    };
    let eval = TrainData {
        images: &test_set.images,
        labels: &test_labels,
        n: test_set.n,
        sample_shape: test_set.sample_shape,
    };
    if let Some(max) = max_steps {
        // Benchmark: images/s over `max` steps after 2 warm-up steps.
        let start = std::cell::Cell::new(None::<Instant>);
        let mut imgs = 0usize;
        let data = TrainData {
            n: (max + 2) * batch,
            images: &train_set.images[..(max + 2) * batch * train_set.sample_len()],
            labels: &train_labels[..(max + 2) * batch],
            ..data
        };
        cfg.epochs = 1;
        cfg.eval_every_epoch = false;
        train(&cfg, data, None, &mut |e| {
            if let Event::Step(s) = e {
                if s.step == 2 {
                    start.set(Some(Instant::now()));
                } else if s.step > 2 {
                    imgs += batch;
                }
            }
        })?;
        let secs = start.get().unwrap().elapsed().as_secs_f64();
        println!(
            "{backend} D{dim} depth{depth} H{heads} mlp{mlp_ratio} batch {batch}: {:.1} images/s over {max} steps",
            imgs as f64 / secs
        );
        return Ok(());
    }
    let summary = train(&cfg, data, Some(eval), &mut |e| match e {
        Event::Resumed { epochs_done } => eprintln!("resumed after epoch {epochs_done}"),
        Event::Step(s) if s.step % 50 == 0 => eprintln!(
            "epoch {}/{} step {}/{} loss {:.4} lr {:.2e} {:.0} img/s",
            s.epoch + 1,
            s.epochs,
            s.step,
            s.steps_per_epoch,
            s.loss,
            s.lr,
            s.images_per_sec
        ),
        Event::Epoch(s) => println!(
            "epoch {} train_loss {:.4} train_top1 {:.4} test_top1 {} {:.0}s {:.0} img/s",
            s.epoch + 1,
            s.train_loss,
            s.train_top1,
            s.eval_top1.map(|v| format!("{v:.4}")).unwrap_or("-".into()),
            s.seconds,
            s.images_per_sec
        ),
        _ => {}
    })?;
    println!(
        "done: {} params, final test top-1 {:?}, wrote {}",
        summary.num_params,
        summary.epochs.last().and_then(|e| e.eval_top1),
        summary.output.display()
    );
    Ok(())
}
