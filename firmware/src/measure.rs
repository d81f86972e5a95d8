//! On-device measurement: a monotonic tick counter (instructions under QEMU's `-icount`) and peak
//! stack by painting.

/// A monotonic counter that never wraps (a hardware timer extended by counting its wraps).
pub trait Clock {
    /// Ticks per second.
    const HZ: u32;
    /// Ticks since the clock started.
    fn now(&mut self) -> u64;
}

/// Ticks a region of code took, less the cost of reading the clock itself (calibrated once).
pub struct Stopwatch {
    overhead: u64,
}

impl Stopwatch {
    /// Calibrates the cost of a start/stop pair around nothing (the least of a few tries).
    pub fn calibrate<C: Clock>(clock: &mut C) -> Stopwatch {
        let mut overhead = u64::MAX;
        for _ in 0..8 {
            let start = clock.now();
            let end = clock.now();
            overhead = overhead.min(end - start);
        }
        Stopwatch { overhead }
    }

    /// The calibrated overhead in ticks.
    pub fn overhead(&self) -> u64 {
        self.overhead
    }

    /// Runs `f` and returns its result and the ticks it took.
    pub fn time<C: Clock, R>(&self, clock: &mut C, f: impl FnOnce() -> R) -> (R, u64) {
        let start = clock.now();
        let r = f();
        let end = clock.now();
        (r, (end - start).saturating_sub(self.overhead))
    }
}

/// The word the free stack is painted with.
pub const PAINT: u32 = 0xC0FF_EE55;

#[cfg(target_arch = "arm")]
unsafe extern "C" {
    /// Lowest address the stack may grow to (end of `.bss`/`.uninit`; cortex-m-rt).
    static mut _stack_end: u32;
    /// Initial stack pointer, top of RAM (cortex-m-rt).
    static mut _stack_start: u32;
}

/// The stack's bounds `[lowest, top)` as laid out by cortex-m-rt.
#[cfg(target_arch = "arm")]
pub fn stack_bounds() -> (usize, usize) {
    (
        (&raw const _stack_end) as usize,
        (&raw const _stack_start) as usize,
    )
}

/// Paints the free stack below the current stack pointer with [`PAINT`]. Call once, early, with
/// interrupts that could use the stack not yet enabled.
#[cfg(target_arch = "arm")]
pub fn paint_stack() {
    let (bottom, _) = stack_bounds();
    // SAFETY: the words in [bottom, sp) are free stack (nothing lives below the stack pointer) and
    // belong to no Rust object; the loop runs in registers only, so it does not paint its own frame.
    unsafe {
        core::arch::asm!(
            "mov {end}, sp",
            "2:",
            "cmp {p}, {end}",
            "bhs 3f",
            "str {pat}, [{p}], #4",
            "b 2b",
            "3:",
            p = inout(reg) bottom => _,
            end = out(reg) _,
            pat = in(reg) PAINT,
            options(nostack),
        );
    }
}

/// Bytes of stack used at the deepest point since [`paint_stack`]: from the top of the stack down
/// to the lowest word no longer holding [`PAINT`].
#[cfg(target_arch = "arm")]
pub fn peak_stack() -> usize {
    let (bottom, top) = stack_bounds();
    let mut p = bottom;
    while p < top {
        // SAFETY: p is a word-aligned address inside the stack region, which is always mapped.
        let w = unsafe { core::ptr::read_volatile(p as *const u32) };
        if w != PAINT {
            break;
        }
        p += 4;
    }
    top - p
}
