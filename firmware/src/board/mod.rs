//! Board support. The MPS2 FPGA images AN386 (Cortex-M4) and AN500 (Cortex-M7) share one
//! peripheral map in QEMU; only the memory map (`boards/<board>/memory.x`) and the CPU differ.

pub mod mps2;
