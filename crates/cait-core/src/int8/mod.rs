//! The int8 engine: runs int8 packs (`Precision::Int8`).
//!
//! What is int8 and what stays f32 (every choice is recorded in the pack by the quantizer):
//! - **int8, `i32` accumulation**: every linear layer (patch embedding, q/k/v, proj, fc1, fc2, head)
//!   with per-output-channel symmetric weights and a static per-tensor input scale and zero point;
//!   q·kᵀ and attention·v when the pack's `quant.qk` / `quant.av` say `int8`. The class-token
//!   path's layers (class-attention q, proj, fc1, fc2; the head) take one row per image: when the
//!   pack's `quant.class_path` is `dynamic` that row is quantized at run time over its own range
//!   (`ActQuant::of_row`, `QLinear::forward_rows`), the calibrated row staying the unit of the
//!   bias. When `quant.activation_scales` is `dynamic`, every activation but the patch
//!   embedding's input is quantized at run time, as ONNX Runtime's dynamic quantization does per
//!   tensor, here per row: each linear layer's input rows over their own range, the fc1 and fc2
//!   outputs through f32 rows (`crate::workspace`); each query, key and value row symmetric over
//!   its own range, its scale kept beside it; the int8 attention weights of each head, scaled by
//!   their values' scales (`attention::weighted_values`). The calibrated scales stay the unit of
//!   the biases.
//! - **int8 storage**: the keys and values of the attention (the largest activations after the
//!   residual stream), whatever the q·kᵀ / attention·v modes: with the calibrated scales, or each
//!   token with its own (dynamic activation scales).
//! - **f32**: the residual stream, LayerNorm, softmax, GELU (on a rational `erf`, see
//!   `kernels::gelu::gelu_rational`), the talking-heads mixes and the logits.
//!   Requantization is f32 (`(acc + bias) · (s_in · s_w[o])`, then round-half-even into int8), which
//!   every supported target computes identically (no FMA contraction, no `std` math).
//!
//! LayerScale is folded into the preceding projection's weights (`proj`, `fc2`), and per-channel
//! smoothing into the LayerNorms' affine parameters, by the quantizer: the engine just runs what
//! the pack holds. Tensor names are in `cait_pack::int8`.
//!
//! A mixed pack keeps some blocks in f16 (`cait_pack::int8::is_f16_block`): those run the float
//! engine's block code on the f32 layout of the scratch, the residual stream passing between the
//! two engines unchanged (it is f32 in both).

mod attention;
mod blocks;
#[cfg(test)]
mod tests;

#[cfg(all(feature = "std", target_arch = "x86_64"))]
use crate::kernels::gelu::gelu_rational;
use cait_pack::int8::{self as names, Int8Tensor, NameBuf, act};
use cait_pack::{ErrorName, Pack, PackError, Quant, Shape, TensorId, TensorView};

pub(crate) use blocks::{Stages, Stem, check_block};

use crate::Error;
use crate::blocks::Resolver;
use crate::kernels::int8::{self as k8, ActQuant, MAX_REDUCTION};

/// How the attention's two matmuls run (the pack's `quant.qk` / `quant.av`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Modes {
    /// q·kᵀ on int8 queries and keys (else f32 queries against the dequantized int8 keys).
    pub(crate) qk_int8: bool,
    /// attention·v on int8 weights and values (else f32 weights against the dequantized values).
    pub(crate) av_int8: bool,
    /// The class-token path's input rows quantized at run time (`quant.class_path` `dynamic`, see
    /// [`cait_pack::int8::is_class_path_linear`]; implied by `rows_dynamic`).
    pub(crate) class_dynamic: bool,
    /// Every block linear layer's input rows quantized at run time (`quant.activation_scales`
    /// `dynamic`, see [`cait_pack::int8::is_block_linear`]).
    pub(crate) rows_dynamic: bool,
}

impl Modes {
    pub(crate) fn from_pack(pack: &Pack<'_>) -> Result<Modes, Error> {
        let mode = |key: &'static str| match pack.metadata().get(key) {
            Some("int8") => Ok(true),
            Some("f32") => Ok(false),
            _ => Err(Error::BadMetadata { key }),
        };
        // `static` unless the key says `dynamic`.
        let run_time = |key: &'static str| match pack.metadata().get(key) {
            None | Some("static") => Ok(false),
            Some("dynamic") => Ok(true),
            Some(_) => Err(Error::BadMetadata { key }),
        };
        let rows_dynamic = run_time(names::META_ACTIVATION_SCALES)?;
        match (rows_dynamic, STATIC_SCALES, DYNAMIC_SCALES) {
            (false, false, _) => return Err(not_built_in("int8-static")),
            (true, _, false) => return Err(not_built_in("int8-dynamic")),
            _ => {}
        }
        Ok(Modes {
            qk_int8: mode(names::META_QK)?,
            av_int8: mode(names::META_AV)?,
            class_dynamic: run_time(names::META_CLASS_PATH)? || rows_dynamic,
            rows_dynamic,
        })
    }
}

/// Whether this build runs int8 packs with static activation scales (cargo feature `int8-static`)
/// and with dynamic ones (`int8-dynamic`; `int8` is both). With one kind left out, whether rows are
/// quantized at run time is known when compiling ([`rows_dynamic`], [`at_run_time`]), so the other
/// kind's code folds away and is not linked: in the bundled model's firmware, the static layers'
/// kernels and epilogues.
const STATIC_SCALES: bool = cfg!(feature = "int8-static");
const DYNAMIC_SCALES: bool = cfg!(feature = "int8-dynamic");

fn not_built_in(feature: &'static str) -> Error {
    Error::NotBuiltIn {
        precision: cait_pack::Precision::Int8,
        feature,
    }
}

/// `flag`, the pack's `quant.activation_scales` is `dynamic`, as this build can hold it: a
/// constant when one kind of scales is left out (`Modes::from_pack` refused the other).
#[inline(always)]
pub(crate) fn rows_dynamic(flag: bool) -> bool {
    match (STATIC_SCALES, DYNAMIC_SCALES) {
        (false, _) => true,
        (true, false) => false,
        (true, true) => flag,
    }
}

/// `flag`, some rows of a layer are quantized at run time (the pack's activations or its class
/// path are `dynamic`), as this build can hold it: always when only dynamic scales are built in.
#[inline(always)]
pub(crate) fn at_run_time(flag: bool) -> bool {
    !STATIC_SCALES || flag
}

/// An int8 linear layer, borrowed from the pack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QLinear<'a> {
    /// `[out, in]` int8, symmetric per output channel.
    weight: &'a [i8],
    /// `[out]`: `real weight = weight_scale[o] · weight[o, j]`.
    weight_scale: &'a [f32],
    /// `[out]` in accumulator units, input zero point folded in.
    bias: &'a [i32],
    /// `[out]`: `Σ_j weight[o, j]`, for an input quantized at run time; empty otherwise.
    row_sum: &'a [i32],
    in_features: usize,
}

impl<'a> QLinear<'a> {
    /// Output features.
    pub(crate) fn out_features(&self) -> usize {
        self.bias.len()
    }

    /// The layer restricted to output features `start..start + len` (timm's fused qkv).
    pub(crate) fn output_rows(&self, start: usize, len: usize) -> QLinear<'a> {
        let k = self.in_features;
        QLinear {
            weight: &self.weight[start * k..(start + len) * k],
            weight_scale: &self.weight_scale[start..start + len],
            bias: &self.bias[start..start + len],
            row_sum: self.row_sum.get(start..start + len).unwrap_or_default(),
            in_features: k,
        }
    }

    /// For every `in_features`-wide row `t` of `x` (int8 with scale `input_scale`) and output `o`:
    /// `emit(t, o, y)`, `y = (acc + bias[o]) · (input_scale · weight_scale[o])` in f32, `acc` the
    /// exact `i32` dot product. Outputs come in an unspecified order; each exactly once.
    #[inline]
    pub(crate) fn forward(
        &self,
        x: &[i8],
        input_scale: f32,
        emit: &mut impl FnMut(usize, usize, f32),
    ) {
        let (scale, bias) = (self.weight_scale, self.bias);
        k8::linear(x, self.weight, self.in_features, &mut |t, o, acc| {
            emit(t, o, Self::output(acc, bias[o], input_scale, scale[o]))
        });
    }

    /// `out[t·W + o] = q.quantize(gelu(y))` (the self-attention blocks' fc1) on x86-64 hosts with
    /// AVX2: see [`forward_each_avx2`](Self::forward_each_avx2).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    pub(crate) fn forward_gelu_quantized_avx2(
        &self,
        x: &[i8],
        input_scale: f32,
        q: ActQuant,
        out: &mut [i8],
    ) -> bool {
        self.forward_each_avx2(x, input_scale, out, |o, y| {
            *o = q.quantize(gelu_rational(y))
        })
    }

    /// [`forward_quantized`](Self::forward_quantized) on x86-64 hosts with AVX2: see
    /// [`forward_each_avx2`](Self::forward_each_avx2).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    pub(crate) fn forward_quantized_avx2(
        &self,
        x: &[i8],
        input_scale: f32,
        q: ActQuant,
        out: &mut [i8],
    ) -> bool {
        self.forward_each_avx2(x, input_scale, out, |o, y| *o = q.quantize(y))
    }

    /// [`forward_add`](Self::forward_add) on x86-64 hosts with AVX2: see
    /// [`forward_each_avx2`](Self::forward_each_avx2).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    pub(crate) fn forward_add_avx2(&self, x: &[i8], input_scale: f32, out: &mut [f32]) -> bool {
        self.forward_each_avx2(x, input_scale, out, |o, y| *o += y)
    }

    /// x86-64 hosts with AVX2: [`forward`](Self::forward) with `store(&mut out[t·W + o], y)`
    /// applied to whole rows in an AVX2 loop instead of to one output at a time: the matmul's sums
    /// of four rows go to a buffer on the stack, then [`rows_avx2`](Self::rows_avx2) runs the
    /// scalar epilogue's operations over them lane by lane, so the same bits, eight lanes at a
    /// time (at cait_xxs24_224's shape the scalar epilogues were about half of these layers'
    /// time). `false`, having done nothing, without AVX2 or when four rows of `W` sums do not fit
    /// the buffer.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[allow(unsafe_code)] // The call into the AVX2 build after run-time detection.
    fn forward_each_avx2<T>(
        &self,
        x: &[i8],
        input_scale: f32,
        out: &mut [T],
        store: impl Fn(&mut T, f32) + Copy,
    ) -> bool {
        const ROWS: usize = 4;
        const SUMS: usize = 4096;
        let (w, k) = (self.bias.len(), self.in_features);
        if !crate::kernels::x86::avx2() || w == 0 || k == 0 || ROWS * w > SUMS {
            return false;
        }
        let mut sums = [0i32; SUMS];
        for (xs, outs) in x.chunks(ROWS * k).zip(out.chunks_mut(ROWS * w)) {
            let sums = &mut sums[..xs.len() / k * w];
            k8::linear(xs, self.weight, k, &mut |t, o, acc| sums[t * w + o] = acc);
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { self.rows_avx2(sums, input_scale, outs, store) };
        }
        true
    }

    /// `store(&mut out[t·W + o], y)` for the rows of `W` sums in `sums`, compiled for AVX2 (with
    /// `store` inlined into the loop, which LLVM vectorizes).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[target_feature(enable = "avx2")]
    #[inline]
    fn rows_avx2<T>(
        &self,
        sums: &[i32],
        input_scale: f32,
        out: &mut [T],
        store: impl Fn(&mut T, f32),
    ) {
        let w = self.bias.len();
        for (row, outs) in sums.chunks_exact(w).zip(out.chunks_exact_mut(w)) {
            for (((o, &acc), &bias), &scale) in outs
                .iter_mut()
                .zip(row)
                .zip(self.bias)
                .zip(self.weight_scale)
            {
                store(o, Self::output(acc, bias, input_scale, scale));
            }
        }
    }

    /// `y = (acc + bias) · (input_scale · weight_scale)`: one output of [`forward`](Self::forward).
    #[inline(always)]
    fn output(acc: i32, bias: i32, input_scale: f32, weight_scale: f32) -> f32 {
        acc.saturating_add(bias) as f32 * (input_scale * weight_scale)
    }

    // The epilogues below, each kept out of line, are how the engine calls `forward` (but for the
    // self-attention blocks' fc1): one instance of the matmul kernel per kind of epilogue instead
    // of one per call site (the kernel is generic over `emit`): on the bundled model's int8
    // firmware about 22 KB less code, and no more instructions. Output `(t, o)` goes to `t·W + o`
    // (`W` the layer's outputs): row-major over the input rows.

    /// `out[t·W + o] += y`: the residual adds (`proj`, `fc2`; LayerScale folded).
    #[inline(never)]
    pub(crate) fn forward_add(&self, x: &[i8], input_scale: f32, out: &mut [f32]) {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if self.forward_add_avx2(x, input_scale, out) {
            return;
        }
        let w = self.bias.len();
        self.forward(x, input_scale, &mut |t, o, y| out[t * w + o] += y);
    }

    /// `out[t·W + o] = y`.
    #[inline(never)]
    pub(crate) fn forward_store(&self, x: &[i8], input_scale: f32, out: &mut [f32]) {
        let w = self.bias.len();
        self.forward(x, input_scale, &mut |t, o, y| out[t * w + o] = y);
    }

    /// `out[t·W + o] = q.quantize(y)`: keys, int8 queries.
    #[inline(never)]
    pub(crate) fn forward_quantized(
        &self,
        x: &[i8],
        input_scale: f32,
        q: ActQuant,
        out: &mut [i8],
    ) {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if self.forward_quantized_avx2(x, input_scale, q, out) {
            return;
        }
        let w = self.bias.len();
        self.forward(x, input_scale, &mut |t, o, y| {
            out[t * w + o] = q.quantize(y)
        });
    }

    /// `out[o·stride + t] = q.quantize(y)`: the values, stored transposed.
    #[inline(never)]
    pub(crate) fn forward_quantized_transposed(
        &self,
        x: &[i8],
        input_scale: f32,
        q: ActQuant,
        out: &mut [i8],
        stride: usize,
    ) {
        self.forward(x, input_scale, &mut |t, o, y| {
            out[o * stride + t] = q.quantize(y)
        });
    }

    /// The rows of `x` (`rows.len()` of them), row `t` quantized at run time by `rows[t]`,
    /// against the layer's `acc_bias` in units of `reference` (its calibrated input
    /// quantization): `out[t·W + o] = weight_scale[o] · (rows[t].scale · (acc -
    /// rows[t].zero_point · row_sum[o]) + reference.scale · (acc_bias[o] + reference.zero_point ·
    /// row_sum[o]))`, the integer parts saturating. A layer resolved without row sums (see
    /// [`Int8Resolver::linear_with_row_sums`]) writes nothing. One instance of the kernel for
    /// every call site: the residual adds and requantizations that follow run over `out`.
    #[inline(never)]
    pub(crate) fn forward_rows(
        &self,
        x: &[i8],
        rows: &[ActQuant],
        reference: &ActQuant,
        out: &mut [f32],
    ) {
        let (scale, bias, sums) = (self.weight_scale, self.bias, self.row_sum);
        if sums.len() != bias.len() {
            return;
        }
        let (k, w) = (self.in_features, bias.len());
        let x = x.get(..rows.len() * k).unwrap_or_default();
        k8::linear(x, self.weight, k, &mut |t, o, acc| {
            let (Some(row), Some(y)) = (rows.get(t), out.get_mut(t * w + o)) else {
                return;
            };
            let sum = sums[o];
            let acc = acc.saturating_sub(row.zero_point.saturating_mul(sum));
            let b = bias[o].saturating_add(reference.zero_point.saturating_mul(sum));
            *y = (acc as f32 * row.scale + b as f32 * reference.scale) * scale[o];
        });
    }
}

/// Looks the int8 tensors up (see [`cait_pack::int8`]).
pub(crate) struct Int8Resolver<'r, 'p, 'a> {
    pub(crate) r: &'r Resolver<'p, 'a>,
}

impl<'a> Int8Resolver<'_, '_, 'a> {
    fn view(&self, t: Int8Tensor) -> Result<TensorView<'a>, Error> {
        // Every int8 tensor name fits a NameBuf (the longest is 52 bytes of its 96).
        let name = NameBuf::of(&t).ok_or(Error::MissingInt8Tensor(t))?;
        self.r
            .pack
            .tensor_by_name(name.as_str())
            .ok_or(Error::MissingInt8Tensor(t))
    }

    fn shaped(&self, t: Int8Tensor, dims: &[u32]) -> Result<TensorView<'a>, Error> {
        let view = self.view(t)?;
        let expected = Shape::new(dims);
        if view.shape != expected {
            return Err(PackError::ShapeMismatch {
                name: ErrorName::unindexed(view.name),
                expected,
                found: view.shape,
            }
            .into());
        }
        Ok(view)
    }

    /// `rows` activation quantizations `(scale, zero_point)` from an `[rows, 2]` f32 tensor.
    pub(crate) fn act_quant<const N: usize>(&self, t: Int8Tensor) -> Result<[ActQuant; N], Error> {
        let data = self.shaped(t, &[N as u32, 2])?.as_f32()?;
        let mut out = [ActQuant::UNIT; N];
        for (row, (o, pair)) in out.iter_mut().zip(data.chunks_exact(2)).enumerate() {
            *o = ActQuant::new(pair[0], pair[1])
                .ok_or(Error::BadActivationQuant { tensor: t, row })?;
        }
        Ok(out)
    }

    /// An int8 linear layer: `weight` (shape from the config, int8, per-output-channel scales) and
    /// its `acc_bias`.
    pub(crate) fn linear(&self, weight: TensorId) -> Result<QLinear<'a>, Error> {
        let w = self.r.i8(weight)?;
        let view = self.r.pack.tensor(weight)?;
        let out = view.shape.dims().first().map_or(0, |&o| o as usize);
        let in_features = w.len().checked_div(out).unwrap_or(0);
        if in_features > MAX_REDUCTION {
            return Err(Error::ReductionTooLong {
                length: in_features,
            });
        }
        let weight_scale = match view.quant {
            // Pack::parse checked that the scales tensor is f32, `out` long, finite and > 0.
            Quant::PerChannel { axis: 0, scales } => self
                .r
                .pack
                .tensor_at(scales as usize)
                .ok_or_else(|| Error::NotPerChannel(ErrorName::unindexed(view.name)))?
                .as_f32()?,
            _ => return Err(Error::NotPerChannel(ErrorName::unindexed(view.name))),
        };
        let bias = self
            .shaped(Int8Tensor::AccBias(weight), &[out as u32])?
            .as_i32()?;
        if weight_scale.len() != out || bias.len() != out || in_features == 0 {
            return Err(Error::NotPerChannel(ErrorName::unindexed(view.name)));
        }
        Ok(QLinear {
            weight: w,
            weight_scale,
            bias,
            row_sum: &[],
            in_features,
        })
    }

    /// [`linear`](Self::linear) with its `row_sum`, for an input quantized at run time.
    pub(crate) fn linear_with_row_sums(&self, weight: TensorId) -> Result<QLinear<'a>, Error> {
        let layer = self.linear(weight)?;
        let out = layer.bias.len() as u32;
        let row_sum = self.shaped(Int8Tensor::RowSum(weight), &[out])?.as_i32()?;
        Ok(QLinear { row_sum, ..layer })
    }

    /// [`linear_with_row_sums`](Self::linear_with_row_sums) when `run_time` (its input rows are
    /// quantized at run time), else [`linear`](Self::linear).
    pub(crate) fn linear_for(
        &self,
        weight: TensorId,
        run_time: bool,
    ) -> Result<QLinear<'a>, Error> {
        if run_time {
            self.linear_with_row_sums(weight)
        } else {
            self.linear(weight)
        }
    }

    /// `norm.smooth` `[2, D]`: per-channel scale and shift.
    pub(crate) fn norm_smooth(&self, d: usize) -> Result<(&'a [f32], &'a [f32]), Error> {
        let data = self
            .shaped(Int8Tensor::NormSmooth, &[2, d as u32])?
            .as_f32()?;
        Ok(data.split_at(d))
    }
}

/// Rows of a block's activation table.
pub(crate) type BlockActs = [ActQuant; act::ROWS];
