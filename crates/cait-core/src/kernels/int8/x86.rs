//! x86-64 hosts (`std` builds): the int8 matmul with an AVX2 register tile (`vpmaddwd`), chosen at
//! run time when the CPU has it; the loops around the tile are the portable kernel's
//! ([`tiled::matmul_with`]). The default x86-64 target is SSE2 only. A cait_xxs24_224 int8 forward
//! pass (`cargo bench -p cait-core --features std --bench forward`, one thread, a 2-core Xeon): 219
//! and 254 ms in two runs with this tile, 274 ms with the portable tile merely compiled for AVX2,
//! 597 ms portable. Integer sums are exact, so every variant gives the same bits.
//!
//! The portable tile compiled for AVX-512 (BW, VNNI) measured slower than compiled for AVX2 (350
//! against 292 ms, one run each) on an AVX-512 VNNI Xeon; a VNNI tile is not written yet.
//!
//! The choice, and `CAIT_KERNELS=portable`, are `kernels::x86`'s.
// The call into the AVX2 build after run-time detection, and the AVX2 tile's unaligned loads.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::Rows;
use super::tiled::{self, Tile};
use crate::kernels::x86::avx2;

/// See [`super::matmul`].
#[inline]
pub(crate) fn matmul(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    if avx2() {
        // SAFETY: the CPU has AVX2 (detected at run time by `avx2`).
        unsafe { matmul_avx2(x, w, emit) }
    } else {
        tiled::matmul(x, w, emit)
    }
}

/// [`tiled::matmul`]'s loops with the AVX2 tile, compiled for AVX2.
#[target_feature(enable = "avx2")]
fn matmul_avx2(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    tiled::matmul_with::<Avx2>(x, w, emit)
}

/// The AVX2 tile: 16 values of a row at a time sign-extended to 16-bit lanes, and `vpmaddwd`
/// multiplying pairs and adding them into 8 `i32` lanes per accumulator; the lanes are summed at
/// the end and the last `k mod 16` values added one by one. Exact integer sums, so any order gives
/// the portable tile's bits.
struct Avx2;

impl Tile for Avx2 {
    #[inline(always)]
    fn tile<const R: usize, const C: usize>(
        x: &[&[i8]; R],
        w: &[&[i8]; C],
        k: usize,
    ) -> [[i32; C]; R] {
        // SAFETY: only `matmul_avx2` uses this tile, and it runs only when the CPU has AVX2.
        unsafe { tile_avx2::<R, C>(x, w, k) }
    }
}

/// 16 int8 values from the start of `v` (at least 16 long), sign-extended to 16 lanes of `i16`.
#[target_feature(enable = "avx2")]
#[inline]
fn widen16(v: &[i8]) -> __m256i {
    let v = &v[..16];
    // SAFETY: `v` holds 16 readable bytes; the load is unaligned.
    _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(v.as_ptr().cast::<__m128i>()) })
}

#[target_feature(enable = "avx2")]
#[inline]
fn tile_avx2<const R: usize, const C: usize>(
    x: &[&[i8]; R],
    w: &[&[i8]; C],
    k: usize,
) -> [[i32; C]; R] {
    let x: [&[i8]; R] = core::array::from_fn(|r| &x[r][..k]);
    let w: [&[i8]; C] = core::array::from_fn(|c| &w[c][..k]);
    let n = k / 16;
    let mut acc = [[_mm256_setzero_si256(); C]; R];
    for i in 0..n {
        let xv: [__m256i; R] = core::array::from_fn(|r| widen16(&x[r][i * 16..]));
        let wv: [__m256i; C] = core::array::from_fn(|c| widen16(&w[c][i * 16..]));
        for r in 0..R {
            for c in 0..C {
                acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(xv[r], wv[c]));
            }
        }
    }
    let mut out = [[0i32; C]; R];
    for r in 0..R {
        for c in 0..C {
            let v = acc[r][c];
            let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
            let mut sum = _mm_cvtsi128_si32(s);
            for j in n * 16..k {
                sum += i32::from(x[r][j]) * i32::from(w[c][j]);
            }
            out[r][c] = sum;
        }
    }
    out
}
