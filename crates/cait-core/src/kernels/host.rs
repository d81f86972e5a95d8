//! Hosts (`std` builds on x86-64 and AArch64): whether this process runs a kernel's SIMD build.
//! Each build is decided once, at its first use: the CPU must have its features and the
//! environment must not turn the build off — `CAIT_KERNELS=portable` turns off every SIMD build
//! (to test a machine without the features on one with them), `CAIT_KERNELS=avx2` the x86-64
//! builds beyond AVX2 (AVX-VNNI, AVX-512 VNNI), to test or time an AVX2-only machine, and
//! `CAIT_KERNELS=avx-vnni` AVX-512 VNNI alone, to test or time a CPU with AVX-VNNI and no AVX-512.

use core::sync::atomic::{AtomicU8, Ordering};

/// One decision, made at the first [`get`](Self::get).
pub(crate) struct Choice(AtomicU8);

impl Choice {
    /// Not decided yet.
    pub(crate) const fn new() -> Choice {
        Choice(AtomicU8::new(0))
    }

    /// Whether the SIMD build runs: `detect()` (the CPU has its features), unless `CAIT_KERNELS`
    /// is one of `off` (which always holds `portable`). 0: not decided yet; 1: portable; 2: SIMD.
    pub(crate) fn get(&self, off: &[&str], detect: impl FnOnce() -> bool) -> bool {
        match self.0.load(Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => {
                let forced = std::env::var_os("CAIT_KERNELS")
                    .is_some_and(|v| v == "portable" || off.iter().any(|&o| v == o));
                let on = !forced && detect();
                self.0.store(if on { 2 } else { 1 }, Ordering::Relaxed);
                on
            }
        }
    }
}
