//! Why a model could not be built or run.

use core::fmt;

use cait_pack::int8::Int8Tensor;
use cait_pack::{ConfigError, ErrorName, PackError, Precision};

/// Why [`Model::from_pack`](crate::Model::from_pack) or a forward pass failed.
///
/// Every variant says what was expected and what was found; the type is small, `Copy` and `'static`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The pack's weights are in a precision this engine does not run.
    UnsupportedPrecision(Precision),
    /// The pack needs an engine this build of cait-core leaves out: the cargo feature `float`
    /// runs f32 and f16 packs and the f16 blocks of mixed int8 packs, `int8` runs int8 packs —
    /// `int8-static` and `int8-dynamic` those with static or dynamic activation scales alone.
    NotBuiltIn {
        /// The precision of the weights that need it.
        precision: Precision,
        /// The cargo feature that builds it in.
        feature: &'static str,
    },
    /// An int8 pack lacks one of the tensors int8 packs add (scales, biases, activation
    /// quantization; see `cait_pack::int8`).
    MissingInt8Tensor(Int8Tensor),
    /// An int8 weight is not quantized per output channel (`Quant::PerChannel` on axis 0).
    NotPerChannel(ErrorName),
    /// An activation's `(scale, zero_point)` is not a finite positive scale and an int8 zero point.
    BadActivationQuant {
        /// The `act_quant` tensor.
        tensor: Int8Tensor,
        /// Its row.
        row: usize,
    },
    /// An int8 pack's metadata `key` is missing or has a value this engine does not know.
    BadMetadata {
        /// The key (`quant.qk` or `quant.av`: `int8` or `f32`).
        key: &'static str,
    },
    /// An int8 reduction is too long for exact `i32` sums (at most 131,071 terms).
    ReductionTooLong {
        /// Terms of the longest reduction.
        length: usize,
    },
    /// The config is inconsistent, or the model's workspace does not fit in the address space.
    Config(ConfigError),
    /// A tensor is missing from the pack, has the wrong dtype or shape, or is misaligned in memory.
    Pack(PackError),
    /// The workspace is smaller than [`workspace_bytes`](crate::workspace_bytes).
    WorkspaceTooSmall {
        /// Bytes the model needs.
        needed: usize,
        /// Bytes supplied.
        got: usize,
    },
    /// The workspace does not start at an address that is a multiple of `align` bytes.
    WorkspaceMisaligned {
        /// Required alignment in bytes.
        align: usize,
    },
    /// The input image does not have `C * H * W` values.
    InputLength {
        /// `C * H * W`.
        expected: usize,
        /// Values supplied.
        got: usize,
    },
    /// The logits buffer does not have `num_classes` values (`embed_dim` when there is no head).
    LogitsLength {
        /// Logits the model produces.
        expected: usize,
        /// Length of the buffer supplied.
        got: usize,
    },
    /// The features buffer does not have `embed_dim` values.
    FeaturesLength {
        /// `embed_dim`.
        expected: usize,
        /// Length of the buffer supplied.
        got: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotBuiltIn { precision, feature } => {
                let scales = match *feature {
                    "int8-static" => " with static activation scales",
                    "int8-dynamic" => " with dynamic activation scales",
                    _ => "",
                };
                write!(
                    f,
                    "this build runs no {precision} weights{scales}: enable cait-core's cargo feature `{feature}`"
                )
            }
            Error::UnsupportedPrecision(p) => {
                write!(f, "{p} packs are not supported by this engine")
            }
            Error::MissingInt8Tensor(t) => write!(f, "int8 pack has no tensor `{t}`"),
            Error::NotPerChannel(name) => write!(
                f,
                "tensor `{}`: an int8 weight must be quantized per output channel (axis 0)",
                name.as_str()
            ),
            Error::BadActivationQuant { tensor, row } => write!(
                f,
                "tensor `{tensor}` row {row}: an activation needs a finite scale > 0 and an integer zero point in -128..=127"
            ),
            Error::BadMetadata { key } => {
                write!(f, "int8 pack metadata `{key}` must be `int8` or `f32`")
            }
            Error::ReductionTooLong { length } => write!(
                f,
                "an int8 sum over {length} terms could overflow i32 (at most 131071)"
            ),
            Error::Config(e) => write!(f, "invalid model config: {e}"),
            Error::Pack(e) => write!(f, "{e}"),
            Error::WorkspaceTooSmall { needed, got } => {
                write!(
                    f,
                    "workspace too small: the model needs {needed} bytes, got {got}"
                )
            }
            Error::WorkspaceMisaligned { align } => {
                write!(f, "workspace must start at a {align}-byte aligned address")
            }
            Error::InputLength { expected, got } => {
                write!(
                    f,
                    "input has {got} values, the model takes {expected} (C*H*W)"
                )
            }
            Error::LogitsLength { expected, got } => {
                write!(
                    f,
                    "logits buffer has {got} values, the model produces {expected}"
                )
            }
            Error::FeaturesLength { expected, got } => {
                write!(
                    f,
                    "features buffer has {got} values, the model produces {expected}"
                )
            }
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Pack(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PackError> for Error {
    fn from(e: PackError) -> Error {
        Error::Pack(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}
