//! Choosing a static activation range from calibration statistics: min-max, percentile or MSE.

use super::CalibMethod;
use super::observe::{BINS, Histogram};

/// Fraction of values a percentile range may clip at each end.
pub(crate) const PERCENTILE_TAIL: f64 = 1e-4;

/// `(scale, zero_point)` of an int8 activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ActParams {
    pub(crate) scale: f32,
    pub(crate) zero_point: i32,
}

impl ActParams {
    /// Symmetric: `[-amax, amax]` onto `[-127, 127]`, zero point 0.
    pub(crate) fn symmetric(amax: f64) -> ActParams {
        ActParams {
            scale: positive(amax / 127.0),
            zero_point: 0,
        }
    }

    /// Asymmetric: `[lo, hi]` (widened to contain 0, so zero is exact) onto `[-128, 127]`.
    pub(crate) fn asymmetric(lo: f64, hi: f64) -> ActParams {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = positive((hi - lo) / 255.0);
        let zero_point = (-128.0 - lo / scale as f64).round().clamp(-128.0, 127.0) as i32;
        ActParams { scale, zero_point }
    }
}

/// Smallest scale used: an activation that was constant zero over the calibration set.
const MIN_SCALE: f32 = 1e-8;

/// `s` as a usable scale (finite, at least [`MIN_SCALE`]).
fn positive(s: f64) -> f32 {
    let s = s as f32;
    if s.is_finite() { s.max(MIN_SCALE) } else { 1.0 }
}

/// The range `method` picks from `hist` (of `|x|` when `symmetric`, else of `x`), as
/// `(lo, hi)`; `min`/`max` are the exact extremes (the histogram's bins are coarser).
pub(crate) fn choose(
    hist: &Histogram,
    symmetric: bool,
    method: CalibMethod,
    min: f64,
    max: f64,
) -> ActParams {
    let amax = min.abs().max(max.abs());
    let total: u64 = hist.counts.iter().sum();
    match method {
        CalibMethod::MinMax => {
            if symmetric {
                ActParams::symmetric(amax)
            } else {
                ActParams::asymmetric(min, max)
            }
        }
        CalibMethod::Percentile => {
            if total == 0 {
                return choose(hist, symmetric, CalibMethod::MinMax, min, max);
            }
            if symmetric {
                ActParams::symmetric(quantile(hist, 1.0 - PERCENTILE_TAIL).min(amax))
            } else {
                let lo = quantile(hist, PERCENTILE_TAIL).max(min);
                let hi = quantile(hist, 1.0 - PERCENTILE_TAIL).min(max);
                ActParams::asymmetric(lo, hi)
            }
        }
        CalibMethod::Mse => {
            if total == 0 {
                return choose(hist, symmetric, CalibMethod::MinMax, min, max);
            }
            // Shrink the min-max range by k/100 and keep the k with the least expected squared
            // error: clipped values cost (x - clip)², the rest a uniform rounding error step²/12.
            let mut best = (f64::INFINITY, 100);
            for k in (20..=100).rev() {
                let f = k as f64 / 100.0;
                let p = if symmetric {
                    ActParams::symmetric(amax * f)
                } else {
                    ActParams::asymmetric(min * f, max * f)
                };
                let err = expected_error(hist, symmetric, p);
                if err < best.0 {
                    best = (err, k);
                }
            }
            let f = best.1 as f64 / 100.0;
            if symmetric {
                ActParams::symmetric(amax * f)
            } else {
                ActParams::asymmetric(min * f, max * f)
            }
        }
    }
}

/// The value below which a fraction `q` of the histogram's mass lies (linear within a bin).
fn quantile(hist: &Histogram, q: f64) -> f64 {
    let total: u64 = hist.counts.iter().sum();
    let target = q * total as f64;
    let width = (hist.hi - hist.lo) as f64 / BINS as f64;
    let mut seen = 0.0;
    for (b, &c) in hist.counts.iter().enumerate() {
        let next = seen + c as f64;
        if next >= target && c > 0 {
            let frac = (target - seen) / c as f64;
            return hist.lo as f64 + (b as f64 + frac) * width;
        }
        seen = next;
    }
    hist.hi as f64
}

/// Expected squared quantization error of the histogram's values under `p`.
fn expected_error(hist: &Histogram, symmetric: bool, p: ActParams) -> f64 {
    let s = p.scale as f64;
    let (qlo, qhi) = if symmetric {
        (-127.0, 127.0)
    } else {
        (-128.0, 127.0)
    };
    let lo = s * (qlo - p.zero_point as f64);
    let hi = s * (qhi - p.zero_point as f64);
    let rounding = s * s / 12.0;
    let mut err = 0.0;
    for (b, &c) in hist.counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let x = hist.center(b);
        let e = if x > hi {
            (x - hi) * (x - hi)
        } else if x < lo {
            (lo - x) * (lo - x)
        } else {
            rounding
        };
        err += c as f64 * e;
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist_of(values: &[f32], lo: f32, hi: f32) -> Histogram {
        let mut h = Histogram::new(lo, hi);
        for &v in values {
            h.add(v);
        }
        h
    }

    #[test]
    fn asymmetric_covers_the_range_with_zero_exact() {
        let p = ActParams::asymmetric(-0.17, 4.0);
        assert!((p.scale as f64 - 4.17 / 255.0).abs() < 1e-7);
        // -0.17 maps to -128 (to rounding), so 0 maps to the zero point.
        let q_lo = (-0.17 / p.scale as f64).round() + p.zero_point as f64;
        assert!((q_lo + 128.0).abs() <= 1.0);
        let p = ActParams::asymmetric(1.0, 2.0); // widened to [0, 2]
        assert_eq!(p.zero_point, -128);
    }

    #[test]
    fn percentile_and_mse_clip_a_lone_outlier() {
        // 100,000 values in [-1, 1] and one at 50: min-max spends the grid on the outlier.
        let mut v: Vec<f32> = (0..100_000)
            .map(|i| (i % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        v.push(50.0);
        let abs: Vec<f32> = v.iter().map(|x| x.abs()).collect();
        let h = hist_of(&abs, 0.0, 50.0);
        let mm = choose(&h, true, CalibMethod::MinMax, -1.0, 50.0);
        let pc = choose(&h, true, CalibMethod::Percentile, -1.0, 50.0);
        let mse = choose(&h, true, CalibMethod::Mse, -1.0, 50.0);
        assert!((mm.scale - 50.0 / 127.0).abs() < 1e-6);
        assert!(pc.scale < 1.1 / 127.0, "{pc:?}");
        // MSE weighs the outlier's clipping error (50 - c)² against 100,000 rounding errors
        // (c / 127)² / 12: the minimum is at c = 50 / (1 + 100000 / (12 · 127²)) = 33.0.
        assert!((mse.scale * 127.0 - 33.0).abs() < 0.7, "{mse:?}");
    }
}
