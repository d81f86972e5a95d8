//! The C example (`firmware/c-example`): cait-capi's static library for thumbv7em-none-eabihf and
//! the bundled int8 pack exported by `cait export --c-array`, linked by Debian's gcc-arm-none-eabi
//! with newlib, run on the emulated Cortex-M4. Every sample image's logits equal `cait classify`'s
//! on the host bit for bit, and the documents state the example's code bytes.
//!
//! Needs `gcc-arm-none-eabi`, `libnewlib-arm-none-eabi` and `qemu-system-arm` (tools/test.sh
//! installs them): without them this test fails rather than skips.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cait_tests::docs::{assert_documented, thousands};
use cait_tests::elf::flash_bytes;

mod common;
use cait_tests::docs::repo_root as root;
use common::{json, ok, p, require};

/// Runs `cmd` to its end, or kills it after `limit`; its stdout and whether it succeeded.
fn run_with_limit(cmd: &mut Command, limit: Duration) -> (String, bool) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (text, out.status.success())
}

#[test]
fn c_example_in_qemu_is_bit_exact_with_the_host() {
    require(
        "arm-none-eabi-gcc",
        "gcc-arm-none-eabi libnewlib-arm-none-eabi",
    );
    require("qemu-system-arm", "qemu-system-arm");
    let cait = env!("CARGO_BIN_EXE_cait");
    let example = root().join("firmware/c-example");
    let pack = root().join("models/fashion-cait/fashion-cait-int8.cait");
    let samples = root().join("models/fashion-cait/samples.npy");
    // Kept between runs (the Rust library's build is the slow part); fixed, so the build is too.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-example");

    let build = Command::new("make")
        .arg("-C")
        .arg(&example)
        .arg(format!("OUT={}", out.display()))
        .arg(format!("CAIT={cait}"))
        .arg(format!(
            "CARGO={}",
            std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
        ))
        .arg(format!("PACK={}", pack.display()))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "make failed:\n{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let elf = out.join("c-example.elf");

    // As the Makefile's `run` target runs it, with the samples named on the command line.
    let (text, succeeded) = run_with_limit(
        Command::new("qemu-system-arm")
            .args(["-machine", "mps2-an386", "-cpu", "cortex-m4"])
            .args(["-display", "none", "-monitor", "none", "-serial", "none"])
            .arg("-semihosting-config")
            .arg(format!(
                "enable=on,target=native,arg=c-example,arg={}",
                samples.display()
            ))
            .arg("-kernel")
            .arg(&elf),
        Duration::from_secs(300),
    );
    assert!(succeeded, "the C example failed in QEMU:\n{text}");
    assert!(text.lines().any(|l| l == "done"), "{text}");

    // The host engine on the same normalized images.
    let host = json(&ok(&[
        "classify",
        "--json",
        "--model",
        p(&pack),
        p(&samples),
    ]));
    let results = host["results"].as_array().unwrap();
    let device: Vec<&str> = text.lines().filter(|l| l.starts_with("image ")).collect();
    assert_eq!(device.len(), 10, "one line per sample image:\n{text}");
    for (i, (line, want)) in device.iter().zip(results).enumerate() {
        // "image I: top1 K logits XXXXXXXX ..."
        let rest = line
            .strip_prefix(&format!("image {i}: top1 "))
            .unwrap_or_else(|| panic!("{line}"));
        let (top1, bits) = rest.split_once(" logits ").unwrap();
        let got: Vec<u32> = bits
            .split(' ')
            .map(|h| u32::from_str_radix(h, 16).unwrap())
            .collect();
        let want_bits: Vec<u32> = want["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v.as_f64().unwrap() as f32).to_bits())
            .collect();
        assert_eq!(
            got, want_bits,
            "image {i}: C on the device and the host differ"
        );
        assert_eq!(
            top1.parse::<u64>().unwrap(),
            want["top_k"][0]["class"].as_u64().unwrap(),
            "image {i}"
        );
    }

    // The example's own flash: everything but the pack (the images are read, not linked).
    let pack_bytes = std::fs::metadata(&pack).unwrap().len();
    let code = flash_bytes(&elf) - pack_bytes;
    eprintln!("C example: code {code} B (flash minus the {pack_bytes}-byte pack)");
    assert_documented(
        &["firmware/README.md"],
        &thousands(code),
        "C example code bytes",
    );
}
