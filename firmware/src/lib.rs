//! Runs a `.cait` pack on a Cortex-M (thumbv7em-none-eabihf) and measures it: the board-independent
//! application ([`app`]), on-device measurement ([`measure`]), the line protocol the host parses
//! ([`report`]), and the board support for the Arm MPS2 FPGA images QEMU emulates ([`board`]).
//!
//! The pack, the input images and the model's configuration are fixed at build time (see
//! `build.rs` and the README); nothing allocates.
#![no_std]
#![deny(missing_docs)]

pub mod app;
pub mod board;
pub mod log;
pub mod measure;
pub mod model;
pub mod report;
