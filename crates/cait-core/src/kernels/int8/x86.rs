//! x86-64 hosts (`std` builds): the int8 matmul with an AVX-512 VNNI register tile (`vpdpbusd` on
//! 512 bits), an AVX-VNNI one (the same instruction on 256 bits, for CPUs without AVX-512: Intel's
//! client cores since Alder Lake) or an AVX2 one (`vpmaddwd`), the best the CPU has, chosen at run
//! time; the loops around the tile
//! are the portable kernel's ([`tiled::matmul_with`]). The default x86-64 target is SSE2 only.
//! Integer sums are exact, so every variant gives the same bits. Figures: `cargo bench -p
//! cait-core --features std --bench forward` (each build forced with `CAIT_KERNELS`, see
//! `kernels::x86`), quoted in the repository's README.
//!
//! The choice, and `CAIT_KERNELS=portable` / `avx2`, are `kernels::x86`'s.
// The calls into the AVX2 and AVX-512 builds after run-time detection, and the tiles' loads.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::Rows;
use super::tiled::{self, Tile};
use crate::kernels::x86::{avx_vnni, avx2, avx512_vnni};

/// See [`super::matmul`].
#[inline]
pub(crate) fn matmul(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    if avx512_vnni() {
        // SAFETY: the CPU has AVX-512 F, BW and VNNI (detected at run time by `avx512_vnni`).
        unsafe { matmul_vnni(x, w, emit) }
    } else if avx_vnni() {
        // SAFETY: the CPU has AVX2 and AVX-VNNI (detected at run time by `avx_vnni`).
        unsafe { matmul_avx_vnni(x, w, emit) }
    } else if avx2() {
        // SAFETY: the CPU has AVX2 (detected at run time by `avx2`).
        unsafe { matmul_avx2(x, w, emit) }
    } else {
        tiled::matmul(x, w, emit)
    }
}

/// The AVX2 build where the CPU has AVX2, whatever `CAIT_KERNELS` says; else the portable one.
#[cfg(test)]
pub(crate) fn matmul_avx2_or_portable(
    x: Rows<'_>,
    w: Rows<'_>,
    emit: &mut impl FnMut(usize, usize, i32),
) {
    if crate::kernels::x86::has_avx2() {
        // SAFETY: the CPU has AVX2.
        unsafe { matmul_avx2(x, w, emit) }
    } else {
        tiled::matmul(x, w, emit)
    }
}

/// The VNNI build where the CPU has AVX-512 VNNI, whatever `CAIT_KERNELS` says; else the portable
/// one.
#[cfg(test)]
pub(crate) fn matmul_vnni_or_portable(
    x: Rows<'_>,
    w: Rows<'_>,
    emit: &mut impl FnMut(usize, usize, i32),
) {
    if crate::kernels::x86::has_avx512_vnni() {
        // SAFETY: the CPU has AVX-512 F, BW and VNNI.
        unsafe { matmul_vnni(x, w, emit) }
    } else {
        tiled::matmul(x, w, emit)
    }
}

/// The AVX-VNNI build where the CPU has AVX2 and AVX-VNNI, whatever `CAIT_KERNELS` says; else the
/// portable one.
#[cfg(test)]
pub(crate) fn matmul_avx_vnni_or_portable(
    x: Rows<'_>,
    w: Rows<'_>,
    emit: &mut impl FnMut(usize, usize, i32),
) {
    if crate::kernels::x86::has_avx_vnni() {
        // SAFETY: the CPU has AVX2 and AVX-VNNI.
        unsafe { matmul_avx_vnni(x, w, emit) }
    } else {
        tiled::matmul(x, w, emit)
    }
}

/// [`tiled::matmul`]'s loops with the AVX2 tile, compiled for AVX2.
#[target_feature(enable = "avx2")]
fn matmul_avx2(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    tiled::matmul_with::<Avx2, { tiled::ROWS }, { tiled::COLS }>(x, w, emit)
}

/// [`tiled::matmul`]'s loops with the VNNI tile, 4 × 4 (16 accumulators, 4 row sums and 8 loaded
/// operands in the 32 `zmm` registers), compiled for AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn matmul_vnni(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    tiled::matmul_with::<Vnni, 4, 4>(x, w, emit)
}

/// [`tiled::matmul`]'s loops with the AVX-VNNI tile, 2 × 3 (6 accumulators, 2 row sums, 5 loaded
/// operands and 2 constants in the 16 `ymm` registers: 2 × 4 and 4 × 2 spill and measured
/// slower), compiled for AVX2 and AVX-VNNI.
#[target_feature(enable = "avx2,avxvnni")]
fn matmul_avx_vnni(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    tiled::matmul_with::<AvxVnni, 2, 3>(x, w, emit)
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
            let mut sum = lane_sum256(acc[r][c]);
            for j in n * 16..k {
                sum += i32::from(x[r][j]) * i32::from(w[c][j]);
            }
            out[r][c] = sum;
        }
    }
    out
}

/// The AVX-512 VNNI tile: 64 values of a row at a time. `vpdpbusd` multiplies unsigned bytes by
/// signed ones, four products into each of 16 `i32` lanes, so the weights enter offset by 128
/// (`w ^ 0x80` is `w + 128` as an unsigned byte) and the tile subtracts `128 · Σ x` (each row's sum,
/// by `vpdpbusd` against ones): `Σ (w + 128) · x - 128 · Σ x = Σ w · x`. The lanes wrap, and the
/// true sum fits an `i32` (`MAX_REDUCTION`), so the wrapped result is exact. The last `k mod 64`
/// values are loaded under a mask (zeros beyond the row, which add nothing).
struct Vnni;

impl Tile for Vnni {
    #[inline(always)]
    fn tile<const R: usize, const C: usize>(
        x: &[&[i8]; R],
        w: &[&[i8]; C],
        k: usize,
    ) -> [[i32; C]; R] {
        // SAFETY: only `matmul_vnni` uses this tile, and it runs only when the CPU has AVX-512 F,
        // BW and VNNI.
        unsafe { tile_vnni::<R, C>(x, w, k) }
    }
}

/// `v[at..at + 64]`, or `v[at..]` followed by zeros when fewer than 64 bytes are left (`at <
/// v.len()`).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn load64(v: &[i8], at: usize) -> __m512i {
    let v = &v[at..];
    if v.len() >= 64 {
        // SAFETY: `v` holds at least 64 readable bytes; the load is unaligned.
        unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
    } else {
        // SAFETY: the mask selects the first `v.len() < 64` bytes, all within `v`; the masked-off
        // bytes are not accessed (AVX-512 masked loads suppress their faults) and read as 0.
        unsafe { _mm512_maskz_loadu_epi8((1u64 << v.len()) - 1, v.as_ptr()) }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn tile_vnni<const R: usize, const C: usize>(
    x: &[&[i8]; R],
    w: &[&[i8]; C],
    k: usize,
) -> [[i32; C]; R] {
    // Plain loops, not `array::from_fn`: its closures were left out of line.
    let (mut xs, mut ws): ([&[i8]; R], [&[i8]; C]) = ([&[]; R], [&[]; C]);
    for r in 0..R {
        xs[r] = &x[r][..k];
    }
    for c in 0..C {
        ws[c] = &w[c][..k];
    }
    let (offset, ones) = (_mm512_set1_epi8(-128), _mm512_set1_epi8(1));
    let mut acc = [[_mm512_setzero_si512(); C]; R];
    let mut sums = [_mm512_setzero_si512(); R];
    let mut at = 0;
    while at < k {
        let (mut xv, mut wv) = ([_mm512_setzero_si512(); R], [_mm512_setzero_si512(); C]);
        for r in 0..R {
            xv[r] = load64(xs[r], at);
        }
        for c in 0..C {
            wv[c] = _mm512_xor_si512(load64(ws[c], at), offset);
        }
        for r in 0..R {
            sums[r] = _mm512_dpbusd_epi32(sums[r], ones, xv[r]);
            for c in 0..C {
                acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], wv[c], xv[r]);
            }
        }
        at += 64;
    }
    let corrections = sums_of(&sums);
    let mut out = [[0i32; C]; R];
    for r in 0..R {
        let correction = corrections[r].wrapping_mul(128);
        for (o, v) in out[r].iter_mut().zip(sums_of(&acc[r])) {
            *o = v.wrapping_sub(correction);
        }
    }
    out
}

/// The AVX-VNNI tile: [`Vnni`]'s arithmetic on 256 bits, 32 values of a row at a time (the
/// weights offset by 128, each row's sum taken off). Without AVX-512's byte masks, a last chunk of
/// fewer than 32 values is loaded as whole 4-byte words under AVX2's word mask (zeros beyond, which
/// add nothing), and its last `k mod 4` values are added one by one.
struct AvxVnni;

impl Tile for AvxVnni {
    #[inline(always)]
    fn tile<const R: usize, const C: usize>(
        x: &[&[i8]; R],
        w: &[&[i8]; C],
        k: usize,
    ) -> [[i32; C]; R] {
        // SAFETY: only `matmul_avx_vnni` uses this tile, and it runs only when the CPU has AVX2
        // and AVX-VNNI.
        unsafe { tile_avx_vnni::<R, C>(x, w, k) }
    }
}

/// `v[at..at + 32]`, or, with `mask` selecting the first `(v.len() - at) / 4` words, those whole
/// words of `v[at..]` followed by zeros.
#[target_feature(enable = "avx2")]
#[inline]
fn load32(v: &[i8], at: usize, mask: __m256i) -> __m256i {
    let v = &v[at..];
    if v.len() >= 32 {
        // SAFETY: `v` holds at least 32 readable bytes; the load is unaligned.
        unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
    } else {
        // SAFETY: the mask selects whole 4-byte words within `v`; masked-off words are not
        // accessed (AVX2 masked loads suppress their faults) and read as 0.
        unsafe { _mm256_maskload_epi32(v.as_ptr().cast(), mask) }
    }
}

#[target_feature(enable = "avx2,avxvnni")]
#[inline]
fn tile_avx_vnni<const R: usize, const C: usize>(
    x: &[&[i8]; R],
    w: &[&[i8]; C],
    k: usize,
) -> [[i32; C]; R] {
    let (mut xs, mut ws): ([&[i8]; R], [&[i8]; C]) = ([&[]; R], [&[]; C]);
    for r in 0..R {
        xs[r] = &x[r][..k];
    }
    for c in 0..C {
        ws[c] = &w[c][..k];
    }
    // The vector part: every whole 4-byte word; the last chunk's words under `mask`.
    let vector = k & !3;
    let words = ((vector % 32) / 4) as i32;
    let mask = _mm256_cmpgt_epi32(
        _mm256_set1_epi32(words),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    );
    let (offset, ones) = (_mm256_set1_epi8(-128), _mm256_set1_epi8(1));
    let mut acc = [[_mm256_setzero_si256(); C]; R];
    let mut sums = [_mm256_setzero_si256(); R];
    let mut at = 0;
    while at < vector {
        let (mut xv, mut wv) = ([_mm256_setzero_si256(); R], [_mm256_setzero_si256(); C]);
        for r in 0..R {
            xv[r] = load32(xs[r], at, mask);
        }
        for c in 0..C {
            // Masked-off words read as 0, which the offset turns into 128 · x = 128 · 0.
            wv[c] = _mm256_xor_si256(load32(ws[c], at, mask), offset);
        }
        for r in 0..R {
            sums[r] = _mm256_dpbusd_avx_epi32(sums[r], ones, xv[r]);
            for c in 0..C {
                acc[r][c] = _mm256_dpbusd_avx_epi32(acc[r][c], wv[c], xv[r]);
            }
        }
        at += 32;
    }
    let mut out = [[0i32; C]; R];
    for r in 0..R {
        let correction = lane_sum256(sums[r]).wrapping_mul(128);
        for c in 0..C {
            let mut sum = lane_sum256(acc[r][c]).wrapping_sub(correction);
            for j in vector..k {
                sum += i32::from(xs[r][j]) * i32::from(ws[c][j]);
            }
            out[r][c] = sum;
        }
    }
    out
}

/// The wrapping sum of the eight `i32` lanes of `v`.
#[target_feature(enable = "avx2")]
#[inline]
fn lane_sum256(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// The lane sums of each vector (wrapping): by [`sum4`] for four, else one by one.
#[target_feature(enable = "avx512f")]
#[inline]
fn sums_of<const N: usize>(v: &[__m512i; N]) -> [i32; N] {
    let mut out = [0i32; N];
    if let [a, b, c, d] = v[..] {
        out.copy_from_slice(&lanes(sum4(a, b, c, d)));
    } else {
        for (o, &x) in out.iter_mut().zip(v) {
            *o = _mm512_reduce_add_epi32(x);
        }
    }
    out
}

/// The lane sums of four vectors, `[Σa, Σb, Σc, Σd]` (wrapping): a transposing tree of 9 additions
/// and shuffles instead of four separate reductions.
#[target_feature(enable = "avx512f")]
#[inline]
fn sum4(a: __m512i, b: __m512i, c: __m512i, d: __m512i) -> __m128i {
    // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] and the same of c, d.
    let ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    let cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    // Per 128-bit lane: [Σa, Σb, Σc, Σd] over its four values.
    let abcd = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    let half = _mm256_add_epi32(
        _mm512_castsi512_si256(abcd),
        _mm512_extracti64x4_epi64::<1>(abcd),
    );
    _mm_add_epi32(
        _mm256_castsi256_si128(half),
        _mm256_extracti128_si256::<1>(half),
    )
}

/// The four `i32` lanes of `v`.
#[target_feature(enable = "avx512f")]
#[inline]
fn lanes(v: __m128i) -> [i32; 4] {
    let mut out = [0i32; 4];
    // SAFETY: `out` is 16 writable bytes; the store is unaligned.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), v) };
    out
}
