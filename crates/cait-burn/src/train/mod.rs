//! Training and fine-tuning a CaiT on either backend (burn autodiff over flex or wgpu).
//!
//! Recipe pieces: AdamW (no weight decay on biases, norms, LayerScale, `cls_token` and
//! `pos_embed`, as timm's `param_groups_weight_decay` + `no_weight_decay`), linear warmup + cosine
//! learning rate per step, label smoothing, LayerScale `init_values`, stochastic depth at one
//! constant rate on every self-attention block (timm: `dpr = [drop_path_rate] * depth`; the
//! class-attention blocks have none), random horizontal flip and padded random crop.
//!
//! All randomness (init, shuffling, augmentation, drop-path masks) comes from one [`Rng`] whose
//! state is saved with every epoch's checkpoint, so an interrupted run resumes exactly.

mod adamw;
mod augment;
mod checkpoint;
mod schedule;

use std::path::PathBuf;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use cait_import::{ImportOptions, load_checkpoint};
use cait_pack::{ModelConfig, Preprocess};

pub use adamw::AdamW;
pub use augment::Augment;
pub use schedule::WarmupCosine;

use crate::export::{DEFAULT_ARCHITECTURE, HubExport, save_hub};
use crate::model::{Cait, ParamSource, init_tensors};
use crate::reference::{images_tensor, read};
use crate::rng::Rng;
use crate::{BackendKind, Error};
use checkpoint::{CheckpointState, load_checkpoint_dir, save_checkpoint_dir};

/// Everything a training run needs besides its data.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Backend the run uses.
    pub backend: BackendKind,
    /// Architecture of a fresh model. When fine-tuning, the checkpoint's architecture is used and
    /// only `num_classes` is taken from here (a different class count gets a fresh head).
    pub model: ModelConfig,
    /// Eval preprocessing recorded in `config.json` (mean/std must be the ones the data was
    /// normalized with).
    pub preprocess: Preprocess,
    /// timm factory name recorded in `config.json`.
    pub architecture: String,
    /// Class names recorded in `config.json`.
    pub labels: Option<Vec<String>>,
    /// Fine-tune from this timm checkpoint (file or hub folder) instead of a fresh init.
    pub finetune: Option<PathBuf>,
    /// LayerScale init value (timm `init_values`) of a fresh model.
    pub init_values: f32,
    /// Stochastic depth rate, the same for every self-attention block.
    pub drop_path_rate: f64,
    /// Epochs.
    pub epochs: usize,
    /// Images per optimizer step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine.
    pub min_lr: f64,
    /// Warmup length in epochs (may be fractional).
    pub warmup_epochs: f64,
    /// AdamW decoupled weight decay (matrices and the patch conv only).
    pub weight_decay: f64,
    /// Label smoothing ε: targets are (1-ε)·one-hot + ε/classes.
    pub label_smoothing: f64,
    /// Probability of a horizontal flip.
    pub hflip: f64,
    /// Padding (pixels per side) of the random crop; 0 disables it.
    pub crop_padding: usize,
    /// Seed of every random choice in the run.
    pub seed: u64,
    /// Output folder: the timm hub folder (`model.safetensors`, `config.json`) and
    /// `checkpoint/` (resume state).
    pub output: PathBuf,
    /// Continue from `output/checkpoint` if it exists.
    pub resume: bool,
    /// Evaluate on the eval set after every epoch (otherwise only after the last).
    pub eval_every_epoch: bool,
}

impl TrainConfig {
    /// The recommended recipe for a small CaiT on 28×28 data such as Fashion-MNIST; adjust
    /// fields as needed.
    pub fn new(model: ModelConfig, preprocess: Preprocess, output: PathBuf) -> TrainConfig {
        TrainConfig {
            backend: BackendKind::Cpu,
            model,
            preprocess,
            architecture: DEFAULT_ARCHITECTURE.to_string(),
            labels: None,
            finetune: None,
            init_values: 0.1,
            drop_path_rate: 0.05,
            epochs: 30,
            batch_size: 128,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup_epochs: 2.0,
            weight_decay: 0.05,
            label_smoothing: 0.1,
            hflip: 0.5,
            crop_padding: 2,
            seed: 0,
            output,
            resume: false,
            eval_every_epoch: true,
        }
    }

    fn check(&self) -> Result<(), Error> {
        let bad = |reason: String| Err(Error::TrainConfig { reason });
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return bad(format!(
                "drop path rate {} must be in [0, 1)",
                self.drop_path_rate
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "label smoothing {} must be in [0, 1)",
                self.label_smoothing
            ));
        }
        if !(0.0..=1.0).contains(&self.hflip) {
            return bad(format!("flip probability {} must be in [0, 1]", self.hflip));
        }
        if self.weight_decay < 0.0 || self.min_lr < 0.0 || self.warmup_epochs < 0.0 {
            return bad("weight decay, min lr and warmup must not be negative".into());
        }
        Ok(())
    }
}

/// Images and labels, borrowed (e.g. from `cait_data::Dataset`).
#[derive(Clone, Copy, Debug)]
pub struct TrainData<'a> {
    /// n × C × H × W normalized floats.
    pub images: &'a [f32],
    /// n class indices.
    pub labels: &'a [u32],
    /// Images.
    pub n: usize,
    /// [C, H, W] of one image.
    pub sample_shape: [usize; 3],
}

/// One optimizer step, for a progress bar.
#[derive(Clone, Debug, PartialEq)]
pub struct StepProgress {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Epochs in the run.
    pub epochs: usize,
    /// Step within the epoch (1-based: steps done).
    pub step: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Optimizer steps done in the whole run.
    pub global_step: u64,
    /// This step's mean loss over the batch.
    pub loss: f32,
    /// Learning rate used for this step.
    pub lr: f64,
    /// Training images per second since the epoch started.
    pub images_per_sec: f64,
}

/// The end of an epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochSummary {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training top-1 on augmented batches, as seen during the epoch.
    pub train_top1: f64,
    /// Top-1 on the eval set, when evaluated.
    pub eval_top1: Option<f64>,
    /// Wall time of the epoch's training (without evaluation and checkpointing).
    pub seconds: f64,
    /// Training throughput.
    pub images_per_sec: f64,
}

/// What the callback is told.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The run continues from a checkpoint; `epochs_done` are already trained.
    Resumed {
        /// Epochs done before this process started.
        epochs_done: usize,
    },
    /// An optimizer step finished.
    Step(StepProgress),
    /// An epoch finished (and its checkpoint is written).
    Epoch(EpochSummary),
}

/// The result of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSummary {
    /// Every epoch of the run, including those done before a resume.
    pub epochs: Vec<EpochSummary>,
    /// The exported timm hub folder.
    pub output: PathBuf,
    /// Parameters of the model.
    pub num_params: usize,
}

/// Trains (or fine-tunes) a CaiT and writes the timm hub folder `cfg.output` after every epoch.
pub fn train(
    cfg: &TrainConfig,
    data: TrainData<'_>,
    eval: Option<TrainData<'_>>,
    on_event: &mut dyn FnMut(&Event),
) -> Result<TrainSummary, Error> {
    cfg.check()?;
    let device = cfg.backend.device()?.autodiff();

    // The architecture: a fresh config, or the fine-tuned checkpoint's.
    let (model_cfg, tensors) = initial_tensors(cfg)?;
    check_data(&model_cfg, &data, "training")?;
    if let Some(e) = &eval {
        check_data(&model_cfg, e, "eval")?;
    }

    let steps_per_epoch = data.n.div_ceil(cfg.batch_size);
    let schedule = WarmupCosine {
        peak: cfg.lr,
        min: cfg.min_lr,
        warmup: (cfg.warmup_epochs * steps_per_epoch as f64).round() as u64,
        total: (cfg.epochs * steps_per_epoch) as u64,
    };
    let export = HubExport {
        config: model_cfg,
        preprocess: cfg.preprocess,
        architecture: cfg.architecture.clone(),
        labels: cfg.labels.clone(),
        init_values: Some(cfg.init_values),
    };
    let ckpt_dir = cfg.output.join("checkpoint");

    let mut model =
        Cait::build(&model_cfg, &ParamSource::Host(&tensors), &device).map_err(|reason| {
            Error::Weights {
                path: cfg.finetune.clone().unwrap_or_default(),
                reason,
            }
        })?;
    drop(tensors);
    let mut optim = optimizer(&model, cfg.weight_decay);
    let mut state = CheckpointState::new(cfg, &model_cfg);
    if cfg.resume
        && let Some((m, o, s)) =
            load_checkpoint_dir(&ckpt_dir, cfg, &model_cfg, &device, optim.clone())?
    {
        model = m;
        optim = o;
        state = s;
        on_event(&Event::Resumed {
            epochs_done: state.epochs_done,
        });
    }

    let augment = Augment {
        hflip: cfg.hflip,
        crop_padding: cfg.crop_padding,
        fill: (0..model_cfg.in_chans as usize)
            .map(|c| {
                let ch = c.min(cfg.preprocess.norm_channels.max(1) as usize - 1);
                -cfg.preprocess.mean[ch] / cfg.preprocess.std[ch]
            })
            .collect(),
    };
    let mut rng = Rng::new(state.rng);
    let per = data.sample_shape.iter().product::<usize>();
    let classes = model_cfg.num_classes as usize;
    let depth = model_cfg.depth as usize;

    for epoch in state.epochs_done..cfg.epochs {
        let start = Instant::now();
        let mut order: Vec<usize> = (0..data.n).collect();
        rng.shuffle(&mut order);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (step, batch) in order.chunks(cfg.batch_size).enumerate() {
            let b = batch.len();
            let mut images = vec![0.0f32; b * per];
            let mut targets = vec![(cfg.label_smoothing / classes as f64) as f32; b * classes];
            let on = (1.0 - cfg.label_smoothing + cfg.label_smoothing / classes as f64) as f32;
            for (i, &idx) in batch.iter().enumerate() {
                augment.apply(
                    &data.images[idx * per..(idx + 1) * per],
                    &mut images[i * per..(i + 1) * per],
                    data.sample_shape,
                    &mut rng,
                );
                targets[i * classes + data.labels[idx] as usize] = on;
            }
            let masks = drop_path_masks(cfg.drop_path_rate, depth, b, &mut rng, &device);
            let x = images_tensor(&images, b, &model_cfg, &device);
            let logits = model.forward_train(x, &masks);
            let t: Tensor<2> = Tensor::from_data(TensorData::new(targets, [b, classes]), &device);
            let loss = (t * log_softmax(logits.clone(), 1)).sum_dim(1).mean().neg();
            let grads = loss.backward();
            let loss_value = read(loss)?[0];
            if !loss_value.is_finite() {
                return Err(Error::NonFiniteLoss {
                    epoch,
                    step: state.global_step,
                    loss: loss_value,
                });
            }
            let predicted = read(logits.argmax(1).float())?;
            correct += batch
                .iter()
                .zip(&predicted)
                .filter(|&(&idx, &p)| p as u32 == data.labels[idx])
                .count();
            let lr = schedule.lr(state.global_step);
            let grads = GradientsParams::from_grads(grads, &model);
            model = optim.step(lr, model, grads);
            state.global_step += 1;
            loss_sum += loss_value as f64 * b as f64;
            seen += b;
            on_event(&Event::Step(StepProgress {
                epoch,
                epochs: cfg.epochs,
                step: step + 1,
                steps_per_epoch,
                global_step: state.global_step,
                loss: loss_value,
                lr,
                images_per_sec: seen as f64 / start.elapsed().as_secs_f64().max(1e-9),
            }));
        }
        let seconds = start.elapsed().as_secs_f64();
        let last = epoch + 1 == cfg.epochs;
        let eval_top1 = match &eval {
            Some(e) if cfg.eval_every_epoch || last => {
                Some(evaluate(&model.valid(), e, &model_cfg)?)
            }
            _ => None,
        };
        let summary = EpochSummary {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_top1: correct as f64 / seen.max(1) as f64,
            eval_top1,
            seconds,
            images_per_sec: seen as f64 / seconds.max(1e-9),
        };
        state.epochs_done = epoch + 1;
        state.rng = rng.state();
        state.history.push(summary.clone());
        save_hub(&model, &export, &cfg.output)?;
        save_checkpoint_dir(&ckpt_dir, &model, &optim, &state)?;
        on_event(&Event::Epoch(summary));
    }
    // A resumed run that had already finished still (re)writes the hub folder.
    save_hub(&model, &export, &cfg.output)?;
    Ok(TrainSummary {
        epochs: state.history,
        output: cfg.output.clone(),
        num_params: model.num_params(),
    })
}

/// Top-1 accuracy of a (non-autodiff) model on `data`.
pub fn evaluate(model: &Cait, data: &TrainData<'_>, cfg: &ModelConfig) -> Result<f64, Error> {
    let per = data.sample_shape.iter().product::<usize>();
    let device = model.cls_token.val().device();
    let mut correct = 0usize;
    for (chunk_idx, chunk) in data.images.chunks(256 * per).enumerate() {
        let b = chunk.len() / per;
        let logits = model.forward(images_tensor(chunk, b, cfg, &device)).logits;
        let predicted = read(logits.argmax(1).float())?;
        let labels = &data.labels[chunk_idx * 256..chunk_idx * 256 + b];
        correct += predicted
            .iter()
            .zip(labels)
            .filter(|&(&p, &l)| p as u32 == l)
            .count();
    }
    Ok(correct as f64 / data.n.max(1) as f64)
}

/// The starting config and weights: timm's init for a fresh model, or the checkpoint's tensors.
fn initial_tensors(
    cfg: &TrainConfig,
) -> Result<
    (
        ModelConfig,
        std::collections::BTreeMap<String, cait_import::Tensor>,
    ),
    Error,
> {
    match &cfg.finetune {
        None => {
            cfg.model.validate().map_err(|e| Error::TrainConfig {
                reason: format!("model config: {e}"),
            })?;
            Ok((
                cfg.model,
                init_tensors(&cfg.model, cfg.init_values, cfg.seed),
            ))
        }
        Some(path) => {
            let ckpt = load_checkpoint(path, &ImportOptions::default())?;
            let mut model_cfg = ckpt.config;
            let mut tensors = ckpt.tensors;
            if model_cfg.num_classes != cfg.model.num_classes {
                // A new head for a new label set (timm's reset_classifier), freshly initialised.
                model_cfg.num_classes = cfg.model.num_classes;
                let fresh = init_tensors(&model_cfg, cfg.init_values, cfg.seed);
                tensors.remove("head.weight");
                tensors.remove("head.bias");
                for key in ["head.weight", "head.bias"] {
                    if let Some(t) = fresh.get(key) {
                        tensors.insert(key.to_string(), t.clone());
                    }
                }
            }
            Ok((model_cfg, tensors))
        }
    }
}

fn check_data(cfg: &ModelConfig, data: &TrainData<'_>, what: &str) -> Result<(), Error> {
    let want = [
        cfg.in_chans as usize,
        cfg.img_size[0] as usize,
        cfg.img_size[1] as usize,
    ];
    let bad = |reason: String| Err(Error::Data { reason });
    if data.sample_shape != want {
        return bad(format!(
            "{what} images are {:?} (C, H, W) but the model takes {want:?}",
            data.sample_shape
        ));
    }
    if data.n == 0 {
        return bad(format!("the {what} set is empty"));
    }
    if data.images.len() != data.n * want.iter().product::<usize>() || data.labels.len() != data.n {
        return bad(format!(
            "{what} set: {} floats and {} labels for {} images",
            data.images.len(),
            data.labels.len(),
            data.n
        ));
    }
    if cfg.num_classes == 0 {
        return bad("the model has no classifier head (num_classes = 0)".into());
    }
    if let Some((i, &l)) = data
        .labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l >= cfg.num_classes)
    {
        return bad(format!(
            "{what} label {l} (image {i}) is out of range for {} classes",
            cfg.num_classes
        ));
    }
    Ok(())
}

/// Two [B, 1, 1] keep masks per SA block (attention, MLP): 0 or 1/keep_prob per sample.
fn drop_path_masks(
    rate: f64,
    depth: usize,
    b: usize,
    rng: &mut Rng,
    device: &Device,
) -> Vec<Tensor<3>> {
    if rate == 0.0 {
        return Vec::new();
    }
    let keep = 1.0 - rate;
    let scale = (1.0 / keep) as f32;
    let values: Vec<f32> = (0..2 * depth * b)
        .map(|_| if rng.uniform() < keep { scale } else { 0.0 })
        .collect();
    let all: Tensor<3> = Tensor::from_data(TensorData::new(values, [2 * depth, b, 1]), device);
    (0..2 * depth)
        .map(|i| all.clone().narrow(0, i, 1).reshape([b, 1, 1]))
        .collect()
}

/// AdamW with timm's parameter groups: decay on matrices and the conv, none on 1-D parameters,
/// `cls_token` and `pos_embed`.
fn optimizer(model: &Cait, weight_decay: f64) -> AdamW {
    struct OneDim(Vec<ParamId>);
    impl ModuleVisitor for OneDim {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D <= 1 {
                self.0.push(param.id);
            }
        }
    }
    let mut no_decay = OneDim(vec![model.cls_token.id, model.pos_embed.id]);
    model.visit(&mut no_decay);
    AdamW::new(weight_decay, no_decay.0)
}
