//! On-device run of cait-core's integer-only kernels (`cait_core::fixed`: requantization, integer
//! square root, exp, softmax, LayerNorm, GELU table) on seeded random cases, printing a digest of
//! every output. The host test reads the seed and count from the line, computes the digest itself
//! and requires the same bits (`cargo test -p cait --test qemu fixed_point`). Needs no pack, and
//! does no float arithmetic: built for the Cortex-M3 (mps2-an385, thumbv7m-none-eabi), the same
//! test fails if the ELF links any soft-float routine.
#![no_std]
#![no_main]

use cortex_m_rt::entry;

use cait_core::check::fixed_kernels_digest;
use cait_firmware::board::mps2;
use cait_firmware::model;

const SEED: u64 = 0x1A7E_6E55;
const CASES: u32 = 2000;

#[entry]
fn main() -> ! {
    let digest = fixed_kernels_digest(SEED, CASES);
    // A plain semihosting line whatever the log feature: the host test parses it.
    cortex_m_semihosting::hprintln!(
        "fixed_check on {} ({}): seed {:#x}, {} cases, digest {:016x}",
        model::BOARD,
        mps2::CPU,
        SEED,
        CASES,
        digest
    );
    mps2::exit(true)
}
