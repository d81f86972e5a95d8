//! GELU on int8, as a 256-entry table.
//!
//! In an integer-only pack `fc1`'s output is requantized to int8 (scale `s_in`, zero point `z_in`)
//! and GELU maps each of its 256 possible values straight to `fc2`'s int8 input (scale `s_out`,
//! zero point `z_out`): `table[q as u8] = sat_i8(round(gelu(s_in · (q - z_in)) / s_out) + z_out)`,
//! the exact (erf) GELU computed once in f64 by the quantizer. Applying it is one load per value.
//!
//! Chosen over an integer polynomial (I-BERT's second-order erf, I-ViT's ShiftGELU) because it
//! is exact — every entry is the correctly rounded GELU of its input, within half a unit of the
//! output, which no polynomial of the same cost matches — and cheaper: a load instead of several
//! multiplications, for 256 bytes of flash per layer.

/// The table for an int8 input of scale `input_scale` and zero point `input_zero_point` and an
/// int8 output of `output_scale` and `output_zero_point`: entry `b` is the output for the input
/// `b as i8`. `None` when a scale is not finite and positive. For the quantizer (f64).
pub fn table(
    input_scale: f64,
    input_zero_point: i32,
    output_scale: f64,
    output_zero_point: i32,
) -> Option<[i8; 256]> {
    let ok = |s: f64| s.is_finite() && s > 0.0;
    if !(ok(input_scale) && ok(output_scale)) {
        return None;
    }
    let mut t = [0i8; 256];
    for (b, e) in t.iter_mut().enumerate() {
        let x = input_scale * ((b as u8 as i8) as i32 - input_zero_point) as f64;
        let g = 0.5 * x * (1.0 + libm::erf(x * core::f64::consts::FRAC_1_SQRT_2));
        let q = libm::round(g / output_scale) + output_zero_point as f64;
        *e = q.clamp(-128.0, 127.0) as i8;
    }
    Some(t)
}

/// In place: `x[i] = table[x[i] as u8]`.
#[inline]
pub fn apply(table: &[i8; 256], x: &mut [i8]) {
    for v in x {
        *v = table[*v as u8 as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound, over the whole int8 input range for a spread of quantizations: every output is
    /// within half a unit of the f64 GELU (`erf` integrated here, not the table's `libm`),
    /// saturated to int8.
    #[test]
    fn every_entry_is_the_rounded_gelu() {
        let erf_gelu = |x: f64| {
            // erf(t) = 2/√π ∫₀ᵗ e^(-s²) ds by Simpson's rule (4,000 steps: error < 1e-12 for
            // |t| ≤ 6; beyond, erf is ±1 in f64).
            let t = (x / 2f64.sqrt()).clamp(-6.0, 6.0);
            let n = 4000;
            let h = t / n as f64;
            let f = |i: usize| (-(i as f64 * h).powi(2)).exp();
            let inner: f64 = (1..n)
                .map(|i| if i % 2 == 1 { 4.0 } else { 2.0 } * f(i))
                .sum();
            let erf = (f(0) + inner + f(n)) * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt();
            0.5 * x * (1.0 + erf)
        };
        for (s_in, z_in, s_out, z_out) in [
            (0.05, 0, 0.03, -40),
            (0.1, 12, 0.05, -100),
            (0.02, -7, 0.02, 0),
            (0.2, 30, 0.1, -128),
        ] {
            let t = table(s_in, z_in, s_out, z_out).unwrap();
            let mut all: Vec<i8> = (-128..=127).collect();
            apply(&t, &mut all);
            for (q, &got) in (-128i32..=127).zip(&all) {
                let want = erf_gelu(s_in * (q - z_in) as f64) / s_out + z_out as f64;
                let lo = (want - 0.5 - 1e-9).ceil().clamp(-128.0, 127.0);
                let hi = (want + 0.5 + 1e-9).floor().clamp(-128.0, 127.0);
                assert!((lo..=hi).contains(&(got as f64)), "{q}: {got} vs {want}");
            }
        }
        assert!(table(0.0, 0, 1.0, 0).is_none());
        assert!(table(1.0, 0, f64::NAN, 0).is_none());
    }
}
