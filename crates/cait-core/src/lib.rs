#![doc = include_str!("../README.md")]
#![cfg_attr(not(any(test, feature = "std")), no_std)]
// No `unsafe` anywhere, except the Armv7E-M DSP instructions of the `arm-dsp` feature's kernel,
// the calls into the AVX2 builds of the int8 and f32 linear kernels on x86-64 hosts (`std`) and
// into the SDOT int8 tile on AArch64 hosts (`std`), after run-time detection.
#![cfg_attr(
    not(any(
        feature = "arm-dsp",
        all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64"))
    )),
    forbid(unsafe_code)
)]
#![cfg_attr(
    any(
        feature = "arm-dsp",
        all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64"))
    ),
    deny(unsafe_code)
)]
#![deny(missing_docs)]
// An error value built eagerly in `ok_or(..)` costs its construction on every success: a
// name copied into an ErrorName for each tensor lookup was 1.2% of an int8 forward pass.
#![warn(clippy::or_fun_call)]
// With an engine left out, its code is unused (and the linker drops it); with neither, the
// crate still builds and refuses every pack.
#![cfg_attr(
    not(all(feature = "float", feature = "int8-static", feature = "int8-dynamic")),
    allow(dead_code, unused_imports, unused_variables, unreachable_code)
)]

mod attention;
mod blocks;
pub mod check;
mod error;
mod input;
mod int8;
mod kernels;
mod model;
pub mod probe;
mod session;
mod topk;
pub mod workspace;

#[cfg(test)]
mod tests;

pub use attention::AttentionSink;
pub use topk::top_k;

/// Which build of the f32 linear kernels runs: `"x86-64 avx2"` (the portable source compiled for
/// AVX2, f16 weights widened by F16C, chosen at run time on a `std` build; `CAIT_KERNELS=portable`
/// turns it off) or
/// `"portable"` (built for the target's baseline). The bits are the same either way.
pub fn float_kernels_selected() -> &'static str {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if kernels::x86::avx2() {
        return "x86-64 avx2";
    }
    "portable"
}

/// The int8 matmul kernel, beside its plain reference, so a target-specific variant (a Cortex-M
/// DSP kernel, say) can be checked against the reference on the target itself.
///
/// Both compute, for every row `t` of `x` and `o` of `w` (rows of the same width `k`), the exact
/// `i32` sum `Σ_j x_t[j] · w_o[j]` and pass it to `emit(t, o, sum)`, each pair once, in an
/// unspecified order (nothing when `k` is 0 or the widths differ); rows up to 131,071 wide cannot
/// overflow. [`Rows`](int8_kernels::Rows) describes packed rows (a linear layer) or a column block
/// of a wider matrix (one attention head).
pub mod int8_kernels {
    pub use crate::kernels::int8::Rows;

    /// The kernel the engine uses on this target.
    pub fn matmul(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
        crate::kernels::int8::matmul(x, w, emit)
    }

    /// The plain reference: the specification every variant must equal bit for bit.
    pub fn matmul_reference(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
        crate::kernels::int8::generic::matmul(x, w, emit)
    }

    /// Which kernel [`matmul`] is on this build and machine: `"arm-dsp"` (SMLAD),
    /// `"x86-64 avx512-vnni"` (the tiled kernel's loops with a `vpdpbusd` tile), `"x86-64 avx2"`
    /// (with a `vpmaddwd` tile) or `"aarch64 sdot"` (with an SDOT tile), each chosen at run time on
    /// a `std` build (`CAIT_KERNELS=portable` turns them off, `CAIT_KERNELS=avx2` VNNI), or
    /// `"portable"` (the tiled kernel for the target's baseline).
    pub fn selected() -> &'static str {
        crate::kernels::int8::selected()
    }
}
pub use error::Error;
pub use input::{Input, PixelLayout};
pub use kernels::fixed;
pub use model::{Model, Outputs};
pub use probe::{Point, Probe, Site, Tap, Values};
pub use session::Session;
pub use workspace::{
    WORKSPACE_ALIGN, Workspace, frame_offset, frame_workspace_bytes, frame_workspace_bytes_for,
    mixed_workspace_bytes, pack_workspace_bytes, try_workspace_bytes_for, workspace_bytes,
    workspace_bytes_for,
};
