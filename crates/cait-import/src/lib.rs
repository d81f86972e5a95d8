#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod checkpoint;
mod error;
mod hub_config;
mod imagenet;
mod infer;
mod pack;
pub mod pickle;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use cait_pack::timm::{
    IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, default_preprocess, identify, norm_for_channels,
};
use cait_pack::{GlobalPool, ModelConfig, Preprocess, TensorId};

pub use error::{ImportError, TensorProblem};
pub use hub_config::{HubConfig, Labels};
pub use imagenet::imagenet1k_labels;
pub use infer::{Hints, IGNORED_SUFFIXES, InferError, check_tensors, cross_check, infer_config};
pub use pack::{META_GUESSED, add_float, is_pack, pack_writer, write_pack_f16, write_pack_f32};

use checkpoint::RawCheckpoint;

/// A dense f32 tensor in C order.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Elements, `shape.iter().product()` of them.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor from its shape and data (callers keep them consistent).
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        Tensor { shape, data }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor{:?} ({} values)", self.shape, self.data.len())
    }
}

/// The container a checkpoint came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// Hugging Face safetensors (`model.safetensors`).
    Safetensors,
    /// A `torch.save` zip archive (`.pth`, `.pt`, `pytorch_model.bin`).
    TorchZip,
}

impl CheckpointFormat {
    /// A short name: `safetensors` or `torch-zip`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CheckpointFormat::Safetensors => "safetensors",
            CheckpointFormat::TorchZip => "torch-zip",
        }
    }
}

/// Where the config came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// timm's hub `config.json` at this path (shapes still decide the architecture; the file
    /// supplies pooling, labels, preprocessing and is cross-checked).
    HubConfig(PathBuf),
    /// Tensor shapes alone.
    Inferred,
}

/// Options for [`load_checkpoint`]. Build it with `..ImportOptions::default()` so that options
/// added later (quantization) do not break callers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Head pooling, overriding `config.json` (shapes cannot tell token from avg pooling).
    pub global_pool: Option<GlobalPool>,
}

/// An imported CaiT checkpoint: a validated config and every tensor it needs, as f32.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The architecture.
    pub config: ModelConfig,
    /// Eval preprocessing (from `config.json`, the recognised variant's pretrained cfg, or timm's
    /// CaiT defaults).
    pub preprocess: Preprocess,
    /// The published timm variant these shapes are (`cait_xxs24_224` …), if any. A `config.json`
    /// may name a variant while its `model_args` change the body; that name is in
    /// [`timm_architecture`](Self::timm_architecture), not here.
    pub architecture: Option<String>,
    /// `config.json`'s `architecture`: the timm factory that rebuilds this model with its
    /// `model_args`.
    pub timm_architecture: Option<String>,
    /// Class names, one per class, from `config.json`'s `label_names`.
    pub labels: Option<Vec<String>>,
    /// Exactly the tensors of `config.tensors()`, by timm key (wrapper prefixes stripped).
    pub tensors: BTreeMap<String, Tensor>,
    /// The checkpoint file read (inside the directory, if a directory was given).
    pub source: PathBuf,
    /// Its container format.
    pub format: CheckpointFormat,
    /// Where the config came from.
    pub config_source: ConfigSource,
    /// What was guessed rather than read, among [`GUESSABLE`]: with no `config.json` (or one
    /// that leaves them out) and shapes that are no published variant, the pooling comes from
    /// shape inference (token) and the preprocessing from timm's CaiT defaults — ImageNet's mean
    /// and std (averaged for other channel counts: 0.449 / 0.226 for one channel), bicubic, crop
    /// 1.0 — which may not be the model's. Callers warn, and let the user give the real values.
    pub guessed: Vec<&'static str>,
}

/// The settings [`Checkpoint::guessed`] can name, as the `cait` flags that set them name them.
pub const GUESSABLE: [&str; 5] = ["global_pool", "mean", "std", "crop_pct", "interpolation"];

impl Checkpoint {
    /// A tensor by id.
    pub fn tensor(&self, id: TensorId) -> Option<&Tensor> {
        self.tensors.get(&id.to_string())
    }

    /// Total parameters.
    pub fn num_params(&self) -> u64 {
        self.config.num_params()
    }

    /// Sets the preprocessing values the caller knows (`cait … --mean --std --crop-pct
    /// --interpolation`), which are then no longer [`guessed`](Self::guessed). `mean` and `std`
    /// take one value per input channel or one for all, as timm's data config does. Errors name
    /// the bad value.
    pub fn set_preprocess(
        &mut self,
        mean: Option<&[f64]>,
        std: Option<&[f64]>,
        crop_pct: Option<f32>,
        interpolation: Option<cait_pack::Interpolation>,
    ) -> Result<(), String> {
        let channels = self.config.in_chans as usize;
        let fits = |v: &[f64]| v.len() == 1 || v.len() == channels;
        for (name, v) in [("mean", mean), ("std", std)] {
            if let Some(v) = v {
                if !fits(v) {
                    return Err(format!(
                        "--{name} has {} values; the model has {channels} input channel(s): give {channels} or 1",
                        v.len()
                    ));
                }
                if v.iter()
                    .any(|x| !x.is_finite() || (name == "std" && *x <= 0.0))
                {
                    return Err(format!(
                        "--{name} {v:?}: every value must be finite{}",
                        if name == "std" { " and positive" } else { "" }
                    ));
                }
            }
        }
        if let Some(c) = crop_pct
            && !(c.is_finite() && c > 0.0)
        {
            return Err(format!(
                "--crop-pct {c}: must be a positive number (timm uses 0.875 to 1.0)"
            ));
        }
        let p = &mut self.preprocess;
        if mean.is_some() || std.is_some() {
            let n = p.norm_channels as usize;
            let current =
                |v: &[f32]| -> Vec<f64> { v[..n.max(1)].iter().map(|&x| x as f64).collect() };
            let m = mean.map_or_else(|| current(&p.mean), <[f64]>::to_vec);
            let s = std.map_or_else(|| current(&p.std), <[f64]>::to_vec);
            let (m, s, n) = norm_for_channels(&m, &s, channels).ok_or_else(|| {
                format!(
                    "{channels} input channels: a pack records mean/std for at most {}",
                    cait_pack::MAX_NORM_CHANNELS
                )
            })?;
            (p.mean, p.std, p.norm_channels) = (m, s, n);
        }
        if let Some(c) = crop_pct {
            p.crop_pct = c;
        }
        if let Some(i) = interpolation {
            p.interpolation = i;
        }
        let given = [
            ("mean", mean.is_some()),
            ("std", std.is_some()),
            ("crop_pct", crop_pct.is_some()),
            ("interpolation", interpolation.is_some()),
        ];
        self.guessed
            .retain(|g| !given.iter().any(|(name, set)| *set && name == g));
        Ok(())
    }
}

/// Loads a timm CaiT checkpoint: a `model.safetensors`, a `torch.save` archive (flat state dict, or
/// the original release's `{"model": {"module.…": …}}`), or a hub directory holding one of them
/// and `config.json`.
///
/// The config comes from the tensor shapes, refined and cross-checked by a timm `config.json`
/// beside the file; `opts.global_pool` overrides the pooling. Every tensor the config needs is
/// checked (one error lists all missing, unexpected and mis-shaped tensors), converted to f32 and
/// checked to be finite.
pub fn load_checkpoint(path: &Path, opts: &ImportOptions) -> Result<Checkpoint, ImportError> {
    let (file, config_path) = checkpoint::resolve(path)?;
    let hub = match &config_path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ImportError::Io {
                path: p.clone(),
                source,
            })?;
            HubConfig::parse(&text).map_err(|reason| ImportError::BadConfig {
                path: p.clone(),
                reason,
            })?
        }
        None => None,
    };
    let config_source = match (&hub, config_path) {
        (Some(_), Some(p)) => ConfigSource::HubConfig(p),
        _ => ConfigSource::Inferred,
    };
    // Errors about config.json name it; errors about tensors name the checkpoint.
    let config_file = match &config_source {
        ConfigSource::HubConfig(p) => p.clone(),
        ConfigSource::Inferred => file.clone(),
    };

    let mut raw = RawCheckpoint::open(&file)?;
    let shapes: BTreeMap<String, Vec<usize>> = raw
        .entries
        .iter()
        .filter(|(_, e)| e.is_tensor())
        .map(|(k, e)| (k.clone(), e.shape.clone()))
        .collect();
    let hints = Hints {
        img_size: hub.as_ref().and_then(|h| h.img_size),
        patch_size: hub.as_ref().and_then(|h| h.patch_size),
        in_chans: hub.as_ref().and_then(|h| h.in_chans),
        global_pool: opts
            .global_pool
            .or_else(|| hub.as_ref().and_then(|h| h.global_pool)),
    };
    let infer_error = |e: InferError, mismatch_path: &Path| match e {
        InferError::NotCait {
            reason,
            found_keys_sample,
        } => ImportError::NotCait {
            path: file.clone(),
            reason,
            found_keys_sample,
        },
        InferError::CannotInfer(reason) => ImportError::CannotInfer {
            path: file.clone(),
            reason,
        },
        InferError::Mismatch {
            field,
            config,
            checkpoint,
        } => ImportError::ConfigMismatch {
            path: mismatch_path.to_path_buf(),
            field,
            config,
            checkpoint,
        },
    };
    let config = infer_config(&shapes, &hints).map_err(|e| infer_error(e, &config_file))?;
    if let Some(hub) = &hub {
        cross_check(&config, hub).map_err(|e| infer_error(e, &config_file))?;
    }
    let problems = check_tensors(&config, &shapes);
    if !problems.is_empty() {
        return Err(ImportError::TensorMismatch {
            path: file,
            problems,
        });
    }
    config
        .validate()
        .map_err(|source| ImportError::InvalidConfig {
            path: file.clone(),
            source,
        })?;

    let variant = identify(&config);
    let preprocess = match &hub {
        Some(h) => hub_preprocess(&config, h),
        None => Ok(default_preprocess(&config)),
    }
    .map_err(|reason| ImportError::BadConfig {
        path: config_file.clone(),
        reason,
    })?;
    let labels = match hub.as_ref().and_then(|h| h.labels.as_ref()) {
        Some(l) => Some(resolve_labels(l, config.num_classes).map_err(|reason| {
            ImportError::BadConfig {
                path: config_file.clone(),
                reason,
            }
        })?),
        // A published variant with its ImageNet-1k head: timm's class names.
        None if variant.is_some() && config.num_classes == 1000 => {
            Some(imagenet::imagenet1k_labels())
        }
        None => None,
    };
    let architecture = variant.map(|v| v.name.to_string());
    let timm_architecture = hub.as_ref().and_then(|h| h.architecture.clone());
    // A published variant's pooling and preprocessing are its pretrained cfg's (the defaults
    // above), not guesses; otherwise whatever neither config.json nor the caller gave is.
    let guessed = if variant.is_some() {
        Vec::new()
    } else {
        let h = hub.as_ref();
        let given = [
            opts.global_pool.is_some() || h.is_some_and(|h| h.global_pool.is_some()),
            h.is_some_and(|h| h.mean.is_some()),
            h.is_some_and(|h| h.std.is_some()),
            h.is_some_and(|h| h.crop_pct.is_some()),
            h.is_some_and(|h| h.interpolation.is_some()),
        ];
        GUESSABLE
            .iter()
            .zip(given)
            .filter(|(_, g)| !g)
            .map(|(name, _)| *name)
            .collect()
    };

    let keys: Vec<String> = config.tensors().map(|t| t.id.to_string()).collect();
    let tensors = raw.read(&keys)?;
    for key in &keys {
        let t = &tensors[key];
        if let Some(index) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(ImportError::NonFinite {
                path: file,
                tensor: key.clone(),
                index,
                value: t.data[index],
            });
        }
    }
    Ok(Checkpoint {
        config,
        preprocess,
        architecture,
        timm_architecture,
        labels,
        tensors,
        source: file,
        format: raw.format,
        config_source,
        guessed,
    })
}

/// Every tensor of a checkpoint file's bytes (safetensors or a `torch.save` zip) as f32, keyed as
/// [`Checkpoint::tensors`] keys them (wrapper prefixes stripped): the container and pickle reading
/// of [`load_checkpoint`], without its config inference and checks. Entries that are not tensors
/// are left out. `path` only names the file in errors.
pub fn read_checkpoint_bytes(
    path: &Path,
    bytes: Vec<u8>,
) -> Result<(CheckpointFormat, BTreeMap<String, Tensor>), ImportError> {
    let mut raw = RawCheckpoint::from_bytes(path, bytes)?;
    let keys: Vec<String> = raw
        .entries
        .iter()
        .filter(|(_, e)| e.is_tensor())
        .map(|(k, _)| k.clone())
        .collect();
    Ok((raw.format, raw.read(&keys)?))
}

/// The preprocessing a hub config states, completed with CaiT's defaults.
fn hub_preprocess(cfg: &ModelConfig, hub: &HubConfig) -> Result<Preprocess, String> {
    let mut p = default_preprocess(cfg);
    if let Some(i) = hub.interpolation {
        p.interpolation = i;
    }
    if let Some(c) = hub.crop_pct {
        p.crop_pct = c;
    }
    let mean = hub.mean.as_deref().unwrap_or(&IMAGENET_DEFAULT_MEAN);
    let std = hub.std.as_deref().unwrap_or(&IMAGENET_DEFAULT_STD);
    let (mean, std, n) = norm_for_channels(mean, std, cfg.in_chans as usize).ok_or_else(|| {
        format!(
            "{} input channels: a pack records mean/std for at most {}",
            cfg.in_chans,
            cait_pack::MAX_NORM_CHANNELS
        )
    })?;
    p.mean = mean;
    p.std = std;
    p.norm_channels = n;
    Ok(p)
}

/// One name per class; a dict with gaps leaves the missing names empty.
fn resolve_labels(labels: &Labels, num_classes: u32) -> Result<Vec<String>, String> {
    let n = num_classes as usize;
    match labels {
        Labels::List(names) if names.len() == n => Ok(names.clone()),
        Labels::List(names) => Err(format!(
            "label_names has {} names but the head has {n} classes",
            names.len()
        )),
        Labels::Map(entries) => {
            let mut out = vec![String::new(); n];
            for (i, name) in entries {
                let slot = out.get_mut(*i as usize).ok_or_else(|| {
                    format!("label_names names class {i} but the head has {n} classes")
                })?;
                *slot = name.clone();
            }
            Ok(out)
        }
    }
}
