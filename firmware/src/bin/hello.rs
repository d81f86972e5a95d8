//! Board smoke test: blinks the status LED through `embedded-hal`, times a delay on SysTick and
//! exits QEMU with success. Needs no pack.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;

use cait_firmware::board::mps2::{self, Delay, Led, SysTickClock};
use cait_firmware::measure::{Clock, Stopwatch};
use cait_firmware::{info, model};

#[entry]
fn main() -> ! {
    let Some(peripherals) = cortex_m::Peripherals::take() else {
        mps2::exit(false)
    };
    let mut clock = SysTickClock::start(peripherals.SYST);
    let mut delay = Delay::new(clock);
    let mut led = Led::new(0);
    info!("hello from {} ({})", model::BOARD, mps2::CPU);
    let stopwatch = Stopwatch::calibrate(&mut clock);
    let mut ok = true;
    for _ in 0..3 {
        let _ = led.set_high();
        ok &= led.is_on();
        let ((), ticks) = stopwatch.time(&mut clock, || delay.delay_us(1000));
        let _ = led.set_low();
        ok &= !led.is_on();
        // 1 ms is HZ / 1000 ticks (25,000 at 25 MHz); the busy-wait overshoots by at most one poll.
        info!("1 ms delay: {} ticks at {} Hz", ticks, SysTickClock::HZ);
        let ms = u64::from(SysTickClock::HZ / 1000);
        ok &= (ms..ms + ms / 25).contains(&ticks);
    }
    // Under `-icount shift=0` one instruction is one virtual ns: a loop of 1,000,000 × (subs, bne)
    // is 2,000,000 instructions, 2 ms: 50,000 ticks of a 25 MHz SysTick (40 ns each).
    let ((), ticks) = stopwatch.time(&mut clock, || {
        // SAFETY: a register-only countdown loop.
        unsafe {
            core::arch::asm!("2:", "subs {n}, #1", "bne 2b", n = inout(reg) 1_000_000u32 => _, options(nomem, nostack));
        }
    });
    let ns = ticks * 1_000_000_000 / u64::from(SysTickClock::HZ);
    info!(
        "2,000,000 instructions: {} ticks = {} virtual ns",
        ticks, ns
    );
    ok &= ticks.abs_diff(2 * u64::from(SysTickClock::HZ / 1000)) <= 1;
    info!("{}", if ok { "ok" } else { "FAILED" });
    mps2::exit(ok)
}
