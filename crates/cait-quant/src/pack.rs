//! Checkpoint → `.cait` pack.

use std::io::Read;
use std::path::Path;

use cait_pack::{MAGIC, PackWriter, Precision};

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
    let pack_error = |reason: String| ImportError::Pack {
        path: ckpt.source.clone(),
        reason,
    };
    let mut w = PackWriter::new(ckpt.config, Precision::F32, ckpt.preprocess);
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

    // `Checkpoint`'s fields are public: re-check what `load_checkpoint` guaranteed.
    let mut problems = Vec::new();
    for spec in ckpt.config.tensors() {
        let name = spec.id.to_string();
        let want: Vec<usize> = spec.shape.dims().iter().map(|&d| d as usize).collect();
        match ckpt.tensors.get(&name) {
            None => problems.push(TensorProblem::Missing(name, want)),
            Some(t) if t.shape != want || t.data.len() != spec.shape.numel().unwrap_or(0) => {
                problems.push(TensorProblem::WrongShape(name, want, t.shape.clone()))
            }
            Some(t) => {
                w.add_f32(&name, spec.shape.dims(), &t.data)
                    .map_err(|e| pack_error(e.to_string()))?;
            }
        }
    }
    if !problems.is_empty() {
        return Err(ImportError::TensorMismatch {
            path: ckpt.source.clone(),
            problems,
        });
    }
    w.finish().map_err(|e| pack_error(e.to_string()))
}
