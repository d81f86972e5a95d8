//! Attention, computed one query row at a time for all heads.
//!
//! A query row needs one `H × n` buffer of logits (two for talking heads, whose head mixes read one
//! buffer while writing the other), so no `[H, N, N]` tensor ever exists: the attention's memory is
//! `O(H·N)` beside the keys and values, instead of `O(H·N²)`.
//!
//! Values are `n × D` token-major (token `m`, head `h` is `[m*D + h*hd ..][..hd]`), as timm's v
//! projection lays them out; keys are stored transposed, `D × n`, so that both the logits (`q·kᵀ`)
//! and the weighted sum (`a·v`) are contiguous multiply-adds (see [`scores`]).

use crate::kernels::softmax::softmax;

/// Receives the class token's attention weights, once per class-attention block and head.
///
/// `weights` is the softmax row of the class token's query over all `N + 1` tokens: index 0 is the
/// class token itself, `1 + r * cols + c` is the patch in grid row `r`, column `c`. It sums to 1 (to
/// rounding). The slice is the engine's workspace: copy what you want to keep.
pub trait AttentionSink {
    /// Class-attention block `block`, head `head`.
    fn class_attention(&mut self, block: usize, head: usize, weights: &[f32]);
}

/// A talking-heads mix (`proj_l` or `proj_w`): a `Linear(H, H)` applied across heads at every key.
#[derive(Clone, Copy)]
pub(crate) struct HeadMix<'a> {
    /// `[H, H]`: `weight[g * H + h]` is head `h`'s contribution to head `g`.
    pub(crate) weight: &'a [f32],
    /// `[H]`.
    pub(crate) bias: &'a [f32],
}

/// The two head mixes of a talking-heads attention (timm `TalkingHeadAttn`): `proj_l` on the
/// logits before the softmax, `proj_w` on the weights after it.
#[derive(Clone, Copy)]
pub(crate) struct TalkingHeads<'a> {
    pub(crate) proj_l: HeadMix<'a>,
    pub(crate) proj_w: HeadMix<'a>,
}

impl HeadMix<'_> {
    /// `dst[g][m] = sum_h weight[g][h] * src[h][m] + bias[g]` for rows of length `n`; `src` and `dst`
    /// are `H × n`. The sum over heads is sequential in `h`, then the bias (as `x·Wᵀ + b`).
    pub(crate) fn apply(&self, src: &[f32], dst: &mut [f32], n: usize) {
        match self.bias.len() {
            // The head counts of timm's CaiT variants — 4 (xxs24/36), 6 (xs24), 8 (s24/s36), 16
            // (m36/m48) — keep every column's sources and sums in registers. 16 heads only on the
            // host (`std`): the m models (270M+ parameters) fit no microcontroller, and the path
            // costs a device build 1,280 bytes of flash.
            4 => self.apply_heads::<4>(src, dst, n),
            6 => self.apply_heads::<6>(src, dst, n),
            8 => self.apply_heads::<8>(src, dst, n),
            #[cfg(feature = "std")]
            16 => self.apply_heads::<16>(src, dst, n),
            _ => self.apply_any(src, dst, n),
        }
    }

    /// [`apply`](Self::apply) for `H` heads, one column `m` at a time (the same operations in the
    /// same order: bit-identical to [`apply_any`](Self::apply_any)).
    #[inline(always)]
    fn apply_heads<const H: usize>(&self, src: &[f32], dst: &mut [f32], n: usize) {
        let (Some(w), Some(b)) = (self.weight.get(..H * H), self.bias.get(..H)) else {
            return;
        };
        let (Some(src), Some(dst)) = (src.get(..H * n), dst.get_mut(..H * n)) else {
            return;
        };
        for m in 0..n {
            let s: [f32; H] = core::array::from_fn(|h| src[h * n + m]);
            for g in 0..H {
                let mut acc = 0.0f32;
                for h in 0..H {
                    acc += w[g * H + h] * s[h];
                }
                dst[g * n + m] = acc + b[g];
            }
        }
    }

    fn apply_any(&self, src: &[f32], dst: &mut [f32], n: usize) {
        let heads = self.bias.len();
        let rows = dst.chunks_exact_mut(n).zip(self.weight.chunks_exact(heads));
        for ((dst_row, w_row), &b) in rows.zip(self.bias) {
            dst_row.fill(0.0);
            for (src_row, &w) in src.chunks_exact(n).zip(w_row) {
                for (d, &s) in dst_row.iter_mut().zip(src_row) {
                    *d += w * s;
                }
            }
            for d in dst_row.iter_mut() {
                *d += b;
            }
        }
    }
}

/// Key features per pass of [`scores`] over a row of logits.
const FEATURES_PER_PASS: usize = 4;
/// Keys per pass of [`weighted_values`] over a head's output.
const KEYS_PER_PASS: usize = 4;

/// `logits[h][m] = q_h · k_{m,h}` for every head `h` and key `m`; `logits` is `H × n`.
///
/// The keys are stored transposed, `keys_t` is `D × n` (row `c` holds feature `c` of every key), so
/// the work is contiguous multiply-adds along the keys, which vectorise on every target without any
/// shuffling. Each logit is summed over the head's features in order `e = 0, 1, …` (four features
/// per pass over the row, added one after another).
fn scores(q: &[f32], keys_t: &[f32], head_dim: usize, n: usize, logits: &mut [f32]) {
    let heads = q
        .chunks_exact(head_dim)
        .zip(keys_t.chunks_exact(head_dim * n));
    for ((qh, kh), lh) in heads.zip(logits.chunks_exact_mut(n)) {
        lh.fill(0.0);
        let mut qs = qh.chunks_exact(FEATURES_PER_PASS);
        let mut ks = kh.chunks_exact(FEATURES_PER_PASS * n);
        for (q, k) in (&mut qs).zip(&mut ks) {
            let (k0, rest) = k.split_at(n);
            let (k1, rest) = rest.split_at(n);
            let (k2, k3) = rest.split_at(n);
            let keys = k0.iter().zip(k1).zip(k2).zip(k3);
            for (l, (((&a, &b), &c), &d)) in lh.iter_mut().zip(keys) {
                *l = (((*l + q[0] * a) + q[1] * b) + q[2] * c) + q[3] * d;
            }
        }
        for (&q, k) in qs.remainder().iter().zip(ks.remainder().chunks_exact(n)) {
            for (l, &k) in lh.iter_mut().zip(k) {
                *l += q * k;
            }
        }
    }
}

/// `out_h = sum_m weights[h][m] * v_{m,h}`, summed over keys in order `m = 0, 1, …` (four keys are
/// added per pass over `out`, one after another, so the order is the plain sequential one).
fn weighted_values(weights: &[f32], values: &[f32], head_dim: usize, n: usize, out: &mut [f32]) {
    let d = out.len();
    out.fill(0.0);
    let mut groups = values.chunks_exact(KEYS_PER_PASS * d);
    for (g, group) in (&mut groups).enumerate() {
        let m = g * KEYS_PER_PASS;
        for (h, oh) in out.chunks_exact_mut(head_dim).enumerate() {
            let at = h * head_dim;
            let a = &weights[h * n + m..h * n + m + KEYS_PER_PASS];
            let v: [&[f32]; KEYS_PER_PASS] =
                core::array::from_fn(|j| &group[j * d + at..j * d + at + head_dim]);
            for (e, o) in oh.iter_mut().enumerate() {
                let mut acc = *o;
                for j in 0..KEYS_PER_PASS {
                    acc += a[j] * v[j][e];
                }
                *o = acc;
            }
        }
    }
    let done = n - groups.remainder().len() / d;
    for (j, value) in groups.remainder().chunks_exact(d).enumerate() {
        let per_head = out
            .chunks_exact_mut(head_dim)
            .zip(value.chunks_exact(head_dim));
        for (h, (oh, vh)) in per_head.enumerate() {
            let a = weights[h * n + done + j];
            for (o, &v) in oh.iter_mut().zip(vh) {
                *o += a * v;
            }
        }
    }
}

/// Buffers for one query row: two `H × n` rows of scores.
pub(crate) struct RowScratch<'w> {
    /// `H × n`.
    pub(crate) logits: &'w mut [f32],
    /// `H × n`.
    pub(crate) weights: &'w mut [f32],
}

/// Talking-heads attention (timm `TalkingHeadAttn`) of one query row against `n` keys.
///
/// `q` (`D`, already scaled by `head_dim^-0.5`), `keys` (`D × n`, transposed), `values` (`n × D`),
/// `out` (`D`): the row of `attn @ v` before `proj`. Pipeline: logits `q·kᵀ` → `proj_l` mixes
/// heads → softmax over keys → `proj_w` mixes heads (rows no longer sum to 1) → `· v`.
pub(crate) fn talking_heads(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    head_dim: usize,
    mix: &TalkingHeads<'_>,
    scratch: &mut RowScratch<'_>,
    out: &mut [f32],
) {
    let n = values.len() / q.len();
    scores(q, keys, head_dim, n, scratch.logits);
    mix.proj_l.apply(scratch.logits, scratch.weights, n);
    for row in scratch.weights.chunks_exact_mut(n) {
        softmax(row);
    }
    mix.proj_w.apply(scratch.weights, scratch.logits, n);
    weighted_values(scratch.logits, values, head_dim, n, out);
}

/// Class attention (timm `ClassAttn`) of the class token's query against all `n = N + 1` tokens.
///
/// `q` (`D`, already scaled), `keys` (`D × n`, transposed) and `values` (`n × D`), token 0 the class
/// token, `weights` (`H × n`) scratch, `out` (`D`). Each head's softmax row is shown to `sink` as
/// `(block, head, row)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn class_attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    head_dim: usize,
    weights: &mut [f32],
    out: &mut [f32],
    block: usize,
    mut sink: Option<&mut dyn AttentionSink>,
) {
    let n = values.len() / q.len();
    scores(q, keys, head_dim, n, weights);
    for (head, row) in weights.chunks_exact_mut(n).enumerate() {
        softmax(row);
        if let Some(sink) = sink.as_deref_mut() {
            sink.class_attention(block, head, row);
        }
    }
    weighted_values(weights, values, head_dim, n, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The per-column head mix for 4, 6, 8 and 16 heads is bit-identical to the row-wise one.
        #[test]
        fn head_mix_paths_agree(heads in proptest::sample::select(vec![4usize, 6, 8, 16]), n in 1usize..40, seed in 0u64..1000) {
            let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            };
            let weight: Vec<f32> = (0..heads * heads).map(|_| next()).collect();
            let bias: Vec<f32> = (0..heads).map(|_| next()).collect();
            let src: Vec<f32> = (0..heads * n).map(|_| next() * 8.0).collect();
            let mix = HeadMix { weight: &weight, bias: &bias };
            let (mut fast, mut plain) = (vec![0.0; heads * n], vec![0.0; heads * n]);
            mix.apply(&src, &mut fast, n);
            mix.apply_any(&src, &mut plain, n);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            proptest::prop_assert_eq!(bits(&fast), bits(&plain));
        }
    }

    /// `scores` and `weighted_values` group features / keys for speed; the results must be the plain
    /// sequential loops' bits.
    #[test]
    fn grouped_loops_equal_the_plain_sequential_sums() {
        let mut seed = 7u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        };
        for (n, heads, head_dim) in [(1, 1, 1), (5, 2, 3), (9, 3, 12), (197, 4, 48), (6, 2, 7)] {
            let d = heads * head_dim;
            let q: Vec<f32> = (0..d).map(|_| next()).collect();
            let keys_t: Vec<f32> = (0..n * d).map(|_| next()).collect();
            let values: Vec<f32> = (0..n * d).map(|_| next()).collect();
            let mut logits = vec![0.0; heads * n];
            scores(&q, &keys_t, head_dim, n, &mut logits);
            let mut out = vec![0.0; d];
            weighted_values(&logits, &values, head_dim, n, &mut out);
            for h in 0..heads {
                for m in 0..n {
                    let mut want = 0.0f32;
                    for e in 0..head_dim {
                        want += q[h * head_dim + e] * keys_t[(h * head_dim + e) * n + m];
                    }
                    assert_eq!(logits[h * n + m].to_bits(), want.to_bits());
                }
                for e in 0..head_dim {
                    let mut want = 0.0f32;
                    for m in 0..n {
                        want += logits[h * n + m] * values[m * d + h * head_dim + e];
                    }
                    assert_eq!(out[h * head_dim + e].to_bits(), want.to_bits());
                }
            }
        }
    }

    #[test]
    fn head_mix_is_linear_across_heads() {
        // Two heads, three keys: dst[g][m] = sum_h W[g][h] src[h][m] + b[g].
        let mix = HeadMix {
            weight: &[1.0, 2.0, -1.0, 0.5],
            bias: &[0.25, -0.5],
        };
        let src = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0];
        let mut dst = [0.0; 6];
        mix.apply(&src, &mut dst, 3);
        assert_eq!(dst, [21.25, 42.25, 63.25, 3.5, 7.5, 11.5]);
    }

    #[test]
    fn class_attention_weights_sum_to_one_and_reach_the_sink() {
        struct Rows(Vec<(usize, usize, Vec<f32>)>);
        impl AttentionSink for Rows {
            fn class_attention(&mut self, block: usize, head: usize, weights: &[f32]) {
                self.0.push((block, head, weights.to_vec()));
            }
        }
        // D = 4, two heads of 2, three tokens; the values are one-hot so out = the weights.
        let q = [1.0, 0.0, 0.0, 2.0];
        // Keys (token-major: [0, 0, 0, 0], [1, 0, 0, 1], [2, 0, 0, -1]) stored transposed, D × n.
        let keys = [0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, -1.0];
        let values = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        let mut weights = [0.0; 6];
        let mut out = [0.0; 4];
        let mut sink = Rows(Vec::new());
        class_attention(
            &q,
            &keys,
            &values,
            2,
            &mut weights,
            &mut out,
            7,
            Some(&mut sink),
        );
        assert_eq!(sink.0.len(), 2);
        let e = [1.0f32, 1f32.exp(), 2f32.exp()];
        let total: f32 = e.iter().sum();
        for (i, (block, head, row)) in sink.0.iter().enumerate() {
            assert_eq!((*block, *head), (7, i));
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-6);
        }
        // Head 0 logits: [0, 1, 2]; head 1: [0, 2, -2].
        for (m, want) in e.iter().map(|x| x / total).enumerate() {
            assert!((sink.0[0].2[m] - want).abs() < 1e-6);
        }
        assert!((out[0] - sink.0[0].2[0]).abs() < 1e-7 && (out[1] - sink.0[0].2[1]).abs() < 1e-7);
        assert!((out[2] - sink.0[1].2[0]).abs() < 1e-7 && (out[3] - sink.0[1].2[1]).abs() < 1e-7);
    }
}
