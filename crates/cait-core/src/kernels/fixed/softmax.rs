//! Softmax over one row of integer scores, in integers.
//!
//! `x` holds scores in units of some real scale `s` (an attention row's `q·k` accumulators times
//! the head scale, say). The caller folds `s · log2(e)` into one [`Multiplier`] ([`to_exp2`]), so
//! `exp(s · (x_i - max))` is `2^y_i` with `y_i` the multiplier applied to `x_i - max`, in Q24.
//! Each `2^y_i` comes from [`exp2_neg`] (Q31), the row sum is exact in `u64`, and one `u64`
//! division per row gives the reciprocal that normalizes every value into Q30 (`2^30` is 1).
//!
//! Bound (tested against the f64 softmax of the real scores): every output is within
//! `2.5·10⁻⁷ · p_i + 2^-29` of `p_i`, the exact probability — the exponential's error, the Q24
//! rounding of `y` and the multiplier's 2⁻³¹, plus a unit and a half of the Q30 result.

use super::{EXP2_FRAC_BITS, Multiplier, exp2_neg};

/// Fractional bits of a probability: `2^30` is 1.
pub const PROB_FRAC_BITS: u32 = 30;

/// The multiplier that takes score differences in units of `scale` to the Q24 exponent of
/// [`exp2_neg`]: `scale · log2(e) · 2^24`. `None` when that is out of a multiplier's range.
/// For the quantizer (f64; not on the forward path).
pub fn to_exp2(scale: f64) -> Option<Multiplier> {
    Multiplier::from_real(scale * core::f64::consts::LOG2_E * (1u64 << EXP2_FRAC_BITS) as f64)
}

/// `out[i] ≈ 2^30 · exp(s·x_i) / Σ_j exp(s·x_j)`, `to_exp2` from [`to_exp2`]`(s)`.
///
/// Nothing is written when `x` is empty, `out` is not as long as `x`, or `x` is longer than
/// `2^17 - 1` (the longest int8 reduction; the sum of Q31 terms stays below 2^48).
pub fn softmax(x: &[i32], to_exp2: Multiplier, out: &mut [u32]) {
    if x.is_empty() || out.len() != x.len() || x.len() >= 1 << 17 {
        return;
    }
    let max = x.iter().copied().fold(i32::MIN, i32::max);
    let mut sum = 0u64;
    for (o, &v) in out.iter_mut().zip(x) {
        // v - max ≤ 0 fits in 33 bits; apply_wide saturates it to 32.
        let y = to_exp2.apply_wide(v as i64 - max as i64);
        let e = exp2_neg(y);
        *o = e;
        sum += e as u64;
    }
    if sum == 0 {
        // Cannot happen (the maximum's own term is 2^31 - 114, whatever the multiplier); kept
        // so that no input divides by zero.
        out.iter_mut().for_each(|o| *o = 0);
        return;
    }
    // sum ≥ 2^30 (the maximum's term is ≈ 2^31), so recip < 2^32 and e · recip < 2^63.
    const ONE: u32 = 62;
    let recip = (1u64 << ONE) / sum;
    let shift = ONE - PROB_FRAC_BITS;
    for o in out.iter_mut() {
        *o = ((*o as u64 * recip + (1 << (shift - 1))) >> shift) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[i32], scale: f64) -> Vec<f64> {
        let max = x.iter().copied().max().unwrap() as f64;
        let e: Vec<f64> = x
            .iter()
            .map(|&v| ((v as f64 - max) * scale).exp())
            .collect();
        let total: f64 = e.iter().sum();
        e.iter().map(|v| v / total).collect()
    }

    proptest::proptest! {
        /// The stated bound, for scales from 2^-20 to 2^-2 per unit (score spreads from a
        /// fraction of a unit to hundreds of units: the exponential's whole useful range) and rows
        /// of 1 to 600 scores.
        #[test]
        fn matches_the_f64_softmax(
            x in proptest::collection::vec(-(1i32 << 28)..1 << 28, 1..600),
            spread in 0u32..28,
            log_scale in -20f64..-2.0,
        ) {
            let x: Vec<i32> = x.iter().map(|v| v >> spread).collect();
            let scale = log_scale.exp2();
            let mut out = vec![0u32; x.len()];
            softmax(&x, to_exp2(scale).unwrap(), &mut out);
            let want = reference(&x, scale);
            let one = (1u64 << PROB_FRAC_BITS) as f64;
            for (&o, &p) in out.iter().zip(&want) {
                let bound = 2.5e-7 * p + 2f64.powi(-29);
                proptest::prop_assert!((o as f64 / one - p).abs() <= bound,
                    "{} vs {} (bound {:e})", o as f64 / one, p, bound);
            }
        }
    }

    #[test]
    fn extreme_rows() {
        let m = to_exp2(0.01).unwrap();
        let mut out = [0u32; 3];
        softmax(&[i32::MIN, i32::MAX, 0], m, &mut out);
        assert_eq!(out, [0, 1 << PROB_FRAC_BITS, 0]);
        softmax(&[7, 7, 7], m, &mut out);
        assert!(
            out.iter()
                .all(|&o| o.abs_diff((1 << PROB_FRAC_BITS) / 3) <= 1)
        );
        // Refused shapes write nothing.
        let mut out = [5u32; 2];
        softmax(&[1, 2, 3], m, &mut out);
        softmax(&[], m, &mut out[..0]);
        assert_eq!(out, [5, 5]);
    }
}
