//! `cait export --c-array`: the header a C compiler reads holds the pack's exact bytes at a 64-byte
//! aligned address, and its macros agree with `cait inspect`; with `--c-source` the array is
//! defined once in the C file. Bad requests fail with one line and write nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{assert_error, cait, json, ok, p};

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fashion-cait/fashion-cait-int8.cait")
}

/// A C program that checks the array's alignment and prints the macros, then the bytes as hex.
const PROBE: &str = r#"
#include <stdint.h>
#include <stdio.h>
#include "model.h"
int main(void) {
    if ((uintptr_t)model % 64 != 0) { puts("misaligned"); return 1; }
    printf("%lu %lu %lu %lu %lu %lu %lu %s\n", (unsigned long)MODEL_LEN,
           (unsigned long)MODEL_WORKSPACE_BYTES, (unsigned long)MODEL_INPUT_CHANNELS,
           (unsigned long)MODEL_INPUT_HEIGHT, (unsigned long)MODEL_INPUT_WIDTH,
           (unsigned long)MODEL_INPUT_LEN, (unsigned long)MODEL_LOGITS_LEN, MODEL_PRECISION);
    for (unsigned long i = 0; i < MODEL_LEN; i++) printf("%02x", model[i]);
    puts("");
    return 0;
}
"#;

/// Compiles `sources` (in `dir`) with the host's `cc` and runs the program: its stdout.
fn compile_and_run(dir: &Path, std: &str, sources: &[&str]) -> String {
    std::fs::write(dir.join("probe.c"), PROBE).unwrap();
    let exe = dir.join("probe");
    let out = Command::new("cc")
        .args([std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-o"])
        .arg(&exe)
        .arg("probe.c")
        .args(sources)
        .current_dir(dir)
        .output()
        .expect("cc (Debian's gcc) is needed for this test");
    assert!(
        out.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    String::from_utf8(run.stdout).unwrap()
}

fn inspect_workspace(pack: &Path) -> u64 {
    json(&ok(&["inspect", "--json", p(pack)]))["workspace_bytes"]
        .as_u64()
        .unwrap()
}

fn check_probe(stdout: &str, pack: &[u8], workspace: u64) {
    let mut lines = stdout.lines();
    let macros: Vec<&str> = lines.next().unwrap().split(' ').collect();
    let len = pack.len().to_string();
    let ws = workspace.to_string();
    assert_eq!(
        macros,
        [
            len.as_str(),
            ws.as_str(),
            "1",
            "28",
            "28",
            "784",
            "10",
            "int8"
        ]
    );
    let hex: String = pack.iter().map(|b| format!("{b:02x}")).collect();
    assert!(lines.next().unwrap() == hex, "the array is not the pack");
}

/// `cait export --c-array --name model -o DIR/model.h [extra] BUNDLED`, which must succeed.
fn export_model(dir: &Path, extra: &[&str]) {
    let header = dir.join("model.h");
    let bundled = bundled();
    let mut args = vec!["export", "--c-array", "--name", "model", "-o", p(&header)];
    args.extend_from_slice(extra);
    args.push(p(&bundled));
    ok(&args);
}

#[test]
fn header_holds_the_pack_aligned_with_its_sizes() {
    let dir = tempfile::tempdir().unwrap();
    export_model(dir.path(), &[]);
    let pack = std::fs::read(bundled()).unwrap();
    let stdout = compile_and_run(dir.path(), "-std=c99", &[]);
    check_probe(&stdout, &pack, inspect_workspace(&bundled()));
}

#[test]
fn c_source_defines_the_array_once() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("model.c");
    export_model(dir.path(), &["--c-source", p(&source)]);
    let header = std::fs::read_to_string(dir.path().join("model.h")).unwrap();
    assert!(header.contains("extern const uint8_t model[MODEL_LEN];"));
    assert!(header.len() < 8192, "the header holds no bytes");
    let pack = std::fs::read(bundled()).unwrap();
    let stdout = compile_and_run(dir.path(), "-std=c11", &["model.c"]);
    check_probe(&stdout, &pack, inspect_workspace(&bundled()));
}

#[test]
fn default_name_comes_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let header = dir.path().join("m.h");
    ok(&["export", "--c-array", "-o", p(&header), p(&bundled())]);
    let text = std::fs::read_to_string(&header).unwrap();
    assert!(text.contains("#define FASHION_CAIT_INT8_WORKSPACE_BYTES "));
    // The engine's figure for a workspace holding the camera frame too.
    let bytes = std::fs::read(bundled()).unwrap();
    let frame = cait_core::frame_workspace_bytes_for(&bytes);
    assert!(
        text.contains(&format!(
            "#define FASHION_CAIT_INT8_FRAME_WORKSPACE_BYTES {frame}u"
        )),
        "{text}"
    );
    assert!(text.contains("const uint8_t fashion_cait_int8[FASHION_CAIT_INT8_LEN] = {"));
}

/// One `error:` line naming the problem, exit status 1, and no file written.
fn refused(args: &[&str], pack: &Path, expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let header = dir.path().join("model.h");
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", p(&header), p(pack)]);
    assert_error(&cait(&all), &[expect]);
    assert!(
        !header.exists(),
        "a refused export wrote {}",
        header.display()
    );
}

#[test]
fn bad_requests_write_nothing() {
    refused(&[], &bundled(), "--c-array");
    refused(
        &["--c-array", "--name", "2fast"],
        &bundled(),
        "not a C identifier",
    );
    // A pack with one flipped byte: its checksum names it.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(bundled()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let bad = dir.path().join("bad.cait");
    std::fs::write(&bad, &bytes).unwrap();
    refused(&["--c-array"], &bad, "bad.cait");
    // Not a pack at all.
    let text = dir.path().join("notes.cait");
    std::fs::write(&text, "not a pack").unwrap();
    refused(&["--c-array"], &text, "notes.cait");
}
