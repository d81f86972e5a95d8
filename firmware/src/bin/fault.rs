//! Shows the failure path: a bus fault (escalated to HardFault) prints `CAIT error hard fault …` and
//! exits QEMU with status 1 (a panic does the same through the panic handler).
//! `cargo run --release --bin fault; echo $?` prints 1.
#![no_std]
#![no_main]

use cortex_m_rt::entry;

use cait_firmware::board::mps2;
use cait_firmware::info;

#[entry]
fn main() -> ! {
    info!("reading unmapped memory at 0xF000_0000");
    // SAFETY: deliberately not safe: the address is unmapped on MPS2, the read faults and the
    // HardFault handler ends the program.
    let v = unsafe { core::ptr::read_volatile(0xF000_0000 as *const u32) };
    info!("read {:#x}: no fault?", v);
    mps2::exit(false)
}
