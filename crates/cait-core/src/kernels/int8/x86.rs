//! x86-64 hosts (`std` builds): the portable tiled kernel compiled a second time with AVX2 enabled,
//! chosen at run time when the CPU has it. The default x86-64 target is SSE2 only, so LLVM
//! vectorises the tiled loops 128 bits wide; compiled for AVX2 they run 2.1x faster (a
//! cait_xxs24_224 int8 forward pass: 274 against 584 ms, `cargo bench -p cait-core --features std
//! --bench forward`). The source is the tiled kernel's, and integer sums are exact, so the bits are
//! too.
//!
//! The same source compiled for AVX-512 (BW, VNNI) measured slower on an AVX-512 VNNI Xeon (350 ms
//! against 292 ms for the AVX2 build, one run each), so AVX2 is the only other build.
//!
//! `CAIT_KERNELS=portable` in the environment forces the baseline build (a machine without AVX2,
//! tested on one with it); it is read once, at the first matmul.
// The one call into the AVX2 build, after run-time detection.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU8, Ordering};

use super::{Rows, tiled};

/// 0: not decided yet; 1: the baseline build; 2: the AVX2 build.
static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Whether this process runs the AVX2 build (decided at the first call).
pub(crate) fn avx2() -> bool {
    match CHOICE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let forced = std::env::var_os("CAIT_KERNELS").is_some_and(|v| v == "portable");
            let on = !forced && std::arch::is_x86_feature_detected!("avx2");
            CHOICE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
    }
}

/// See [`super::matmul`].
#[inline]
pub(crate) fn matmul(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    if avx2() {
        // SAFETY: the CPU has AVX2 (detected at run time above).
        unsafe { matmul_avx2(x, w, emit) }
    } else {
        tiled::matmul(x, w, emit)
    }
}

/// [`tiled::matmul`], inlined here and compiled for AVX2.
#[target_feature(enable = "avx2")]
fn matmul_avx2(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    tiled::matmul_inline(x, w, emit)
}
