#![doc = include_str!("../README.md")]
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod attention;
mod blocks;
mod error;
mod int8;
mod kernels;
mod model;
pub mod probe;
pub mod workspace;

#[cfg(test)]
mod tests;

pub use attention::AttentionSink;
pub use error::Error;
pub use model::{Model, Outputs};
pub use probe::{Point, Probe, Site, Tap, Values};
pub use workspace::{WORKSPACE_ALIGN, Workspace, workspace_bytes};
