//! The int8 backend: patch embedding and head, and the attention and MLP branches the blocks of
//! `crate::model::block` run on.
//!
//! The activations that feed a matmul are int8, the residual stream f32. The scratch layout is in
//! `crate::workspace`.

use cait_pack::int8::{Int8Tensor, act};
use cait_pack::{BlockParam, GlobalPool, TensorId};

use super::attention::{self, KeysValues, Query, RowScratch, TokenScales};
use super::{BlockActs, Int8Resolver, Modes, QLinear, at_run_time, rows_dynamic};
use crate::Error;
use crate::attention::{AttentionSink, TalkingHeads};
use crate::blocks::{Dims, block_param, pool};
use crate::input::Image;
use crate::kernels::gelu::gelu_rational;
use crate::kernels::int8::ActQuant;
use crate::kernels::layer_norm::LayerNorm;
use crate::model::block;
use crate::probe::{MaybeProbe, Point, Site};
use crate::workspace::{self, ATTENTION_ROWS, rows_that_fit, take};

/// Stem and head: everything outside the blocks.
#[derive(Clone, Copy)]
pub(crate) struct Stem<'a> {
    cls_token: &'a [f32],
    pos_embed: &'a [f32],
    patch_embed: QLinear<'a>,
    /// Quantization of the (normalised) input image.
    input: ActQuant,
    /// Final norm, smoothing folded in.
    norm: LayerNorm<'a>,
    /// `(scale, shift)` per channel: true features = `smoothed · scale + shift`.
    smooth: (&'a [f32], &'a [f32]),
    head: Option<(QLinear<'a>, ActQuant)>,
    global_pool: GlobalPool,
    pub(crate) modes: Modes,
}

impl<'a> Stem<'a> {
    pub(crate) fn resolve(r: &Int8Resolver<'_, '_, 'a>, modes: Modes) -> Result<Self, Error> {
        let cfg = r.r.cfg;
        let [input] = r.act_quant::<1>(Int8Tensor::PatchEmbedActQuant)?;
        let head = if cfg.num_classes > 0 {
            let [q] = r.act_quant::<1>(Int8Tensor::HeadActQuant)?;
            let head = r.linear_for(TensorId::HeadWeight, modes.class_dynamic)?;
            Some((head, q))
        } else {
            None
        };
        Ok(Stem {
            cls_token: r.r.f32(TensorId::ClsToken)?,
            pos_embed: r.r.f32(TensorId::PosEmbed)?,
            patch_embed: r.linear(TensorId::PatchEmbedWeight)?,
            input,
            norm: LayerNorm {
                weight: r.r.f32(TensorId::NormWeight)?,
                bias: r.r.f32(TensorId::NormBias)?,
            },
            smooth: r.norm_smooth(cfg.embed_dim as usize)?,
            head,
            global_pool: cfg.global_pool,
            modes,
        })
    }
}

/// The scratch region as the int8 attention uses it (see `crate::workspace`).
pub(crate) struct AttentionScratch<'w> {
    /// `T × D`: row `m` holds key `m`.
    keys: &'w mut [i8],
    /// `D × T`: row `c` holds feature `c` of every value (values stored transposed).
    values: &'w mut [i8],
    logits: &'w mut [f32],
    weights: &'w mut [f32],
    probs: &'w mut [i8],
    tile_in: &'w mut [i8],
    /// `R·D` f32 queries, or `R·D` int8 queries in its first bytes.
    tile_q: &'w mut [f32],
    /// One f32 output row.
    row: &'w mut [f32],
    /// The quantized output rows (`proj`'s input).
    tile_out: &'w mut [i8],
    /// `T`: each key's scale, when the keys are quantized at run time.
    key_scales: &'w mut [f32],
    /// `T`: each value's scale, likewise.
    value_scales: &'w mut [f32],
    /// `D`: each value channel's sum over the tokens, likewise.
    value_sums: &'w mut [i32],
    /// The query tile's rows quantized at run time (int8 q·kᵀ): their quantizations.
    q_quants: [ActQuant; ATTENTION_ROWS],
    /// The input tile's rows quantized at run time: their quantizations.
    in_quants: [ActQuant; ATTENTION_ROWS],
    /// The output tile's rows quantized at run time: their quantizations.
    out_quants: [ActQuant; ATTENTION_ROWS],
    /// Keys `T`.
    tokens: usize,
    d: usize,
    head_dim: usize,
}

impl<'w> AttentionScratch<'w> {
    /// Splits `scratch` as [`workspace::int8_attention`] lays it out, for `tokens` keys.
    fn split(scratch: &'w mut [u8], dims: &Dims, tokens: usize) -> AttentionScratch<'w> {
        let (d, h, cap) = (dims.d, dims.heads, dims.n + 1);
        let regions = workspace::int8_attention(cap as u128, d as u128, h as u128);
        let [
            keys,
            values,
            logits,
            weights,
            probs,
            tile_in,
            tile_q,
            row,
            tile_out,
            key_scales,
            value_scales,
            value_sums,
        ] = regions.map(|r| r.count as usize);
        // The element types are the table's (`int8_attention_types_match_the_table` checks).
        let (keys, rest) = take::<i8>(scratch, keys);
        let (values, rest) = take::<i8>(rest, values);
        let (logits, rest) = take::<f32>(rest, logits);
        let (weights, rest) = take::<f32>(rest, weights);
        let (probs, rest) = take::<i8>(rest, probs);
        let (tile_in, rest) = take::<i8>(rest, tile_in);
        let (tile_q, rest) = take::<f32>(rest, tile_q);
        let (row, rest) = take::<f32>(rest, row);
        let (tile_out, rest) = take::<i8>(rest, tile_out);
        let (key_scales, rest) = take::<f32>(rest, key_scales);
        let (value_scales, rest) = take::<f32>(rest, value_scales);
        let (value_sums, _) = take::<i32>(rest, value_sums);
        AttentionScratch {
            keys: &mut keys[..tokens * d],
            values: &mut values[..tokens * d],
            logits: &mut logits[..h * tokens],
            weights: &mut weights[..h * tokens],
            probs: &mut probs[..h * tokens],
            tile_in,
            tile_q,
            row,
            tile_out,
            key_scales: &mut key_scales[..tokens],
            value_scales: &mut value_scales[..tokens],
            value_sums,
            q_quants: [ActQuant::UNIT; ATTENTION_ROWS],
            in_quants: [ActQuant::UNIT; ATTENTION_ROWS],
            out_quants: [ActQuant::UNIT; ATTENTION_ROWS],
            tokens,
            d,
            head_dim: dims.head_dim,
        }
    }
}

/// Computes the queries of the int8 rows `x` (`rows × D`) into `tile_q`: int8 with `act[Q]` when
/// q·kᵀ is int8, else f32. Reports them to the probe.
#[allow(clippy::too_many_arguments)]
fn queries(
    q: &QLinear<'_>,
    x: &[i8],
    input: &ActQuant,
    acts: &BlockActs,
    modes: Modes,
    tile_q: &mut [f32],
    d: usize,
    site: Site,
    probe: &mut MaybeProbe<'_>,
) {
    let len = x.len();
    if modes.qk_int8 {
        let qq = acts[act::Q];
        let tq = &mut bytemuck::cast_slice_mut::<f32, i8>(tile_q)[..len];
        q.forward_quantized(x, input.scale, qq, tq);
        probe.i8(site, Point::Q, d, tq, qq);
    } else {
        let tq = &mut tile_q[..len];
        q.forward_store(x, input.scale, tq);
        probe.f32(site, Point::Q, d, tq);
    }
}

/// [`queries`] for the rows `x` (`rows × D`), row `t` quantized at run time by `rows[t]`
/// (`reference`: the calibrated norm1 quantization, the unit of `q`'s `acc_bias`). For int8
/// q·kᵀ each query row is quantized over its own range too (symmetric when `kv_dynamic`, its
/// quantization into `q_quants`), else with the calibrated `act::Q`; `x` is free once the queries
/// are computed and holds the int8 ones on their way into `tile_q`.
#[allow(clippy::too_many_arguments)]
fn queries_of_rows(
    q: &QLinear<'_>,
    x: &mut [i8],
    rows: &[ActQuant],
    reference: &ActQuant,
    acts: &BlockActs,
    modes: Modes,
    kv_dynamic: bool,
    q_quants: &mut [ActQuant],
    tile_q: &mut [f32],
    d: usize,
    site: Site,
    probe: &mut MaybeProbe<'_>,
) {
    let len = x.len();
    let tq = &mut tile_q[..len];
    q.forward_rows(x, rows, reference, tq);
    if !modes.qk_int8 {
        probe.f32(site, Point::Q, d, tq);
        return;
    }
    if kv_dynamic {
        for ((f, out), qq) in tq
            .chunks_exact(d)
            .zip(x.chunks_exact_mut(d))
            .zip(q_quants.iter_mut())
        {
            *qq = ActQuant::symmetric_of_row(f);
            qq.quantize_slice(f, out);
        }
    } else {
        acts[act::Q].quantize_slice(tq, x);
    }
    let tq = &mut bytemuck::cast_slice_mut::<f32, i8>(tile_q)[..len];
    tq.copy_from_slice(x);
    if kv_dynamic {
        report_rows(probe, site, Point::Q, d, tq, q_quants);
    } else {
        probe.i8(site, Point::Q, d, tq, acts[act::Q]);
    }
}

/// `norm.apply(x)` of each row of `rows` (`D` wide), through the f32 row `buf`, quantized over its
/// own range into the same row of `out`, its quantization into `quants`.
fn norm_rows_at_run_time<'x>(
    norm: &LayerNorm<'_>,
    rows: impl Iterator<Item = &'x [f32]>,
    buf: &mut [f32],
    out: &mut [i8],
    quants: &mut [ActQuant],
) {
    let d = buf.len();
    for ((x, out), q) in rows.zip(out.chunks_exact_mut(d)).zip(quants) {
        norm.apply(x, buf);
        *q = ActQuant::of_row(buf);
        q.quantize_slice(buf, out);
    }
}

/// Reports the `width`-wide rows of `act`, row `t` quantized by `quants[t]`.
fn report_rows(
    probe: &mut MaybeProbe<'_>,
    site: Site,
    point: Point,
    width: usize,
    act: &[i8],
    quants: &[ActQuant],
) {
    if probe.active() {
        for (row, q) in act.chunks_exact(width).zip(quants) {
            probe.i8(site, point, width, row, *q);
        }
    }
}

/// Query row `j` of `tile_q` as [`queries`] left it, int8 with scale `q_scale`.
fn query(tile_q: &[f32], j: usize, d: usize, q_scale: f32, modes: Modes) -> Query<'_> {
    if modes.qk_int8 {
        Query::I8(
            &bytemuck::cast_slice::<f32, i8>(tile_q)[j * d..(j + 1) * d],
            q_scale,
        )
    } else {
        Query::F32(&tile_q[j * d..(j + 1) * d])
    }
}

/// The attention branch of an int8 block (`norm1`, `q`/`k`/`v`, `proj`; LayerScale folded into
/// `proj`).
pub(crate) struct Attention<'a> {
    norm1: LayerNorm<'a>,
    q: QLinear<'a>,
    k: QLinear<'a>,
    v: QLinear<'a>,
    proj: QLinear<'a>,
    acts: BlockActs,
    modes: Modes,
    /// The query rows (norm1) and the attention output rows quantized at run time: every block
    /// of a pack whose activations are `dynamic`, or a class-attention block of one whose class
    /// path is.
    dynamic: bool,
    /// The keys' and values' input rows (norm1 of every token) quantized at run time: a pack whose
    /// activations are `dynamic`.
    kv_dynamic: bool,
}

impl Attention<'_> {
    /// The attention output row `j`, f32 in the scratch's `row`, into row `j` of the output tile:
    /// over its own range when `dynamic` (its quantization into `out_quants[j]`), else with the
    /// calibrated `act::ATTENTION_OUT`.
    fn quantize_output(&self, s: &mut AttentionScratch<'_>, j: usize) {
        let d = s.d;
        let out = &mut s.tile_out[j * d..(j + 1) * d];
        if at_run_time(self.dynamic) {
            let q = ActQuant::of_row(s.row);
            q.quantize_slice(s.row, out);
            s.out_quants[j] = q;
        } else {
            self.acts[act::ATTENTION_OUT].quantize_slice(s.row, out);
        }
    }

    /// The int8 `keys` (`n × D`) and `values` (`D × n`) with their scales: the calibrated ones,
    /// or each token's (`token_scales`) when `kv_dynamic`.
    fn kv<'s>(
        &self,
        keys: &'s [i8],
        values: &'s [i8],
        token_scales: TokenScales<'s>,
        n: usize,
        head_dim: usize,
    ) -> KeysValues<'s> {
        KeysValues {
            keys,
            values,
            key_scale: self.acts[act::K].scale,
            value_scale: self.acts[act::V].scale,
            token_scales: rows_dynamic(self.kv_dynamic).then_some(token_scales),
            n,
            head_dim,
        }
    }

    /// The scale of query row `j`'s int8 form (int8 q·kᵀ).
    fn q_scale(&self, s: &AttentionScratch<'_>, j: usize) -> f32 {
        if rows_dynamic(self.kv_dynamic) {
            s.q_quants[j].scale
        } else {
            self.acts[act::Q].scale
        }
    }

    /// Reports the attention weights that multiplied the values: `weights` (f32 attention·v),
    /// `probs` (int8), or with rows quantized at run time the dequantized int8 weights `spare`
    /// (see [`attention::weighted_values`]).
    fn report_attention(
        &self,
        probe: &mut MaybeProbe<'_>,
        site: Site,
        n: usize,
        (weights, probs, spare): (&[f32], &[i8], &[f32]),
    ) {
        match (self.modes.av_int8, rows_dynamic(self.kv_dynamic)) {
            (true, false) => probe.i8(site, Point::Attention, n, probs, self.acts[act::ATTENTION]),
            (true, true) => probe.f32(site, Point::Attention, n, spare),
            (false, _) => probe.f32(site, Point::Attention, n, weights),
        }
    }
}

impl block::Attention for Attention<'_> {
    type Scratch<'w> = AttentionScratch<'w>;

    fn scratch<'w>(&self, scratch: &'w mut [u8], dims: &Dims, tokens: usize) -> Self::Scratch<'w> {
        AttentionScratch::split(scratch, dims, tokens)
    }

    fn keys_values<'x>(
        &self,
        s: &mut AttentionScratch<'_>,
        rows: impl ExactSizeIterator<Item = &'x [f32]>,
        first: usize,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let (d, tokens) = (s.d, s.tokens);
        let (n1, kq, vq) = (self.acts[act::NORM1], self.acts[act::K], self.acts[act::V]);
        let count = rows.len();
        let tile = &mut s.tile_in[..count * d];
        let (keys, values) = (&mut s.keys[first * d..], &mut s.values[first..]);
        if rows_dynamic(self.kv_dynamic) {
            let quants = &mut s.in_quants[..count];
            norm_rows_at_run_time(&self.norm1, rows, s.row, tile, quants);
            report_rows(probe, site, Point::Norm1, d, tile, quants);
            // The query tile is free until the queries: f32 keys, then values, of the rows,
            // each row quantized over its own range (symmetric), its scale kept.
            let f = &mut s.tile_q[..count * d];
            let (key_scales, value_scales) = (
                &mut s.key_scales[first..first + count],
                &mut s.value_scales[first..first + count],
            );
            if first == 0 {
                s.value_sums.fill(0);
            }
            self.k.forward_rows(tile, quants, &n1, f);
            let rows = f.chunks_exact(d).zip(keys.chunks_exact_mut(d));
            for ((row, key), scale) in rows.zip(key_scales.iter_mut()) {
                let q = ActQuant::symmetric_of_row(row);
                q.quantize_slice(row, key);
                *scale = q.scale;
            }
            self.v.forward_rows(tile, quants, &n1, f);
            for ((t, row), scale) in f.chunks_exact(d).enumerate().zip(value_scales.iter_mut()) {
                let q = ActQuant::symmetric_of_row(row);
                for ((c, &y), sum) in row.iter().enumerate().zip(s.value_sums.iter_mut()) {
                    let v = q.quantize(y);
                    values[c * tokens + t] = v;
                    *sum += i32::from(v);
                }
                *scale = q.scale;
            }
        } else {
            for (x, out) in rows.zip(tile.chunks_exact_mut(d)) {
                self.norm1.apply_quantized(x, &n1, out);
            }
            probe.i8(site, Point::Norm1, d, tile, n1);
            self.k.forward_quantized(tile, n1.scale, kq, keys);
            self.v
                .forward_quantized_transposed(tile, n1.scale, vq, values, tokens);
        }
    }

    fn report_keys_values(
        &self,
        s: &mut AttentionScratch<'_>,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        if !probe.active() {
            return;
        }
        let (kq, vq) = (self.acts[act::K], self.acts[act::V]);
        let (n, d) = (s.tokens, s.d);
        // Keys `n × D` here, reported as `D` rows of `n`; values `D × n` here, as `n` rows of
        // `D`: the layouts [`Point::K`] and [`Point::V`] document, which the float engine
        // reports too. Gathered through the (free) int8 weights and output tile, or, each token
        // with its own scale, dequantized into the (free) f32 logits and output row.
        if rows_dynamic(self.kv_dynamic) {
            let (column, row) = (&mut s.logits[..n], &mut s.row[..d]);
            for c in 0..d {
                let keys = s.keys.chunks_exact(d).zip(s.key_scales.iter());
                for (v, (key, &scale)) in column.iter_mut().zip(keys) {
                    *v = f32::from(key[c]) * scale;
                }
                probe.f32(site, Point::K, n, column);
            }
            for (m, &scale) in s.value_scales.iter().enumerate() {
                for (v, channel) in row.iter_mut().zip(s.values.chunks_exact(n)) {
                    *v = f32::from(channel[m]) * scale;
                }
                probe.f32(site, Point::V, d, row);
            }
            return;
        }
        let (column, row) = (&mut s.probs[..n], &mut s.tile_out[..d]);
        for c in 0..d {
            for (v, key) in column.iter_mut().zip(s.keys.chunks_exact(d)) {
                *v = key[c];
            }
            probe.i8(site, Point::K, n, column, kq);
        }
        for m in 0..n {
            for (v, channel) in row.iter_mut().zip(s.values.chunks_exact(n)) {
                *v = channel[m];
            }
            probe.i8(site, Point::V, d, row, vq);
        }
    }

    fn queries(
        &self,
        s: &mut AttentionScratch<'_>,
        x: &[f32],
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let (acts, modes, n1) = (&self.acts, self.modes, self.acts[act::NORM1]);
        let normed = &mut s.tile_in[..x.len()];
        if at_run_time(self.dynamic) {
            // The output row is free until the attention: each row's norm1, in f32.
            let quants = &mut s.in_quants[..x.len() / s.d];
            norm_rows_at_run_time(&self.norm1, x.chunks_exact(s.d), s.row, normed, quants);
            queries_of_rows(
                &self.q,
                normed,
                quants,
                &n1,
                acts,
                modes,
                rows_dynamic(self.kv_dynamic),
                &mut s.q_quants,
                s.tile_q,
                s.d,
                site,
                probe,
            );
        } else {
            self.norm1.apply_rows_quantized(x, &n1, normed);
            queries(
                &self.q, normed, &n1, acts, modes, s.tile_q, s.d, site, probe,
            );
        }
    }

    fn talking_heads(
        &self,
        s: &mut AttentionScratch<'_>,
        mix: &TalkingHeads<'_>,
        j: usize,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let (d, acts, modes) = (s.d, &self.acts, self.modes);
        let av = modes.av_int8.then_some(&acts[act::ATTENTION]);
        let q = query(s.tile_q, j, d, self.q_scale(s, j), modes);
        let scales = TokenScales {
            keys: s.key_scales,
            values: s.value_scales,
            value_sums: s.value_sums,
        };
        let kv = self.kv(s.keys, s.values, scales, s.tokens, s.head_dim);
        let mut row = RowScratch {
            logits: s.logits,
            weights: s.weights,
            probs: s.probs,
            dequantize: probe.active(),
        };
        attention::talking_heads(q, &kv, mix, av, &mut row, s.row);
        let weights = (&*row.logits, &*row.probs, &*row.weights);
        self.report_attention(probe, site, s.tokens, weights);
        self.quantize_output(s, j);
    }

    fn class_attention(
        &self,
        s: &mut AttentionScratch<'_>,
        block: usize,
        mut sink: Option<&mut dyn AttentionSink>,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let (d, acts, modes) = (s.d, &self.acts, self.modes);
        let av = modes.av_int8.then_some(&acts[act::ATTENTION]);
        let q = query(s.tile_q, 0, d, self.q_scale(s, 0), modes);
        let scales = TokenScales {
            keys: s.key_scales,
            values: s.value_scales,
            value_sums: s.value_sums,
        };
        let kv = self.kv(s.keys, s.values, scales, s.tokens, s.head_dim);
        let mut row = RowScratch {
            logits: s.logits,
            weights: s.weights,
            probs: s.probs,
            dequantize: probe.active(),
        };
        attention::class_attention(q, &kv, av, &mut row, s.row, |head, w| {
            if let Some(s) = sink.as_deref_mut() {
                s.class_attention(block, head, w);
            }
        });
        let weights = (&*row.weights, &*row.probs, &*row.logits);
        self.report_attention(probe, site, s.tokens, weights);
        self.quantize_output(s, 0);
    }

    fn project(
        &self,
        s: &mut AttentionScratch<'_>,
        residual: &mut [f32],
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let (d, out_q) = (s.d, self.acts[act::ATTENTION_OUT]);
        let out = &mut s.tile_out[..residual.len()];
        if at_run_time(self.dynamic) {
            let quants = &s.out_quants[..residual.len() / d];
            report_rows(probe, site, Point::AttentionOut, d, out, quants);
            // The query tile is free after the attention: proj's f32 output rows.
            let f = &mut s.tile_q[..residual.len()];
            self.proj.forward_rows(out, quants, &out_q, f);
            for (c, &y) in residual.iter_mut().zip(f.iter()) {
                *c += y;
            }
        } else {
            probe.i8(site, Point::AttentionOut, d, out, out_q);
            self.proj.forward_add(out, out_q.scale, residual);
        }
    }
}

/// The MLP branch of an int8 block (`norm2`, `fc1`, `fc2`; LayerScale folded into `fc2`).
pub(crate) struct Mlp<'a> {
    norm2: LayerNorm<'a>,
    fc1: QLinear<'a>,
    fc2: QLinear<'a>,
    /// The `norm2` output's quantization (`fc1`'s input).
    n2: ActQuant,
    /// The GELU output's (`fc2`'s input).
    hq: ActQuant,
    /// The rows quantized at run time ([`Mlp::forward_dynamic`]): every block of a pack whose
    /// activations are `dynamic`, or a class-attention block of one whose class path is.
    dynamic: bool,
}

impl block::Mlp for Mlp<'_> {
    type Act = i8;

    fn norm(&self, x: &[f32], out: &mut [i8]) {
        self.norm2.apply_rows_quantized(x, &self.n2, out);
    }

    fn fc1_gelu(&self, x: &[i8], out: &mut [i8]) {
        let (hq, hidden) = (self.hq, self.fc1.out_features());
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if self
            .fc1
            .forward_gelu_quantized_avx2(x, self.n2.scale, hq, out)
        {
            return;
        }
        // Inline, unlike every other int8 layer (`QLinear::forward_*`): out of line, this one
        // ran the bundled model's firmware 2.6% more instructions.
        self.fc1.forward(x, self.n2.scale, &mut |t, o, y| {
            out[t * hidden + o] = hq.quantize(gelu_rational(y));
        });
    }

    fn fc2_residual(&self, x: &[i8], residual: &mut [f32]) {
        self.fc2.forward_add(x, self.hq.scale, residual);
    }

    fn report(
        &self,
        probe: &mut MaybeProbe<'_>,
        site: Site,
        point: Point,
        width: usize,
        act: &[i8],
    ) {
        let q = if point == Point::Norm2 {
            self.n2
        } else {
            self.hq
        };
        probe.i8(site, point, width, act, q);
    }

    fn forward(
        &self,
        x: &mut [f32],
        scratch: &mut [u8],
        d: usize,
        hidden: usize,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        if at_run_time(self.dynamic) {
            self.forward_dynamic(x, scratch, d, hidden, site, probe);
        } else {
            block::mlp(self, x, scratch, d, hidden, site, probe);
        }
    }
}

impl Mlp<'_> {
    /// `x += Mlp(norm2(x))` with each norm2 and GELU row quantized at run time over its own range,
    /// up to [`ATTENTION_ROWS`] rows per pass through f32 copies (a norm2 row, and the fc1 and
    /// then fc2 outputs of the pass's rows): with one row per pass, the CA MLP row of
    /// `crate::workspace`'s int8 table, which every block's MLP fits.
    #[inline(never)]
    fn forward_dynamic(
        &self,
        x: &mut [f32],
        scratch: &mut [u8],
        d: usize,
        hidden: usize,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let wide = d.max(hidden);
        let rows = x.len() / d.max(1);
        // Per row: int8 `d` and `hidden`, f32 `wide` (in bytes); one f32 norm2 row besides.
        let bytes = scratch.len().saturating_sub(4 * d);
        let per_pass = rows_that_fit::<u8>(bytes, &[d, hidden, 4 * wide], ATTENTION_ROWS.min(rows));
        let (normed, rest) = take::<i8>(scratch, per_pass * d);
        let (hid, rest) = take::<i8>(rest, per_pass * hidden);
        let (row, rest) = take::<f32>(rest, d);
        let (wide_f, _) = take::<f32>(rest, per_pass * wide);
        let (mut norm_q, mut hid_q) = (
            [ActQuant::UNIT; ATTENTION_ROWS],
            [ActQuant::UNIT; ATTENTION_ROWS],
        );
        for xs in x.chunks_mut(per_pass * d) {
            let count = xs.len() / d;
            let (normed, hid) = (&mut normed[..count * d], &mut hid[..count * hidden]);
            let (norm_q, hid_q) = (&mut norm_q[..count], &mut hid_q[..count]);
            norm_rows_at_run_time(&self.norm2, xs.chunks_exact(d), row, normed, norm_q);
            report_rows(probe, site, Point::Norm2, d, normed, norm_q);
            let h = &mut wide_f[..count * hidden];
            self.fc1.forward_rows(normed, norm_q, &self.n2, h);
            for ((h, out), q) in h
                .chunks_exact_mut(hidden)
                .zip(hid.chunks_exact_mut(hidden))
                .zip(hid_q.iter_mut())
            {
                for v in h.iter_mut() {
                    *v = gelu_rational(*v);
                }
                *q = ActQuant::of_row(h);
                q.quantize_slice(h, out);
            }
            report_rows(probe, site, Point::Hidden, hidden, hid, hid_q);
            let y = &mut wide_f[..count * d];
            self.fc2.forward_rows(hid, hid_q, &self.hq, y);
            for (c, &y) in xs.iter_mut().zip(y.iter()) {
                *c += y;
            }
        }
    }
}

/// `blocks.{i}` of an int8 pack.
pub(crate) type SelfAttentionBlock<'a> = block::SelfAttentionBlock<'a, Attention<'a>, Mlp<'a>>;

/// `blocks_token_only.{i}` of an int8 pack.
pub(crate) type ClassAttentionBlock<'a> = block::ClassAttentionBlock<Attention<'a>, Mlp<'a>>;

impl<'a> Int8Resolver<'_, '_, 'a> {
    /// The attention and MLP branches of block `i` (a class-attention block when `token_only`;
    /// its class-path layers with their row sums when the pack's class path is `dynamic`).
    // Out of line: the block's tensors are resolved in this one frame, which on a device sits
    // below the forward pass's deepest call only briefly.
    #[inline(never)]
    fn branches(
        &self,
        token_only: bool,
        i: u32,
        modes: Modes,
    ) -> Result<(Attention<'a>, Mlp<'a>), Error> {
        use BlockParam::*;
        let id = block_param(token_only, i);
        let f = |p| self.r.f32(id(p));
        let kv_dynamic = modes.rows_dynamic;
        let dynamic = kv_dynamic || (token_only && modes.class_dynamic);
        let run_time = |p, run_time| self.linear_for(id(p), run_time);
        let [q, k, v] = if token_only {
            [
                run_time(QWeight, dynamic)?,
                run_time(KWeight, kv_dynamic)?,
                run_time(VWeight, kv_dynamic)?,
            ]
        } else {
            // timm's fused qkv: rows `0..D`, `D..2D`, `2D..3D`.
            let d = self.r.cfg.embed_dim as usize;
            let qkv = run_time(QkvWeight, dynamic)?;
            [0, 1, 2].map(|j| qkv.output_rows(j * d, d))
        };
        let acts: BlockActs = self.act_quant(Int8Tensor::BlockActQuant {
            token_only,
            index: i,
        })?;
        let attn = Attention {
            norm1: LayerNorm {
                weight: f(Norm1Weight)?,
                bias: f(Norm1Bias)?,
            },
            q,
            k,
            v,
            proj: run_time(ProjWeight, dynamic)?,
            acts,
            modes,
            dynamic,
            kv_dynamic,
        };
        let mlp = Mlp {
            norm2: LayerNorm {
                weight: f(Norm2Weight)?,
                bias: f(Norm2Bias)?,
            },
            fc1: run_time(Fc1Weight, dynamic)?,
            fc2: run_time(Fc2Weight, dynamic)?,
            n2: acts[act::NORM2],
            hq: acts[act::HIDDEN],
            dynamic,
        };
        Ok((attn, mlp))
    }

    /// `blocks.{i}` (LayerScale folded into `proj` and `fc2`).
    pub(crate) fn self_attention_block(
        &self,
        i: u32,
        modes: Modes,
    ) -> Result<SelfAttentionBlock<'a>, Error> {
        let (attn, mlp) = self.branches(false, i, modes)?;
        let mix = self.r.talking_heads(i)?;
        Ok(block::SelfAttentionBlock { attn, mix, mlp })
    }

    /// `blocks_token_only.{i}`.
    pub(crate) fn class_attention_block(
        &self,
        i: u32,
        modes: Modes,
    ) -> Result<ClassAttentionBlock<'a>, Error> {
        let (attn, mlp) = self.branches(true, i, modes)?;
        Ok(block::ClassAttentionBlock { attn, mlp })
    }
}

/// Checks block `index` of an int8 pack (a class-attention block when `token_only`): int8, or kept
/// in f16 and then checked as the float engine's.
pub(crate) fn check_block(
    r: &Int8Resolver<'_, '_, '_>,
    token_only: bool,
    index: u32,
    modes: Modes,
) -> Result<(), Error> {
    let f16 = cait_pack::int8::is_f16_block(r.r.pack, token_only, index);
    if f16 && !cfg!(feature = "float") {
        return Err(Error::NotBuiltIn {
            precision: cait_pack::Precision::F16,
            feature: "float",
        });
    }
    match (token_only, f16) {
        (false, false) => r.self_attention_block(index, modes).map(drop),
        (true, false) => r.class_attention_block(index, modes).map(drop),
        (false, true) => r.r.self_attention_block(index).map(drop),
        (true, true) => r.r.class_attention_block(index).map(drop),
    }
}

/// The int8 engine's stages, for [`crate::model::drive`]; blocks a mixed pack keeps in f16 run
/// the float engine's code on the f32 view of the scratch (the mixed layout holds the f32 one).
pub(crate) struct Stages<'s, 'r, 'p, 'a> {
    pub(crate) r: &'s Int8Resolver<'s, 'r, 'a>,
    pub(crate) stem: &'s Stem<'p>,
    pub(crate) dims: &'s Dims,
}

impl Stages<'_, '_, '_, '_> {
    /// Whether block `i` is kept in f16 (`cfg!`: without the float engine, `check_block` refused
    /// such packs and the float code goes).
    fn f16(&self, token_only: bool, i: u32) -> bool {
        cfg!(feature = "float") && cait_pack::int8::is_f16_block(self.r.r.pack, token_only, i)
    }
}

impl crate::model::Stages for Stages<'_, '_, '_, '_> {
    type Col = i8;

    fn patch_embed(
        &self,
        image: &Image<'_, '_>,
        first: usize,
        tokens: &mut [f32],
        cols: &mut [u8],
        probe: &mut MaybeProbe<'_>,
    ) {
        let (stem, dims) = (self.stem, self.dims);
        let (d, len) = (dims.d, dims.patch_len);
        let pos = &stem.pos_embed[first * d..first * d + tokens.len()];
        let cols = &mut bytemuck::cast_slice_mut::<u8, i8>(cols)[..tokens.len() / d * len];
        let q = stem.input;
        image.im2col(dims, first, cols, |img, c, y, x, dst| {
            img.row_quantized(c, y, x, &q, dst)
        });
        probe.i8(Site::PatchEmbed, Point::Input, len, cols, q);
        stem.patch_embed.forward(cols, q.scale, &mut |t, o, y| {
            tokens[t * d + o] = y + pos[t * d + o];
        });
    }

    fn self_attention(
        &self,
        i: u32,
        tokens: &mut [f32],
        scratch: &mut [u8],
        probe: &mut MaybeProbe<'_>,
    ) -> Result<(), Error> {
        let (site, dims) = (Site::Block(i), self.dims);
        if self.f16(false, i) {
            let block = self.r.r.self_attention_block(i)?;
            block.forward(tokens, scratch, dims, site, probe);
        } else {
            let block = self.r.self_attention_block(i, self.stem.modes)?;
            block.forward(tokens, scratch, dims, site, probe);
        }
        Ok(())
    }

    fn cls_token(&self) -> &[f32] {
        self.stem.cls_token
    }

    fn class_attention(
        &self,
        i: u32,
        tokens: &[f32],
        cls: &mut [f32],
        scratch: &mut [u8],
        sink: Option<&mut dyn AttentionSink>,
        probe: &mut MaybeProbe<'_>,
    ) -> Result<(), Error> {
        let (b, dims) = (i as usize, self.dims);
        if self.f16(true, i) {
            let block = self.r.r.class_attention_block(i)?;
            block.forward(tokens, cls, scratch, dims, b, sink, probe);
        } else {
            let block = self.r.class_attention_block(i, self.stem.modes)?;
            block.forward(tokens, cls, scratch, dims, b, sink, probe);
        }
        Ok(())
    }

    fn head(
        &self,
        tokens: &[f32],
        cls: &[f32],
        scratch: &mut [u8],
        features: Option<&mut [f32]>,
        logits: &mut [f32],
        probe: &mut MaybeProbe<'_>,
    ) {
        let (stem, dims) = (self.stem, self.dims);
        let d = dims.d;
        let (pooled, rest) = take::<f32>(scratch, d);
        let (normed, rest) = take::<f32>(rest, d);
        let (quantized, _) = take::<i8>(rest, d);
        pool(&stem.norm, stem.global_pool, tokens, cls, pooled, normed);
        // Undo the smoothing for the features (into `normed`, free now).
        let (scale, shift) = stem.smooth;
        for (((f, &v), &s), &b) in normed.iter_mut().zip(pooled.iter()).zip(scale).zip(shift) {
            *f = v * s + b;
        }
        if let Some(features) = features {
            features.copy_from_slice(normed);
        }
        match &stem.head {
            Some((head, q)) if at_run_time(stem.modes.class_dynamic) => {
                let row = ActQuant::of_row(pooled);
                row.quantize_slice(pooled, quantized);
                probe.i8(Site::Head, Point::Input, d, quantized, row);
                head.forward_rows(quantized, &[row], q, logits);
            }
            Some((head, q)) => {
                q.quantize_slice(pooled, quantized);
                probe.i8(Site::Head, Point::Input, d, quantized, *q);
                head.forward_store(quantized, q.scale, logits);
            }
            None => {
                probe.f32(Site::Head, Point::Input, d, normed);
                logits.copy_from_slice(normed);
            }
        }
        probe.f32(Site::Head, Point::Output, logits.len(), logits);
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use crate::workspace::Region;
    use cait_pack::{GlobalPool, ModelConfig};

    /// The split takes each region of `workspace::int8_attention` with that region's element type
    /// (the table's byte sizes are the slices' byte sizes) and fits the table's total exactly.
    #[test]
    fn int8_attention_types_match_the_table() {
        let cfg = ModelConfig {
            img_size: [28, 28],
            patch_size: 7,
            in_chans: 1,
            num_classes: 10,
            embed_dim: 36,
            depth: 1,
            num_heads: 3,
            mlp_hidden_dim: 72,
            depth_token_only: 1,
            mlp_hidden_dim_token_only: 72,
            qkv_bias: true,
            global_pool: GlobalPool::Token,
        };
        let dims = Dims::new(&cfg);
        let t = dims.n as u128 + 1;
        let table = workspace::int8_attention(t, dims.d as u128, dims.heads as u128);
        let total = workspace::region_bytes(&table) as usize;
        let mut buf = vec![0u32; total / 4];
        let scratch: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
        let a = AttentionScratch::split(scratch, &dims, dims.n + 1);
        let bytes = [
            core::mem::size_of_val(a.keys),
            core::mem::size_of_val(a.values),
            core::mem::size_of_val(a.logits),
            core::mem::size_of_val(a.weights),
            core::mem::size_of_val(a.probs),
            core::mem::size_of_val(a.tile_in),
            core::mem::size_of_val(a.tile_q),
            core::mem::size_of_val(a.row),
            core::mem::size_of_val(a.tile_out),
            core::mem::size_of_val(a.key_scales),
            core::mem::size_of_val(a.value_scales),
            core::mem::size_of_val(a.value_sums),
        ];
        let want = table.map(|Region { count, elem }| (count * elem) as usize);
        assert_eq!(bytes, want);
    }
}
