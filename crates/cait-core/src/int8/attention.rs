//! int8 attention, one query row at a time for all heads (as the float engine, see
//! `crate::attention`): keys `n × D` and values `D × n` (transposed) are int8 in the workspace, laid
//! out so that both products reduce along contiguous memory — q·kᵀ along a key's head slice,
//! attention·v along a value channel — and run on the int8 matmul kernel like the linear layers.
//!
//! q·kᵀ and attention·v each have an int8 form (`i32` sums: exact, any order) and an f32 form
//! (f32 queries or weights against the dequantized keys or values, summed sequentially, scaled
//! once at the end); the pack chooses. With the pack's activation scales `dynamic` each key and
//! value has its own scale ([`KeysValues::token_scales`]): a key's scales its score; a value's
//! multiplies the weights of its token before the sum, and the int8 form quantizes those scaled
//! weights per head over their own range.

use crate::attention::TalkingHeads;
use crate::kernels::int8::{self as k8, ActQuant, Rows};
use crate::kernels::softmax::softmax;

/// The keys and values of one attention, int8.
pub(crate) struct KeysValues<'w> {
    /// `n × D`: row `m` holds key `m`.
    pub(crate) keys: &'w [i8],
    /// `D × n`: row `c` holds feature `c` of every value.
    pub(crate) values: &'w [i8],
    /// Scale of the keys (symmetric).
    pub(crate) key_scale: f32,
    /// Scale of the values (symmetric).
    pub(crate) value_scale: f32,
    /// Each key's and each value's own scale (`n` each), in place of `key_scale` and
    /// `value_scale`, and each value channel's sum over the tokens (`D`, `Σ_m v_{m,c}` of the
    /// int8 values): rows quantized at run time.
    pub(crate) token_scales: Option<TokenScales<'w>>,
    /// Keys `n`.
    pub(crate) n: usize,
    /// Features per head.
    pub(crate) head_dim: usize,
}

/// The per-token scales of keys and values quantized at run time (see [`KeysValues`]).
#[derive(Clone, Copy)]
pub(crate) struct TokenScales<'w> {
    pub(crate) keys: &'w [f32],
    pub(crate) values: &'w [f32],
    pub(crate) value_sums: &'w [i32],
}

/// A query row.
#[derive(Clone, Copy)]
pub(crate) enum Query<'q> {
    /// int8, symmetric with this scale.
    I8(&'q [i8], f32),
    /// f32.
    F32(&'q [f32]),
}

/// Buffers for one query row.
pub(crate) struct RowScratch<'w> {
    /// `H × n` f32.
    pub(crate) logits: &'w mut [f32],
    /// `H × n` f32.
    pub(crate) weights: &'w mut [f32],
    /// `H × n` int8: the quantized attention weights (int8 attention·v).
    pub(crate) probs: &'w mut [i8],
    /// With token scales and int8 attention·v: leave the dequantized weights in the spare buffer
    /// (see [`weighted_values`]), for a probe.
    pub(crate) dequantize: bool,
}

/// `logits[h][m] = q_h · k_{m,h}` for every head and key (`logits` is `H × n`).
pub(crate) fn scores(q: Query<'_>, kv: &KeysValues<'_>, logits: &mut [f32]) {
    let (n, hd) = (kv.n, kv.head_dim);
    let d = kv.keys.len().checked_div(n).unwrap_or(0);
    for (h, lh) in logits.chunks_exact_mut(n).enumerate() {
        // Head h of every key: n rows of hd, d apart.
        let keys = kv.keys.get(h * hd..).unwrap_or_default();
        match q {
            Query::I8(q, q_scale) => {
                let qh = Rows::strided(q.get(h * hd..).unwrap_or_default(), hd, hd, 1);
                let keys = Rows::strided(keys, hd, d, n);
                match kv.token_scales {
                    None => {
                        let scale = q_scale * kv.key_scale;
                        k8::matmul(qh, keys, &mut |_, m, acc| lh[m] = acc as f32 * scale);
                    }
                    Some(t) => k8::matmul(qh, keys, &mut |_, m, acc| {
                        lh[m] = acc as f32 * (q_scale * t.keys[m]);
                    }),
                }
            }
            Query::F32(q) => {
                let qh = q.get(h * hd..(h + 1) * hd).unwrap_or_default();
                for (m, l) in lh.iter_mut().enumerate() {
                    let key = keys.get(m * d..m * d + hd).unwrap_or_default();
                    let mut acc = 0.0f32;
                    for (&qv, &x) in qh.iter().zip(key) {
                        acc += qv * f32::from(x);
                    }
                    *l = acc * kv.token_scales.map_or(kv.key_scale, |t| t.keys[m]);
                }
            }
        }
    }
}

/// `out_h = sum_m weights[h][m] · v_{m,h}`: int8 (`weights` quantized by `quant` into
/// `probs`, `i32` sums) when `quant` is given, else f32 over the dequantized values. With
/// [`KeysValues::token_scales`], `spare` (`H × n`) first takes `weights[h][m] · value_scale[m]`:
/// the f32 form sums those against the int8 values, and the int8 form quantizes each head's row of
/// them over its own range ([`ActQuant::of_row`]: a row of softmax weights, all ≥ 0, gets all 256
/// steps; `quant` unused), takes the zero point off through the value channels' sums, and, when
/// `dequantize`, leaves in `spare` the weights that multiplied the values, dequantized (`(q -
/// zero_point) · scale / value_scale[m]`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn weighted_values(
    weights: &[f32],
    quant: Option<&ActQuant>,
    kv: &KeysValues<'_>,
    probs: &mut [i8],
    spare: &mut [f32],
    dequantize: bool,
    out: &mut [f32],
) {
    let (n, hd) = (kv.n, kv.head_dim);
    // Channels of head h: hd rows of n, n apart.
    let channels = kv.values.chunks_exact(hd * n);
    let (weights, scale) = match kv.token_scales {
        None => (weights, kv.value_scale),
        Some(t) => {
            for (s, w) in spare.chunks_exact_mut(n).zip(weights.chunks_exact(n)) {
                for ((s, &w), &v) in s.iter_mut().zip(w).zip(t.values) {
                    *s = w * v;
                }
            }
            if quant.is_some() {
                let heads = channels
                    .zip(out.chunks_exact_mut(hd))
                    .zip(probs.chunks_exact_mut(n))
                    .zip(spare.chunks_exact_mut(n))
                    .zip(t.value_sums.chunks_exact(hd));
                for ((((vh, oh), ph), sh), sums) in heads {
                    let q = ActQuant::of_row(sh);
                    q.quantize_slice(sh, ph);
                    let p = Rows::strided(ph, n, n, 1);
                    k8::matmul(p, Rows::strided(vh, n, n, hd), &mut |_, e, s| {
                        let s = s.saturating_sub(q.zero_point.saturating_mul(sums[e]));
                        oh[e] = s as f32 * q.scale;
                    });
                    if dequantize {
                        for ((s, &p), &v) in sh.iter_mut().zip(ph.iter()).zip(t.values) {
                            *s = (i32::from(p) - q.zero_point) as f32 * q.scale / v;
                        }
                    }
                }
                return;
            }
            (&*spare, 1.0)
        }
    };
    match quant {
        Some(q) => {
            q.quantize_slice(weights, probs);
            let scale = q.scale * scale;
            let heads = channels
                .zip(out.chunks_exact_mut(hd))
                .zip(probs.chunks_exact(n));
            for ((vh, oh), ph) in heads {
                let p = Rows::strided(ph, n, n, 1);
                k8::matmul(p, Rows::strided(vh, n, n, hd), &mut |_, e, s| {
                    oh[e] = s as f32 * scale;
                });
            }
        }
        None => {
            let heads = channels
                .zip(out.chunks_exact_mut(hd))
                .zip(weights.chunks_exact(n));
            for ((vh, oh), wh) in heads {
                for (o, v) in oh.iter_mut().zip(vh.chunks_exact(n)) {
                    let mut acc = 0.0f32;
                    for (&a, &x) in wh.iter().zip(v) {
                        acc += a * f32::from(x);
                    }
                    *o = acc * scale;
                }
            }
        }
    }
}

/// Talking-heads attention of one query row (see `crate::attention::talking_heads`). On return
/// `row.logits` holds the f32 weights that multiplied the values (and `row.probs` their int8
/// form when `av` is given; with token scales, `row.weights` their dequantized int8 form, see
/// [`weighted_values`]).
pub(crate) fn talking_heads(
    q: Query<'_>,
    kv: &KeysValues<'_>,
    mix: &TalkingHeads<'_>,
    av: Option<&ActQuant>,
    row: &mut RowScratch<'_>,
    out: &mut [f32],
) {
    let n = kv.n;
    scores(q, kv, row.logits);
    mix.proj_l.apply(row.logits, row.weights, n);
    for r in row.weights.chunks_exact_mut(n) {
        softmax(r);
    }
    mix.proj_w.apply(row.weights, row.logits, n);
    weighted_values(
        row.logits,
        av,
        kv,
        row.probs,
        row.weights,
        row.dequantize,
        out,
    );
}

/// Class attention of the class token's query (see `crate::attention::class_attention`). On return
/// `row.weights` holds the softmax rows (and `row.probs` their int8 form when `av` is given;
/// with token scales, `row.logits` their dequantized int8 form, see [`weighted_values`]);
/// `each_head(head, weights)` sees each row as it is made.
pub(crate) fn class_attention(
    q: Query<'_>,
    kv: &KeysValues<'_>,
    av: Option<&ActQuant>,
    row: &mut RowScratch<'_>,
    out: &mut [f32],
    mut each_head: impl FnMut(usize, &[f32]),
) {
    let n = kv.n;
    scores(q, kv, row.weights);
    for (head, r) in row.weights.chunks_exact_mut(n).enumerate() {
        softmax(r);
        each_head(head, r);
    }
    weighted_values(
        row.weights,
        av,
        kv,
        row.probs,
        row.logits,
        row.dequantize,
        out,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn data(len: usize, seed: u32) -> Vec<i8> {
        let mut s = seed.wrapping_mul(2654435761) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 24) as i8
            })
            .collect()
    }

    proptest::proptest! {
        /// Scores and weighted values against plain loops (exact for int8; the stated sequential
        /// order, bit for bit, for f32).
        #[test]
        fn match_plain_loops(n in 1usize..20, heads in 1usize..4, head_dim in 1usize..9, seed in 0u32..1000) {
            let d = heads * head_dim;
            let keys = data(d * n, seed);
            let values = data(n * d, seed + 1);
            let q8 = data(d, seed + 2);
            let kv = KeysValues { keys: &keys, values: &values, key_scale: 0.03, value_scale: 0.05, token_scales: None, n, head_dim };
            let mut logits = vec![0.0; heads * n];
            scores(Query::I8(&q8, 0.02), &kv, &mut logits);
            let qf: Vec<f32> = q8.iter().map(|&v| v as f32 * 0.01).collect();
            // Head h's query against key m: the exact int8 sum and the sequential f32 one.
            let score = |h: usize, m: usize| {
                let mut acc = 0i32;
                let mut f = 0.0f32;
                for e in h * head_dim..(h + 1) * head_dim {
                    acc += q8[e] as i32 * keys[m * d + e] as i32;
                    f += qf[e] * keys[m * d + e] as f32;
                }
                (acc, f)
            };
            let mut logits_f = vec![0.0; heads * n];
            scores(Query::F32(&qf), &kv, &mut logits_f);
            for h in 0..heads {
                for m in 0..n {
                    let (acc, f) = score(h, m);
                    proptest::prop_assert_eq!(logits[h * n + m].to_bits(), (acc as f32 * (0.02f32 * 0.03)).to_bits());
                    proptest::prop_assert_eq!(logits_f[h * n + m].to_bits(), (f * 0.03).to_bits());
                }
            }
            let weights: Vec<f32> = data(heads * n, seed + 3).iter().map(|&v| v as f32 / 100.0).collect();
            let aq = ActQuant::new(0.01, 0.0).unwrap();
            let mut probs = vec![0i8; heads * n];
            let mut out8 = vec![0.0; d];
            let mut spare = vec![0.0; heads * n];
            weighted_values(&weights, Some(&aq), &kv, &mut probs, &mut spare, true, &mut out8);
            let mut outf = vec![0.0; d];
            weighted_values(&weights, None, &kv, &mut probs, &mut spare, true, &mut outf);
            for h in 0..heads {
                for e in 0..head_dim {
                    let c = h * head_dim + e;
                    let (mut s, mut f) = (0i32, 0.0f32);
                    for m in 0..n {
                        s += aq.quantize(weights[h * n + m]) as i32 * values[c * n + m] as i32;
                        f += weights[h * n + m] * values[c * n + m] as f32;
                    }
                    proptest::prop_assert_eq!(out8[c].to_bits(), (s as f32 * (0.01f32 * 0.05)).to_bits());
                    proptest::prop_assert_eq!(outf[c].to_bits(), (f * 0.05).to_bits());
                }
            }

            // Each key and value with its own scale (rows quantized at run time).
            let ks: Vec<f32> = (0..n).map(|m| 0.01 + 0.003 * m as f32).collect();
            let vs: Vec<f32> = (0..n).map(|m| 0.02 + 0.005 * ((m * 7) % 5) as f32).collect();
            let sums: Vec<i32> = values.chunks_exact(n).map(|c| c.iter().map(|&v| v as i32).sum()).collect();
            let token_scales = TokenScales { keys: &ks, values: &vs, value_sums: &sums };
            let kt = KeysValues { token_scales: Some(token_scales), ..kv };
            scores(Query::I8(&q8, 0.02), &kt, &mut logits);
            scores(Query::F32(&qf), &kt, &mut logits_f);
            for h in 0..heads {
                for m in 0..n {
                    let (acc, f) = score(h, m);
                    proptest::prop_assert_eq!(logits[h * n + m].to_bits(), (acc as f32 * (0.02 * ks[m])).to_bits());
                    proptest::prop_assert_eq!(logits_f[h * n + m].to_bits(), (f * ks[m]).to_bits());
                }
            }
            let mut out_quiet = vec![0.0; d];
            let mut untouched = vec![f32::NAN; heads * n];
            weighted_values(&weights, Some(&aq), &kt, &mut probs, &mut untouched, false, &mut out_quiet);
            weighted_values(&weights, Some(&aq), &kt, &mut probs, &mut spare, true, &mut out8);
            proptest::prop_assert_eq!(bits(&out_quiet), bits(&out8));
            let effective = spare.clone();
            weighted_values(&weights, None, &kt, &mut probs, &mut spare, true, &mut outf);
            for h in 0..heads {
                let scaled: Vec<f32> = (0..n).map(|m| weights[h * n + m] * vs[m]).collect();
                let q = ActQuant::of_row(&scaled);
                for m in 0..n {
                    let want = (q.quantize(scaled[m]) as i32 - q.zero_point) as f32 * q.scale / vs[m];
                    proptest::prop_assert_eq!(effective[h * n + m].to_bits(), want.to_bits());
                }
                for e in 0..head_dim {
                    let c = h * head_dim + e;
                    let (mut s, mut f) = (0i32, 0.0f32);
                    for m in 0..n {
                        s += (q.quantize(scaled[m]) as i32 - q.zero_point) * values[c * n + m] as i32;
                        f += scaled[m] * values[c * n + m] as f32;
                    }
                    proptest::prop_assert_eq!(out8[c].to_bits(), (s as f32 * q.scale).to_bits());
                    proptest::prop_assert_eq!(outf[c].to_bits(), f.to_bits());
                }
            }
        }
    }
}
