//! Observing the activations a forward pass computes (calibration and error reports).
//!
//! A [`Probe`] passed to [`Model::forward_with_probe`](crate::Model::forward_with_probe) is shown, as they are made,
//! the values at every point where an int8 pack quantizes an activation, plus each stage's output.
//! The f32/f16 engine shows f32 values; the int8 engine shows what it actually feeds to the next
//! matmul (int8 with its scale and zero point, or f32 where the pack keeps f32). Both engines report
//! the same points in the same order of tokens, so concatenating the values of one [`Tap`] gives
//! arrays that can be compared element by element — how `cait quantize` calibrates (on the float
//! engine) and measures per-layer error (int8 against float).
//!
//! Values are in the engine's own domain: in an int8 pack with per-channel smoothing folded into a
//! LayerNorm, the normalised activations are the smoothed ones (the quantizer knows the factors).

/// A stage of the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Site {
    /// The patch embedding.
    PatchEmbed,
    /// Self-attention (talking-heads) block `i`.
    Block(u32),
    /// Class-attention block `i`.
    TokenBlock(u32),
    /// Final norm, pooling and head.
    Head,
}

/// A point inside a [`Site`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Point {
    /// The input of the stage's first matmul: im2col'd patches (`C·p²` per token) for the patch
    /// embedding, the pooled normalised features (`D`) for the head.
    Input,
    /// `norm1` output, the q/k/v input (`D` per token; class attention: all `N + 1` tokens).
    Norm1,
    /// Scaled queries, `D` per query row (class attention: the class token only).
    Q,
    /// Keys of every token, reported once per block **transposed**: `D` rows of `n` keys.
    K,
    /// Values of every token, reported once per block: `n` rows of `D`.
    V,
    /// The attention weights that multiply the values, one query row at a time: `H` rows of `n`
    /// (talking heads: after `proj_w`; class attention: the softmax).
    Attention,
    /// Attention output, the `proj` input (`D` per query row).
    AttentionOut,
    /// `norm2` output, the `fc1` input (`D` per token).
    Norm2,
    /// GELU output, the `fc2` input (`hidden` per token).
    Hidden,
    /// The stage's result: tokens after the patch embedding (`N` rows of `D`), after a
    /// self-attention block (`N` rows of `D`), the class token after a class-attention block (`D`),
    /// or the logits for the head.
    Output,
}

/// A point of the network: [`Site`] and [`Point`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Tap {
    /// The stage.
    pub site: Site,
    /// The point in it.
    pub point: Point,
}

/// Activation values as the engine holds them.
#[derive(Clone, Copy, Debug)]
pub enum Values<'v> {
    /// Plain f32.
    F32(&'v [f32]),
    /// int8, `real = scale * (q - zero_point)`.
    I8 {
        /// The quantized values.
        data: &'v [i8],
        /// Scale.
        scale: f32,
        /// Zero point.
        zero_point: i32,
    },
}

impl Values<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::I8 { data, .. } => data.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as a real number.
    pub fn get(&self, i: usize) -> f32 {
        match *self {
            Values::F32(v) => v[i],
            Values::I8 {
                data,
                scale,
                zero_point,
            } => scale * (i32::from(data[i]) - zero_point) as f32,
        }
    }
}

/// Receives activations during a forward pass (see the [module docs](self)).
pub trait Probe {
    /// `values` at `tap`, `width` values per row (rows in token order; see [`Point`]).
    fn observe(&mut self, tap: Tap, width: usize, values: Values<'_>);
}

/// A probe that may be absent, reborrowable stage after stage.
pub(crate) struct MaybeProbe<'p>(pub(crate) Option<&'p mut dyn Probe>);

impl MaybeProbe<'_> {
    /// Whether there is a probe to report to.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.0.is_some()
    }

    #[inline]
    pub(crate) fn f32(&mut self, site: Site, point: Point, width: usize, values: &[f32]) {
        if let Some(p) = self.0.as_deref_mut() {
            p.observe(Tap { site, point }, width, Values::F32(values));
        }
    }

    #[inline]
    pub(crate) fn i8(
        &mut self,
        site: Site,
        point: Point,
        width: usize,
        data: &[i8],
        q: crate::kernels::int8::ActQuant,
    ) {
        if let Some(p) = self.0.as_deref_mut() {
            p.observe(
                Tap { site, point },
                width,
                Values::I8 {
                    data,
                    scale: q.scale,
                    zero_point: q.zero_point,
                },
            );
        }
    }
}
