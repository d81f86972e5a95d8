//! Progress bars on stderr (hidden when stderr is not a terminal, so JSON and logs stay clean).

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
