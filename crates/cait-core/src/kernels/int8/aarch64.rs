//! AArch64 hosts (`std` builds: Linux on Cortex-A, Raspberry Pi class boards): the int8 matmul with
//! an `SDOT` register tile (Armv8.2 dot product: four `i8 × i8` products summed into each of four
//! `i32` lanes per instruction), chosen at run time when the CPU has it; elsewhere the portable
//! tile, which LLVM compiles to NEON (`smull` / `sadalp`) since NEON is AArch64's baseline. The loops
//! around the tile are the portable kernel's ([`tiled::matmul_with`]). Integer sums are exact, so
//! both give the portable tile's bits. `CAIT_KERNELS=portable` forces the portable tile, as on
//! x86-64.
//!
//! `SDOT`'s intrinsic (`vdotq_s32`) is not stable Rust yet, so the one instruction is inline
//! assembly; the loads and the final lane sum are stable NEON intrinsics.
// The call into the SDOT build after run-time detection, the loads, and the instruction itself.
#![allow(unsafe_code)]

use core::arch::aarch64::*;

use super::Rows;
use super::tiled::{self, Tile};
use crate::kernels::host::Choice;

static SDOT: Choice = Choice::new();

/// Whether this process runs the SDOT tile: the CPU has the dot-product extension and the
/// environment does not say `CAIT_KERNELS=portable` (decided at the first call).
pub(crate) fn sdot() -> bool {
    SDOT.get(&[], || std::arch::is_aarch64_feature_detected!("dotprod"))
}

/// See [`super::matmul`].
#[inline]
pub(crate) fn matmul(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    if sdot() {
        // SAFETY: the CPU has the dot-product extension (detected at run time by `sdot`).
        unsafe { matmul_sdot(x, w, emit) }
    } else {
        tiled::matmul(x, w, emit)
    }
}

/// [`tiled::matmul`]'s loops with the SDOT tile, compiled with the dot-product extension.
#[target_feature(enable = "neon,dotprod")]
fn matmul_sdot(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    tiled::matmul_with::<Sdot, { tiled::ROWS }, { tiled::COLS }>(x, w, emit)
}

/// The SDOT tile: 16 values of a row at a time, one `SDOT` per (token, weight row) adding four
/// 4-term dot products into the accumulator's four `i32` lanes; the lanes are summed at the end and
/// the last `k mod 16` values added one by one.
struct Sdot;

impl Tile for Sdot {
    #[inline(always)]
    fn tile<const R: usize, const C: usize>(
        x: &[&[i8]; R],
        w: &[&[i8]; C],
        k: usize,
    ) -> [[i32; C]; R] {
        // SAFETY: only `matmul_sdot` uses this tile, and it runs only when the CPU has SDOT.
        unsafe { tile_sdot::<R, C>(x, w, k) }
    }
}

/// 16 int8 values from the start of `v` (at least 16 long).
#[target_feature(enable = "neon")]
#[inline]
fn load16(v: &[i8]) -> int8x16_t {
    let v = &v[..16];
    // SAFETY: `v` holds 16 readable values; `vld1q_s8` has no alignment requirement.
    unsafe { vld1q_s8(v.as_ptr()) }
}

/// `acc + ` the four 4-term dot products of `a` and `b`, lane by lane.
#[target_feature(enable = "neon,dotprod")]
#[inline]
fn dot4(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: one register-to-register instruction of the dot-product extension, which this
    // function requires; no memory, stack or flags.
    unsafe {
        core::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

#[target_feature(enable = "neon,dotprod")]
#[inline]
fn tile_sdot<const R: usize, const C: usize>(
    x: &[&[i8]; R],
    w: &[&[i8]; C],
    k: usize,
) -> [[i32; C]; R] {
    let x: [&[i8]; R] = core::array::from_fn(|r| &x[r][..k]);
    let w: [&[i8]; C] = core::array::from_fn(|c| &w[c][..k]);
    let n = k / 16;
    let mut acc = [[vdupq_n_s32(0); C]; R];
    for i in 0..n {
        let xv: [int8x16_t; R] = core::array::from_fn(|r| load16(&x[r][i * 16..]));
        let wv: [int8x16_t; C] = core::array::from_fn(|c| load16(&w[c][i * 16..]));
        for r in 0..R {
            for c in 0..C {
                acc[r][c] = dot4(acc[r][c], xv[r], wv[c]);
            }
        }
    }
    let mut out = [[0i32; C]; R];
    for r in 0..R {
        for c in 0..C {
            let mut sum = vaddvq_s32(acc[r][c]);
            for j in n * 16..k {
                sum += i32::from(x[r][j]) * i32::from(w[c][j]);
            }
            out[r][c] = sum;
        }
    }
    out
}
