//! Integer-only arithmetic, for cores without an FPU (Cortex-M0+/M3, RV32IMC): fixed-point
//! requantization, an integer square root, a base-2 exponential, and the softmax, LayerNorm and
//! GELU of an integer-only int8 pack built on them.
//!
//! No function here performs a float operation on its working path: integer additions,
//! multiplications (at most `i64 × i64` products that fit in 64 bits, or `u128` sums), shifts and
//! one integer division per row. Only the constructors the quantizer calls ([`Multiplier::from_real`],
//! [`gelu::table`]) use f64, once, off the forward path. Integer arithmetic is exact, so every
//! function gives the same bits on every target.
//!
//! Every approximation states its error bound against the f64 function beside the test that
//! checks it over its whole input range:
//! - [`Multiplier::apply`]: `round_half_up(x · m)`, exact for the multiplier it holds (the
//!   multiplier itself is the real factor to 2⁻³¹ relative);
//! - [`isqrt`]: exact (`⌊√x⌋`);
//! - [`exp2_neg`]: within `6.2·10⁻⁸ · 2^⌈y⌉` of `2^y`, plus half a unit of its Q31 result;
//! - [`softmax::softmax`], [`layer_norm::layer_norm`], [`gelu`]: see their modules.

pub mod gelu;
pub mod layer_norm;
pub mod softmax;

/// A real factor `mantissa · 2^-shift`, the mantissa a Q31 value with `|mantissa|` in
/// `[2^30, 2^31)` (or 0), `shift` in `1..=62`: TensorFlow Lite's quantized multiplier with its
/// exponent folded into one right shift.
///
/// [`apply`](Self::apply) rounds once, half towards +∞: `(x · mantissa + 2^(shift-1)) >> shift`,
/// as TensorFlow Lite's single-rounding reference kernels and CMSIS-NN's `arm_nn_requantize` do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Multiplier {
    mantissa: i32,
    shift: u8,
}

impl Multiplier {
    /// Zero.
    pub const ZERO: Multiplier = Multiplier {
        mantissa: 0,
        shift: 1,
    };

    /// A multiplier from its parts (as a pack stores them): `None` unless `shift` is in `1..=62`
    /// and `|mantissa|` is in `[2^30, 2^31)` or 0.
    pub const fn new(mantissa: i32, shift: u8) -> Option<Multiplier> {
        let m = mantissa.unsigned_abs();
        if shift >= 1 && shift <= 62 && (m == 0 || (m >= 1 << 30 && m < 1 << 31)) {
            Some(Multiplier { mantissa, shift })
        } else {
            None
        }
    }

    /// The multiplier nearest `real` (mantissa rounded to nearest): `None` unless `real` is finite
    /// and `|real|` is 0 or in `[2^-32, 2^30)`. For the quantizer (f64; not on the forward path).
    pub fn from_real(real: f64) -> Option<Multiplier> {
        if !real.is_finite() {
            return None;
        }
        if real == 0.0 {
            return Some(Multiplier::ZERO);
        }
        // real = f · 2^e, 0.5 ≤ |f| < 1.
        let (f, mut e) = libm::frexp(real);
        let mut mantissa = libm::round(f * (1u64 << 31) as f64) as i64;
        if mantissa.unsigned_abs() == 1 << 31 {
            mantissa /= 2;
            e += 1;
        }
        let shift = 31 - e;
        if !(1..=62).contains(&shift) {
            return None;
        }
        Multiplier::new(mantissa as i32, shift as u8)
    }

    /// The Q31 mantissa.
    pub const fn mantissa(self) -> i32 {
        self.mantissa
    }

    /// The right shift.
    pub const fn shift(self) -> u8 {
        self.shift
    }

    /// The real factor it stands for (for reports).
    pub fn to_real(self) -> f64 {
        self.mantissa as f64 / (1u64 << self.shift) as f64
    }

    /// `round_half_up(x · mantissa / 2^shift)`, saturated to `i32`.
    #[inline(always)]
    pub fn apply(self, x: i32) -> i32 {
        round_shift(x as i64 * self.mantissa as i64, self.shift)
    }

    /// [`apply`](Self::apply) to a 64-bit `x` with `|x| < 2^32`; larger values saturate first.
    #[inline(always)]
    pub fn apply_wide(self, x: i64) -> i32 {
        const LIMIT: i64 = (1 << 32) - 1;
        let x = x.clamp(-LIMIT, LIMIT);
        // |x · mantissa| < 2^63: one 64-bit product, no wider arithmetic.
        round_shift(x * self.mantissa as i64, self.shift)
    }
}

/// `round_half_up(p / 2^shift)` saturated to `i32`, as `(p >> (shift - 1)) + 1 >> 1` (CMSIS-NN's
/// form): the same value as `(p + 2^(shift-1)) >> shift`, without its overflow for `p` near 2^63.
#[inline(always)]
fn round_shift(p: i64, shift: u8) -> i32 {
    let v = ((p >> (shift - 1)) + 1) >> 1;
    saturate_i32(v)
}

#[inline(always)]
fn saturate_i32(v: i64) -> i32 {
    v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

#[inline(always)]
pub(crate) fn saturate_i8(v: i64) -> i8 {
    v.clamp(i8::MIN as i64, i8::MAX as i64) as i8
}

/// `⌊√x⌋`, exactly, digit by digit (32 iterations of shifts, adds and compares; no division).
pub fn isqrt(x: u64) -> u32 {
    let mut rem = x;
    let mut root = 0u64;
    // The largest power of four ≤ x.
    let mut bit = if x == 0 {
        return 0;
    } else {
        1u64 << ((63 - x.leading_zeros()) & !1)
    };
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root as u32
}

/// The f32 nearest `n^-1/2` (`+∞` for 0), in integers alone: attention's `head_dim^-0.5`, which
/// timm computes as a Python (f64) float and torch rounds to f32. Both roundings give the same bits
/// for every `n` the test checks (all `n < 2^20`, and samples up to `u32::MAX`), so a model built
/// here needs no soft-float f64 routine (on a Cortex-M, about 3 KB of flash).
///
/// With `n ∈ [4^j, 4^(j+1))` and `k = j + 24`, the mantissa is `round(√(4^k / n))`, in `[2^23,
/// 2^24]`: `(r + 1) / 2` for the largest `r` with `r² · n ≤ 4^(k+1)` (a binary search over
/// exact 128-bit products). No tie exists: `(2M + 1)² · n` is odd times `n < 4^(k+1)`, never a
/// power of four.
pub const fn inv_sqrt_f32(n: u32) -> f32 {
    if n == 0 {
        return f32::INFINITY;
    }
    let j = (31 - n.leading_zeros()) / 2;
    let mut k = j + 24;
    let limit = 1u128 << (2 * k + 2);
    // r ∈ [2^24, 2^25]. Invariant: lo² · n ≤ limit, and every r > hi has r² · n > limit.
    let (mut lo, mut hi) = (1u128 << 24, 1u128 << 25);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if mid * mid * n as u128 <= limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut mantissa = (lo as u32 + 1) >> 1;
    if mantissa == 1 << 24 {
        mantissa = 1 << 23;
        k -= 1;
    }
    // mantissa · 2^-k with the leading bit at 2^(23 - k).
    let exponent = (127 + 23 - k) << 23;
    f32::from_bits(exponent | (mantissa & 0x7f_ffff))
}

/// Fractional bits of the exponent [`exp2_neg`] takes (Q24: `y / 2^24`).
pub const EXP2_FRAC_BITS: u32 = 24;

/// `2^-r` on `r ∈ [0, 1)` as `Σ_k C[k] r^k`, Q30 coefficients: a minimax fit of degree 5 (Remez,
/// absolute error 5.4·10⁻⁸ before rounding the coefficients to Q30).
const EXP2_POLY: [i64; 6] = [
    1_073_741_767,
    -744_256_916,
    257_891_330,
    -59_379_090,
    9_891_919,
    -1_018_155,
];

/// `2^(y / 2^24)` for `y ≤ 0` (Q24 in, Q31 out: `2^31` is 1); `y > 0` counts as 0.
///
/// `y = -(n + r)` with `n` whole and `r ∈ [0, 1)`: `2^-r` from a degree-5 polynomial in Q30 (six
/// 64-bit products), then shifted right by `n` with rounding. Within `6.2·10⁻⁸` of `2^y` plus half
/// a unit of the result: `|exp2_neg(y) / 2^31 - 2^(y/2^24)| ≤ 6.2·10⁻⁸ · 2^-n + 2^-32` (tested
/// over every `r` and every `n`).
#[inline]
pub fn exp2_neg(y: i32) -> u32 {
    let z = -(y.min(0) as i64) as u64;
    let n = (z >> EXP2_FRAC_BITS) as u32;
    if n > 32 {
        return 0;
    }
    let r = (z & ((1 << EXP2_FRAC_BITS) - 1)) as i64;
    let mut acc = EXP2_POLY[5];
    for &c in EXP2_POLY[..5].iter().rev() {
        // |acc| < 2^30, r < 2^24: the product fits easily; rounded to nearest.
        acc = c + ((acc * r + (1 << (EXP2_FRAC_BITS - 1))) >> EXP2_FRAC_BITS);
    }
    // acc is 2^-r in Q30 (in [2^29, 2^30]); the result is Q31 shifted right by n.
    let q31 = (acc as u64) << 1;
    if n == 0 {
        q31 as u32
    } else {
        ((q31 + (1 << (n - 1))) >> n) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_round_trip_and_refuse_what_they_cannot_hold() {
        for real in [
            1.0, 0.5, 0.75, 1e-9, 3.0e-7, 0.0123, 57.3, 1e9, -0.3, -1234.5,
        ] {
            let m = Multiplier::from_real(real).unwrap();
            let back = m.to_real();
            // The mantissa is rounded to 31 bits: half an ulp of 2^-31 relative.
            assert!(
                ((back - real) / real).abs() <= 2f64.powi(-31),
                "{real} → {back}"
            );
            assert_eq!(Multiplier::new(m.mantissa(), m.shift()), Some(m));
        }
        assert_eq!(Multiplier::from_real(0.0), Some(Multiplier::ZERO));
        for bad in [f64::NAN, f64::INFINITY, 2f64.powi(30), 1e-11, -1e12] {
            assert_eq!(Multiplier::from_real(bad), None, "{bad}");
        }
        assert_eq!(Multiplier::new(1 << 29, 5), None);
        assert_eq!(Multiplier::new(1 << 30, 0), None);
        assert_eq!(Multiplier::new(1 << 30, 63), None);
        assert_eq!(Multiplier::new(i32::MIN, 10), None);
    }

    #[test]
    fn apply_rounds_half_up_and_saturates() {
        let half = Multiplier::from_real(0.5).unwrap();
        // Ties go towards +∞, as TFLite's single rounding and CMSIS-NN do.
        assert_eq!(
            [-3, -1, 1, 3].map(|x| half.apply(x)),
            [-1, 0, 1, 2],
            "x / 2 rounded half up"
        );
        let big = Multiplier::from_real(1e9).unwrap();
        assert_eq!(big.apply(1 << 20), i32::MAX);
        assert_eq!(big.apply(-(1 << 20)), i32::MIN);
        assert_eq!(big.apply_wide(i64::MIN), i32::MIN);
        assert_eq!(Multiplier::ZERO.apply(i32::MAX), 0);
    }

    proptest::proptest! {
        /// `apply` (on `i32`) and `apply_wide` (on `|x| < 2^32`) are exactly `round_half_up(x · m)`
        /// for the multiplier held, of either sign, and that multiplier is within 2^-31 (relative)
        /// of the real factor it came from.
        #[test]
        fn apply_is_the_rounded_product(
            x in proptest::num::i32::ANY,
            wide in -(1i64 << 32) + 1..1 << 32,
            e in -31i32..29,
            f in -1.0f64..1.0,
        ) {
            let f = if f.abs() < 0.5 { f.signum() * (1.0 - f.abs()) } else { f };
            let real = f * 2f64.powi(e);
            let m = Multiplier::from_real(real).unwrap();
            let want = |x: i64| {
                let d = 1i128 << m.shift();
                let exact = x as i128 * m.mantissa() as i128;
                (exact + d / 2).div_euclid(d).clamp(i32::MIN as i128, i32::MAX as i128)
            };
            proptest::prop_assert_eq!(m.apply(x) as i128, want(x as i64));
            proptest::prop_assert_eq!(m.apply_wide(x as i64) as i128, want(x as i64));
            proptest::prop_assert_eq!(m.apply_wide(wide) as i128, want(wide));
            proptest::prop_assert!(((m.to_real() - real) / real).abs() <= 2f64.powi(-31));
        }

        /// Exact: `r² ≤ x < (r + 1)²` anywhere in `u64`.
        #[test]
        fn isqrt_is_the_floor(x in proptest::num::u64::ANY) {
            let r = isqrt(x) as u128;
            proptest::prop_assert!(r * r <= x as u128 && (x as u128) < (r + 1) * (r + 1));
        }
    }

    /// Exact on every `x < 2^20`, at and beside every square up to 2^32 sampled every 4099th root,
    /// and at `u64::MAX`.
    #[test]
    fn isqrt_is_exact_at_the_edges() {
        let check = |x: u64| {
            let r = isqrt(x) as u128;
            assert!(r * r <= x as u128 && (x as u128) < (r + 1) * (r + 1), "{x}");
        };
        (0..1 << 20).for_each(check);
        for k in (0..=u32::MAX as u64).step_by(4099).chain([u32::MAX as u64]) {
            let sq = k * k;
            check(sq);
            check(sq.saturating_sub(1));
            check(sq.saturating_add(1));
        }
        check(u64::MAX);
        assert_eq!(isqrt(u64::MAX), u32::MAX);
    }

    /// `inv_sqrt_f32(n)` is timm's `head_dim^-0.5` (f64, then rounded to f32), bit for bit: every
    /// `n < 2^20` and every 997th `n` up to `u32::MAX`; and 0 gives `+∞` as `1 / √0` does.
    #[test]
    fn inv_sqrt_f32_is_the_f64_value_rounded() {
        let check = |n: u32| {
            let want = (1.0 / libm::sqrt(n as f64)) as f32;
            assert_eq!(inv_sqrt_f32(n).to_bits(), want.to_bits(), "{n}");
        };
        (0..1 << 20).for_each(check);
        (1 << 20..=u32::MAX)
            .step_by(997)
            .chain([u32::MAX])
            .for_each(check);
    }

    /// The bound of `exp2_neg` over its whole input range: every fractional part `r` (step 1 in
    /// Q24) at `n = 0`, and every `n` that does not underflow with a sweep of `r` (the
    /// polynomial is the same for every `n`, only the final shift differs); beyond, 0.
    #[test]
    fn exp2_neg_is_within_its_bound_over_its_whole_range() {
        const BOUND: f64 = 6.2e-8;
        let err = |y: i32| {
            let got = exp2_neg(y) as f64 / 2f64.powi(31);
            let want = (y as f64 / 2f64.powi(24)).exp2();
            // Half a unit of the Q31 result on top of the polynomial's error (scaled by 2^-n).
            (got - want).abs() - 2f64.powi(-32)
        };
        let mut worst = 0f64;
        for y in (-(1 << 24) + 1..=0).rev() {
            worst = worst.max(err(y));
        }
        for n in 1..=32i64 {
            for r in (0..1 << 24).step_by(257) {
                let y = -(n << 24) - r;
                worst = worst.max(err(y as i32) * 2f64.powi(n as i32));
            }
        }
        assert!(worst <= BOUND, "worst error {worst:e}");
        assert_eq!(exp2_neg(0), (1 << 31) - 114, "2^0 in Q31, 5.3e-8 under");
        assert_eq!(exp2_neg(1 << 20), exp2_neg(0), "positive inputs count as 0");
        assert_eq!(exp2_neg(-(33 << 24)), 0);
        assert_eq!(exp2_neg(i32::MIN), 0);
    }
}
