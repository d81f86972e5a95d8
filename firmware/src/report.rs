//! The result lines the host (`cait qemu`) parses: one record per line, each starting with `CAIT`,
//! f32 values as the 8 hex digits of their bits so that the comparison is exact.
//!
//! ```text
//! CAIT board mps2-an386
//! CAIT pack <bytes> <f32|f16|int8> <flash|psram> workspace <bytes>
//! CAIT clock <hz> overhead <ticks>
//! CAIT image <i> ticks <ticks> top <class>,... logits <hex> <hex> ...
//! CAIT stack <peak bytes> of <stack region bytes>
//! CAIT error <message>
//! CAIT done
//! ```

use core::fmt::{self, Write};

/// Writes into a fixed line buffer and hands whole chunks to the host, so that a line costs a
/// few semihosting calls rather than one per value.
pub struct Lines<W: Write> {
    out: W,
    buf: heapless::String<256>,
}

impl<W: Write> Lines<W> {
    /// Lines written to `out`.
    pub fn new(out: W) -> Self {
        Lines {
            out,
            buf: heapless::String::new(),
        }
    }

    /// Sends what is buffered.
    pub fn flush(&mut self) -> fmt::Result {
        let r = self.out.write_str(&self.buf);
        self.buf.clear();
        r
    }
}

impl<W: Write> Write for Lines<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.buf.len() + s.len() > self.buf.capacity() {
            self.flush()?;
        }
        if s.len() > self.buf.capacity() {
            return self.out.write_str(s);
        }
        // Cannot fail: the buffer has room (checked above).
        self.buf.push_str(s).map_err(|_| fmt::Error)?;
        if s.ends_with('\n') {
            self.flush()?;
        }
        Ok(())
    }
}

/// The result stream: semihosting stdout, or stderr when defmt owns stdout.
pub fn host() -> Option<Lines<impl Write>> {
    #[cfg(feature = "defmt")]
    let out = cortex_m_semihosting::hio::hstderr().ok()?;
    #[cfg(not(feature = "defmt"))]
    let out = cortex_m_semihosting::hio::hstdout().ok()?;
    Some(Lines::new(out))
}
