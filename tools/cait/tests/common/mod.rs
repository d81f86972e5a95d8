//! Helpers shared by the `cait` command-line tests: run the binary, check its exit and its one-line
//! errors.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `cait ARGS` and returns what it did.
pub fn cait(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cait"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `cait ARGS`, which must succeed.
pub fn ok(args: &[&str]) -> Output {
    let out = cait(args);
    assert!(
        out.status.success(),
        "cait {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The command's stdout as JSON.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `tiny` golden fixture's folder.
pub fn tiny() -> PathBuf {
    cait_tests::synth::fixtures_dir().join("tiny")
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Fails with exit status 1 and a single `error: ` line containing every `needle`.
pub fn assert_error(out: &Output, needles: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let all = String::from_utf8_lossy(&out.stderr);
    // Warnings (a guessed setting …) may come first, one line each; the error is one line.
    let err: Vec<&str> = all
        .trim_end()
        .lines()
        .filter(|l| !l.starts_with("warning: "))
        .collect();
    assert_eq!(err.len(), 1, "one error line expected, got: {all}");
    let err = err[0];
    assert!(err.starts_with("error: "), "{all}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}
