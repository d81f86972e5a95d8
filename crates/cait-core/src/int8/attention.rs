//! int8 attention, one query row at a time for all heads (as the float engine, see
//! `crate::attention`): keys `D × n` (transposed) and values `n × D` are int8 in the workspace.
//!
//! q·kᵀ and attention·v each have an int8 form (`i32` sums: exact, any order) and an f32 form
//! (f32 queries or weights against the dequantized keys or values, summed sequentially, scaled
//! once at the end); the pack chooses.

use crate::attention::HeadMix;
use crate::kernels::int8::ActQuant;
use crate::kernels::softmax::softmax;

/// The keys and values of one attention, int8.
pub(crate) struct KeysValues<'w> {
    /// `D × n`: row `c` holds feature `c` of every key.
    pub(crate) keys: &'w [i8],
    /// `n × D`.
    pub(crate) values: &'w [i8],
    /// Scale of the keys (symmetric).
    pub(crate) key_scale: f32,
    /// Scale of the values (symmetric).
    pub(crate) value_scale: f32,
    /// Keys `n`.
    pub(crate) n: usize,
    /// Features per head.
    pub(crate) head_dim: usize,
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
    /// `D` sums.
    pub(crate) acc: &'w mut [i32],
}

/// `logits[h][m] = q_h · k_{m,h}` for every head and key (`logits` is `H × n`).
pub(crate) fn scores(q: Query<'_>, kv: &KeysValues<'_>, logits: &mut [f32]) {
    let (n, hd) = (kv.n, kv.head_dim);
    let heads = kv.keys.chunks_exact(hd * n).zip(logits.chunks_exact_mut(n));
    match q {
        Query::I8(q, q_scale) => {
            let scale = q_scale * kv.key_scale;
            for ((kh, lh), qh) in heads.zip(q.chunks_exact(hd)) {
                {
                    // Sum in i32 in the row's own memory, then convert in place.
                    let acc: &mut [i32] = bytemuck::cast_slice_mut(&mut *lh);
                    acc.fill(0);
                    let mut pairs = qh.chunks_exact(2).zip(kh.chunks_exact(2 * n));
                    for (qp, kp) in &mut pairs {
                        let (k0, k1) = kp.split_at(n);
                        let (q0, q1) = (i32::from(qp[0]), i32::from(qp[1]));
                        for ((a, &x), &y) in acc.iter_mut().zip(k0).zip(k1) {
                            *a += q0 * i32::from(x) + q1 * i32::from(y);
                        }
                    }
                    if hd % 2 == 1 {
                        let q0 = i32::from(qh[hd - 1]);
                        for (a, &x) in acc.iter_mut().zip(&kh[(hd - 1) * n..]) {
                            *a += q0 * i32::from(x);
                        }
                    }
                }
                for v in lh.iter_mut() {
                    *v = (v.to_bits() as i32) as f32 * scale;
                }
            }
        }
        Query::F32(q) => {
            for ((kh, lh), qh) in heads.zip(q.chunks_exact(hd)) {
                lh.fill(0.0);
                for (&qv, k) in qh.iter().zip(kh.chunks_exact(n)) {
                    for (l, &x) in lh.iter_mut().zip(k) {
                        *l += qv * f32::from(x);
                    }
                }
                for l in lh.iter_mut() {
                    *l *= kv.key_scale;
                }
            }
        }
    }
}

/// `out_h = sum_m weights[h][m] · v_{m,h}`: int8 (`weights` quantized by `quant` into
/// `probs`, `i32` sums in `acc`) when `quant` is given, else f32 over the dequantized values.
pub(crate) fn weighted_values(
    weights: &[f32],
    quant: Option<&ActQuant>,
    kv: &KeysValues<'_>,
    probs: &mut [i8],
    acc: &mut [i32],
    out: &mut [f32],
) {
    let (n, hd) = (kv.n, kv.head_dim);
    let d = out.len();
    match quant {
        Some(q) => {
            q.quantize_slice(weights, probs);
            acc.fill(0);
            for (m, value) in kv.values.chunks_exact(d).enumerate() {
                let per_head = acc.chunks_exact_mut(hd).zip(value.chunks_exact(hd));
                for (h, (ah, vh)) in per_head.enumerate() {
                    let a = i32::from(probs[h * n + m]);
                    for (s, &v) in ah.iter_mut().zip(vh) {
                        *s += a * i32::from(v);
                    }
                }
            }
            let scale = q.scale * kv.value_scale;
            for (o, &s) in out.iter_mut().zip(acc.iter()) {
                *o = s as f32 * scale;
            }
        }
        None => {
            out.fill(0.0);
            for (m, value) in kv.values.chunks_exact(d).enumerate() {
                let per_head = out.chunks_exact_mut(hd).zip(value.chunks_exact(hd));
                for (h, (oh, vh)) in per_head.enumerate() {
                    let a = weights[h * n + m];
                    for (o, &v) in oh.iter_mut().zip(vh) {
                        *o += a * f32::from(v);
                    }
                }
            }
            for o in out.iter_mut() {
                *o *= kv.value_scale;
            }
        }
    }
}

/// Talking-heads attention of one query row (see `crate::attention::talking_heads`). On return
/// `row.logits` holds the f32 weights that multiplied the values (and `row.probs` their int8
/// form when `av` is given).
pub(crate) fn talking_heads(
    q: Query<'_>,
    kv: &KeysValues<'_>,
    proj_l: &HeadMix<'_>,
    proj_w: &HeadMix<'_>,
    av: Option<&ActQuant>,
    row: &mut RowScratch<'_>,
    out: &mut [f32],
) {
    let n = kv.n;
    scores(q, kv, row.logits);
    proj_l.apply(row.logits, row.weights, n);
    for r in row.weights.chunks_exact_mut(n) {
        softmax(r);
    }
    proj_w.apply(row.weights, row.logits, n);
    weighted_values(row.logits, av, kv, row.probs, row.acc, out);
}

/// Class attention of the class token's query (see `crate::attention::class_attention`). On return
/// `row.weights` holds the softmax rows (and `row.probs` their int8 form when `av` is given);
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
    weighted_values(row.weights, av, kv, row.probs, row.acc, out);
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let kv = KeysValues { keys: &keys, values: &values, key_scale: 0.03, value_scale: 0.05, n, head_dim };
            let mut logits = vec![0.0; heads * n];
            scores(Query::I8(&q8, 0.02), &kv, &mut logits);
            let qf: Vec<f32> = q8.iter().map(|&v| v as f32 * 0.01).collect();
            let mut logits_f = vec![0.0; heads * n];
            scores(Query::F32(&qf), &kv, &mut logits_f);
            for h in 0..heads {
                for m in 0..n {
                    let mut acc = 0i32;
                    let mut f = 0.0f32;
                    for e in h * head_dim..(h + 1) * head_dim {
                        acc += q8[e] as i32 * keys[e * n + m] as i32;
                        f += qf[e] * keys[e * n + m] as f32;
                    }
                    proptest::prop_assert_eq!(logits[h * n + m].to_bits(), (acc as f32 * (0.02f32 * 0.03)).to_bits());
                    proptest::prop_assert_eq!(logits_f[h * n + m].to_bits(), (f * 0.03).to_bits());
                }
            }
            let weights: Vec<f32> = data(heads * n, seed + 3).iter().map(|&v| v as f32 / 100.0).collect();
            let aq = ActQuant::new(0.01, 0.0).unwrap();
            let (mut probs, mut acc) = (vec![0i8; heads * n], vec![0i32; d]);
            let mut out8 = vec![0.0; d];
            weighted_values(&weights, Some(&aq), &kv, &mut probs, &mut acc, &mut out8);
            let mut outf = vec![0.0; d];
            weighted_values(&weights, None, &kv, &mut probs, &mut acc, &mut outf);
            for h in 0..heads {
                for e in 0..head_dim {
                    let c = h * head_dim + e;
                    let (mut s, mut f) = (0i32, 0.0f32);
                    for m in 0..n {
                        s += aq.quantize(weights[h * n + m]) as i32 * values[m * d + c] as i32;
                        f += weights[h * n + m] * values[m * d + c] as f32;
                    }
                    proptest::prop_assert_eq!(out8[c].to_bits(), (s as f32 * (0.01f32 * 0.05)).to_bits());
                    proptest::prop_assert_eq!(outf[c].to_bits(), (f * 0.05).to_bits());
                }
            }
        }
    }
}
