//! The tensors and metadata an int8 pack adds to the timm names, shared by the writer (cait-quant)
//! and the engine (cait-core). The layout is documented in the README, *int8 packs*.

use core::fmt;

use crate::{BlockParam, DType, Pack, TensorId};

/// Rows of a block's [`Int8Tensor::BlockActQuant`]: one `(scale, zero_point)` per activation that
/// feeds an int8 matmul, in this order.
pub mod act {
    /// `norm1` output: the q/k/v input.
    pub const NORM1: usize = 0;
    /// Scaled queries (q·kᵀ input; unused when `quant.qk` is `f32`).
    pub const Q: usize = 1;
    /// Keys (stored int8 in the workspace).
    pub const K: usize = 2;
    /// Values (stored int8 in the workspace).
    pub const V: usize = 3;
    /// Attention weights (attn·v input; unused when `quant.av` is `f32`).
    pub const ATTENTION: usize = 4;
    /// Attention output: the `proj` input.
    pub const ATTENTION_OUT: usize = 5;
    /// `norm2` output: the `fc1` input.
    pub const NORM2: usize = 6;
    /// GELU output: the `fc2` input.
    pub const HIDDEN: usize = 7;
    /// Rows per block.
    pub const ROWS: usize = 8;
}

/// Metadata key: how q·kᵀ is computed, `int8` or `f32`.
pub const META_QK: &str = "quant.qk";
/// Metadata key: how attention·v is computed, `int8` or `f32`.
pub const META_AV: &str = "quant.av";
/// Metadata key: how the class-token path's activations are quantized, `static` (the calibrated
/// `act_quant` rows, as everywhere else) or `dynamic` (each row at run time, see
/// [`is_class_path_linear`]). A pack without the key is `static`.
pub const META_CLASS_PATH: &str = "quant.class_path";
/// Metadata key: how the input rows of the blocks' linear layers and the head are quantized,
/// `static` (the calibrated `act_quant` rows) or `dynamic` (each row at run time, see
/// [`is_block_linear`]; the class-token path then too, whatever [`META_CLASS_PATH`] says). A pack
/// without the key is `static`. The patch embedding's input (the normalized image) and the
/// attention's int8 queries, keys, values and weights keep their calibrated quantization either
/// way.
pub const META_ACTIVATION_SCALES: &str = "quant.activation_scales";

/// Whether `id` is the weight of a linear layer on the class-token path: the class-attention
/// blocks' `q`, `proj`, `fc1` and `fc2`, and the `head`. Each multiplies one row per image (the
/// class token, or the pooled features), so when [`META_CLASS_PATH`] is `dynamic` its input row is
/// quantized at run time — asymmetric, over the row's own range — and the layer also holds an
/// [`Int8Tensor::RowSum`] for that row's zero point. Their `act_quant` rows stay in the pack, as
/// the reference scale of `acc_bias`.
pub fn is_class_path_linear(id: TensorId) -> bool {
    use BlockParam::*;
    matches!(
        id,
        TensorId::TokenBlock(_, QWeight | ProjWeight | Fc1Weight | Fc2Weight)
            | TensorId::HeadWeight
    )
}

/// Whether `id` is the weight of a linear layer whose input rows [`META_ACTIVATION_SCALES`] `dynamic`
/// quantizes at run time: every block's `qkv` (`q`, `k`, `v`), `proj`, `fc1` and `fc2`, and the
/// `head`: every linear layer but the patch embedding. Such a layer also holds an
/// [`Int8Tensor::RowSum`], as the class-path layers do ([`is_class_path_linear`]).
pub fn is_block_linear(id: TensorId) -> bool {
    use BlockParam::*;
    matches!(
        id,
        TensorId::Block(_, QkvWeight | ProjWeight | Fc1Weight | Fc2Weight)
            | TensorId::TokenBlock(
                _,
                QWeight | KWeight | VWeight | ProjWeight | Fc1Weight | Fc2Weight
            )
            | TensorId::HeadWeight
    )
}

/// A block of an int8 pack that mixed precision kept in f16: its linear weights are f16 and it
/// holds exactly an f16 pack's tensors for that block (LayerScale and biases separate, nothing
/// folded, no `act_quant`), so the engine runs it as it runs an f16 pack. The dtype of the block's
/// first weight (`attn.qkv`, or `attn.q` in a class-attention block) says which: nothing else
/// records it, so the record cannot disagree with the weights.
pub fn is_f16_block(pack: &Pack<'_>, token_only: bool, index: u32) -> bool {
    let id = if token_only {
        TensorId::TokenBlock(index, BlockParam::QWeight)
    } else {
        TensorId::Block(index, BlockParam::QkvWeight)
    };
    pack.tensor(id).is_ok_and(|t| t.dtype == DType::F16)
}

/// The blocks of an int8 pack kept in f16 ([`is_f16_block`]), as `(token_only, index)`, the
/// self-attention blocks first. Empty for every other pack.
pub fn f16_blocks<'p>(pack: &'p Pack<'_>) -> impl Iterator<Item = (bool, u32)> + 'p {
    let cfg = pack.config();
    let int8 = pack.precision() == crate::Precision::Int8;
    let sa = (0..cfg.depth).map(|i| (false, i));
    let ca = (0..cfg.depth_token_only).map(|i| (true, i));
    sa.chain(ca)
        .filter(move |&(t, i)| int8 && is_f16_block(pack, t, i))
}

/// A tensor only int8 packs hold. `Display` writes its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Int8Tensor {
    /// `<layer>.weight_scale`, f32 `[out]`: the per-output-channel scales of the int8 weight `id`
    /// (`<layer>.weight`), which links to it with `Quant::PerChannel { axis: 0, .. }`.
    WeightScale(TensorId),
    /// `<layer>.acc_bias`, i32 `[out]`: the bias of weight `id`'s layer in accumulator units
    /// (`real = input_scale · weight_scale[o] · acc_bias[o]`), with the input's zero point folded
    /// in (`- zero_point · Σ_j weight[o, j]`).
    AccBias(TensorId),
    /// `<layer>.row_sum`, i32 `[out]`: `Σ_j weight[o, j]` of the int8 weight `id`, for the
    /// zero point of an input quantized at run time (class-path layers of a pack whose
    /// [`META_CLASS_PATH`] is `dynamic`, every layer but the patch embedding of one whose
    /// [`META_ACTIVATION_SCALES`] is).
    RowSum(TensorId),
    /// `blocks.{i}.act_quant` (or `blocks_token_only.{i}.act_quant` when `token_only`), f32
    /// `[act::ROWS, 2]`: `(scale, zero_point)` of each activation, rows as in [`act`].
    BlockActQuant {
        /// A class-attention block.
        token_only: bool,
        /// Block index.
        index: u32,
    },
    /// `patch_embed.act_quant`, f32 `[1, 2]`: the input image's `(scale, zero_point)`.
    PatchEmbedActQuant,
    /// `head.act_quant`, f32 `[1, 2]`: the head input's `(scale, zero_point)`.
    HeadActQuant,
    /// `norm.smooth`, f32 `[2, D]`: the per-channel smoothing folded into the final norm, `(scale,
    /// shift)` per channel, so the true features are `smoothed · scale + shift`.
    NormSmooth,
}

impl fmt::Display for Int8Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layer = |f: &mut fmt::Formatter<'_>, id: &TensorId, suffix: &str| {
            // `<layer>.weight` → `<layer>.<suffix>` (every key fits a NameBuf).
            let key = NameBuf::of(id).ok_or(fmt::Error)?;
            let key = key.as_str();
            write!(f, "{}.{suffix}", key.strip_suffix(".weight").unwrap_or(key))
        };
        match self {
            Int8Tensor::WeightScale(id) => layer(f, id, "weight_scale"),
            Int8Tensor::AccBias(id) => layer(f, id, "acc_bias"),
            Int8Tensor::RowSum(id) => layer(f, id, "row_sum"),
            Int8Tensor::BlockActQuant {
                token_only: false,
                index,
            } => write!(f, "blocks.{index}.act_quant"),
            Int8Tensor::BlockActQuant {
                token_only: true,
                index,
            } => write!(f, "blocks_token_only.{index}.act_quant"),
            Int8Tensor::PatchEmbedActQuant => f.write_str("patch_embed.act_quant"),
            Int8Tensor::HeadActQuant => f.write_str("head.act_quant"),
            Int8Tensor::NormSmooth => f.write_str("norm.smooth"),
        }
    }
}

/// A name built without allocating (for lookups on devices): `Display` output of up to 96 bytes.
#[derive(Clone, Copy)]
pub struct NameBuf {
    bytes: [u8; 96],
    len: usize,
}

impl NameBuf {
    /// `value`'s `Display` output, or `None` if it is longer than 96 bytes.
    pub fn of(value: &impl fmt::Display) -> Option<NameBuf> {
        let mut n = NameBuf {
            bytes: [0; 96],
            len: 0,
        };
        fmt::write(&mut n, format_args!("{value}")).ok()?;
        Some(n)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for NameBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlockParam;

    #[test]
    fn names() {
        let cases = [
            (
                Int8Tensor::AccBias(TensorId::Block(3, BlockParam::QkvWeight)),
                "blocks.3.attn.qkv.acc_bias",
            ),
            (
                Int8Tensor::WeightScale(TensorId::TokenBlock(1, BlockParam::Fc2Weight)),
                "blocks_token_only.1.mlp.fc2.weight_scale",
            ),
            (
                Int8Tensor::AccBias(TensorId::PatchEmbedWeight),
                "patch_embed.proj.acc_bias",
            ),
            (
                Int8Tensor::WeightScale(TensorId::HeadWeight),
                "head.weight_scale",
            ),
            (
                Int8Tensor::BlockActQuant {
                    token_only: true,
                    index: 0,
                },
                "blocks_token_only.0.act_quant",
            ),
            (Int8Tensor::NormSmooth, "norm.smooth"),
            (
                Int8Tensor::RowSum(TensorId::TokenBlock(0, BlockParam::Fc1Weight)),
                "blocks_token_only.0.mlp.fc1.row_sum",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(t.to_string(), want);
            assert_eq!(NameBuf::of(&t).unwrap().as_str(), want);
        }
    }
}
