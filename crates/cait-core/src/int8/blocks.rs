//! The int8 stages: patch embedding, self-attention and class-attention blocks, head.
//!
//! Same structure and token order as the float stages (`crate::blocks`); the activations that feed
//! a matmul are int8, the residual stream f32. The scratch layout is in `crate::workspace`.

use cait_pack::int8::{Int8Tensor, act};
use cait_pack::{BlockParam, GlobalPool, TensorId};

use super::attention::{self, KeysValues, Query, RowScratch};
use super::{BlockActs, Int8Resolver, Modes, QLinear};
use crate::Error;
use crate::attention::{AttentionSink, HeadMix};
use crate::blocks::{Dims, class_attention_input, pool};
use crate::input::Image;
use crate::kernels::gelu::gelu_rational;
use crate::kernels::int8::ActQuant;
use crate::kernels::layer_norm::LayerNorm;
use crate::probe::{MaybeProbe, Point, Site};
use crate::workspace::{self, floats, take};

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
            let head = r.class_path_linear(TensorId::HeadWeight, modes.class_dynamic)?;
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
struct AttentionScratch<'w> {
    keys: &'w mut [i8],
    values: &'w mut [i8],
    logits: &'w mut [f32],
    weights: &'w mut [f32],
    probs: &'w mut [i8],
    tile_in: &'w mut [i8],
    /// `R·D` f32 queries, or `R·D` int8 queries in its first bytes.
    tile_q: &'w mut [f32],
    row: &'w mut [f32],
    tile_out: &'w mut [i8],
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
        let (tile_out, _) = take::<i8>(rest, tile_out);
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

/// [`queries`] for the class token's row `x`, quantized at run time by `row` (`reference`: the
/// calibrated norm1 quantization, the unit of `q`'s `acc_bias`); `buf`: `D` f32 of scratch.
#[allow(clippy::too_many_arguments)]
fn class_query(
    q: &QLinear<'_>,
    x: &[i8],
    row: &ActQuant,
    reference: &ActQuant,
    acts: &BlockActs,
    modes: Modes,
    tile_q: &mut [f32],
    buf: &mut [f32],
    site: Site,
    probe: &mut MaybeProbe<'_>,
) {
    let d = x.len();
    if modes.qk_int8 {
        let qq = acts[act::Q];
        q.forward_row(x, row, reference, buf);
        let tq = &mut bytemuck::cast_slice_mut::<f32, i8>(tile_q)[..d];
        qq.quantize_slice(buf, tq);
        probe.i8(site, Point::Q, d, tq, qq);
    } else {
        let tq = &mut tile_q[..d];
        q.forward_row(x, row, reference, tq);
        probe.f32(site, Point::Q, d, tq);
    }
}

/// Query row `j` of `tile_q` as [`queries`] left it.
fn query<'q>(tile_q: &'q [f32], j: usize, d: usize, acts: &BlockActs, modes: Modes) -> Query<'q> {
    if modes.qk_int8 {
        Query::I8(
            &bytemuck::cast_slice::<f32, i8>(tile_q)[j * d..(j + 1) * d],
            acts[act::Q].scale,
        )
    } else {
        Query::F32(&tile_q[j * d..(j + 1) * d])
    }
}

/// Reports the attention weights that multiplied the values.
fn report_attention(
    probe: &mut MaybeProbe<'_>,
    site: Site,
    n: usize,
    weights: &[f32],
    probs: &[i8],
    av: Option<&ActQuant>,
) {
    match av {
        Some(q) => probe.i8(site, Point::Attention, n, probs, *q),
        None => probe.f32(site, Point::Attention, n, weights),
    }
}

/// Reports the keys (`n × D` here) as `D` rows of `n` and the values (`D × n` here) as `n` rows
/// of `D`: the layouts [`Point::K`] and [`Point::V`] document, which the float engine reports too.
/// Gathers through `column` (`≥ n` bytes) and `row` (`≥ D` bytes); nothing without a probe.
#[allow(clippy::too_many_arguments)]
fn report_keys_values(
    probe: &mut MaybeProbe<'_>,
    site: Site,
    kv: &KeysValues<'_>,
    kq: ActQuant,
    vq: ActQuant,
    column: &mut [i8],
    row: &mut [i8],
) {
    if !probe.active() {
        return;
    }
    let n = kv.n;
    let d = kv.keys.len().checked_div(n).unwrap_or(0);
    let (column, row) = (&mut column[..n], &mut row[..d]);
    for c in 0..d {
        for (v, key) in column.iter_mut().zip(kv.keys.chunks_exact(d)) {
            *v = key[c];
        }
        probe.i8(site, Point::K, n, column, kq);
    }
    for m in 0..n {
        for (v, channel) in row.iter_mut().zip(kv.values.chunks_exact(n)) {
            *v = channel[m];
        }
        probe.i8(site, Point::V, d, row, vq);
    }
}

/// `blocks.{i}` of an int8 pack (LayerScale folded into `proj` and `fc2`).
pub(crate) struct SelfAttentionBlock<'a> {
    norm1: LayerNorm<'a>,
    norm2: LayerNorm<'a>,
    q: QLinear<'a>,
    k: QLinear<'a>,
    v: QLinear<'a>,
    proj_l: HeadMix<'a>,
    proj_w: HeadMix<'a>,
    proj: QLinear<'a>,
    fc1: QLinear<'a>,
    fc2: QLinear<'a>,
    acts: BlockActs,
}

impl<'a> SelfAttentionBlock<'a> {
    pub(crate) fn resolve(r: &Int8Resolver<'_, '_, 'a>, i: u32) -> Result<Self, Error> {
        use BlockParam::*;
        let id = |p| TensorId::Block(i, p);
        let f = |p| r.r.f32(id(p));
        let d = r.r.cfg.embed_dim as usize;
        let qkv = r.linear(id(QkvWeight))?;
        Ok(SelfAttentionBlock {
            norm1: LayerNorm {
                weight: f(Norm1Weight)?,
                bias: f(Norm1Bias)?,
            },
            norm2: LayerNorm {
                weight: f(Norm2Weight)?,
                bias: f(Norm2Bias)?,
            },
            q: qkv.output_rows(0, d),
            k: qkv.output_rows(d, d),
            v: qkv.output_rows(2 * d, d),
            proj_l: HeadMix {
                weight: f(ProjLWeight)?,
                bias: f(ProjLBias)?,
            },
            proj_w: HeadMix {
                weight: f(ProjWWeight)?,
                bias: f(ProjWBias)?,
            },
            proj: r.linear(id(ProjWeight))?,
            fc1: r.linear(id(Fc1Weight))?,
            fc2: r.linear(id(Fc2Weight))?,
            acts: r.act_quant(Int8Tensor::BlockActQuant {
                token_only: false,
                index: i,
            })?,
        })
    }

    /// `x += Attn(norm1(x)); x += Mlp(norm2(x))` on the `N × D` tokens (LayerScale folded).
    pub(crate) fn forward(
        &self,
        x: &mut [f32],
        scratch: &mut [u8],
        dims: &Dims,
        modes: Modes,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        self.attention(x, scratch, dims, modes, site, probe);
        self.mlp(x, scratch, dims, site, probe);
        probe.f32(site, Point::Output, dims.d, x);
    }

    // Kept out of line whichever engines are built: LLVM's inlining otherwise follows how many
    // callers the shared kernels have, and the int8-only build ran cait_xxs24_224 0.11% slower.
    #[inline(never)]
    fn attention(
        &self,
        x: &mut [f32],
        scratch: &mut [u8],
        dims: &Dims,
        modes: Modes,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let (d, rows, n) = (dims.d, dims.rows, dims.n);
        let acts = &self.acts;
        let (n1, kq, vq) = (acts[act::NORM1], acts[act::K], acts[act::V]);
        let a = AttentionScratch::split(scratch, dims, n);
        // Keys (transposed, D × N) and values (N × D) of every token, `rows` tokens per pass.
        for (pass, xs) in x.chunks(rows * d).enumerate() {
            let tile = &mut a.tile_in[..xs.len()];
            self.norm1.apply_rows_quantized(xs, &n1, tile);
            probe.i8(site, Point::Norm1, d, tile, n1);
            let (base, keys, values) = (pass * rows, &mut *a.keys, &mut *a.values);
            let (keys, values) = (&mut keys[base * d..], &mut values[base..]);
            self.k.forward_quantized(tile, n1.scale, kq, keys);
            self.v
                .forward_quantized_transposed(tile, n1.scale, vq, values, n);
        }
        let kv = KeysValues {
            keys: a.keys,
            values: a.values,
            key_scale: kq.scale,
            value_scale: vq.scale,
            n,
            head_dim: dims.head_dim,
        };
        report_keys_values(probe, site, &kv, kq, vq, a.probs, a.tile_out);
        let mut row = RowScratch {
            logits: a.logits,
            weights: a.weights,
            probs: a.probs,
        };
        let av = modes.av_int8.then_some(&acts[act::ATTENTION]);
        let out_q = acts[act::ATTENTION_OUT];
        for xs in x.chunks_mut(rows * d) {
            let count = xs.len() / d;
            let tile_in = &mut a.tile_in[..xs.len()];
            self.norm1.apply_rows_quantized(xs, &n1, tile_in);
            queries(&self.q, tile_in, &n1, acts, modes, a.tile_q, d, site, probe);
            let tile_out = &mut a.tile_out[..xs.len()];
            for j in 0..count {
                let q = query(a.tile_q, j, d, acts, modes);
                attention::talking_heads(q, &kv, &self.proj_l, &self.proj_w, av, &mut row, a.row);
                report_attention(probe, site, n, row.logits, row.probs, av);
                out_q.quantize_slice(a.row, &mut tile_out[j * d..(j + 1) * d]);
            }
            probe.i8(site, Point::AttentionOut, d, tile_out, out_q);
            self.proj.forward_add(tile_out, out_q.scale, xs);
        }
    }

    fn mlp(
        &self,
        x: &mut [f32],
        scratch: &mut [u8],
        dims: &Dims,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let (d, hidden) = (dims.d, dims.hidden);
        // `take` rounds each of the two regions up to 4 bytes: keep 6 spare.
        let per_pass = (scratch.len().saturating_sub(6) / (d + hidden)).clamp(1, dims.n.max(1));
        let (normed, rest) = take::<i8>(scratch, per_pass * d);
        let (hid, _) = take::<i8>(rest, per_pass * hidden);
        let (n2, hq) = (self.acts[act::NORM2], self.acts[act::HIDDEN]);
        for xs in x.chunks_mut(per_pass * d) {
            let count = xs.len() / d;
            let normed = &mut normed[..count * d];
            let hid = &mut hid[..count * hidden];
            self.norm2.apply_rows_quantized(xs, &n2, normed);
            probe.i8(site, Point::Norm2, d, normed, n2);
            // Inline, unlike every other int8 layer (`QLinear::forward_*`): out of line, this one
            // ran the bundled model's firmware 2.6% more instructions.
            self.fc1.forward(normed, n2.scale, &mut |t, o, y| {
                hid[t * hidden + o] = hq.quantize(gelu_rational(y));
            });
            probe.i8(site, Point::Hidden, hidden, hid, hq);
            self.fc2.forward_add(hid, hq.scale, xs);
        }
    }
}

/// `blocks_token_only.{i}` of an int8 pack.
pub(crate) struct ClassAttentionBlock<'a> {
    norm1: LayerNorm<'a>,
    norm2: LayerNorm<'a>,
    q: QLinear<'a>,
    k: QLinear<'a>,
    v: QLinear<'a>,
    proj: QLinear<'a>,
    fc1: QLinear<'a>,
    fc2: QLinear<'a>,
    acts: BlockActs,
}

impl<'a> ClassAttentionBlock<'a> {
    /// Block `i`; the class-path layers with their row sums when `dynamic`.
    pub(crate) fn resolve(
        r: &Int8Resolver<'_, '_, 'a>,
        i: u32,
        dynamic: bool,
    ) -> Result<Self, Error> {
        use BlockParam::*;
        let id = |p| TensorId::TokenBlock(i, p);
        let f = |p| r.r.f32(id(p));
        let class_path = |p| r.class_path_linear(id(p), dynamic);
        Ok(ClassAttentionBlock {
            norm1: LayerNorm {
                weight: f(Norm1Weight)?,
                bias: f(Norm1Bias)?,
            },
            norm2: LayerNorm {
                weight: f(Norm2Weight)?,
                bias: f(Norm2Bias)?,
            },
            q: class_path(QWeight)?,
            k: r.linear(id(KWeight))?,
            v: r.linear(id(VWeight))?,
            proj: class_path(ProjWeight)?,
            fc1: class_path(Fc1Weight)?,
            fc2: class_path(Fc2Weight)?,
            acts: r.act_quant(Int8Tensor::BlockActQuant {
                token_only: true,
                index: i,
            })?,
        })
    }

    /// With `u = [cls; x]`: `cls += ClassAttn(norm1(u)); cls += Mlp(norm2(cls))`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        x: &[f32],
        cls: &mut [f32],
        scratch: &mut [u8],
        dims: &Dims,
        modes: Modes,
        block: usize,
        mut sink: Option<&mut dyn AttentionSink>,
        probe: &mut MaybeProbe<'_>,
    ) {
        let site = Site::TokenBlock(block as u32);
        let (d, rows, tokens) = (dims.d, dims.rows, dims.n + 1);
        let acts = &self.acts;
        let (n1, kq, vq) = (acts[act::NORM1], acts[act::K], acts[act::V]);
        {
            let a = AttentionScratch::split(scratch, dims, tokens);
            let (keys, values) = (&mut *a.keys, &mut *a.values);
            for base in (0..tokens).step_by(rows) {
                let count = rows.min(tokens - base);
                let tile = &mut a.tile_in[..count * d];
                for (j, out) in tile.chunks_exact_mut(d).enumerate() {
                    let token = class_attention_input(cls, x, base + j);
                    self.norm1.apply_quantized(token, &n1, out);
                }
                probe.i8(site, Point::Norm1, d, tile, n1);
                let (k, v) = (&mut keys[base * d..], &mut values[base..]);
                self.k.forward_quantized(tile, n1.scale, kq, k);
                self.v
                    .forward_quantized_transposed(tile, n1.scale, vq, v, tokens);
            }
            let normed = &mut a.tile_in[..d];
            if modes.class_dynamic {
                // The output row is free until the attention: the class token's norm1, in f32.
                self.norm1.apply(cls, a.row);
                let row = ActQuant::of_row(a.row);
                row.quantize_slice(a.row, normed);
                let (q, tile_q) = (&self.q, &mut *a.tile_q);
                class_query(
                    q, normed, &row, &n1, acts, modes, tile_q, a.row, site, probe,
                );
            } else {
                self.norm1.apply_quantized(cls, &n1, normed);
                queries(&self.q, normed, &n1, acts, modes, a.tile_q, d, site, probe);
            }
            let kv = KeysValues {
                keys,
                values,
                key_scale: kq.scale,
                value_scale: vq.scale,
                n: tokens,
                head_dim: dims.head_dim,
            };
            report_keys_values(probe, site, &kv, kq, vq, a.probs, a.tile_out);
            let mut row = RowScratch {
                logits: a.logits,
                weights: a.weights,
                probs: a.probs,
            };
            let av = modes.av_int8.then_some(&acts[act::ATTENTION]);
            let q = query(a.tile_q, 0, d, acts, modes);
            attention::class_attention(q, &kv, av, &mut row, a.row, |head, w| {
                if let Some(s) = sink.as_deref_mut() {
                    s.class_attention(block, head, w);
                }
            });
            report_attention(probe, site, tokens, row.weights, row.probs, av);
            let out_q = acts[act::ATTENTION_OUT];
            let out = &mut a.tile_out[..d];
            if modes.class_dynamic {
                let row = ActQuant::of_row(a.row);
                row.quantize_slice(a.row, out);
                probe.i8(site, Point::AttentionOut, d, out, row);
                // The attention output row is quantized: it takes proj's output.
                self.proj.forward_row(out, &row, &out_q, a.row);
                for (c, &y) in cls.iter_mut().zip(a.row.iter()) {
                    *c += y;
                }
            } else {
                out_q.quantize_slice(a.row, out);
                probe.i8(site, Point::AttentionOut, d, out, out_q);
                self.proj.forward_add(out, out_q.scale, cls);
            }
        }
        if modes.class_dynamic {
            self.mlp_dynamic(cls, scratch, dims, site, probe);
        } else {
            self.mlp(cls, scratch, dims, site, probe);
        }
        probe.f32(site, Point::Output, d, cls);
    }

    /// `cls += Mlp(norm2(cls))` on the calibrated quantizations.
    fn mlp(
        &self,
        cls: &mut [f32],
        scratch: &mut [u8],
        dims: &Dims,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let (d, hidden) = (dims.d, dims.hidden_token);
        let (normed, rest) = take::<i8>(scratch, d);
        let (hid, _) = take::<i8>(rest, hidden);
        let (n2, hq) = (self.acts[act::NORM2], self.acts[act::HIDDEN]);
        self.norm2.apply_quantized(cls, &n2, normed);
        probe.i8(site, Point::Norm2, d, normed, n2);
        self.fc1.forward_gelu_quantized(normed, n2.scale, hq, hid);
        probe.i8(site, Point::Hidden, hidden, hid, hq);
        self.fc2.forward_add(hid, hq.scale, cls);
    }

    /// [`mlp`](Self::mlp) with the norm2 and GELU rows quantized at run time, over f32 copies
    /// of the two rows (the CA MLP row of `crate::workspace`'s int8 table).
    fn mlp_dynamic(
        &self,
        cls: &mut [f32],
        scratch: &mut [u8],
        dims: &Dims,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let (d, hidden) = (dims.d, dims.hidden_token);
        let (normed, rest) = take::<i8>(scratch, d);
        let (hid, rest) = take::<i8>(rest, hidden);
        let (normed_f, rest) = take::<f32>(rest, d);
        let (hid_f, _) = take::<f32>(rest, hidden);
        let (n2, hq) = (self.acts[act::NORM2], self.acts[act::HIDDEN]);
        self.norm2.apply(cls, normed_f);
        let row = ActQuant::of_row(normed_f);
        row.quantize_slice(normed_f, normed);
        probe.i8(site, Point::Norm2, d, normed, row);
        self.fc1.forward_row(normed, &row, &n2, hid_f);
        for h in hid_f.iter_mut() {
            *h = gelu_rational(*h);
        }
        let row = ActQuant::of_row(hid_f);
        row.quantize_slice(hid_f, hid);
        probe.i8(site, Point::Hidden, hidden, hid, row);
        // The norm2 row is quantized: it takes fc2's output.
        self.fc2.forward_row(hid, &row, &hq, normed_f);
        for (c, &y) in cls.iter_mut().zip(normed_f.iter()) {
            *c += y;
        }
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
    let dynamic = modes.class_dynamic;
    let f16 = cait_pack::int8::is_f16_block(r.r.pack, token_only, index);
    if f16 && !cfg!(feature = "float") {
        return Err(Error::NotBuiltIn {
            precision: cait_pack::Precision::F16,
            feature: "float",
        });
    }
    match (token_only, f16) {
        (false, false) => SelfAttentionBlock::resolve(r, index).map(drop),
        (true, false) => ClassAttentionBlock::resolve(r, index, dynamic).map(drop),
        (false, true) => crate::blocks::SelfAttentionBlock::resolve(r.r, index).map(drop),
        (true, true) => crate::blocks::ClassAttentionBlock::resolve(r.r, index).map(drop),
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
    fn patch_embed(
        &self,
        image: &Image<'_, '_>,
        tokens: &mut [f32],
        scratch: &mut [u8],
        probe: &mut MaybeProbe<'_>,
    ) {
        let (stem, dims) = (self.stem, self.dims);
        let (d, len) = (dims.d, dims.patch_len);
        // `take` rounds each region up to 4 bytes: keep 3 spare.
        let per_pass = (scratch.len().saturating_sub(3) / len).clamp(1, dims.n.max(1));
        let (cols, _) = take::<i8>(scratch, per_pass * len);
        let q = stem.input;
        let passes = tokens
            .chunks_mut(per_pass * d)
            .zip(stem.pos_embed.chunks(per_pass * d));
        for (pass, (xs, pos)) in passes.enumerate() {
            let count = xs.len() / d;
            let cols = &mut cols[..count * len];
            image.im2col(dims, pass * per_pass, cols, |img, c, y, x, dst| {
                img.row_quantized(c, y, x, &q, dst)
            });
            probe.i8(Site::PatchEmbed, Point::Input, len, cols, q);
            stem.patch_embed.forward(cols, q.scale, &mut |t, o, y| {
                xs[t * d + o] = y + pos[t * d + o];
            });
        }
        probe.f32(Site::PatchEmbed, Point::Output, d, tokens);
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
            let block = crate::blocks::SelfAttentionBlock::resolve(self.r.r, i)?;
            block.forward(tokens, floats(scratch), dims, site, probe);
        } else {
            let block = SelfAttentionBlock::resolve(self.r, i)?;
            block.forward(tokens, scratch, dims, self.stem.modes, site, probe);
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
        let (b, dims, modes) = (i as usize, self.dims, self.stem.modes);
        if self.f16(true, i) {
            let block = crate::blocks::ClassAttentionBlock::resolve(self.r.r, i)?;
            block.forward(tokens, cls, floats(scratch), dims, b, sink, probe);
        } else {
            let block = ClassAttentionBlock::resolve(self.r, i, modes.class_dynamic)?;
            block.forward(tokens, cls, scratch, dims, modes, b, sink, probe);
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
            Some((head, q)) if stem.modes.class_dynamic => {
                let row = ActQuant::of_row(pooled);
                row.quantize_slice(pooled, quantized);
                probe.i8(Site::Head, Point::Input, d, quantized, row);
                head.forward_row(quantized, &row, q, logits);
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
        ];
        let want = table.map(|Region { count, elem }| (count * elem) as usize);
        assert_eq!(bytes, want);
    }
}
