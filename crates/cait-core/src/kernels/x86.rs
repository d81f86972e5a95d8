//! x86-64 hosts (`std` builds): whether this process runs the kernels' SIMD builds — the AVX2
//! builds (the portable kernels' own source compiled a second time with AVX2 enabled: `int8/x86.rs`
//! for the int8 matmul, `linear.rs` for the f32 linear layers, which also widen f16 weights with
//! F16C's `vcvtph2ps`) and the VNNI int8 matmuls, AVX-512 VNNI or AVX-VNNI (`int8/x86.rs`). Decided
//! once, at the first call: the CPU must have the features (AVX2 and F16C, which every AVX2 CPU
//! has; AVX-512 F, BW and VNNI; AVX-VNNI) and the environment must not turn the build off
//! (`CAIT_KERNELS=portable`: every one, to test a machine without them on one with them;
//! `CAIT_KERNELS=avx2`: both VNNI builds; `CAIT_KERNELS=avx-vnni`: AVX-512 VNNI, to test or time a
//! CPU with AVX-VNNI and no AVX-512).
//!
//! The SIMD builds give the same bits as the baseline: integer sums are exact, and the f32 kernels
//! keep their summation order whatever the vector width (Rust never contracts a multiply and an
//! add into an FMA).

use super::host::Choice;

static AVX2: Choice = Choice::new();
static AVX_VNNI: Choice = Choice::new();
static VNNI: Choice = Choice::new();

/// Whether this process runs the AVX2 builds (AVX2 and F16C; decided at the first call).
pub(crate) fn avx2() -> bool {
    AVX2.get(&[], || {
        has_avx2() && std::arch::is_x86_feature_detected!("f16c")
    })
}

/// Whether the CPU has AVX2, whatever `CAIT_KERNELS` says.
pub(crate) fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// Whether this process runs the AVX-VNNI int8 matmul (AVX2 and AVX-VNNI; decided at the first
/// call; off with `CAIT_KERNELS=avx2`).
pub(crate) fn avx_vnni() -> bool {
    AVX_VNNI.get(&["avx2"], has_avx_vnni)
}

/// Whether the CPU has what the AVX-VNNI matmul needs, whatever `CAIT_KERNELS` says.
pub(crate) fn has_avx_vnni() -> bool {
    has_avx2() && std::arch::is_x86_feature_detected!("avxvnni")
}

/// Whether this process runs the AVX-512 VNNI int8 matmul (AVX-512 F, BW and VNNI; decided at the
/// first call; off with `CAIT_KERNELS=avx2` or `avx-vnni`).
pub(crate) fn avx512_vnni() -> bool {
    VNNI.get(&["avx2", "avx-vnni"], has_avx512_vnni)
}

/// Whether the CPU has what the VNNI matmul needs, whatever `CAIT_KERNELS` says.
pub(crate) fn has_avx512_vnni() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}
