//! Import errors: every variant names the file, and the tensor or config field where there is one.

use std::fmt;
use std::io;
use std::path::PathBuf;

use cait_pack::ConfigError;

use crate::pickle::PickleError;

/// Most problems a [`ImportError::TensorMismatch`] message lists before summarising the rest.
const LISTED_PROBLEMS: usize = 20;

/// Why a checkpoint could not be imported.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImportError {
    /// A file could not be opened or read.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A directory holds no checkpoint file this importer knows, or several and none is preferred.
    NoCheckpoint {
        /// The directory.
        dir: PathBuf,
        /// What was looked for or found.
        reason: String,
    },
    /// The file is neither safetensors nor a torch zip archive.
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What it looks like instead.
        reason: String,
    },
    /// The file is safetensors or a torch zip but its container is damaged.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The torch archive's `data.pkl` could not be decoded.
    Pickle {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: PickleError,
    },
    /// The file decodes, but holds no state dict (no tensors at the top level nor under `model`,
    /// `state_dict`, `model_ema`, `state_dict_ema` or `module`).
    NoStateDict {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The state dict is not a CaiT (a ResNet, a ViT ...).
    NotCait {
        /// The file.
        path: PathBuf,
        /// Which CaiT signature is absent.
        reason: String,
        /// The first few keys, to show what the checkpoint is.
        found_keys_sample: Vec<String>,
    },
    /// A CaiT, but the shapes that define its config are inconsistent (e.g. a non-square kernel).
    CannotInfer {
        /// The file.
        path: PathBuf,
        /// What could not be determined.
        reason: String,
    },
    /// `config.json` beside the checkpoint is malformed or asks for something unsupported.
    BadConfig {
        /// The `config.json`.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `config.json` and the checkpoint's tensors disagree about a field.
    ConfigMismatch {
        /// The `config.json`.
        path: PathBuf,
        /// The field (`embed_dim`, `img_size` ...).
        field: &'static str,
        /// The value in `config.json`.
        config: String,
        /// The value the tensors imply.
        checkpoint: String,
    },
    /// The config the checkpoint implies is not one the engine can run.
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ConfigError,
    },
    /// Missing, unexpected or mis-shaped tensors: every problem, in one error.
    TensorMismatch {
        /// The file.
        path: PathBuf,
        /// Each problem, in canonical tensor order, unexpected keys last.
        problems: Vec<TensorProblem>,
    },
    /// A tensor's data cannot be decoded as floats (integer dtype, out-of-range view ...).
    BadTensor {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// A weight is NaN or infinite.
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        tensor: String,
        /// Flat index of the first bad element.
        index: usize,
        /// Its value.
        value: f32,
    },
    /// The pack writer refused the model.
    Pack {
        /// The checkpoint the pack was made from.
        path: PathBuf,
        /// The writer's message.
        reason: String,
    },
}

/// One way a checkpoint's tensors differ from the CaiT config they imply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TensorProblem {
    /// A tensor the config needs is absent: name and expected shape.
    Missing(String, Vec<usize>),
    /// A tensor that is not part of a CaiT with this config.
    Unexpected(String),
    /// A tensor with the wrong shape: name, expected shape, found shape.
    WrongShape(String, Vec<usize>, Vec<usize>),
}

impl fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorProblem::Missing(name, shape) => write!(f, "missing {name} {shape:?}"),
            TensorProblem::Unexpected(name) => write!(f, "unexpected {name}"),
            TensorProblem::WrongShape(name, expected, found) => {
                write!(f, "{name} has shape {found:?}, expected {expected:?}")
            }
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ImportError::NoCheckpoint { dir, reason } => {
                write!(f, "{}: no checkpoint: {reason}", dir.display())
            }
            ImportError::UnknownFormat { path, reason } => write!(
                f,
                "{}: not a safetensors file or torch zip checkpoint: {reason}",
                path.display()
            ),
            ImportError::Corrupt { path, reason } => {
                write!(f, "{}: corrupt checkpoint: {reason}", path.display())
            }
            ImportError::Pickle { path, source } => {
                write!(f, "{}: cannot decode data.pkl: {source}", path.display())
            }
            ImportError::NoStateDict { path, reason } => {
                write!(f, "{}: no state dict found: {reason}", path.display())
            }
            ImportError::NotCait {
                path,
                reason,
                found_keys_sample,
            } => {
                write!(f, "{}: not a CaiT checkpoint: {reason}", path.display())?;
                if !found_keys_sample.is_empty() {
                    write!(f, " (keys: {}", found_keys_sample.join(", "))?;
                    f.write_str(", ...)")?;
                }
                Ok(())
            }
            ImportError::CannotInfer { path, reason } => write!(
                f,
                "{}: cannot infer the CaiT config: {reason}",
                path.display()
            ),
            ImportError::BadConfig { path, reason } => {
                write!(f, "{}: {reason}", path.display())
            }
            ImportError::ConfigMismatch {
                path,
                field,
                config,
                checkpoint,
            } => write!(
                f,
                "{}: {field} is {config} but the checkpoint's tensors imply {checkpoint}",
                path.display()
            ),
            ImportError::InvalidConfig { path, source } => write!(
                f,
                "{}: the checkpoint's config is not runnable: {source}",
                path.display()
            ),
            ImportError::TensorMismatch { path, problems } => {
                write!(
                    f,
                    "{}: tensors do not match the CaiT config ({} problem{}):",
                    path.display(),
                    problems.len(),
                    if problems.len() == 1 { "" } else { "s" }
                )?;
                for p in problems.iter().take(LISTED_PROBLEMS) {
                    write!(f, "\n  {p}")?;
                }
                if problems.len() > LISTED_PROBLEMS {
                    write!(f, "\n  ... and {} more", problems.len() - LISTED_PROBLEMS)?;
                }
                Ok(())
            }
            ImportError::BadTensor {
                path,
                tensor,
                reason,
            } => write!(f, "{}: tensor {tensor}: {reason}", path.display()),
            ImportError::NonFinite {
                path,
                tensor,
                index,
                value,
            } => write!(
                f,
                "{}: tensor {tensor} has a non-finite value ({value}) at flat index {index}",
                path.display()
            ),
            ImportError::Pack { path, reason } => {
                write!(f, "{}: cannot write the pack: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImportError::Io { source, .. } => Some(source),
            ImportError::Pickle { source, .. } => Some(source),
            ImportError::InvalidConfig { source, .. } => Some(source),
            _ => None,
        }
    }
}
