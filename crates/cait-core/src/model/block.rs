//! CaiT's blocks, written once over a precision backend: timm's `LayerScaleBlock` with
//! `TalkingHeadAttn`, `LayerScaleBlockClassAttn` with `ClassAttn`, and `Mlp`, each behind its
//! LayerScale residual.
//!
//! A backend — the float engine's f32/f16 layers (`crate::blocks`) or the int8 engine's
//! (`crate::int8::blocks`) — implements [`Attention`] and [`Mlp`]: how each layer runs in its
//! precision and where its activations live in the scratch (`crate::workspace`'s tables). The
//! order of the layers, the passes over the tokens and what the probe sees at each point are
//! written here, once.

use crate::attention::{AttentionSink, TalkingHeads};
use crate::blocks::{Dims, class_attention_input};
use crate::probe::{MaybeProbe, Point, Site};
use crate::workspace::{rows_that_fit, take};

/// A block's attention branch in one precision: `norm1`, `q`/`k`/`v`, the attention of one query
/// row, and `proj` with LayerScale (`gamma_1`) into the residual stream.
pub(crate) trait Attention {
    /// The backend's view of the attention scratch: keys and values of every token, the input,
    /// query and output tiles (up to `Dims::rows` rows each) and one query row's buffers.
    type Scratch<'w>;

    /// Splits `scratch` for `tokens` keys.
    fn scratch<'w>(&self, scratch: &'w mut [u8], dims: &Dims, tokens: usize) -> Self::Scratch<'w>;

    /// `norm1` of `rows` into the input tile (reported as [`Point::Norm1`]), then their keys and
    /// values, stored as tokens `first..` of the scratch's keys and values.
    fn keys_values<'x>(
        &self,
        s: &mut Self::Scratch<'_>,
        rows: impl ExactSizeIterator<Item = &'x [f32]>,
        first: usize,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    );

    /// Reports every key ([`Point::K`]: `D` rows of one feature of every token) and value
    /// ([`Point::V`]: one row of `D` per token).
    fn report_keys_values(&self, s: &mut Self::Scratch<'_>, site: Site, probe: &mut MaybeProbe<'_>);

    /// The queries of the rows `x`: `q(norm1(x))`, scaled by `head_dim^-0.5`, into the query tile
    /// (reported as [`Point::Q`]).
    fn queries(&self, s: &mut Self::Scratch<'_>, x: &[f32], site: Site, probe: &mut MaybeProbe<'_>);

    /// Talking-heads attention of query row `j` (timm `TalkingHeadAttn`: logits `q·kᵀ`, `proj_l`,
    /// softmax, `proj_w`, `· v`) into output row `j`; the weights that multiplied the values are
    /// reported as [`Point::Attention`].
    fn talking_heads(
        &self,
        s: &mut Self::Scratch<'_>,
        mix: &TalkingHeads<'_>,
        j: usize,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    );

    /// Class attention (timm `ClassAttn`: plain softmax) of query row 0 into output row 0; each
    /// head's softmax row goes to `sink` as `(block, head, row)` and all of them to the probe
    /// ([`Point::Attention`]).
    fn class_attention(
        &self,
        s: &mut Self::Scratch<'_>,
        block: usize,
        sink: Option<&mut dyn AttentionSink>,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    );

    /// Reports the output rows ([`Point::AttentionOut`], one per `D` values of `residual`), then
    /// `residual += gamma_1 · proj(out)`.
    fn project(
        &self,
        s: &mut Self::Scratch<'_>,
        residual: &mut [f32],
        site: Site,
        probe: &mut MaybeProbe<'_>,
    );
}

/// A block's MLP branch in one precision: `norm2`, `fc1` with GELU, `fc2` with LayerScale
/// (`gamma_2`) into the residual stream.
pub(crate) trait Mlp {
    /// Elements of the activations between the layers (`f32`, or `i8` in int8 packs).
    type Act: bytemuck::Pod;

    /// `out = norm2(x)`, row by row (`D` wide).
    fn norm(&self, x: &[f32], out: &mut [Self::Act]);

    /// `out = gelu(fc1(x))`, rows of the hidden width.
    fn fc1_gelu(&self, x: &[Self::Act], out: &mut [Self::Act]);

    /// `residual += gamma_2 · fc2(x)`.
    fn fc2_residual(&self, x: &[Self::Act], residual: &mut [f32]);

    /// Shows the activation rows `act` (`width` wide) at `point` to the probe.
    fn report(
        &self,
        probe: &mut MaybeProbe<'_>,
        site: Site,
        point: Point,
        width: usize,
        act: &[Self::Act],
    );

    /// `x += gamma_2 · Mlp(norm2(x))` on the `D`-wide rows of `x`: [`mlp`], unless a backend runs
    /// some blocks another way.
    fn forward(
        &self,
        x: &mut [f32],
        scratch: &mut [u8],
        d: usize,
        hidden: usize,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        mlp(self, x, scratch, d, hidden, site, probe);
    }
}

/// `x += gamma_2 · fc2(gelu(fc1(norm2(x))))` on the `D`-wide rows of `x`, as many rows per pass as
/// `scratch` holds (at least one): the MLP of both kinds of block.
pub(crate) fn mlp<M: Mlp + ?Sized>(
    m: &M,
    x: &mut [f32],
    scratch: &mut [u8],
    d: usize,
    hidden: usize,
    site: Site,
    probe: &mut MaybeProbe<'_>,
) {
    let rows = x.len() / d.max(1);
    let per_pass = rows_that_fit::<M::Act>(scratch.len(), &[d, hidden], rows);
    let (normed, rest) = take::<M::Act>(scratch, per_pass * d);
    let (hid, _) = take::<M::Act>(rest, per_pass * hidden);
    for xs in x.chunks_mut(per_pass * d) {
        let count = xs.len() / d;
        let (normed, hid) = (&mut normed[..count * d], &mut hid[..count * hidden]);
        m.norm(xs, normed);
        m.report(probe, site, Point::Norm2, d, normed);
        m.fc1_gelu(normed, hid);
        m.report(probe, site, Point::Hidden, hidden, hid);
        m.fc2_residual(hid, xs);
    }
}

/// `blocks.{i}`: timm `LayerScaleBlock` with `TalkingHeadAttn`, in the precision of `A` and `M`.
pub(crate) struct SelfAttentionBlock<'a, A, M> {
    pub(crate) attn: A,
    /// `attn.proj_l` and `attn.proj_w` (f32 in every pack).
    pub(crate) mix: TalkingHeads<'a>,
    pub(crate) mlp: M,
}

impl<A: Attention, M: Mlp> SelfAttentionBlock<'_, A, M> {
    /// `x += gamma_1 · TalkingHeadAttn(norm1(x)); x += gamma_2 · Mlp(norm2(x))` on the `N × D`
    /// patch tokens.
    pub(crate) fn forward(
        &self,
        x: &mut [f32],
        scratch: &mut [u8],
        dims: &Dims,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        self.attention(x, scratch, dims, site, probe);
        self.mlp
            .forward(x, scratch, dims.d, dims.hidden, site, probe);
        probe.f32(site, Point::Output, dims.d, x);
    }

    // Out of line: LLVM's inlining otherwise follows how many callers the shared kernels have
    // (the int8-only build ran cait_xxs24_224 0.11% slower inlined).
    #[inline(never)]
    fn attention(
        &self,
        x: &mut [f32],
        scratch: &mut [u8],
        dims: &Dims,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let (a, d, rows) = (&self.attn, dims.d, dims.rows);
        let mut s = a.scratch(scratch, dims, dims.n);
        // Keys and values of every token, `rows` tokens per pass.
        for (pass, xs) in x.chunks(rows * d).enumerate() {
            a.keys_values(&mut s, xs.chunks_exact(d), pass * rows, site, probe);
        }
        a.report_keys_values(&mut s, site, probe);
        // Queries, `rows` per pass. Keys and values are already computed from the un-updated
        // tokens, so each pass may add its result into its own tokens at once.
        for xs in x.chunks_mut(rows * d) {
            a.queries(&mut s, xs, site, probe);
            for j in 0..xs.len() / d {
                a.talking_heads(&mut s, &self.mix, j, site, probe);
            }
            a.project(&mut s, xs, site, probe);
        }
    }
}

/// `blocks_token_only.{i}`: timm `LayerScaleBlockClassAttn` with `ClassAttn`, in the precision
/// of `A` and `M`.
pub(crate) struct ClassAttentionBlock<A, M> {
    pub(crate) attn: A,
    pub(crate) mlp: M,
}

impl<A: Attention, M: Mlp> ClassAttentionBlock<A, M> {
    /// With `u = [cls; x]`: `cls += gamma_1 · ClassAttn(norm1(u)); cls += gamma_2 ·
    /// Mlp(norm2(cls))`. The patch tokens `x` are read, never written.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        x: &[f32],
        cls: &mut [f32],
        scratch: &mut [u8],
        dims: &Dims,
        block: usize,
        sink: Option<&mut dyn AttentionSink>,
        probe: &mut MaybeProbe<'_>,
    ) {
        let site = Site::TokenBlock(block as u32);
        let (a, d, rows, tokens) = (&self.attn, dims.d, dims.rows, dims.n + 1);
        {
            let mut s = a.scratch(scratch, dims, tokens);
            // Keys and values of all T = N + 1 tokens of norm1([cls; x]), `rows` per pass.
            for first in (0..tokens).step_by(rows) {
                let count = rows.min(tokens - first);
                let inputs = (first..first + count).map(|t| class_attention_input(cls, x, t));
                a.keys_values(&mut s, inputs, first, site, probe);
            }
            a.report_keys_values(&mut s, site, probe);
            // The query of the class token only.
            a.queries(&mut s, cls, site, probe);
            a.class_attention(&mut s, block, sink, site, probe);
            a.project(&mut s, cls, site, probe);
        }
        let hidden = dims.hidden_token;
        self.mlp.forward(cls, scratch, d, hidden, site, probe);
        probe.f32(site, Point::Output, d, cls);
    }
}
