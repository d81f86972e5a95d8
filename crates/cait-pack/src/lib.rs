#![doc = include_str!("../README.md")]
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(missing_docs)]
// An error value built eagerly in `ok_or(..)` costs its construction on every success: a
// name copied into an ErrorName for each tensor lookup was 1.2% of an int8 forward pass.
#![warn(clippy::or_fun_call)]
#![forbid(unsafe_code)]

#[cfg(target_endian = "big")]
compile_error!(
    "cait-pack views little-endian tensor data in place; big-endian targets are not supported"
);

#[cfg(feature = "std")]
extern crate std;

mod config;
mod crc32;
mod error;
pub mod int8;
mod reader;
pub mod timm;
#[cfg(any(test, feature = "std"))]
mod writer;

use core::fmt;

pub use config::{
    BlockParam, ConfigError, GlobalPool, MAX_DEPTH, MAX_RANK, ModelConfig, Shape, TensorId,
    TensorSpec, Tensors,
};
pub use crc32::{Crc32, crc32};
pub use error::{ERROR_NAME_CAPACITY, ErrorName, PackError};
pub use reader::{
    Labels, LabelsIter, Metadata, MetadataIter, Pack, PackHeader, TensorView, pack_checksum, reseal,
};
#[cfg(any(test, feature = "std"))]
pub use writer::{PackWriter, WriteError};

/// A pack's bytes placed as a pack must lie in memory: at [`DATA_ALIGN`] (its tensors are aligned
/// from its start). [`include_pack!`] makes one from a file at compile time.
#[repr(C, align(64))]
pub struct AlignedPack<const N: usize>(pub [u8; N]);

const _: () = assert!(core::mem::align_of::<AlignedPack<1>>() == DATA_ALIGN);

impl<const N: usize> AlignedPack<N> {
    /// The pack's bytes (for [`Pack::parse`], or `cait_core::Session::new`).
    pub const fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Embeds a `.cait` file as a `static` [`AlignedPack`] named `NAME`, 64-byte aligned, in the
/// read-only data (flash): `cait_pack::include_pack!(pub PACK = "model.cait");` — the path as
/// `include_bytes!` takes it, relative to the file that invokes the macro. Its header can then be
/// read in a `const` ([`PackHeader::read`], `cait_core::workspace_bytes_for`).
#[macro_export]
macro_rules! include_pack {
    ($vis:vis $name:ident = $path:expr) => {
        $vis static $name: $crate::AlignedPack<{ ::core::include_bytes!($path).len() }> =
            $crate::AlignedPack(*::core::include_bytes!($path));
    };
}

/// The first eight bytes of every pack.
///
/// `0x89` is not ASCII (the file is not text), `CAIT` names it, and `\r\n\x1a` catch a transfer that
/// rewrote line endings or stopped at a DOS end-of-file, as in PNG's signature.
pub const MAGIC: [u8; 8] = *b"\x89CAIT\r\n\x1a";

/// The format version this crate reads and writes.
pub const VERSION: u32 = 1;

/// Bytes of the fixed header in format version 1.
pub const HEADER_LEN: usize = 256;

/// Bytes of one tensor-table entry.
pub const TENSOR_ENTRY_LEN: usize = 48;

/// Alignment, from the start of the pack, of every tensor's data.
///
/// 64 covers the element alignment of every dtype (4 for `f32`/`i32`) with room for 8/16/32-byte SIMD
/// loads (Helium, NEON, AVX), and is a cache line on Cortex-M7 and x86-64 and a whole number of
/// 64-bit flash/AXI bursts, so a weight row never starts mid-line.
pub const DATA_ALIGN: usize = 64;

/// Alignment, from the start of the pack, of every section, so a C reader can map its tables onto
/// arrays of `uint32_t`/`uint64_t` in place.
pub const SECTION_ALIGN: usize = 8;

/// Most tensors a pack may hold (the largest CaiT, M48, has under 900).
pub const MAX_TENSORS: usize = 1 << 16;

/// Most metadata entries a pack may hold.
pub const MAX_METADATA: usize = 1 << 12;

/// Most class labels a pack may hold.
pub const MAX_LABELS: usize = 1 << 20;

/// Most bytes of a tensor name, a metadata key or the architecture string.
pub const MAX_NAME_LEN: usize = 256;

/// Most bytes of one class label.
pub const MAX_LABEL_LEN: usize = 1024;

/// Most bytes of one metadata value.
pub const MAX_METADATA_VALUE_LEN: usize = 1 << 16;

/// Most normalisation channels a pack's preprocessing records (mean/std entries).
pub const MAX_NORM_CHANNELS: usize = 8;

/// How a resize interpolates (timm's `interpolation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
// More will come (a new precision, dtype or quantization is a new pack feature): match with `_`.
#[non_exhaustive]
pub enum Interpolation {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear.
    Bilinear,
    /// Bicubic (CaiT's pretrained cfgs).
    Bicubic,
}

/// The eval preprocessing a model expects (timm's pretrained cfg).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Preprocess {
    /// `[channels, height, width]` of the network input.
    pub input_size: [u32; 3],
    /// Resize interpolation.
    pub interpolation: Interpolation,
    /// Center-crop fraction: the shorter side is resized to `size / crop_pct`, then cropped.
    pub crop_pct: f32,
    /// Number of valid entries in `mean` and `std`.
    pub norm_channels: u8,
    /// Per-channel mean, in `[0, 1]` pixel units.
    pub mean: [f32; MAX_NORM_CHANNELS],
    /// Per-channel standard deviation.
    pub std: [f32; MAX_NORM_CHANNELS],
}

/// The precision a pack's weights are stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
// More will come (a new precision, dtype or quantization is a new pack feature): match with `_`.
#[non_exhaustive]
pub enum Precision {
    /// Every tensor f32.
    F32,
    /// Weights f16, compute f32.
    F16,
    /// Weights int8 per output channel, static activation scales.
    Int8,
}

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
// More will come (a new precision, dtype or quantization is a new pack feature): match with `_`.
#[non_exhaustive]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// Signed 8-bit integer.
    I8,
    /// Signed 32-bit integer.
    I32,
}

/// Quantization parameters of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
// More will come (a new precision, dtype or quantization is a new pack feature): match with `_`.
#[non_exhaustive]
pub enum Quant {
    /// Stored as is.
    None,
    /// One scale for the whole tensor: real = scale * (q - zero_point).
    PerTensor {
        /// Scale.
        scale: f32,
        /// Zero point.
        zero_point: i32,
    },
    /// One scale per slice along `axis`, stored as the f32 tensor at index `scales` of the table.
    PerChannel {
        /// Axis the scales run along (0 = output channels).
        axis: u8,
        /// Index in the tensor table of the f32 scales tensor.
        scales: u32,
    },
}

impl Interpolation {
    /// The byte that stores it in a pack.
    pub const fn code(self) -> u8 {
        match self {
            Interpolation::Nearest => 0,
            Interpolation::Bilinear => 1,
            Interpolation::Bicubic => 2,
        }
    }

    /// The interpolation a pack byte stores, if any.
    pub const fn from_code(code: u8) -> Option<Interpolation> {
        Some(match code {
            0 => Interpolation::Nearest,
            1 => Interpolation::Bilinear,
            2 => Interpolation::Bicubic,
            _ => return None,
        })
    }

    /// timm's spelling: `"nearest"`, `"bilinear"` or `"bicubic"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Interpolation::Nearest => "nearest",
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
        }
    }
}

impl Precision {
    /// The byte that stores it in a pack.
    pub const fn code(self) -> u8 {
        match self {
            Precision::F32 => 0,
            Precision::F16 => 1,
            Precision::Int8 => 2,
        }
    }

    /// The precision a pack byte stores, if any.
    pub const fn from_code(code: u8) -> Option<Precision> {
        Some(match code {
            0 => Precision::F32,
            1 => Precision::F16,
            2 => Precision::Int8,
            _ => return None,
        })
    }

    /// `"f32"`, `"f16"` or `"int8"`, as the `cait` tool spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Int8 => "int8",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DType {
    /// Bytes of one element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
            DType::I8 => 1,
        }
    }

    /// The byte that stores it in a pack.
    pub const fn code(self) -> u8 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::I8 => 2,
            DType::I32 => 3,
        }
    }

    /// The dtype a pack byte stores, if any.
    pub const fn from_code(code: u8) -> Option<DType> {
        Some(match code {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::I8,
            3 => DType::I32,
            _ => return None,
        })
    }

    /// Whether it is a floating-point type.
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }

    /// `"f32"`, `"f16"`, `"i8"` or `"i32"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "i8",
            DType::I32 => "i32",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Quant {
    /// The byte that stores its kind in a pack.
    pub const fn code(&self) -> u8 {
        match self {
            Quant::None => 0,
            Quant::PerTensor { .. } => 1,
            Quant::PerChannel { .. } => 2,
        }
    }
}

impl Preprocess {
    /// The mean and standard deviation applied to channel `c`: its own entry, the single entry
    /// when one is recorded for every channel, the last for channels beyond those recorded, and
    /// `(0, 1)` (no normalization) when none is.
    pub fn channel_norm(&self, c: usize) -> (f32, f32) {
        match self.norm_channels as usize {
            0 => (0.0, 1.0),
            n => {
                let i = c.min(n - 1).min(MAX_NORM_CHANNELS - 1);
                (self.mean[i], self.std[i])
            }
        }
    }

    /// An 8-bit pixel value of channel `c` as the network takes it: `(v / 255 - mean) / std` in
    /// f32, as torchvision's `ToTensor` + `Normalize` compute it (host preprocessing and the
    /// engine's 8-bit input both use this, so they agree bit for bit).
    #[inline]
    pub fn normalize(&self, c: usize, v: u8) -> f32 {
        let (mean, std) = self.channel_norm(c);
        (v as f32 / 255.0 - mean) / std
    }

    /// The pretrained cfg of every timm `cait_*` model for a `[channels, height, width]` input:
    /// bicubic resize, `crop_pct` 1.0, ImageNet mean/std ([`timm::IMAGENET_DEFAULT_MEAN`] /
    /// [`STD`](timm::IMAGENET_DEFAULT_STD), three channels; [`timm::default_preprocess`] fits them
    /// to a model's channel count).
    pub const fn imagenet(input_size: [u32; 3]) -> Preprocess {
        let mut mean = [0.0; MAX_NORM_CHANNELS];
        let mut std = [0.0; MAX_NORM_CHANNELS];
        let mut c = 0;
        while c < 3 {
            mean[c] = timm::IMAGENET_DEFAULT_MEAN[c] as f32;
            std[c] = timm::IMAGENET_DEFAULT_STD[c] as f32;
            c += 1;
        }
        Preprocess {
            input_size,
            interpolation: Interpolation::Bicubic,
            crop_pct: 1.0,
            norm_channels: 3,
            mean,
            std,
        }
    }
}
