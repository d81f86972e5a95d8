//! `cait train`: train a CaiT from scratch, or fine-tune a timm checkpoint, on burn (CPU or wgpu),
//! and write a timm hub folder that `cait`, the quantizer and timm itself read.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cait_burn::BackendKind;
use cait_burn::train::{Event, TrainConfig, TrainData, train};
use cait_data::{DataOptions, Dataset, Split};
use cait_import::ImportOptions;
use cait_pack::{GlobalPool, MAX_NORM_CHANNELS, ModelConfig, Preprocess};
use indicatif::ProgressBar;

use crate::progress;

/// Where training runs: a burn backend (training needs autodiff, which the core engine has not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TrainBackend {
    /// burn on the CPU, all cores.
    BurnCpu,
    /// burn on a GPU through wgpu (or lavapipe).
    BurnWgpu,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    # the bundled model's recipe (models/fashion-cait/README.md)\n  \
    cait train --data /usr/share/datasets/fashion-mnist -o out/fashion-cait \\\n      \
      --patch-size 4 --embed-dim 64 --depth 4 --num-heads 4 --epochs 12 --lr 2e-3 --warmup-epochs 1\n  \
    # continue an interrupted run from its last epoch\n  \
    cait train --data /usr/share/datasets/fashion-mnist -o out/fashion-cait ... --resume\n  \
    # fine-tune a checkpoint on an image folder (one sub-folder per class)\n  \
    cait train --data photos/ --finetune model.safetensors -o out/photos --epochs 5 --lr 2e-4")]
pub struct Args {
    /// Training data: a Fashion-MNIST/MNIST IDX folder (its train split; the test split is the
    /// eval set), an image folder with one sub-folder per class, or a normalized `.npy` batch
    /// [N, C, H, W] with --labels.
    #[arg(long, value_name = "DATA")]
    data: PathBuf,
    /// Labels of a `.npy` training batch (1-D integer `.npy`).
    #[arg(long, value_name = "LABELS.npy")]
    labels: Option<PathBuf>,
    /// Data to report top-1 on after every epoch (default: an IDX folder's test split; none for
    /// other sources).
    #[arg(long, value_name = "DATA")]
    eval_data: Option<PathBuf>,
    /// Labels of a `.npy` eval batch.
    #[arg(long, value_name = "LABELS.npy")]
    eval_labels: Option<PathBuf>,
    /// Output folder: `model.safetensors` + `config.json` (a timm hub folder, rewritten after
    /// every epoch) and `checkpoint/` (what --resume continues from).
    #[arg(long, short = 'o', value_name = "DIR")]
    output: PathBuf,
    /// Continue from OUTPUT/checkpoint (same options as the interrupted run).
    #[arg(long)]
    resume: bool,
    /// Start from this timm checkpoint (file or hub folder) instead of a fresh model; its
    /// architecture and preprocessing are kept, and a different class count gets a new head.
    #[arg(long, value_name = "CHECKPOINT")]
    finetune: Option<PathBuf>,
    /// Backend: burn-cpu (all cores) or burn-wgpu (a GPU, or lavapipe).
    #[arg(long, value_enum, default_value_t = TrainBackend::BurnCpu)]
    backend: TrainBackend,

    /// Input height and width (default: the data's size; image folders: 224).
    #[arg(
        long,
        value_name = "PIXELS",
        help_heading = "Architecture (fresh models)"
    )]
    img_size: Option<u32>,
    /// Input channels (default: the data's; image folders: 3).
    #[arg(long, value_name = "C", help_heading = "Architecture (fresh models)")]
    in_chans: Option<u32>,
    /// Patch size (the patch embedding's kernel and stride).
    #[arg(
        long,
        default_value_t = 4,
        help_heading = "Architecture (fresh models)"
    )]
    patch_size: u32,
    /// Embedding width D.
    #[arg(
        long,
        default_value_t = 64,
        help_heading = "Architecture (fresh models)"
    )]
    embed_dim: u32,
    /// Self-attention (talking-heads) blocks.
    #[arg(
        long,
        default_value_t = 4,
        help_heading = "Architecture (fresh models)"
    )]
    depth: u32,
    /// Attention heads.
    #[arg(
        long,
        default_value_t = 4,
        help_heading = "Architecture (fresh models)"
    )]
    num_heads: u32,
    /// MLP hidden width as a multiple of D (SA and CA blocks).
    #[arg(
        long,
        default_value_t = 3,
        help_heading = "Architecture (fresh models)"
    )]
    mlp_ratio: u32,
    /// Class-attention blocks.
    #[arg(
        long,
        default_value_t = 2,
        help_heading = "Architecture (fresh models)"
    )]
    depth_token_only: u32,
    /// Head pooling.
    #[arg(long, default_value = "token", value_parser = ["token", "avg"], help_heading = "Architecture (fresh models)")]
    global_pool: String,
    /// Classes (default: from the data's class names, else its largest label + 1).
    #[arg(long, help_heading = "Architecture (fresh models)")]
    num_classes: Option<u32>,
    /// Normalization mean, one value or one per channel (default: measured on the training set).
    #[arg(
        long,
        value_delimiter = ',',
        help_heading = "Architecture (fresh models)"
    )]
    mean: Option<Vec<f32>>,
    /// Normalization std, one value or one per channel (default: measured on the training set).
    #[arg(
        long,
        value_delimiter = ',',
        help_heading = "Architecture (fresh models)"
    )]
    std: Option<Vec<f32>>,

    /// Epochs.
    #[arg(long, default_value_t = 30, help_heading = "Recipe")]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128, help_heading = "Recipe")]
    batch_size: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 1e-3, help_heading = "Recipe")]
    lr: f64,
    /// Final learning rate of the cosine schedule.
    #[arg(long, default_value_t = 1e-5, help_heading = "Recipe")]
    min_lr: f64,
    /// Linear warmup, in epochs (fractions allowed).
    #[arg(long, default_value_t = 2.0, help_heading = "Recipe")]
    warmup_epochs: f64,
    /// AdamW weight decay (weights only: not biases, norms, LayerScale, cls token, pos embed).
    #[arg(long, default_value_t = 0.05, help_heading = "Recipe")]
    weight_decay: f64,
    /// Label smoothing.
    #[arg(long, default_value_t = 0.1, help_heading = "Recipe")]
    smoothing: f64,
    /// Stochastic depth rate, the same on every self-attention block (as timm's CaiT).
    #[arg(long, default_value_t = 0.05, help_heading = "Recipe")]
    drop_path: f64,
    /// LayerScale init value of a fresh model.
    #[arg(long, default_value_t = 0.1, help_heading = "Recipe")]
    init_values: f32,
    /// Probability of a horizontal flip.
    #[arg(long, default_value_t = 0.5, help_heading = "Recipe")]
    hflip: f64,
    /// Random-crop padding in pixels per side (0: no crop).
    #[arg(long, default_value_t = 2, help_heading = "Recipe")]
    crop_padding: usize,
    /// Seed of initialisation, shuffling, augmentation and stochastic depth.
    #[arg(long, default_value_t = 0, help_heading = "Recipe")]
    seed: u64,
    /// Train on the first N images only.
    #[arg(long, value_name = "N", help_heading = "Recipe")]
    limit: Option<usize>,
    /// Evaluate on the first N eval images only.
    #[arg(long, value_name = "N", help_heading = "Recipe")]
    eval_limit: Option<usize>,
    /// timm factory name written to config.json (`timm.create_model(name, **model_args)`).
    #[arg(long, default_value = "cait_xxs24_224", help_heading = "Recipe")]
    architecture: String,
}

pub fn run(args: Args) -> Result<()> {
    let backend = match args.backend {
        TrainBackend::BurnCpu => BackendKind::Cpu,
        TrainBackend::BurnWgpu => BackendKind::Wgpu,
    };
    if !args.data.exists() {
        bail!("{}: no such dataset (file or folder)", args.data.display());
    }
    let is_idx = args.data.is_dir() && has_idx(&args.data);
    let start = Instant::now();

    // The architecture and preprocessing: the fine-tuned checkpoint's, or a fresh one fitted to
    // the data.
    let (model, pre, mut train_set) = match &args.finetune {
        Some(path) => {
            let ckpt = cait_import::load_checkpoint(path, &ImportOptions::default())
                .with_context(|| format!("--finetune {}", path.display()))?;
            let mut cfg = ckpt.config;
            let pre = ckpt.preprocess;
            let mut probe = cfg;
            probe.num_classes = u32::MAX; // labels are checked against the final class count below
            let set = load_split(&args.data, &args, Split::Train, &probe, &pre)
                .with_context(|| fits(&cfg))?;
            cfg.num_classes = class_count(&args, &set)?;
            (cfg, pre, set)
        }
        None => {
            let mut cfg = fresh_config(&args, &args.data, is_idx)?;
            // Load un-normalized ([0, 1]) to measure mean/std unless given.
            let mut raw = cait_pack::timm::default_preprocess(&cfg);
            raw.norm_channels = cfg.in_chans.min(MAX_NORM_CHANNELS as u32) as u8;
            raw.mean = [0.0; MAX_NORM_CHANNELS];
            raw.std = [1.0; MAX_NORM_CHANNELS];
            let mut probe = cfg;
            probe.num_classes = u32::MAX;
            let mut set = load_split(&args.data, &args, Split::Train, &probe, &raw)?;
            cfg.num_classes = class_count(&args, &set)?;
            let pre = normalization(&args, &cfg, &raw, &mut set)?;
            (cfg, pre, set)
        }
    };
    let eval_set = match (&args.eval_data, is_idx) {
        (Some(path), _) => Some(load_eval(
            path,
            args.eval_labels.clone(),
            &args,
            &model,
            &pre,
        )?),
        (None, true) => Some(load_eval(&args.data, None, &args, &model, &pre)?),
        (None, false) => None,
    };
    let labels = train_set
        .class_names
        .clone()
        .filter(|names| names.len() == model.num_classes as usize);
    eprintln!(
        "{backend} on {}",
        cait_burn::device_name(&backend.device()?)
    );
    eprintln!(
        "model: {} parameters, {} classes, input {}×{}×{}, patch {} ({} tokens); f32 workspace {} B, int8 workspace {} B",
        model.num_params(),
        model.num_classes,
        model.in_chans,
        model.img_size[0],
        model.img_size[1],
        model.patch_size,
        model.num_patches().unwrap_or(0),
        cait_core::workspace_bytes(&model, cait_pack::Precision::F32),
        cait_core::workspace_bytes(&model, cait_pack::Precision::Int8),
    );
    eprintln!(
        "data: {} training images{} ({:.1} s); normalization mean {:?} std {:?}",
        train_set.n,
        eval_set
            .as_ref()
            .map(|e| format!(", {} eval images", e.n))
            .unwrap_or_default(),
        start.elapsed().as_secs_f64(),
        &pre.mean[..pre.norm_channels.max(1) as usize],
        &pre.std[..pre.norm_channels.max(1) as usize],
    );

    let mut cfg = TrainConfig::new(model, pre, args.output.clone());
    cfg.backend = backend;
    cfg.architecture = args.architecture.clone();
    cfg.labels = labels;
    cfg.finetune = args.finetune.clone();
    cfg.init_values = args.init_values;
    cfg.drop_path_rate = args.drop_path;
    cfg.epochs = args.epochs;
    cfg.batch_size = args.batch_size;
    cfg.lr = args.lr;
    cfg.min_lr = args.min_lr;
    cfg.warmup_epochs = args.warmup_epochs;
    cfg.weight_decay = args.weight_decay;
    cfg.label_smoothing = args.smoothing;
    cfg.hflip = args.hflip;
    cfg.crop_padding = args.crop_padding;
    cfg.seed = args.seed;
    cfg.resume = args.resume;
    cfg.eval_every_epoch = true;

    let train_labels = train_set
        .labels
        .take()
        .context("the training data has no labels")?;
    let data = TrainData {
        images: &train_set.images,
        labels: &train_labels,
        n: train_set.n,
        sample_shape: train_set.sample_shape,
    };
    let eval_labels;
    let eval = match &eval_set {
        Some(set) => {
            eval_labels = set.labels.clone().context("the eval data has no labels")?;
            Some(TrainData {
                images: &set.images,
                labels: &eval_labels,
                n: set.n,
                sample_shape: set.sample_shape,
            })
        }
        None => None,
    };

    let mut bar: Option<ProgressBar> = None;
    let summary = train(&cfg, data, eval, &mut |event| match event {
        Event::Resumed { epochs_done } => {
            eprintln!(
                "resuming {} after epoch {epochs_done}",
                args.output.join("checkpoint").display()
            );
        }
        Event::Step(s) => {
            let b = bar.get_or_insert_with(|| {
                progress::bar(
                    s.steps_per_epoch as u64,
                    &format!("epoch {}/{}", s.epoch + 1, s.epochs),
                )
            });
            b.set_position(s.step as u64);
            b.set_message(format!(
                "loss {:.4} lr {:.2e} {:.0} img/s",
                s.loss, s.lr, s.images_per_sec
            ));
        }
        Event::Epoch(e) => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            println!(
                "epoch {:>3}/{}  train loss {:.4}  train top-1 {:.2}%  {}  {:.0} s  {:.0} images/s",
                e.epoch + 1,
                args.epochs,
                e.train_loss,
                100.0 * e.train_top1,
                e.eval_top1
                    .map(|t| format!("eval top-1 {:.2}%", 100.0 * t))
                    .unwrap_or_else(|| "no eval".into()),
                e.seconds,
                e.images_per_sec
            );
        }
        _ => {}
    });
    if let Some(b) = bar.take() {
        b.abandon();
    }
    let summary = summary.map_err(|e| match e {
        cait_burn::Error::NonFiniteLoss { .. } => anyhow::anyhow!(
            "{e}. The last good epoch is in {}; lower --lr or raise --warmup-epochs, then --resume",
            args.output.join("checkpoint").display()
        ),
        other => anyhow::Error::new(other),
    })?;
    println!(
        "wrote {} ({} parameters{})",
        summary.output.display(),
        summary.num_params,
        summary
            .epochs
            .last()
            .and_then(|e| e.eval_top1)
            .map(|t| format!(", eval top-1 {:.2}%", 100.0 * t))
            .unwrap_or_default()
    );
    Ok(())
}

fn has_idx(dir: &Path) -> bool {
    ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"]
        .iter()
        .any(|f| dir.join(f).is_file())
}

fn fits(cfg: &ModelConfig) -> String {
    format!(
        "the data does not fit the checkpoint, which takes {}×{}×{} images",
        cfg.in_chans, cfg.img_size[0], cfg.img_size[1]
    )
}

fn load_split(
    path: &Path,
    args: &Args,
    split: Split,
    cfg: &ModelConfig,
    pre: &Preprocess,
) -> Result<Dataset> {
    let opts = DataOptions {
        split,
        labels: args.labels.clone(),
        limit: args.limit,
    };
    Ok(cait_data::load_with_progress(
        path,
        &opts,
        cfg,
        pre,
        &progress::Bars::default(),
    )?)
}

fn load_eval(
    path: &Path,
    labels: Option<PathBuf>,
    args: &Args,
    cfg: &ModelConfig,
    pre: &Preprocess,
) -> Result<Dataset> {
    let opts = DataOptions {
        split: Split::Test,
        labels,
        limit: args.eval_limit,
    };
    cait_data::load_with_progress(path, &opts, cfg, pre, &progress::Bars::default())
        .with_context(|| format!("eval data {}", path.display()))
}

/// A fresh architecture from the options, with the input shape taken from the data.
fn fresh_config(args: &Args, data: &Path, is_idx: bool) -> Result<ModelConfig> {
    let (img, chans) = if is_idx {
        (28, 1)
    } else if data.is_file() {
        let (shape, _) =
            cait_data::npy::read_f32(data).with_context(|| format!("{}", data.display()))?;
        match shape.as_slice() {
            [_, c, h, w] if h == w => (*h as u32, *c as u32),
            other => bail!(
                "{}: a training batch must be [N, C, H, H], not {other:?}",
                data.display()
            ),
        }
    } else {
        (224, 3)
    };
    let img = args.img_size.unwrap_or(img);
    let chans = args.in_chans.unwrap_or(chans);
    let cfg = ModelConfig {
        img_size: [img, img],
        patch_size: args.patch_size,
        in_chans: chans,
        num_classes: 1,
        embed_dim: args.embed_dim,
        depth: args.depth,
        num_heads: args.num_heads,
        mlp_hidden_dim: args.embed_dim * args.mlp_ratio,
        depth_token_only: args.depth_token_only,
        mlp_hidden_dim_token_only: args.embed_dim * args.mlp_ratio,
        qkv_bias: true,
        global_pool: if args.global_pool == "avg" {
            GlobalPool::Avg
        } else {
            GlobalPool::Token
        },
    };
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("invalid architecture: {e}"))?;
    Ok(cfg)
}

/// `--mean`/`--std` as `c` values: one value repeated or one per channel; `default(ch)` when the
/// option is not given.
fn per_channel(
    given: &Option<Vec<f32>>,
    what: &str,
    c: usize,
    default: impl Fn(usize) -> f32,
) -> Result<Vec<f32>> {
    match given {
        None => Ok((0..c).map(default).collect()),
        Some(v) if v.len() == 1 => Ok(vec![v[0]; c]),
        Some(v) if v.len() == c => Ok(v.clone()),
        Some(v) => bail!("--{what} has {} values for {c} channels", v.len()),
    }
}

fn class_count(args: &Args, set: &Dataset) -> Result<u32> {
    let labels = set
        .labels
        .as_deref()
        .context("the training data has no labels (a .npy batch needs --labels LABELS.npy)")?;
    let from_data = match &set.class_names {
        Some(names) => names.len() as u32,
        None => labels.iter().copied().max().map_or(0, |m| m + 1),
    };
    let n = args.num_classes.unwrap_or(from_data);
    if n < 2 {
        bail!("a classifier needs at least 2 classes; the data has {from_data}");
    }
    Ok(n)
}

/// The normalization to record: given, or the training set's per-channel mean/std (rounded to 4
/// decimals, the precision written to config.json); `set` is normalized in place.
fn normalization(
    args: &Args,
    cfg: &ModelConfig,
    raw: &Preprocess,
    set: &mut Dataset,
) -> Result<Preprocess> {
    let c = cfg.in_chans as usize;
    if c > MAX_NORM_CHANNELS {
        bail!("at most {MAX_NORM_CHANNELS} input channels are supported");
    }
    if args.data.is_file() {
        // A .npy batch is already normalized: record the given mean/std (for preprocessing
        // images later), leave the data as it is.
        let mut pre = *raw;
        pre.norm_channels = c as u8;
        pre.mean[..c].copy_from_slice(&per_channel(&args.mean, "mean", c, |_| 0.0)?);
        pre.std[..c].copy_from_slice(&per_channel(&args.std, "std", c, |_| 1.0)?);
        return Ok(pre);
    }
    let plane = set.sample_len() / c;
    let stats = |ch: usize| -> (f64, f64) {
        let (mut sum, mut sq, mut n) = (0.0f64, 0.0f64, 0usize);
        for img in set.images.chunks_exact(set.sample_len()) {
            for &v in &img[ch * plane..(ch + 1) * plane] {
                sum += v as f64;
                sq += (v as f64) * (v as f64);
                n += 1;
            }
        }
        let mean = sum / n.max(1) as f64;
        (mean, (sq / n.max(1) as f64 - mean * mean).max(0.0).sqrt())
    };
    let round = |v: f64| ((v * 1e4).round() / 1e4) as f32;
    let measured: Vec<(f64, f64)> = if args.mean.is_none() || args.std.is_none() {
        (0..c).map(stats).collect()
    } else {
        Vec::new()
    };
    let mean = per_channel(&args.mean, "mean", c, |ch| round(measured[ch].0))?;
    let std = per_channel(&args.std, "std", c, |ch| round(measured[ch].1))?;
    if let Some(bad) = std.iter().find(|s| !(**s > 0.0 && s.is_finite())) {
        bail!("normalization std {bad} must be positive (is the training data constant?)");
    }
    let mut pre = *raw;
    pre.norm_channels = c as u8;
    pre.mean[..c].copy_from_slice(&mean[..c]);
    pre.std[..c].copy_from_slice(&std[..c]);
    for img in set.images.chunks_exact_mut(c * plane) {
        for (ch, p) in img.chunks_exact_mut(plane).enumerate() {
            for v in p {
                *v = (*v - mean[ch]) / std[ch];
            }
        }
    }
    Ok(pre)
}
