//! Softmax over one row.

/// In place: `x[i] = exp(x[i] - max) / sum_j exp(x[j] - max)`.
///
/// `exp` is `libm::expf`'s, bit for bit, on every target; on x86-64 hosts with AVX2 eight lanes at
/// a time ([`x86`]). The sum is sequential (rows are a few hundred keys). `x` must not be empty.
#[inline]
pub(crate) fn softmax(x: &mut [f32]) {
    let max = x
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if x86::exp_shifted(x, max) {
        let total = x.iter().fold(0.0f32, |t, &v| t + v);
        return normalize(x, total);
    }
    let mut total = 0.0f32;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        total += *v;
    }
    normalize(x, total);
}

/// `x[i] /= total`.
#[inline(always)]
fn normalize(x: &mut [f32], total: f32) {
    for v in x.iter_mut() {
        *v /= total;
    }
}

/// x86-64 hosts: `libm::expf` on eight lanes with AVX2, for the arguments a softmax has
/// (`x - max ≤ 0`, or NaN).
///
/// The same algorithm as libm 0.2's `expf` (FreeBSD's `e_expf.c`: argument reduction by `k·ln2`
/// in two parts, a rational approximation on the reduced argument, then `scalbn` by `k`), each
/// lane through the same f32 operations in the same order (no FMA contraction), so the same
/// bits: checked against `libm::expf` over every 61st non-positive f32 and, in an ignored test,
/// all of them. A chunk of eight holding a positive argument (which a softmax row does not) and
/// the last `len mod 8` values go through `libm::expf` itself.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[allow(unsafe_code)] // AVX2 intrinsics, after run-time detection.
pub(crate) mod x86 {
    use core::arch::x86_64::*;

    // libm's constants (e_expf.c), by their bits.
    const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
    const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
    const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b);
    const P1: f32 = f32::from_bits(0x3e2a_aa8f);
    const P2: f32 = f32::from_bits(0xbb35_5215);

    /// `x[i] = libm::expf(x[i] - max)` when this process runs the AVX2 builds; else `false`,
    /// having done nothing.
    pub(crate) fn exp_shifted(x: &mut [f32], max: f32) -> bool {
        if !crate::kernels::x86::avx2() {
            return false;
        }
        // SAFETY: the CPU has AVX2 (checked above).
        unsafe { exp_shifted_avx2(x, max) };
        true
    }

    #[target_feature(enable = "avx2")]
    fn exp_shifted_avx2(x: &mut [f32], max: f32) {
        let (chunks, rest) = x.as_chunks_mut::<8>();
        let m = _mm256_set1_ps(max);
        for chunk in chunks {
            // SAFETY: `chunk` is 8 readable and writable f32s; unaligned loads and stores.
            let v = _mm256_sub_ps(unsafe { _mm256_loadu_ps(chunk.as_ptr()) }, m);
            match exp_nonpositive(v) {
                // SAFETY: as above.
                Some(e) => unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), e) },
                None => {
                    for c in chunk.iter_mut() {
                        *c = libm::expf(*c - max);
                    }
                }
            }
        }
        for v in rest {
            *v = libm::expf(*v - max);
        }
    }

    /// `libm::expf` of each lane, or `None` when a lane is positive (`> +0`, not NaN).
    #[target_feature(enable = "avx2")]
    pub(crate) fn exp_nonpositive(x: __m256) -> Option<__m256> {
        let bits = _mm256_castps_si256(x);
        let hx = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fff_ffff));
        let negative = _mm256_srai_epi32::<31>(bits); // all ones where the sign bit is set
        // `hx > c` as a lane mask (hx ≤ 0x7fffffff: the signed comparison is the unsigned one).
        let above = |c: i32| _mm256_cmpgt_epi32(hx, _mm256_set1_epi32(c));
        let nan = above(0x7f80_0000);
        let positive = _mm256_andnot_si256(_mm256_or_si256(negative, nan), above(0));
        if _mm256_testz_si256(positive, positive) == 0 {
            return None;
        }
        // x ≤ -103.972084: 0.
        let zero = _mm256_and_si256(negative, above(0x42cf_f1b4));
        // |x| ≤ 2^-14: 1 + x.
        let tiny = _mm256_andnot_si256(above(0x3900_0000), _mm256_set1_epi32(-1));
        // |x| > 0.5·ln2: reduce by k·ln2, k = (INV_LN2·x ∓ 0.5) as i32 beyond 1.5·ln2, else ∓1.
        let reduce = above(0x3eb1_7218);
        let far = above(0x3f85_1592);
        let half = _mm256_blendv_ps(
            _mm256_set1_ps(0.5),
            _mm256_set1_ps(-0.5),
            _mm256_castsi256_ps(negative),
        );
        let k_far = _mm256_cvttps_epi32(_mm256_add_ps(
            _mm256_mul_ps(_mm256_set1_ps(INV_LN2), x),
            half,
        ));
        // 1 - sign - sign: 1 or -1.
        let k_near = _mm256_or_si256(negative, _mm256_set1_epi32(1));
        let k = _mm256_and_si256(_mm256_blendv_epi8(k_near, k_far, far), reduce);
        let kf = _mm256_cvtepi32_ps(k);
        let hi = _mm256_blendv_ps(
            x,
            _mm256_sub_ps(x, _mm256_mul_ps(kf, _mm256_set1_ps(LN2_HI))),
            _mm256_castsi256_ps(reduce),
        );
        let lo = _mm256_and_ps(
            _mm256_mul_ps(kf, _mm256_set1_ps(LN2_LO)),
            _mm256_castsi256_ps(reduce),
        );
        let r = _mm256_blendv_ps(x, _mm256_sub_ps(hi, lo), _mm256_castsi256_ps(reduce));
        // xx = r·r; c = r - xx·(P1 + xx·P2); y = 1 + (r·c / (2 - c) - lo + hi).
        let xx = _mm256_mul_ps(r, r);
        let p = _mm256_add_ps(_mm256_set1_ps(P1), _mm256_mul_ps(xx, _mm256_set1_ps(P2)));
        let c = _mm256_sub_ps(r, _mm256_mul_ps(xx, p));
        let q = _mm256_div_ps(_mm256_mul_ps(r, c), _mm256_sub_ps(_mm256_set1_ps(2.0), c));
        let one = _mm256_set1_ps(1.0);
        let y = _mm256_add_ps(one, _mm256_add_ps(_mm256_sub_ps(q, lo), hi));
        // scalbn(y, k) for -150 ≤ k ≤ 0: below 2^-126 first by 2^-102 (libm's prescale, which
        // keeps y normal), then by 2^k exactly.
        let deep = _mm256_cmpgt_epi32(_mm256_set1_epi32(-126), k);
        let y = _mm256_mul_ps(
            y,
            _mm256_blendv_ps(
                one,
                _mm256_set1_ps(f32::from_bits(0x0c80_0000)),
                _mm256_castsi256_ps(deep),
            ),
        );
        let k = _mm256_add_epi32(k, _mm256_and_si256(deep, _mm256_set1_epi32(102)));
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            k,
            _mm256_set1_epi32(0x7f),
        )));
        let y = _mm256_mul_ps(y, scale);
        // The special cases, in libm's order of precedence.
        let y = _mm256_blendv_ps(y, _mm256_add_ps(one, x), _mm256_castsi256_ps(tiny));
        let y = _mm256_andnot_ps(_mm256_castsi256_ps(zero), y);
        Some(_mm256_blendv_ps(y, x, _mm256_castsi256_ps(nan)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn matches_an_f64_reference(x in proptest::collection::vec(-80f32..80.0, 1..300)) {
            let mut y = x.clone();
            softmax(&mut y);
            let max = x.iter().cloned().fold(f64::NEG_INFINITY, |m, v| m.max(v as f64));
            let total: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
            for (i, &v) in x.iter().enumerate() {
                let want = (v as f64 - max).exp() / total;
                // `x - max` is rounded to f32 (half an ulp of |x - max|, an absolute error that exp
                // turns into a relative one); expf, the sum and the division add a few ulp more.
                let bound = want * (1e-6 + 6e-8 * (v as f64 - max).abs()) + 1e-30;
                proptest::prop_assert!((y[i] as f64 - want).abs() <= bound);
            }
        }
    }

    /// The AVX2 build's exps are `libm::expf`'s bits (lanes, the scalar tail, and a chunk with
    /// a positive argument falling back).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    fn exps_are_libm_bits() {
        if !crate::kernels::x86::avx2() {
            return;
        }
        for len in [1, 7, 8, 9, 16, 197] {
            let row: Vec<f32> = (0..len).map(|i| (i as f32 * 7.31).sin() * 60.0).collect();
            for max in [row.iter().cloned().fold(f32::MIN, f32::max), 0.0, -5.0] {
                let mut got = row.clone();
                assert!(x86::exp_shifted(&mut got, max));
                for (g, &v) in got.iter().zip(&row) {
                    assert_eq!(g.to_bits(), libm::expf(v - max).to_bits(), "{v} - {max}");
                }
            }
        }
    }

    /// Every `step`-th f32 bit pattern from `start` (and the special values) through the AVX2
    /// lanes, against `libm::expf`, bit for bit.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    fn check_avx2_exp(start: u32, end: u32, step: usize) {
        use core::arch::x86_64::*;
        if !crate::kernels::x86::avx2() {
            return;
        }
        let specials = [
            -0.0f32,
            0.0,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0xffc0_0001),
            -103.972_08,
            -103.972_09,
            -87.336_55,
            -f32::MIN_POSITIVE,
            -1e-45,
            -0.346_573_6,
            -1.039_720_8,
        ];
        let patterns = (start..=end).step_by(step).map(f32::from_bits);
        let values: Vec<f32> = specials.into_iter().chain(patterns).collect();
        for chunk in values.chunks(8) {
            let mut lanes = [0.0f32; 8];
            lanes[..chunk.len()].copy_from_slice(chunk);
            // SAFETY: the CPU has AVX2 (checked above); `lanes` is 8 f32s.
            #[allow(unsafe_code)]
            let got = unsafe {
                let e = x86::exp_nonpositive(_mm256_loadu_ps(lanes.as_ptr())).unwrap();
                let mut out = [0.0f32; 8];
                _mm256_storeu_ps(out.as_mut_ptr(), e);
                out
            };
            for (g, &v) in got.iter().zip(&lanes) {
                assert_eq!(
                    g.to_bits(),
                    libm::expf(v).to_bits(),
                    "expf({v:e}) = {:#x}",
                    v.to_bits()
                );
            }
        }
    }

    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    fn avx2_exp_is_libm_on_a_sweep_of_nonpositive_floats() {
        check_avx2_exp(0x8000_0000, 0xffff_ffff, 61);
    }

    /// All 2^31 non-positive bit patterns (about a minute): `cargo test -p cait-core --features
    /// std --release --lib avx2_exp_is_libm_on_every -- --ignored`.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    #[ignore = "slow: every non-positive f32"]
    fn avx2_exp_is_libm_on_every_nonpositive_float() {
        check_avx2_exp(0x8000_0000, 0xffff_ffff, 1);
    }

    /// A chunk with a positive argument is refused (the caller falls back to `libm::expf`).
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    fn avx2_exp_refuses_positive_arguments() {
        use core::arch::x86_64::*;
        if !crate::kernels::x86::avx2() {
            return;
        }
        for p in [f32::from_bits(1), 1.0, 100.0, f32::INFINITY] {
            let lanes = [-1.0, -2.0, p, -3.0, 0.0, -0.0, f32::NAN, -4.0];
            // SAFETY: the CPU has AVX2 (checked above); `lanes` is 8 f32s.
            #[allow(unsafe_code)]
            let got = unsafe { x86::exp_nonpositive(_mm256_loadu_ps(lanes.as_ptr())) };
            assert!(got.is_none(), "{p}");
        }
        let mut row = [1.0f32, -1.0, 2.0, 0.5, -0.5, 3.0, 0.0, 1.5, 2.5];
        let want: Vec<u32> = row.iter().map(|&v| libm::expf(v - 0.5).to_bits()).collect();
        assert!(x86::exp_shifted(&mut row, 0.5));
        assert_eq!(row.map(f32::to_bits).to_vec(), want);
    }
}
