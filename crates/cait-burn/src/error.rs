//! Errors: each variant says what failed and names the file, tensor, step or backend.

use std::fmt;
use std::io;
use std::path::PathBuf;

use cait_import::ImportError;

use crate::BackendKind;

/// Why loading, running, training or exporting a model failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The checkpoint could not be imported: bad path, not a CaiT, inconsistent shapes ...
    Import(ImportError),
    /// The backend has no usable device.
    Backend {
        /// The backend asked for.
        backend: BackendKind,
        /// What went wrong (and how to fix it, where we know).
        reason: String,
    },
    /// An input batch does not hold `n` images of the model's input size.
    InputShape {
        /// Images in the batch.
        n: usize,
        /// Floats expected: `n × C × H × W`.
        expected: usize,
        /// Floats given.
        found: usize,
    },
    /// Data that does not fit the model (sample shape, label range, empty set).
    Data {
        /// What is wrong.
        reason: String,
    },
    /// A tensor could not be read back from the device.
    Readback {
        /// The backend's message.
        reason: String,
    },
    /// The model could not be built from the given tensors.
    Weights {
        /// The file the tensors came from.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing or reading a training checkpoint or an exported model failed.
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A training option is out of range.
    TrainConfig {
        /// The option and why.
        reason: String,
    },
    /// The training loss became NaN or infinite.
    NonFiniteLoss {
        /// Epoch (0-based).
        epoch: usize,
        /// Global optimizer step (0-based) whose loss was not finite.
        step: u64,
        /// The loss.
        loss: f32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Import(e) => write!(f, "{e}"),
            Error::Backend { backend, reason } => {
                write!(f, "{} backend unavailable: {reason}", backend.name())
            }
            Error::InputShape { n, expected, found } => write!(
                f,
                "input batch of {n} images should hold {expected} floats but has {found}"
            ),
            Error::Data { reason } => write!(f, "dataset does not fit the model: {reason}"),
            Error::Readback { reason } => write!(f, "reading a tensor back failed: {reason}"),
            Error::Weights { path, reason } => {
                write!(f, "{}: cannot build the model: {reason}", path.display())
            }
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Checkpoint { path, reason } => write!(f, "{}: {reason}", path.display()),
            Error::TrainConfig { reason } => write!(f, "invalid training option: {reason}"),
            Error::NonFiniteLoss { epoch, step, loss } => write!(
                f,
                "training diverged: loss is {loss} at step {step} (epoch {}); \
                 lower the learning rate or raise the warmup",
                epoch + 1
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Import(e) => Some(e),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ImportError> for Error {
    fn from(e: ImportError) -> Error {
        Error::Import(e)
    }
}
