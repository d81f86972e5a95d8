//! LayerNorm over the last dimension (timm's `nn.LayerNorm(dim, eps=1e-6)`).

use super::int8::ActQuant;
use super::sum::{sum, sum_sq_dev};

/// CaiT's LayerNorm epsilon (timm builds every norm with `partial(nn.LayerNorm, eps=1e-6)`).
pub(crate) const EPS: f32 = 1e-6;

/// A LayerNorm's affine parameters, both `[D]`.
#[derive(Clone, Copy)]
pub(crate) struct LayerNorm<'a> {
    pub(crate) weight: &'a [f32],
    pub(crate) bias: &'a [f32],
}

impl LayerNorm<'_> {
    /// `out = (x - mean) / sqrt(var + eps) * weight + bias` for one token; all slices have length `D`.
    ///
    /// Statistics are two-pass in f32 (mean, then the mean squared deviation from it): unlike the
    /// one-pass `E[x²] - E[x]²` this does not cancel catastrophically when `|mean| >> std`, which the
    /// residual stream of a deep CaiT does reach.
    #[inline]
    pub(crate) fn apply(&self, x: &[f32], out: &mut [f32]) {
        debug_assert!(x.len() == out.len() && x.len() == self.weight.len());
        let n = x.len() as f32;
        let mean = sum(x) / n;
        let var = sum_sq_dev(x, mean) / n;
        let rstd = 1.0 / libm::sqrtf(var + EPS);
        for (((o, &x), &w), &b) in out.iter_mut().zip(x).zip(self.weight).zip(self.bias) {
            *o = (x - mean) * rstd * w + b;
        }
    }

    /// [`apply`](Self::apply), each output quantized as it is made (int8 packs): the same f32
    /// expression, so `quantize(apply(x))` bit for bit, without an f32 buffer.
    #[inline]
    pub(crate) fn apply_quantized(&self, x: &[f32], q: &ActQuant, out: &mut [i8]) {
        debug_assert!(x.len() == out.len() && x.len() == self.weight.len());
        let n = x.len() as f32;
        let mean = sum(x) / n;
        let var = sum_sq_dev(x, mean) / n;
        let rstd = 1.0 / libm::sqrtf(var + EPS);
        for (((o, &x), &w), &b) in out.iter_mut().zip(x).zip(self.weight).zip(self.bias) {
            *o = q.quantize((x - mean) * rstd * w + b);
        }
    }

    /// [`apply_quantized`](Self::apply_quantized) to each of the `D`-wide rows of `x`.
    pub(crate) fn apply_rows_quantized(&self, x: &[f32], q: &ActQuant, out: &mut [i8]) {
        let d = self.weight.len();
        for (x, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            self.apply_quantized(x, q, o);
        }
    }

    /// [`apply`](Self::apply) to each of the `D`-wide rows of `x`.
    pub(crate) fn apply_rows(&self, x: &[f32], out: &mut [f32]) {
        let d = self.weight.len();
        for (x, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            self.apply(x, o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_is_quantize_of_apply() {
        let x: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 * 0.37 - 11.0)
            .collect();
        let w: Vec<f32> = (0..37).map(|i| 0.5 + (i % 5) as f32 * 0.3).collect();
        let b: Vec<f32> = (0..37).map(|i| (i % 3) as f32 * 0.2 - 0.2).collect();
        let ln = LayerNorm {
            weight: &w,
            bias: &b,
        };
        let q = ActQuant::new(0.02, -5.0).unwrap();
        let mut f = vec![0.0; 37];
        ln.apply(&x, &mut f);
        let mut got = vec![0i8; 37];
        ln.apply_quantized(&x, &q, &mut got);
        let want: Vec<i8> = f.iter().map(|&v| q.quantize(v)).collect();
        assert_eq!(got, want);
    }

    proptest::proptest! {
        #[test]
        fn matches_an_f64_reference(
            x in proptest::collection::vec(-50f32..50.0, 1..300),
            offset in -1e3f32..1e3,
        ) {
            let x: Vec<f32> = x.iter().map(|v| v + offset).collect();
            let d = x.len();
            let w: Vec<f32> = (0..d).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect();
            let b: Vec<f32> = (0..d).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
            let mut out = vec![0.0; d];
            LayerNorm { weight: &w, bias: &b }.apply(&x, &mut out);
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            // f32 statistics: the mean is off by about one f32 rounding of the largest |x| per
            // blocked-sum step (`d / LANES` plus a few), and every normalised value by that over
            // the std, times its weight. Up to ~1e3 against a std of ~1 that is a few 1e-5; two
            // close values far from 0 (x = [-685.44, -685.51], std 0.03, a regression seed) make
            // it ~1e-2. A one-pass `E[x²] - E[x]²` would be off by ~max|x|²·eps / var instead.
            let max_abs = x.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
            let std = (var + 1e-6).sqrt();
            let mean_err = (d as f64 / 8.0 + 4.0) * f32::EPSILON as f64 * max_abs;
            for i in 0..d {
                let want = (x[i] as f64 - mean) / std * w[i] as f64 + b[i] as f64;
                let bound = 2e-4 * (1.0 + want.abs()) + mean_err / std * w[i] as f64;
                proptest::prop_assert!((out[i] as f64 - want).abs() <= bound,
                    "{} vs {} (bound {})", out[i], want, bound);
            }
        }
    }
}
