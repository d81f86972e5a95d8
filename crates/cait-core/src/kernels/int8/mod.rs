//! Integer kernels of int8 packs: `i8 × i8` products summed in `i32`.
//!
//! Integer sums are exact and associative, so any order, tiling or SIMD width gives the same bits on
//! every target: kernels are free to be optimised per target. The one kernel, [`matmul`] over
//! [`Rows`] (packed rows for the linear layers, a column block for an attention head), exists as a
//! plain [`generic`] reference (the specification) and as the variant this target uses: the
//! portable register-tiled one, or the Cortex-M DSP (SMLAD) one. One case generator and comparison,
//! `crate::check::int8_matmul_case`, checks every variant against the reference, bit for bit: the
//! host variants in a proptest (`kernel_tests!`), the DSP variant on the device (the firmware's
//! `kernel_check` binary).
//!
//! No sum can overflow: a product of two int8 values is at most `2^14` in magnitude, and the engine
//! refuses reductions longer than [`MAX_REDUCTION`] terms, so every `i32` sum stays below `2^31`.
//! The bias is then added with saturation (a hostile pack cannot make it wrap or panic).

#[cfg(all(feature = "std", target_arch = "aarch64"))]
pub(crate) mod aarch64;
#[cfg(all(feature = "arm-dsp", target_arch = "arm"))]
pub(crate) mod dsp;
pub(crate) mod generic;
#[cfg(not(all(feature = "arm-dsp", target_arch = "arm")))]
pub(crate) mod tiled;
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub(crate) mod x86;

/// Longest reduction an int8 kernel accepts: `MAX_REDUCTION · 2^14 < 2^31`.
pub(crate) const MAX_REDUCTION: usize = (1 << 17) - 1;

/// `count` rows of `k` int8 values, row `i` at `data[i·stride..i·stride + k]`: the operands of
/// the int8 matmul kernel. Rows may be a column block of a wider matrix (one head of a `T × D` key matrix, say).
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    data: &'a [i8],
    k: usize,
    stride: usize,
    count: usize,
}

impl<'a> Rows<'a> {
    /// `data` as back-to-back rows of `k` values (a trailing partial row is ignored).
    pub fn packed(data: &'a [i8], k: usize) -> Rows<'a> {
        Rows {
            data,
            k,
            stride: k.max(1),
            count: data.len().checked_div(k).unwrap_or(0),
        }
    }

    /// Up to `count` rows of `k` values, `stride` apart: as many as `data` holds whole.
    pub fn strided(data: &'a [i8], k: usize, stride: usize, count: usize) -> Rows<'a> {
        let stride = stride.max(1);
        let fit = match data.len().checked_sub(k) {
            Some(rest) => rest / stride + 1,
            None => 0,
        };
        Rows {
            data,
            k,
            stride,
            count: count.min(fit),
        }
    }

    /// Number of rows.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Values per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Distance between the starts of two rows.
    #[cfg_attr(not(all(feature = "arm-dsp", target_arch = "arm")), allow(dead_code))]
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// Row `i < count`.
    #[inline(always)]
    pub(crate) fn row(&self, i: usize) -> &'a [i8] {
        &self.data[i * self.stride..i * self.stride + self.k]
    }
}

/// The matmul kernel this target uses: `emit(t, o, Σ_j x_t[j] · w_o[j])` for every row `t` of `x`
/// and row `o` of `w`, in an unspecified order. Nothing when the row widths differ or are 0.
#[inline]
pub(crate) fn matmul(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    if x.k != w.k || x.k == 0 {
        return;
    }
    #[cfg(all(feature = "arm-dsp", target_arch = "arm"))]
    dsp::matmul(x, w, emit);
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    x86::matmul(x, w, emit);
    #[cfg(all(feature = "std", target_arch = "aarch64"))]
    aarch64::matmul(x, w, emit);
    #[cfg(not(any(
        all(feature = "arm-dsp", target_arch = "arm"),
        all(feature = "std", target_arch = "x86_64"),
        all(feature = "std", target_arch = "aarch64")
    )))]
    tiled::matmul(x, w, emit)
}

/// The int8 matmul kernel this build runs: `"arm-dsp"` (SMLAD), `"x86-64 avx512-vnni"` (the tiled
/// kernel's loops with a `vpdpbusd` tile), `"x86-64 avx-vnni"` (with a 256-bit `vpdpbusd` tile),
/// `"x86-64 avx2"` (with a `vpmaddwd` tile),
/// `"aarch64 sdot"` (with an SDOT tile), each chosen at run time, or `"portable"` (the tiled
/// kernel for the target's baseline).
pub(crate) fn selected() -> &'static str {
    #[cfg(all(feature = "arm-dsp", target_arch = "arm"))]
    return "arm-dsp";
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if crate::kernels::x86::avx512_vnni() {
        return "x86-64 avx512-vnni";
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if crate::kernels::x86::avx_vnni() {
        return "x86-64 avx-vnni";
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if crate::kernels::x86::avx2() {
        return "x86-64 avx2";
    }
    #[cfg(all(feature = "std", target_arch = "aarch64"))]
    if aarch64::sdot() {
        return "aarch64 sdot";
    }
    #[allow(unreachable_code)]
    "portable"
}

/// [`matmul`] on back-to-back rows of `k` values: a linear layer's `x · wᵀ`.
#[inline]
pub(crate) fn linear(x: &[i8], w: &[i8], k: usize, emit: &mut impl FnMut(usize, usize, i32)) {
    matmul(Rows::packed(x, k), Rows::packed(w, k), emit)
}

/// `1.5 · 2^23`: adding and subtracting it rounds an f32 of magnitude below `2^22` to the nearest
/// integer, ties to even, on every IEEE 754 target (no `round` from `std`, no FPU rounding modes).
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `v` clamped to `[lo, hi]` (`lo ≤ hi`), NaN to `lo`. Plain comparisons: on Armv7E-M, whose FPU
/// has no VMAXNM/VMINNM, `f32::max`/`min` are library calls (`fmaxf`, `fminf`).
#[inline(always)]
pub(crate) fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v >= lo { v } else { lo };
    if v <= hi { v } else { hi }
}

/// Round-to-nearest-even of `v`, `|v| <= 2^22`.
#[inline(always)]
pub(crate) fn round_even(v: f32) -> f32 {
    (v + ROUND_MAGIC) - ROUND_MAGIC
}

/// `(min(0, min x), max(0, max x))` over the values of `x` that are not NaN: the range a row
/// quantized at run time covers.
fn range_with_zero(x: &[f32]) -> (f32, f32) {
    let (mut lo, mut hi) = (0.0f32, 0.0f32);
    for &v in x {
        // Plain comparisons (see `clamp`); NaN passes neither.
        if v < lo {
            lo = v;
        }
        if v > hi {
            hi = v;
        }
    }
    (lo, hi)
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
        let v = clamp(x * self.inv, self.lo, self.hi);
        (round_even(v) as i32 + self.zero_point) as i8
    }

    /// The quantization a row quantized at run time gets (the class-token path of a pack whose
    /// `quant.class_path` is `dynamic`): asymmetric over `[min(0, lo), max(0, hi)]` of the finite
    /// values in 255 steps, zero point mapping the low end to −128, so zero is exact. A row with
    /// no range (all zeros), or one whose range overflows, gets [`UNIT`](Self::UNIT).
    pub(crate) fn of_row(x: &[f32]) -> ActQuant {
        let (lo, hi) = range_with_zero(x);
        let scale = (hi - lo) / 255.0;
        if scale <= 0.0 {
            return ActQuant::UNIT;
        }
        // `hi - lo` is never NaN (lo ≤ 0 ≤ hi). `lo / scale` is in [-255, 0], or not finite when
        // the range overflowed, which `new` refuses.
        let zero_point = clamp(-128.0 - round_even(lo / scale), -128.0, 127.0);
        ActQuant::new(scale, zero_point).unwrap_or(ActQuant::UNIT)
    }

    /// The symmetric quantization a row of keys, values, queries or attention weights gets at run
    /// time (`quant.activation_scales` `dynamic`): zero point 0, scale `max |x| / 127` over the
    /// finite values, so the largest maps to ±127. A row of zeros, or one whose maximum overflows
    /// the scale, gets [`UNIT`](Self::UNIT).
    pub(crate) fn symmetric_of_row(x: &[f32]) -> ActQuant {
        let (lo, hi) = range_with_zero(x);
        let max = if -lo > hi { -lo } else { hi };
        ActQuant::new(max / 127.0, 0.0).unwrap_or(ActQuant::UNIT)
    }

    /// [`quantize`](Self::quantize) every element.
    #[inline]
    pub(crate) fn quantize_slice(&self, x: &[f32], out: &mut [i8]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = self.quantize(v);
        }
    }
}

/// Shared tests: any matmul kernel `$kernel` against [`generic::matmul`], bit for bit, on the cases
/// of `crate::check::int8_matmul_case` (the ones the firmware's `kernel_check` runs on the device).
#[cfg(test)]
macro_rules! kernel_tests {
    ($name:ident, $kernel:path) => {
        mod $name {
            use super::super::Rows;
            use crate::check::{MatmulKernel, int8_matmul_case};

            const KERNEL: MatmulKernel<'static> =
                &|x, w, e| $kernel(x, w, &mut |t, o, a| e(t, o, a));

            proptest::proptest! {
                #[test]
                fn equals_the_generic_kernel(seed in proptest::prelude::any::<u64>()) {
                    let case = int8_matmul_case(seed, KERNEL);
                    proptest::prop_assert!(case.is_ok(), "{:?}", case);
                }
            }

            /// The longest reduction allowed, all -128 · -128: the largest sum, 2^31 - 2^14.
            #[test]
            fn longest_reduction_does_not_overflow() {
                let k = super::super::MAX_REDUCTION;
                let x = vec![-128i8; k];
                let x = Rows::packed(&x, k);
                let mut got = vec![];
                KERNEL(x, x, &mut |t, o, a| got.push((t, o, a)));
                assert_eq!(got, vec![(0, 0, (k as i32) * 16384)]);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    kernel_tests!(tiled_kernel, super::super::tiled::matmul);
    kernel_tests!(selected_kernel, super::super::matmul);
    // The AVX2, AVX-VNNI and AVX-512 VNNI builds where the CPU has them (else the portable one:
    // the same test as `tiled_kernel`).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    kernel_tests!(x86_avx2_kernel, super::super::x86::matmul_avx2_or_portable);
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    kernel_tests!(
        x86_avx_vnni_kernel,
        super::super::x86::matmul_avx_vnni_or_portable
    );
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    kernel_tests!(x86_vnni_kernel, super::super::x86::matmul_vnni_or_portable);
    #[cfg(all(feature = "std", target_arch = "aarch64"))]
    kernel_tests!(aarch64_kernel, super::super::aarch64::matmul);

    #[test]
    fn rows_hold_only_whole_rows() {
        let data = [0i8; 10];
        assert_eq!(Rows::packed(&data, 3).count(), 3);
        assert_eq!(Rows::packed(&data, 0).count(), 0);
        // Rows 0..3 start at 0, 4, 8: the third would end at 11 > 10.
        assert_eq!(Rows::strided(&data, 3, 4, 5).count(), 2);
        assert_eq!(Rows::strided(&data, 2, 4, 5).count(), 3);
        assert_eq!(Rows::strided(&data, 11, 1, 5).count(), 0);
        assert_eq!(Rows::strided(&data, 2, 4, 1).row(0).len(), 2);
    }

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
        // Symmetric over the largest magnitude; zeros and infinities get the unit quantization.
        let q = ActQuant::symmetric_of_row(&[0.5, -2.54, f32::NAN, 1.0]);
        assert_eq!((q.scale, q.zero_point), (2.54 / 127.0, 0));
        assert_eq!(q.quantize(-2.54), -127);
        assert_eq!(q.quantize(0.5), 25);
        assert_eq!(ActQuant::symmetric_of_row(&[0.0, -0.0]), ActQuant::UNIT);
        assert_eq!(ActQuant::symmetric_of_row(&[f32::INFINITY]), ActQuant::UNIT);
        assert_eq!(ActQuant::symmetric_of_row(&[]), ActQuant::UNIT);
        assert!(ActQuant::new(f32::NAN, 0.0).is_none());
        assert!(ActQuant::new(1e-45, 0.0).is_none()); // reciprocal overflows
        assert!(ActQuant::new(1.0, 128.0).is_none());
        assert!(ActQuant::new(1.0, 0.5).is_none());
    }

    #[test]
    fn row_quantization_covers_the_row_and_zero() {
        let x = [-1.0f32, 0.5, 3.0, 2.0];
        let q = ActQuant::of_row(&x);
        assert_eq!(q.scale, 4.0 / 255.0);
        // -1 / (4/255) = -63.75 → -64: zero point -128 + 64.
        assert_eq!(q.zero_point, -64);
        assert_eq!(q.quantize(0.0), -64);
        assert_eq!(q.quantize(-1.0), -128);
        assert_eq!(q.quantize(3.0), 127);
        // All non-negative: zero is the low end.
        let q = ActQuant::of_row(&[0.25, 1.0]);
        assert_eq!(
            (q.zero_point, q.quantize(0.0), q.quantize(1.0)),
            (-128, -128, 127)
        );
        // No range, or one that overflows: the unit quantization, no panic.
        assert_eq!(ActQuant::of_row(&[0.0; 3]), ActQuant::UNIT);
        assert_eq!(ActQuant::of_row(&[]), ActQuant::UNIT);
        assert_eq!(ActQuant::of_row(&[f32::MAX, -f32::MAX]), ActQuant::UNIT);
        assert_eq!(ActQuant::of_row(&[f32::INFINITY, 1.0]), ActQuant::UNIT);
        // NaN is skipped.
        assert_eq!(ActQuant::of_row(&[f32::NAN, 1.0]).zero_point, -128);
    }

    proptest::proptest! {
        /// Every value of the row quantizes within half a step of itself (no clipping).
        #[test]
        fn row_quantization_does_not_clip(x in proptest::collection::vec(-1e3f32..1e3, 1..40)) {
            let q = ActQuant::of_row(&x);
            for &v in &x {
                let back = q.scale * (q.quantize(v) as i32 - q.zero_point) as f32;
                proptest::prop_assert!((back - v).abs() <= q.scale * 0.5 * 1.001 + 1e-6, "{v} -> {back}");
            }
        }

        #[test]
        fn quantize_matches_f64_rounding(x in -300f32..300.0, scale in 0.01f32..4.0, zp in -128i32..128) {
            let q = ActQuant::new(scale, zp as f32).unwrap();
            let v = (x * (1.0 / scale)) as f64;
            let want = (v.round_ties_even() + zp as f64).clamp(-128.0, 127.0) as i8;
            proptest::prop_assert_eq!(q.quantize(x), want);
        }
    }
}
