//! Arm MPS2 (QEMU `mps2-an385` / `mps2-an386` / `mps2-an500`) and MPS3 (`mps3-an547`, whose FPGA
//! image keeps the MPS2 peripherals at other addresses): the FPGAIO user LEDs as `OutputPin`s, SysTick as a
//! wrap-counting [`Clock`] and a busy-wait `DelayNs`, semihosting exit, HardFault and panic handlers
//! that exit QEMU with failure.

use core::convert::Infallible;
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::{ExceptionFrame, exception};
use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorType, OutputPin};

use crate::measure::Clock;

/// The CPU this firmware was built for.
#[cfg(mps2_an385)]
pub const CPU: &str = "cortex-m3";
/// The CPU this firmware was built for.
#[cfg(mps2_an386)]
pub const CPU: &str = "cortex-m4";
/// The CPU this firmware was built for.
#[cfg(mps2_an500)]
pub const CPU: &str = "cortex-m7";
/// The CPU this firmware was built for.
#[cfg(mps3_an547)]
pub const CPU: &str = "cortex-m55";

/// The FPGA system clock that drives SysTick (`SYSCLK_FRQ` in QEMU's `hw/arm/mps2.c`).
#[cfg(not(mps3_an547))]
pub const SYSCLK_HZ: u32 = 25_000_000;
/// The system clock that drives SysTick (AN547's `sysclk_frq` in QEMU's `hw/arm/mps2-tz.c`).
#[cfg(mps3_an547)]
pub const SYSCLK_HZ: u32 = 32_000_000;

/// FPGAIO `LED0` register: bit `i` drives user LED `i` (two LEDs).
#[cfg(not(mps3_an547))]
const FPGAIO_LED0: *mut u32 = 0x4002_8000 as *mut u32;
/// FPGAIO `LED0` register, at its Secure alias (the core runs Secure).
#[cfg(mps3_an547)]
const FPGAIO_LED0: *mut u32 = 0x5930_2000 as *mut u32;

/// User LED `0` or `1` of the FPGAIO block.
pub struct Led {
    mask: u32,
}

impl Led {
    /// LED `index` (0 or 1; others are taken modulo 2).
    pub fn new(index: u8) -> Led {
        Led {
            mask: 1 << (index % 2),
        }
    }

    fn update(&mut self, on: bool) {
        // SAFETY: FPGAIO_LED0 is the LED register of the MPS2 FPGAIO block, always mapped; a
        // read-modify-write of our own bit (single core, no interrupt touches it).
        unsafe {
            let v = core::ptr::read_volatile(FPGAIO_LED0);
            let v = if on { v | self.mask } else { v & !self.mask };
            core::ptr::write_volatile(FPGAIO_LED0, v);
        }
    }

    /// Whether the LED is lit (read back from the register).
    pub fn is_on(&self) -> bool {
        // SAFETY: as in `update`, a read of an always-mapped register.
        unsafe { core::ptr::read_volatile(FPGAIO_LED0) & self.mask != 0 }
    }
}

impl ErrorType for Led {
    type Error = Infallible;
}

impl OutputPin for Led {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.update(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.update(true);
        Ok(())
    }
}

/// SysTick reload: the full 24 bits, so one wrap is 2^24 ticks.
const RELOAD: u32 = 0x00FF_FFFF;

/// Wraps of SysTick since [`SysTickClock::start`], counted by its exception.
static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// SysTick on the processor clock, extended to 64 bits by counting wraps. Under QEMU's
/// `-icount shift=0` one tick is 40 virtual ns, i.e. 40 instructions.
#[derive(Clone, Copy)]
pub struct SysTickClock {
    _private: (),
}

impl SysTickClock {
    /// Starts SysTick counting down from 2^24 − 1 with its wrap interrupt on.
    pub fn start(mut syst: SYST) -> SysTickClock {
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        WRAPS.store(0, Ordering::Relaxed);
        syst.enable_interrupt();
        syst.enable_counter();
        SysTickClock { _private: () }
    }
}

impl Clock for SysTickClock {
    const HZ: u32 = SYSCLK_HZ;

    fn now(&mut self) -> u64 {
        cortex_m::interrupt::free(|_| {
            let mut wraps = WRAPS.load(Ordering::Relaxed);
            let mut current = SYST::get_current();
            // A wrap whose exception is still pending (interrupts are off): count it, and re-read
            // the counter, which has restarted from the reload value.
            if SCB::is_pendst_pending() {
                wraps += 1;
                current = SYST::get_current();
            }
            u64::from(wraps) * (u64::from(RELOAD) + 1) + u64::from(RELOAD - current)
        })
    }
}

/// A busy-wait delay on a [`Clock`].
pub struct Delay<C: Clock> {
    clock: C,
}

impl<C: Clock> Delay<C> {
    /// Delays measured on `clock`.
    pub fn new(clock: C) -> Self {
        Delay { clock }
    }
}

impl<C: Clock> DelayNs for Delay<C> {
    fn delay_ns(&mut self, ns: u32) {
        let ticks = (u64::from(ns) * u64::from(C::HZ)).div_ceil(1_000_000_000);
        let start = self.clock.now();
        while self.clock.now() - start < ticks {}
    }
}

/// Makes sure the FPU computes as on the host: flush-to-zero and default-NaN off, round to nearest
/// (the reset value of FPSCR). Returns FPSCR as found.
#[cfg(not(mps2_an385))]
pub fn check_fpu() -> u32 {
    let found: u32;
    // SAFETY: reads FPSCR (the FPU is enabled by cortex-m-rt's reset handler on eabihf targets).
    unsafe { core::arch::asm!("vmrs {}, fpscr", out(reg) found, options(nomem, nostack)) };
    // FZ (bit 24), DN (bit 25), RMode (bits 23:22) must be 0.
    let mode_bits = (1 << 24) | (1 << 25) | (3 << 22);
    if found & mode_bits != 0 {
        let fixed = found & !mode_bits;
        // SAFETY: writes FPSCR with the rounding/flush controls cleared; no FP op is in flight.
        unsafe { core::arch::asm!("vmsr fpscr, {}", in(reg) fixed, options(nomem, nostack)) };
    }
    found
}

/// The Cortex-M3 has no FPU: its soft-float routines round to nearest and keep subnormals, as
/// the host does. Returns 0 (FPSCR's reset value).
#[cfg(mps2_an385)]
pub fn check_fpu() -> u32 {
    0
}

/// Ends the QEMU session: exit status 0 on `Ok`, 1 on `Err`.
pub fn exit(success: bool) -> ! {
    debug::exit(if success { EXIT_SUCCESS } else { EXIT_FAILURE });
    // Not under a debugger/QEMU: stop here.
    loop {
        cortex_m::asm::bkpt();
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    if let Ok(mut err) = cortex_m_semihosting::hio::hstderr() {
        let _ = writeln!(
            err,
            "CAIT error hard fault at pc={:#010x} lr={:#010x}",
            frame.pc(),
            frame.lr()
        );
    }
    exit(false)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    if let Ok(mut err) = cortex_m_semihosting::hio::hstderr() {
        let _ = writeln!(err, "CAIT error panic: {info}");
    }
    exit(false)
}
