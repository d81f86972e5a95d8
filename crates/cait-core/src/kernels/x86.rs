//! x86-64 hosts (`std` builds): whether this process runs the kernels' AVX2 builds — the portable
//! kernels' own source compiled a second time with AVX2 enabled (`int8/x86.rs` for the int8 matmul,
//! `linear.rs` for the f32 linear layers, which also widen f16 weights with F16C's `vcvtph2ps`).
//! Decided once, at the first call: the CPU must have AVX2 and F16C (every AVX2 CPU has both) and
//! the environment must not say `CAIT_KERNELS=portable` (which forces the baseline builds, to test
//! a machine without AVX2 on one with it).
//!
//! The AVX2 builds give the same bits as the baseline: integer sums are exact, and the f32 kernels
//! keep their summation order whatever the vector width (Rust never contracts a multiply and an
//! add into an FMA).

use super::host::Choice;

static AVX2: Choice = Choice::new();

/// Whether this process runs the AVX2 builds (AVX2 and F16C; decided at the first call).
pub(crate) fn avx2() -> bool {
    AVX2.get(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c")
    })
}
