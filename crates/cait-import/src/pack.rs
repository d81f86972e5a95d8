//! Checkpoint → `.cait` pack.

use std::io::Read;
use std::path::Path;

use cait_pack::{MAGIC, PackWriter, Precision};
use half::f16;

use crate::error::{ImportError, TensorProblem};
use crate::{Checkpoint, ConfigSource};

/// Whether `path` is a `.cait` pack (its first eight bytes are the pack magic). Unreadable or
/// short files are not packs.
pub fn is_pack(path: &Path) -> bool {
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == MAGIC
}

/// An f32 pack of `ckpt`: every tensor of `ckpt.config.tensors()` in that order, the architecture,
/// labels and preprocessing, and metadata `source` (the checkpoint's file name), `source_format`
/// (`safetensors` / `torch-zip`), `config` (`config.json` / `inferred`) and `cait_edge_version`.
pub fn write_pack_f32(ckpt: &Checkpoint) -> Result<Vec<u8>, ImportError> {
    write_pack_float(ckpt, Precision::F32, &[])
}

/// An f16 pack of `ckpt`: as [`write_pack_f32`], except that the weights of the linear layers
/// ([`is_linear_weight`](cait_pack::TensorId::is_linear_weight): patch embedding, q/k/v, proj, fc1, fc2, head — 99% of the
/// parameters) are rounded to f16 (nearest, ties to even); norms, LayerScale, biases, tokens, the
/// position embedding and the talking-heads mixes stay f32 (the engine computes in f32, with
/// LayerNorm statistics in f32). `metadata` entries are added (the quantizer's record).
pub fn write_pack_f16(
    ckpt: &Checkpoint,
    metadata: &[(&str, String)],
) -> Result<Vec<u8>, ImportError> {
    write_pack_float(ckpt, Precision::F16, metadata)
}

/// A [`PackWriter`] for `ckpt` at `precision`, with the architecture, labels and the metadata
/// every pack records (the quantizer adds its tensors to it).
pub fn pack_writer(ckpt: &Checkpoint, precision: Precision) -> PackWriter {
    let mut w = PackWriter::new(ckpt.config, precision, ckpt.preprocess);
    if let Some(name) = &ckpt.architecture {
        w.architecture(name);
    }
    if let Some(labels) = &ckpt.labels {
        w.labels(labels);
    }
    let file_name = ckpt
        .source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    w.metadata("source", &file_name)
        .metadata("source_format", ckpt.format.as_str())
        .metadata(
            "config",
            match ckpt.config_source {
                ConfigSource::HubConfig(_) => "config.json",
                ConfigSource::Inferred => "inferred",
            },
        )
        .metadata("cait_edge_version", env!("CARGO_PKG_VERSION"));
    if let Some(name) = &ckpt.timm_architecture {
        w.metadata("timm_architecture", name);
    }
    if !ckpt.guessed.is_empty() {
        w.metadata(META_GUESSED, &ckpt.guessed.join(", "));
    }
    w
}

/// Metadata key: the settings that were guessed when the pack was made ([`Checkpoint::guessed`],
/// comma-separated); absent when every one was read.
pub const META_GUESSED: &str = "guessed";

fn write_pack_float(
    ckpt: &Checkpoint,
    precision: Precision,
    metadata: &[(&str, String)],
) -> Result<Vec<u8>, ImportError> {
    let pack_error = |reason: String| ImportError::Pack {
        path: ckpt.source.clone(),
        reason,
    };
    let mut w = pack_writer(ckpt, precision);
    for (k, v) in metadata {
        w.metadata(k, v);
    }
    ckpt.check_tensors()?;
    for spec in ckpt.config.tensors() {
        add_float(&mut w, ckpt, spec.id, precision == Precision::F16)
            .map_err(|e| pack_error(e.to_string()))?;
    }
    w.finish().map_err(|e| pack_error(e.to_string()))
}

/// Adds checkpoint tensor `id` as an f32 or f16 pack holds it: rounded to f16 (nearest, ties to
/// even) when `f16` and it is a linear weight, else f32. Also how a mixed int8 pack writes the
/// blocks it keeps in f16. The tensor is present ([`Checkpoint::check_tensors`]).
pub fn add_float(
    w: &mut PackWriter,
    ckpt: &Checkpoint,
    id: cait_pack::TensorId,
    f16: bool,
) -> Result<(), cait_pack::WriteError> {
    let name = id.to_string();
    let dims = ckpt.config.shape_of(id);
    let data: &[f32] = ckpt.tensors.get(&name).map_or(&[], |t| &t.data);
    if f16 && id.is_linear_weight() {
        let halves: Vec<f16> = data.iter().map(|&v| f16::from_f32(v)).collect();
        w.add_f16(&name, dims.dims(), &halves)
    } else {
        w.add_f32(&name, dims.dims(), data)
    }
    .map(drop)
}

impl Checkpoint {
    /// `Checkpoint`'s fields are public: re-checks what [`load_checkpoint`](crate::load_checkpoint)
    /// guaranteed (every tensor of the config present, shaped as it says, and finite).
    pub fn check_tensors(&self) -> Result<(), ImportError> {
        let mut problems = Vec::new();
        for spec in self.config.tensors() {
            let name = spec.id.to_string();
            let want: Vec<usize> = spec.shape.dims().iter().map(|&d| d as usize).collect();
            match self.tensors.get(&name) {
                None => problems.push(TensorProblem::Missing(name, want)),
                Some(t) if t.shape != want || t.data.len() != spec.shape.numel().unwrap_or(0) => {
                    problems.push(TensorProblem::WrongShape(name, want, t.shape.clone()))
                }
                Some(t) => {
                    if let Some(index) = t.data.iter().position(|v| !v.is_finite()) {
                        return Err(ImportError::NonFinite {
                            path: self.source.clone(),
                            tensor: name,
                            index,
                            value: t.data[index],
                        });
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(ImportError::TensorMismatch {
                path: self.source.clone(),
                problems,
            });
        }
        Ok(())
    }
}
