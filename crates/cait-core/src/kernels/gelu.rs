//! GELU, exact form (timm's `nn.GELU()` default, `approximate='none'`).

/// `0.5 * x * (1 + erf(x / sqrt(2)))`, written as PyTorch's CPU kernel writes it.
#[inline]
pub(crate) fn gelu(x: f32) -> f32 {
    x * 0.5 * (1.0 + libm::erff(x * core::f32::consts::FRAC_1_SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;

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
