//! LayerNorm over one row of the integer residual stream, into int8, in integers.
//!
//! With `D` values `x_j` (units of the stream's scale; LayerNorm does not depend on it except
//! through `eps`), `S1 = Σ x_j` and `S2 = Σ x_j²` exactly (`i64`, `u128`):
//! `(x_j - mean) / √(var + eps) = (D·x_j - S1) / √(D·S2 - S1² + D²·eps)` — an exact integer
//! numerator over the square root of an exact integer. The radicand is scaled by an even power
//! of two into `[2^44, 2^46)`, [`isqrt`] gives a 23-bit denominator and one `u64` division per row
//! its reciprocal; each normalized value is then one 64-bit product, in Q16. The affine part and
//! the output quantization are one [`Multiplier`] and one Q16 bias per channel ([`channel`]).
//!
//! Bound (tested against the f64 LayerNorm with the same `eps`): every output is
//! `round(t_j)` for some `t_j` within `(|gain_j| + 2) · 2^-16 + 5·10⁻⁷ · |t_j* - bias_j|` of the
//! exact, unrounded output `t_j*` (then saturated to int8): the denominator's 2⁻²² relative, the
//! Q16 rounding of the normalized value (scaled by the gain), the gain's and bias's roundings.

use super::{Multiplier, isqrt, saturate_i8};

/// Fractional bits of the normalized values and of the per-channel bias.
pub const NORM_FRAC_BITS: u32 = 16;

/// Longest row: `√D · 2^23 · 2^31 < 2^63` keeps every product in 64 bits.
pub const MAX_WIDTH: usize = 1 << 15;

/// The per-channel affine part with the output quantization folded in: the output of channel `j`
/// is `round(y_j · gain[j] + bias[j] / 2^16)`, `y_j` the normalized value (see [`channel`]).
#[derive(Clone, Copy, Debug)]
pub struct Affine<'a> {
    /// `γ_j / s_out`.
    pub gain: &'a [Multiplier],
    /// `(β_j / s_out + zero_point) · 2^16`, rounded.
    pub bias: &'a [i32],
}

/// One channel's gain and bias for LayerNorm weight `gamma`, bias `beta` and an int8 output of
/// scale `out_scale` and zero point `zero_point`: `None` when they are not finite or out of range.
/// For the quantizer (f64; not on the forward path).
pub fn channel(
    gamma: f64,
    beta: f64,
    out_scale: f64,
    zero_point: i32,
) -> Option<(Multiplier, i32)> {
    if !(out_scale.is_finite() && out_scale > 0.0) {
        return None;
    }
    let gain = Multiplier::from_real(gamma / out_scale)?;
    let bias = libm::round((beta / out_scale + zero_point as f64) * (1 << NORM_FRAC_BITS) as f64);
    (bias.is_finite() && bias.abs() < i32::MAX as f64).then_some((gain, bias as i32))
}

/// `eps` in the units [`layer_norm`] takes: `eps / input_scale² · 2^16`, rounded (saturating).
/// For the quantizer (f64; not on the forward path).
pub fn eps_units(eps: f64, input_scale: f64) -> u64 {
    let v = libm::round(eps / (input_scale * input_scale) * (1 << NORM_FRAC_BITS) as f64);
    if v.is_nan() || v < 0.0 {
        0
    } else if v >= u64::MAX as f64 {
        u64::MAX
    } else {
        v as u64
    }
}

/// `out[j] = sat_i8(round(affine(LayerNorm(x))_j))`, `eps` from [`eps_units`].
///
/// Nothing is written unless `x`, `out`, `affine.gain` and `affine.bias` have the same length,
/// between 1 and [`MAX_WIDTH`].
pub fn layer_norm(x: &[i32], eps: u64, affine: Affine<'_>, out: &mut [i8]) {
    let d = x.len();
    if d == 0 || d > MAX_WIDTH || out.len() != d || affine.gain.len() != d || affine.bias.len() != d
    {
        return;
    }
    let (mut s1, mut s2) = (0i64, 0u128);
    for &v in x {
        s1 += v as i64;
        s2 += (v as i64 * v as i64) as u128;
    }
    let dd = d as u128;
    // Exact: D·S2 ≥ S1² (Cauchy-Schwarz), both below 2^96. The radicand is kept in eps's units
    // (2^-16), so eps adds exactly however small it is: below 2^112 + 2^94.
    let var = dd * s2 - (s1.unsigned_abs() as u128).pow(2);
    let radicand = (var << NORM_FRAC_BITS) + dd * dd * eps as u128;
    // Scale the radicand by an even power of two into [2^44, 2^46): a 23-bit root.
    let bits = 128 - radicand.leading_zeros() as i32;
    let shift = (bits - 45) & !1; // even, and bits - shift is 45 or 46
    let scaled = if shift >= 0 {
        (radicand >> shift) as u64
    } else {
        (radicand << -shift) as u64
    };
    let root = isqrt(scaled) as u64;
    // The numerators shift by half as much, less the radicand's 2^16:
    // (D·x - S1) / √(radicand / 2^16) = num' / root.
    let half = shift / 2 - NORM_FRAC_BITS as i32 / 2;
    // root ∈ [2^22, 2^23) (or 0 when every x is equal and eps is 0: the normalized row is 0).
    let recip = (1u64 << 53).checked_div(root).unwrap_or(0);
    const Q: u32 = 53 - NORM_FRAC_BITS;
    for (j, o) in out.iter_mut().enumerate() {
        let num = d as i64 * x[j] as i64 - s1;
        let num = if half >= 0 {
            (num + ((1i64 << half) >> 1)) >> half
        } else {
            num << -half
        };
        // |num| ≤ √D · root < 2^31 for D ≤ 2^15, recip ≤ 2^31: the product fits.
        let y = ((num * recip as i64) + (1 << (Q - 1))) >> Q;
        let z = affine.gain[j].apply(y as i32) as i64 + affine.bias[j] as i64;
        *o = saturate_i8((z + (1 << (NORM_FRAC_BITS - 1))) >> NORM_FRAC_BITS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The stated bound, over rows of 1 to 800 values whose magnitudes range from a few units
        /// to 2^30 (the spread), scales of the stream from 2^-16 to 1 (so eps matters or not), and
        /// LayerNorm weights, biases and output quantizations as a quantizer would fold them.
        #[test]
        fn matches_the_f64_layer_norm(
            x in proptest::collection::vec(-(1i32 << 30)..1 << 30, 1..800),
            spread in 0u32..29,
            log_scale in -16f64..0.0,
            gamma in proptest::collection::vec(-3f64..3.0, 800),
            beta in proptest::collection::vec(-2f64..2.0, 800),
            out_scale in 0.003f64..0.2,
            zero_point in -30i32..30,
        ) {
            let x: Vec<i32> = x.iter().map(|v| v >> spread).collect();
            let d = x.len();
            let scale = log_scale.exp2();
            let (gain, bias): (Vec<Multiplier>, Vec<i32>) = (0..d)
                .map(|j| channel(gamma[j], beta[j], out_scale, zero_point).unwrap())
                .unzip();
            let eps = eps_units(1e-6, scale);
            let mut out = vec![0i8; d];
            layer_norm(&x, eps, Affine { gain: &gain, bias: &bias }, &mut out);

            let real: Vec<f64> = x.iter().map(|&v| v as f64 * scale).collect();
            let mean = real.iter().sum::<f64>() / d as f64;
            let var = real.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            let eps_real = eps as f64 / 65536.0 * scale * scale;
            for j in 0..d {
                // A constant row with no eps in its units normalizes to 0, as the kernel defines
                // it (`constant_rows_and_refused_shapes`), not to 0/0.
                let y = if var + eps_real > 0.0 {
                    (real[j] - mean) / (var + eps_real).sqrt()
                } else {
                    0.0
                };
                let b = beta[j] / out_scale + zero_point as f64;
                let t = y * gamma[j] / out_scale + b;
                let slack = (gain[j].to_real().abs() + 2.0) / 65536.0 + 5e-7 * (t - b).abs();
                let (lo, hi) = ((t - slack).round(), (t + slack).round());
                let got = out[j] as f64;
                proptest::prop_assert!(
                    (lo.clamp(-128.0, 127.0)..=hi.clamp(-128.0, 127.0)).contains(&got),
                    "channel {j}: {got} for {t} ± {slack:e}");
            }
        }
    }

    #[test]
    fn constant_rows_and_refused_shapes() {
        let gain = [Multiplier::from_real(10.0).unwrap(); 4];
        let bias = [3 << NORM_FRAC_BITS; 4];
        let affine = Affine {
            gain: &gain,
            bias: &bias,
        };
        let mut out = [0i8; 4];
        // Every value equal: the normalized row is 0 with or without eps, the output the bias.
        layer_norm(&[i32::MAX; 4], 0, affine, &mut out);
        assert_eq!(out, [3; 4]);
        layer_norm(&[-5; 4], 1 << 20, affine, &mut out);
        assert_eq!(out, [3; 4]);
        // ±1 around the mean with no eps: ±10 + 3.
        layer_norm(
            &[i32::MIN, i32::MAX, i32::MIN, i32::MAX],
            0,
            affine,
            &mut out,
        );
        assert_eq!(out, [-7, 13, -7, 13]);
        let mut out = [9i8; 4];
        layer_norm(&[1, 2, 3], 0, affine, &mut out[..3]);
        layer_norm(&[1, 2, 3, 4], 0, affine, &mut out[..3]);
        assert_eq!(out, [9; 4], "mismatched lengths write nothing");
        let wide = vec![0i32; MAX_WIDTH + 1];
        let mut o = vec![0i8; MAX_WIDTH + 1];
        let g = vec![Multiplier::ZERO; MAX_WIDTH + 1];
        let b = vec![1 << 20; MAX_WIDTH + 1];
        layer_norm(&wide, 0, Affine { gain: &g, bias: &b }, &mut o);
        assert!(o.iter().all(|&v| v == 0), "too wide a row writes nothing");
    }
}
