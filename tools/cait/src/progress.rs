//! Progress bars on stderr (hidden when stderr is not a terminal, so JSON and logs stay clean).

use std::sync::Mutex;

use cait_data::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// A bar for `len` items of a job named `what`.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{bar:40}] {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}

/// A spinner with the elapsed time, for work whose length is not known in steps.
pub fn spinner(what: String) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("static template"),
    );
    spinner.set_message(what);
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    spinner
}

/// A bar per phase of cait-data's and cait-quant's work (decoding a folder, calibrating,
/// measuring), ticked from their worker threads.
#[derive(Default)]
pub struct Bars(Mutex<Option<ProgressBar>>);

impl Progress for Bars {
    fn begin(&self, phase: &str, total: u64) {
        if let Ok(mut b) = self.0.lock() {
            *b = Some(bar(total, phase));
        }
    }
    fn tick(&self) {
        if let Ok(b) = self.0.lock()
            && let Some(b) = b.as_ref()
        {
            b.inc(1);
        }
    }
    fn end(&self) {
        if let Ok(mut b) = self.0.lock()
            && let Some(b) = b.take()
        {
            b.finish_and_clear();
        }
    }
}
