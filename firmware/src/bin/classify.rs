//! Classifies the linked images with the linked pack and reports logits, instructions, stack.
//!
//! Build with `CAIT_PACK=/abs/model.cait CAIT_INPUT=/abs/images.npy cargo run --release --bin
//! classify` (or `cait qemu`); the output format is in `cait_firmware::report`.
#![no_std]
#![no_main]

use core::fmt::Write;

use cortex_m_rt::entry;

use cait_firmware::board::mps2;
use cait_firmware::{measure, model, report};

#[entry]
fn main() -> ! {
    // Before anything else can use the stack: everything below here is painted.
    measure::paint_stack();
    let Some(mut out) = report::host() else {
        mps2::exit(false)
    };
    let fpscr = mps2::check_fpu();
    let _ = writeln!(
        out,
        "CAIT board {} {} fpscr {fpscr:08x}",
        model::BOARD,
        mps2::CPU
    );
    let ok = run(&mut out);
    let (bottom, top) = measure::stack_bounds();
    let _ = writeln!(
        out,
        "CAIT stack {} of {}",
        measure::peak_stack(),
        top - bottom
    );
    let _ = writeln!(out, "CAIT {}", if ok { "done" } else { "failed" });
    let _ = out.flush();
    mps2::exit(ok)
}

#[cfg(not(cait_no_pack))]
fn run(out: &mut impl Write) -> bool {
    use cait_firmware::app::{self, Linked};
    use cait_firmware::board::mps2::{Delay, Led, SysTickClock};

    let Some(peripherals) = cortex_m::Peripherals::take() else {
        return false;
    };
    let mut clock = SysTickClock::start(peripherals.SYST);
    let mut delay = Delay::new(clock);
    let mut led = Led::new(0);
    let Some(workspace) = model::take_workspace() else {
        return false;
    };
    let mut logits = [0f32; model::LOGITS];
    let linked = Linked {
        pack: model::pack_bytes(),
        config: model::CONFIG,
        precision: model::PRECISION,
        in_psram: model::PACK_IN_PSRAM,
        images: model::images(),
        workspace,
        logits: &mut logits,
    };
    match app::run(linked, &mut led, &mut delay, &mut clock, out) {
        Ok(()) => true,
        Err(err) => {
            cait_firmware::error!("{}", err);
            let _ = writeln!(out, "CAIT error {err}");
            false
        }
    }
}

#[cfg(cait_no_pack)]
fn run(out: &mut impl Write) -> bool {
    let _ = writeln!(
        out,
        "CAIT error no pack linked: build with CAIT_PACK=/abs/path.cait [CAIT_INPUT=/abs/path.npy]"
    );
    false
}
