//! Loading a model: a `.cait` pack as is, or a timm checkpoint imported into an f32 pack in memory,
//! so every backend runs from the same validated bytes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cait_pack::{GlobalPool, Pack};
use cait_quant::{Checkpoint, ImportOptions};

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
    /// Loads a pack, or imports a checkpoint (honouring `--global-pool`), and validates the result.
    pub fn load(args: &ModelArgs) -> Result<LoadedModel> {
        load_path(&args.model, parse_pool(args.global_pool.as_deref())?)
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

/// Loads `path` as a pack if it starts with the pack magic, else as a timm checkpoint.
pub fn load_path(path: &Path, pool: Option<GlobalPool>) -> Result<LoadedModel> {
    if !path.exists() {
        bail!("{}: no such file or directory", path.display());
    }
    if path.is_file() && cait_quant::is_pack(path) {
        if pool.is_some() {
            bail!("--global-pool applies to checkpoints; a pack records its pooling");
        }
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let bytes = AlignedBytes::copy_from(&raw);
        Pack::parse(bytes.bytes()).with_context(|| format!("{}: invalid pack", path.display()))?;
        return Ok(LoadedModel {
            path: path.to_path_buf(),
            origin: Origin::Pack,
            bytes,
        });
    }
    let opts = ImportOptions { global_pool: pool };
    let ckpt = cait_quant::load_checkpoint(path, &opts)?;
    let raw = cait_quant::write_pack_f32(&ckpt)?;
    let bytes = AlignedBytes::copy_from(&raw);
    Pack::parse(bytes.bytes()).context("the imported checkpoint did not make a valid pack")?;
    Ok(LoadedModel {
        path: path.to_path_buf(),
        origin: Origin::Checkpoint(Box::new(ckpt)),
        bytes,
    })
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
