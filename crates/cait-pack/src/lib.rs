//! The `.cait` weight pack (API skeleton: the reader and writer are being implemented).
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

mod config;

pub use config::{
    BlockParam, ConfigError, GlobalPool, MAX_RANK, ModelConfig, Shape, TensorId, TensorSpec,
    Tensors,
};

/// Most normalisation channels a pack's preprocessing records (mean/std entries).
pub const MAX_NORM_CHANNELS: usize = 8;

/// How a resize interpolates (timm's `interpolation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
