//! Hosts (`std` builds on x86-64 and AArch64): whether this process runs a kernel's SIMD build.
//! Each build is decided once, at its first use: the CPU must have its features and the
//! environment must not say `CAIT_KERNELS=portable` (which forces the portable builds, to test a
//! machine without the features on one with them).

use core::sync::atomic::{AtomicU8, Ordering};

/// One decision, made at the first [`get`](Self::get).
pub(crate) struct Choice(AtomicU8);

impl Choice {
    /// Not decided yet.
    pub(crate) const fn new() -> Choice {
        Choice(AtomicU8::new(0))
    }

    /// Whether the SIMD build runs: `detect()` (the CPU has its features), unless
    /// `CAIT_KERNELS=portable`. 0: not decided yet; 1: portable; 2: SIMD.
    pub(crate) fn get(&self, detect: impl FnOnce() -> bool) -> bool {
        match self.0.load(Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => {
                let forced = std::env::var_os("CAIT_KERNELS").is_some_and(|v| v == "portable");
                let on = !forced && detect();
                self.0.store(if on { 2 } else { 1 }, Ordering::Relaxed);
                on
            }
        }
    }
}
