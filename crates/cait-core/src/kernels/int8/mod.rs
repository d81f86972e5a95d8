//! Integer kernels of int8 packs: `i8 × i8` products summed in `i32`.
//!
//! Integer sums are exact and associative, so any order, tiling or SIMD width gives the same bits on
//! every target: kernels are free to be optimised per target. Each kernel exists as a plain
//! [`generic`] reference (the specification) and as the optimised variant [`linear`] uses; a shared
//! proptest suite (`kernel_tests!`) checks any variant against the reference, bit for bit — a
//! Cortex-M DSP (SMLAD) variant plugs into the same suite.
//!
//! No sum can overflow: a product of two int8 values is at most `2^14` in magnitude, and the engine
//! refuses reductions longer than [`MAX_REDUCTION`] terms, so every `i32` sum stays below `2^31`.
//! The bias is then added with saturation (a hostile pack cannot make it wrap or panic).

#[cfg(all(feature = "arm-dsp", target_arch = "arm"))]
pub(crate) mod dsp;
pub(crate) mod generic;
#[cfg(not(all(feature = "arm-dsp", target_arch = "arm")))]
pub(crate) mod tiled;

/// Longest reduction an int8 kernel accepts: `MAX_REDUCTION · 2^14 < 2^31`.
pub(crate) const MAX_REDUCTION: usize = (1 << 17) - 1;

/// The linear kernel this target uses: `emit(t, o, Σ_j x[t·k + j] · w[o·k + j])` for every row `t`
/// of `x` and row `o` of `w` (each `k` wide), in an unspecified order.
#[inline]
pub(crate) fn linear(x: &[i8], w: &[i8], k: usize, emit: &mut impl FnMut(usize, usize, i32)) {
    #[cfg(all(feature = "arm-dsp", target_arch = "arm"))]
    dsp::linear(x, w, k, emit);
    #[cfg(not(all(feature = "arm-dsp", target_arch = "arm")))]
    tiled::linear(x, w, k, emit)
}

/// `1.5 · 2^23`: adding and subtracting it rounds an f32 of magnitude below `2^22` to the nearest
/// integer, ties to even, on every IEEE 754 target (no `round` from `std`, no FPU rounding modes).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// Round-to-nearest-even of `v`, `|v| <= 2^22`.
#[inline(always)]
pub(crate) fn round_even(v: f32) -> f32 {
    (v + ROUND_MAGIC) - ROUND_MAGIC
}

/// The static quantization of one activation tensor: `real = scale · (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ActQuant {
    pub(crate) scale: f32,
    pub(crate) zero_point: i32,
    /// `1 / scale`, rounded once.
    inv: f32,
    /// `-128 - zero_point` and `127 - zero_point`: the clamp before rounding.
    lo: f32,
    hi: f32,
}

impl ActQuant {
    /// Scale 1, zero point 0.
    pub(crate) const UNIT: ActQuant = ActQuant {
        scale: 1.0,
        zero_point: 0,
        inv: 1.0,
        lo: -128.0,
        hi: 127.0,
    };

    /// `None` unless `scale` is finite and positive (with a finite reciprocal) and `zero_point` is an
    /// int8 value.
    pub(crate) fn new(scale: f32, zero_point: f32) -> Option<ActQuant> {
        let inv = 1.0 / scale;
        let ok = scale.is_finite()
            && scale > 0.0
            && inv.is_finite()
            && zero_point.is_finite()
            && (-128.0..=127.0).contains(&zero_point)
            && zero_point as i32 as f32 == zero_point;
        ok.then(|| ActQuant {
            scale,
            zero_point: zero_point as i32,
            inv,
            lo: -128.0 - zero_point,
            hi: 127.0 - zero_point,
        })
    }

    /// `clamp(round(x / scale) + zero_point, -128, 127)`, as `round_even(x · (1/scale))`; NaN maps
    /// to -128.
    #[inline(always)]
    pub(crate) fn quantize(&self, x: f32) -> i8 {
        // max/min return the non-NaN operand, so NaN becomes `lo`.
        let v = (x * self.inv).max(self.lo).min(self.hi);
        (round_even(v) as i32 + self.zero_point) as i8
    }

    /// [`quantize`](Self::quantize) every element.
    #[inline]
    pub(crate) fn quantize_slice(&self, x: &[f32], out: &mut [i8]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = self.quantize(v);
        }
    }
}

/// Shared tests: any linear kernel `$kernel` against [`generic::linear`], bit for bit.
#[cfg(test)]
macro_rules! kernel_tests {
    ($name:ident, $kernel:path) => {
        mod $name {
            use super::super::generic;

            fn run(
                x: &[i8],
                w: &[i8],
                k: usize,
                f: impl Fn(&[i8], &[i8], usize, &mut dyn FnMut(usize, usize, i32)),
            ) -> Vec<Option<i32>> {
                let (rows, m) = (x.len() / k, w.len() / k);
                let mut out = vec![None; rows * m];
                f(x, w, k, &mut |t, o, acc| {
                    assert!(out[t * m + o].is_none(), "({t}, {o}) emitted twice");
                    out[t * m + o] = Some(acc);
                });
                out
            }

            proptest::proptest! {
                #[test]
                fn equals_the_generic_kernel(
                    rows in 1usize..12,
                    m in 1usize..12,
                    k in 1usize..80,
                    seed in proptest::prelude::any::<u64>(),
                    extreme in proptest::bool::ANY,
                ) {
                    let mut s = seed | 1;
                    let mut next = move || {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        // Sometimes only the extremes -128/127, the largest products and sums.
                        if extreme { if s & 1 == 0 { -128 } else { 127 } } else { (s >> 24) as i8 }
                    };
                    let x: Vec<i8> = (0..rows * k).map(|_| next()).collect();
                    let w: Vec<i8> = (0..m * k).map(|_| next()).collect();
                    let want = run(&x, &w, k, |x, w, k, e| generic::linear(x, w, k, &mut |t, o, a| e(t, o, a)));
                    let got = run(&x, &w, k, |x, w, k, e| $kernel(x, w, k, &mut |t, o, a| e(t, o, a)));
                    proptest::prop_assert!(want.iter().all(|v| v.is_some()));
                    proptest::prop_assert_eq!(got, want);
                }
            }

            /// The longest reduction allowed, all -128 · -128: the largest sum, 2^31 - 2^14.
            #[test]
            fn longest_reduction_does_not_overflow() {
                let k = super::super::MAX_REDUCTION;
                let x = vec![-128i8; k];
                let got = run(&x, &x, k, |x, w, k, e| $kernel(x, w, k, &mut |t, o, a| e(t, o, a)));
                assert_eq!(got, vec![Some((k as i32) * 16384)]);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    kernel_tests!(tiled_kernel, super::super::tiled::linear);
    kernel_tests!(selected_kernel, super::super::linear);

    #[test]
    fn quantize_rounds_half_to_even_and_clamps() {
        let q = ActQuant::new(0.5, 3.0).unwrap();
        // x / 0.5 = 2.5 → 2 (even), + 3.
        assert_eq!(q.quantize(1.25), 5);
        // 3.5 → 4, + 3.
        assert_eq!(q.quantize(1.75), 7);
        assert_eq!(q.quantize(-0.75), 1); // -1.5 → -2, + 3
        assert_eq!(q.quantize(1e9), 127);
        assert_eq!(q.quantize(-1e9), -128);
        assert_eq!(q.quantize(f32::INFINITY), 127);
        assert_eq!(q.quantize(f32::NEG_INFINITY), -128);
        assert_eq!(q.quantize(f32::NAN), -128);
        assert!(ActQuant::new(0.0, 0.0).is_none());
        assert!(ActQuant::new(f32::NAN, 0.0).is_none());
        assert!(ActQuant::new(1e-45, 0.0).is_none()); // reciprocal overflows
        assert!(ActQuant::new(1.0, 128.0).is_none());
        assert!(ActQuant::new(1.0, 0.5).is_none());
    }

    proptest::proptest! {
        #[test]
        fn quantize_matches_f64_rounding(x in -300f32..300.0, scale in 0.01f32..4.0, zp in -128i32..128) {
            let q = ActQuant::new(scale, zp as f32).unwrap();
            let v = (x * (1.0 / scale)) as f64;
            let want = (v.round_ties_even() + zp as f64).clamp(-128.0, 127.0) as i8;
            proptest::prop_assert_eq!(q.quantize(x), want);
        }
    }
}
