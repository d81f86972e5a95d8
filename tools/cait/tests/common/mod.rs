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

/// Fails, naming the Debian packages to install, unless `tool --version` runs.
pub fn require(tool: &str, packages: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed: install it with `apt-get install -y {packages}` (tools/test.sh \
         does this on CI)"
    );
}

/// The logits of each result of `cait classify --json` (or `cait qemu --json`), as f32 bits:
/// serde_json writes an f32 as its shortest round-tripping decimal, so these are the exact values.
pub fn logit_bits(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| (x.as_f64().unwrap() as f32).to_bits())
                .collect()
        })
        .collect()
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
