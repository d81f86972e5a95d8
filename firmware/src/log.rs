//! Human-readable logs: through `defmt` when the `defmt` feature is on (frames over semihosting
//! stdout, decoded on the host), plain semihosting text otherwise.

/// Logs a line at info level.
#[cfg(feature = "defmt")]
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { defmt::info!($($arg)*) };
}

/// Logs a line at info level.
#[cfg(not(feature = "defmt"))]
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { cortex_m_semihosting::hprintln!($($arg)*) };
}

/// Logs a line at error level.
#[cfg(feature = "defmt")]
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { defmt::error!($($arg)*) };
}

/// Logs a line at error level.
#[cfg(not(feature = "defmt"))]
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { cortex_m_semihosting::heprintln!($($arg)*) };
}

// The global defmt logger: frames over semihosting stdout (QEMU). A real board would swap in
// defmt-rtt here.
#[cfg(feature = "defmt")]
use defmt_semihosting as _;
