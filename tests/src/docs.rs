//! The figures the READMEs state are checked against what the tests measure: each test that
//! measures a documented figure asserts that the documents state exactly that value, so a change
//! that moves a figure fails until the document is updated (DESIGN: figures come from one place).

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

/// `11956264` → `11,956,264`, as the documents write counts.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Panics unless every document in `files` (paths from the repository root) contains `figure`,
/// naming `what` was measured, so the message says which line to update.
pub fn assert_documented(files: &[&str], figure: &str, what: &str) {
    for f in files {
        let path = repo_root().join(f);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            text.contains(figure),
            "{f} does not state the measured {what}, {figure}: update the figure there"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(15_723_372), "15,723,372");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
    }

    #[test]
    fn an_absent_figure_fails() {
        let r =
            std::panic::catch_unwind(|| assert_documented(&["README.md"], "no such figure ✗", "x"));
        assert!(r.is_err());
        assert_documented(&["README.md"], "cait-edge", "the name");
    }
}
