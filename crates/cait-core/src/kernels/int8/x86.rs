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
//! The choice, and `CAIT_KERNELS=portable`, are `kernels::x86`'s.
// The one call into the AVX2 build, after run-time detection.
#![allow(unsafe_code)]

use super::{Rows, tiled};
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

/// [`tiled::matmul`], inlined here and compiled for AVX2.
#[target_feature(enable = "avx2")]
fn matmul_avx2(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    tiled::matmul_inline(x, w, emit)
}
