//! GELU, exact form (timm's `nn.GELU()` default, `approximate='none'`).

/// `0.5 * x * (1 + erf(x / sqrt(2)))`, written as PyTorch's CPU kernel writes it.
#[inline]
pub(crate) fn gelu(x: f32) -> f32 {
    x * 0.5 * (1.0 + libm::erff(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// `|t|` beyond which [`erf_rational`] returns ±1 (`erf(3.92)` rounds to 1 in f32).
const ERF_CLAMP: f32 = 3.92;
/// Numerator of [`erf_rational`], in powers of `t²` (fitted here: a weighted least-squares fit of
/// `erf` on [0, 3.92], iterated towards minimax). The fitted f32 values as printed: the leading one
/// is near, but not, 2/√π.
#[allow(clippy::approx_constant, clippy::excessive_precision)]
const ERF_P: [f32; 6] = [
    1.128_379_1,
    0.183_182_31,
    0.051_945_053,
    0.003_497_760_3,
    0.000_286_178_66,
    2.201_585_9e-6,
];
/// Denominator of [`erf_rational`], in powers of `t²`.
#[allow(clippy::excessive_precision)]
const ERF_Q: [f32; 6] = [
    1.0,
    0.495_674_13,
    0.111_261_196,
    0.014_426_286,
    0.001_111_261_8,
    3.972_902e-5,
];

/// `erf(t) ≈ t·P(t²) / Q(t²)` on `|t| ≤ 3.92`, `±1` beyond: within 4.1e-7 of `erf` everywhere,
/// in about 25 plain f32 operations (Horner, one division, no table) — a few times cheaper
/// than `libm::erff` on a Cortex-M4, whose FPU has no exp.
#[inline(always)]
fn erf_rational(t: f32) -> f32 {
    let t2 = t * t;
    let mut num = ERF_P[5];
    let mut den = ERF_Q[5];
    for i in (0..5).rev() {
        num = num * t2 + ERF_P[i];
        den = den * t2 + ERF_Q[i];
    }
    // Exactly ±1 from the clamp on (the fit is an ulp short there), so GELU is exactly 0 or x;
    // the fraction, which overflows for large |t|, is not used there.
    if t.abs() >= ERF_CLAMP {
        t.signum()
    } else {
        t * num / den
    }
}

/// GELU on [`erf_rational`]: what the int8 engine feeds its `fc2` quantizer. Within 2.4e-7 ·
/// max(1, |x|) of the exact GELU — far below the int8 step it is rounded to next — and the same
/// bits on every target (only `+ − × ÷` and comparisons, no contraction).
#[inline(always)]
pub(crate) fn gelu_rational(x: f32) -> f32 {
    x * 0.5 * (1.0 + erf_rational(x * core::f32::consts::FRAC_1_SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rational_gelu_matches_an_f64_reference() {
        let mut worst = 0.0f64;
        for i in -120_000..=120_000 {
            let x = i as f32 * 1e-4;
            let want = 0.5 * x as f64 * (1.0 + libm::erf(x as f64 / 2f64.sqrt()));
            let err = (gelu_rational(x) as f64 - want).abs() / (x.abs() as f64).max(1.0);
            worst = worst.max(err);
            let e = (erf_rational(x) as f64 - libm::erf(x as f64)).abs();
            assert!(e <= 4.1e-7, "erf({x}): {e}");
        }
        assert!(worst <= 2.4e-7, "{worst}");
        assert_eq!(gelu_rational(0.0), 0.0);
        assert_eq!(gelu_rational(100.0), 100.0);
        assert_eq!(gelu_rational(-100.0), 0.0);
        assert!(gelu_rational(f32::NAN).is_nan());
    }

    #[test]
    fn matches_an_f64_reference() {
        for i in -4000..=4000 {
            let x = i as f32 * 0.002;
            let want = 0.5 * x as f64 * (1.0 + libm::erf(x as f64 / 2f64.sqrt()));
            // erff is within ~1 ulp; x/sqrt(2) rounding adds one more: 1e-6 relative to max(|x|, 1).
            assert!(
                (gelu(x) as f64 - want).abs() <= 1e-6 * (x.abs() as f64).max(1.0),
                "{x}"
            );
        }
        assert_eq!(gelu(0.0), 0.0);
    }
}
