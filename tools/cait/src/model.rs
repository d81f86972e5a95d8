//! Loading a model: a `.cait` pack as is, or a timm checkpoint imported into an f32 pack in memory,
//! so every backend runs from the same validated bytes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cait_import::{Checkpoint, ImportOptions};
use cait_pack::{GlobalPool, Interpolation, Pack};

use crate::{Backend, ModelArgs};

/// 64-byte aligned storage, so pack tensors (aligned to 64 in the file) can be used in place.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Block([u8; 64]);

/// Bytes at a 64-byte aligned address.
pub struct AlignedBytes {
    blocks: Vec<Block>,
    len: usize,
}

impl AlignedBytes {
    /// Copies `bytes` into aligned storage.
    pub fn copy_from(bytes: &[u8]) -> AlignedBytes {
        let mut out = AlignedBytes::zeroed(bytes.len());
        out.bytes_mut().copy_from_slice(bytes);
        out
    }

    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> AlignedBytes {
        AlignedBytes {
            blocks: vec![Block([0; 64]); len.div_ceil(64)],
            len,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.blocks)[..self.len]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.blocks)[..self.len]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InterpolationArg {
    Nearest,
    Bilinear,
    Bicubic,
}

/// The preprocessing of a checkpoint whose `config.json` does not state it (or that has none):
/// without these, timm's CaiT defaults are used, with a warning.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PreprocessArgs {
    /// Normalization mean, one value per input channel or one for all (e.g. 0.485,0.456,0.406).
    #[arg(
        long,
        value_name = "M,…",
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    pub mean: Option<Vec<f64>>,
    /// Normalization std, one value per input channel or one for all (e.g. 0.229,0.224,0.225).
    #[arg(long, value_name = "S,…", value_delimiter = ',')]
    pub std: Option<Vec<f64>>,
    /// Resize the shorter side to input size / PCT, then center-crop (timm's crop_pct).
    #[arg(long, value_name = "PCT")]
    pub crop_pct: Option<f32>,
    /// Resize filter.
    #[arg(long, value_enum)]
    pub interpolation: Option<InterpolationArg>,
}

impl PreprocessArgs {
    fn any(&self) -> bool {
        self.mean.is_some()
            || self.std.is_some()
            || self.crop_pct.is_some()
            || self.interpolation.is_some()
    }
}

/// What a model was loaded from.
pub enum Origin {
    /// A `.cait` pack file.
    Pack,
    /// A timm checkpoint, imported to an f32 pack in memory.
    Checkpoint(Box<Checkpoint>),
}

/// A model ready to run: validated pack bytes plus where they came from.
pub struct LoadedModel {
    pub path: PathBuf,
    pub origin: Origin,
    bytes: AlignedBytes,
}

impl LoadedModel {
    /// Loads a pack, or imports a checkpoint (honouring `--global-pool` and the preprocessing
    /// flags), and validates the result.
    pub fn load(args: &ModelArgs) -> Result<LoadedModel> {
        let pool = parse_pool(args.global_pool.as_deref())?;
        load_path(&args.model, pool, &args.preprocess)
    }

    /// The validated pack bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.bytes()
    }

    /// The parsed pack (validated at load, so parsing again cannot fail short of memory corruption).
    pub fn pack(&self) -> Result<Pack<'_>> {
        Pack::parse(self.bytes.bytes())
            .with_context(|| format!("{}: invalid pack", self.path.display()))
    }

    /// The checkpoint, when the model was imported from one.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        match &self.origin {
            Origin::Checkpoint(c) => Some(c),
            Origin::Pack => None,
        }
    }
}

/// `--global-pool` as typed.
pub fn parse_pool(arg: Option<&str>) -> Result<Option<GlobalPool>> {
    Ok(match arg {
        None => None,
        Some("token") => Some(GlobalPool::Token),
        Some("avg") => Some(GlobalPool::Avg),
        Some(other) => bail!("unknown --global-pool `{other}` (expected token or avg)"),
    })
}

/// Loads `path` as a pack if it starts with the pack magic, else as a timm checkpoint, with the
/// given pooling and preprocessing (checkpoints only). Warns on stderr about every setting that is
/// a guess: a checkpoint's that neither `config.json` nor the flags gave, a pack's that were guessed
/// when it was made.
pub fn load_path(
    path: &Path,
    pool: Option<GlobalPool>,
    preprocess: &PreprocessArgs,
) -> Result<LoadedModel> {
    if !path.exists() {
        bail!("{}: no such file or directory", path.display());
    }
    if path.is_file() && cait_import::is_pack(path) {
        if pool.is_some() {
            bail!("--global-pool applies to checkpoints; a pack records its pooling");
        }
        if preprocess.any() {
            bail!(
                "--mean, --std, --crop-pct and --interpolation apply to checkpoints; a pack records its preprocessing (give them to cait quantize when making it)"
            );
        }
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let bytes = AlignedBytes::copy_from(&raw);
        let pack = Pack::parse(bytes.bytes())
            .with_context(|| format!("{}: invalid pack", path.display()))?;
        if let Some(guessed) = pack.metadata().get(cait_import::META_GUESSED) {
            eprintln!(
                "warning: {}: its {guessed} were guessed when it was made (no config.json); if they are not the model's, re-make it with cait quantize and the right --global-pool / --mean / --std / --crop-pct / --interpolation",
                path.display()
            );
        }
        return Ok(LoadedModel {
            path: path.to_path_buf(),
            origin: Origin::Pack,
            bytes,
        });
    }
    let opts = ImportOptions { global_pool: pool };
    let mut ckpt = cait_import::load_checkpoint(path, &opts)?;
    ckpt.set_preprocess(
        preprocess.mean.as_deref(),
        preprocess.std.as_deref(),
        preprocess.crop_pct,
        preprocess.interpolation.map(|i| match i {
            InterpolationArg::Nearest => Interpolation::Nearest,
            InterpolationArg::Bilinear => Interpolation::Bilinear,
            InterpolationArg::Bicubic => Interpolation::Bicubic,
        }),
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    warn_guessed(path, &ckpt);
    let raw = cait_import::write_pack_f32(&ckpt)?;
    let bytes = AlignedBytes::copy_from(&raw);
    Pack::parse(bytes.bytes()).context("the imported checkpoint did not make a valid pack")?;
    Ok(LoadedModel {
        path: path.to_path_buf(),
        origin: Origin::Checkpoint(Box::new(ckpt)),
        bytes,
    })
}

/// The warning for a checkpoint whose pooling or preprocessing is a guess, with the values used.
fn warn_guessed(path: &Path, ckpt: &Checkpoint) {
    if ckpt.guessed.is_empty() {
        return;
    }
    let p = &ckpt.preprocess;
    let n = (p.norm_channels as usize).max(1);
    let value = |g: &str| match g {
        "global_pool" => format!("global_pool {}", ckpt.config.global_pool.as_str()),
        "mean" => format!("mean {:?}", &p.mean[..n]),
        "std" => format!("std {:?}", &p.std[..n]),
        "crop_pct" => format!("crop_pct {}", p.crop_pct),
        _ => format!("interpolation {:?}", p.interpolation).to_lowercase(),
    };
    let used: Vec<String> = ckpt.guessed.iter().map(|g| value(g)).collect();
    let flags: Vec<String> = ckpt
        .guessed
        .iter()
        .map(|g| format!("--{}", g.replace('_', "-")))
        .collect();
    eprintln!(
        "warning: {}: {} not stated by a config.json, so guessed ({}); if the model was trained otherwise, give {}",
        path.display(),
        if ckpt.guessed.len() == 1 {
            "this setting is"
        } else {
            "these settings are"
        },
        used.join(", "),
        flags.join(" ")
    );
}

/// Outputs of one image.
pub struct Prediction {
    pub logits: Vec<f32>,
    pub features: Vec<f32>,
}

/// Runs images through a model on the chosen backend.
pub enum Runner<'a> {
    /// The no_std engine on the pack's bytes.
    Core {
        model: Box<cait_core::Model<'a>>,
        workspace: AlignedBytes,
    },
    /// The burn float reference (a timm checkpoint loaded through burn's store).
    Burn(Box<cait_burn::Reference>),
}

impl<'a> Runner<'a> {
    /// A runner for `backend`. The burn backends run the float reference, so they need the timm
    /// checkpoint itself, not a pack.
    pub fn new(loaded: &LoadedModel, pack: &Pack<'a>, backend: Backend) -> Result<Runner<'a>> {
        let kind = match backend {
            Backend::Core => {
                let model = cait_core::Model::from_pack(pack)
                    .context("building the model from the pack")?;
                let workspace = AlignedBytes::zeroed(model.workspace_bytes());
                return Ok(Runner::Core {
                    model: Box::new(model),
                    workspace,
                });
            }
            Backend::BurnCpu => cait_burn::BackendKind::Cpu,
            Backend::BurnWgpu => cait_burn::BackendKind::Wgpu,
        };
        let Some(ckpt) = loaded.checkpoint() else {
            bail!(
                "{}: --backend {} runs the float reference from a timm checkpoint \
                 (model.safetensors, .pth or a hub folder); a .cait pack runs on --backend core",
                loaded.path.display(),
                backend.name()
            );
        };
        let opts = ImportOptions {
            global_pool: Some(ckpt.config.global_pool),
        };
        let reference = cait_burn::Reference::load(&loaded.path, &opts, kind)?;
        eprintln!("{} on {}", backend.name(), reference.device_name());
        Ok(Runner::Burn(Box::new(reference)))
    }

    /// Images per call that suit this backend (the burn backends batch on the device).
    pub fn batch_size(&self) -> usize {
        match self {
            Runner::Core { .. } => 1,
            Runner::Burn(_) => cait_burn::MAX_DEVICE_BATCH,
        }
    }

    /// Runs `n` normalized images `[n, C, H, W]`.
    pub fn run_batch(&mut self, images: &[f32], n: usize) -> Result<Vec<Prediction>> {
        match self {
            Runner::Core { .. } => {
                let per = images.len() / n.max(1);
                images
                    .chunks_exact(per.max(1))
                    .take(n)
                    .map(|image| self.run(image))
                    .collect()
            }
            Runner::Burn(reference) => {
                let out = reference.forward(images, n)?;
                let cfg = reference.config();
                let (classes, dim) = (cfg.logits_len(), cfg.embed_dim as usize);
                Ok((0..n)
                    .map(|i| Prediction {
                        logits: out.logits[i * classes..(i + 1) * classes].to_vec(),
                        features: out.features[i * dim..(i + 1) * dim].to_vec(),
                    })
                    .collect())
            }
        }
    }

    /// Runs one normalized image `[C, H, W]`.
    pub fn run(&mut self, image: &[f32]) -> Result<Prediction> {
        let (model, workspace) = match self {
            Runner::Core { model, workspace } => (model, workspace),
            Runner::Burn(_) => {
                let n = 1;
                return Ok(self.run_batch(image, n)?.remove(0));
            }
        };
        let cfg = model.config();
        let mut logits = vec![0.0f32; cfg.logits_len()];
        let mut features = vec![0.0f32; cfg.embed_dim as usize];
        model
            .forward_with(
                image,
                workspace.bytes_mut(),
                cait_core::Outputs {
                    logits: &mut logits,
                    features: Some(&mut features),
                    attention: None,
                },
            )
            .context("inference failed")?;
        Ok(Prediction { logits, features })
    }
}
