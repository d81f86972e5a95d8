//! On-device check of the int8 matmul kernel the firmware runs (with the `dsp` feature: the
//! SXTB16/SMLAD kernel and its assembly tiles) against cait-core's plain reference, bit for bit, on
//! the seeded cases of `cait_core::check::int8_matmul_case` — the cases the host's kernels are
//! proptested on: every remainder of the 4-wide words and of the 2×2 and 1×4 tiles, packed rows
//! (linear layers) and rows a stride apart (attention heads), the full int8 range. Needs no pack.
#![no_std]
#![no_main]

use cortex_m_rt::entry;

use cait_core::check::{MatmulKernel, SplitMix, int8_matmul_case};
use cait_core::int8_kernels::matmul;
use cait_firmware::board::mps2;
use cait_firmware::{info, model};

const CASES: u32 = 300;

#[entry]
fn main() -> ! {
    let mut seeds = SplitMix(0x05EE_DD5B);
    let kernel: MatmulKernel<'_> = &|x, w, e| matmul(x, w, &mut |t, o, s| e(t, o, s));
    let mut failures = 0u32;
    let mut macs = 0usize;
    for _ in 0..CASES {
        match int8_matmul_case(seeds.next_u64(), kernel) {
            Ok(case) => macs += case.macs(),
            Err(c) => {
                failures += 1;
                info!(
                    "kernel_check: case {}x{}, k {}, strides {} {} differs",
                    c.rows, c.outs, c.k, c.x_stride, c.w_stride
                );
            }
        }
    }
    info!(
        "kernel_check on {}: {} cases, {} MACs, {} failures ({} kernel)",
        model::BOARD,
        CASES,
        macs,
        failures,
        if cfg!(feature = "dsp") {
            "dsp"
        } else {
            "portable"
        }
    );
    mps2::exit(failures == 0)
}
