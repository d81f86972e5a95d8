//! Numeric kernels: one portable code path for every target.
//!
//! Every reduction has a fixed summation order (see [`sum`]), no kernel uses `std` math (`libm` is a
//! deterministic software implementation) and Rust never contracts `a * b + c` into an FMA, so a
//! given input produces bit-identical outputs on x86-64, AArch64 and Cortex-M. How work is *tiled*
//! (how many tokens or weight rows share a pass) may differ between call sites and targets because it
//! never changes the order in which any single output is summed.

pub mod fixed;
pub(crate) mod gelu;
#[cfg(all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) mod host;
pub(crate) mod int8;
pub(crate) mod layer_norm;
pub(crate) mod linear;
pub(crate) mod softmax;
pub(crate) mod sum;
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub(crate) mod x86;
