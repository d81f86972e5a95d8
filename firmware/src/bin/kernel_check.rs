//! On-device check of the int8 matmul kernel the firmware runs (with the `dsp` feature: the
//! SXTB16/SMLAD kernel and its assembly tiles) against cait-core's plain reference, bit for bit, on
//! seeded random shapes and values: every remainder of the 4-wide words and of the 2×2 and 1×4
//! tiles, packed rows (linear layers) and rows a stride apart (attention heads), the full int8
//! range. Needs no pack.
#![no_std]
#![no_main]

use cortex_m_rt::entry;

use cait_core::int8_kernels::{Rows, matmul, matmul_reference};
use cait_firmware::board::mps2;
use cait_firmware::{info, model};

const MAX_ROWS: usize = 7;
const MAX_OUTS: usize = 7;
const MAX_K: usize = 67;
/// Largest gap between rows beyond `k` (a row stride of `k + pad`).
const MAX_PAD: usize = 9;
const CASES: u32 = 300;

/// SplitMix64: a tiny, well-mixed seeded generator.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[entry]
fn main() -> ! {
    let mut rng = SplitMix(0x05EE_DD5B);
    let mut x = [0i8; MAX_ROWS * (MAX_K + MAX_PAD)];
    let mut w = [0i8; MAX_OUTS * (MAX_K + MAX_PAD)];
    let mut failures = 0u32;
    let mut macs = 0u64;
    for case in 0..CASES {
        let (rows, outs, k) = (
            1 + rng.below(MAX_ROWS),
            1 + rng.below(MAX_OUTS),
            1 + rng.below(MAX_K),
        );
        // A third packed (linear layers), a third with one common stride (the 2×2 tile on rows a
        // stride apart), a third with different strides (attention heads: 1×4 tiles only).
        let (x_pad, w_pad) = match case % 3 {
            0 => (0, 0),
            1 => {
                let p = rng.below(MAX_PAD + 1);
                (p, p)
            }
            _ => (rng.below(MAX_PAD + 1), rng.below(MAX_PAD + 1)),
        };
        let (xs, ws) = (k + x_pad, k + w_pad);
        // Every tenth case saturates at the int8 extremes, where sign extension matters most.
        let extreme = case % 10 == 0;
        for v in x[..rows * xs].iter_mut().chain(w[..outs * ws].iter_mut()) {
            let r = rng.next() as u8;
            *v = if extreme {
                if r & 1 == 0 { -128 } else { 127 }
            } else {
                r as i8
            };
        }
        let x = Rows::strided(&x[..rows * xs], k, xs, rows);
        let w = Rows::strided(&w[..outs * ws], k, ws, outs);
        let mut want = [[0i32; MAX_OUTS]; MAX_ROWS];
        let mut got = [[i32::MIN; MAX_OUTS]; MAX_ROWS];
        let mut calls = 0usize;
        matmul_reference(x, w, &mut |t, o, s| want[t][o] = s);
        matmul(x, w, &mut |t, o, s| {
            got[t][o] = s;
            calls += 1;
        });
        macs += (rows * outs * k) as u64;
        if x.count() != rows
            || w.count() != outs
            || calls != rows * outs
            || (0..rows).any(|t| got[t][..outs] != want[t][..outs])
        {
            failures += 1;
            info!(
                "kernel_check: case {} ({}x{}, k {}, strides {} {}) differs",
                case, rows, outs, k, xs, ws
            );
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
