#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod attention;
mod backend;
pub mod blocks;
mod error;
pub mod export;
pub use export::{HubExport, save_hub};
pub mod model;
mod reference;
pub mod rng;
pub mod train;

pub use backend::{BackendKind, device_name};
pub use error::Error;

pub use model::{Cait, CaitOutput, ParamSource, init_tensors};
pub use reference::{MAX_DEVICE_BATCH, Outputs, Reference, WeightSource};
