//! One pack, the same logits bits on every host and kernel set: x86-64 with the best kernels the
//! CPU has (AVX-512 VNNI), with AVX-VNNI at most (`CAIT_KERNELS=avx-vnni`, where the CPU has it),
//! with AVX2 at most (`CAIT_KERNELS=avx2`) and with the portable ones
//! (`CAIT_KERNELS=portable`), and AArch64 Linux under QEMU user mode on a
//! core without the dot-product extension (Cortex-A53: the portable int8 tile, NEON) and on one
//! with it (Cortex-A76: the SDOT tile) — for the bundled int8 and f16 packs and an f32 pack of the
//! same model, on the ten sample images. Each run is the `logits` program (tools/logits); the
//! x86-64 run is also checked against `cait classify`. Needs Debian's `qemu-user` and `gcc-aarch64-linux-gnu`
//! (tools/test.sh installs them) and the toolchain's aarch64-unknown-linux-gnu target
//! (rust-toolchain.toml).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cait_tests::docs::repo_root as root;
use common::{json, logit_bits, ok, p, require};

/// Builds the `logits` program (tools/logits: cait-core and nothing heavier) for `target` (`None`:
/// this host) in a folder of its own (kept between runs), with the repository's
/// `.cargo/config.toml` (the AArch64 linker).
fn build_logits(target: Option<&str>) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cross-target");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root())
        .args(["build", "-q", "-p", "cait-logits"])
        .env("CARGO_TARGET_DIR", &dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "cargo build -p cait-logits {target:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut exe = dir;
    if let Some(t) = target {
        exe.push(t);
    }
    exe.join("debug/logits")
}

/// What one run printed: the kernels it chose, the integer-only kernels' digest and each image's
/// logits bits.
#[derive(Debug)]
struct Run {
    kernels: String,
    fixed: u64,
    logits: Vec<Vec<u32>>,
}

fn run(cmd: &mut Command, what: &str) -> Run {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let kernels = lines
        .next()
        .and_then(|l| l.strip_prefix("kernels "))
        .unwrap_or_else(|| panic!("{what}: no kernels line:\n{stdout}"))
        .to_string();
    let fixed = lines
        .next()
        .and_then(|l| u64::from_str_radix(l.strip_prefix("fixed ")?, 16).ok())
        .unwrap_or_else(|| panic!("{what}: no fixed line:\n{stdout}"));
    let logits = lines
        .map(|l| {
            l.strip_prefix("logits ")
                .unwrap_or_else(|| panic!("{what}: {l}"))
                .split(' ')
                .map(|h| u32::from_str_radix(h, 16).unwrap())
                .collect()
        })
        .collect();
    Run {
        kernels,
        fixed,
        logits,
    }
}

/// The sample images, normalized for `pack`'s model, as raw little-endian f32 in `dir`.
fn raw_samples(pack: &Path, dir: &Path) -> PathBuf {
    let bytes = std::fs::read(pack).unwrap();
    let mut storage = vec![0u64; bytes.len().div_ceil(8)];
    let aligned = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut storage)[..bytes.len()];
    aligned.copy_from_slice(&bytes);
    let parsed = cait_pack::Pack::parse(aligned).unwrap();
    let data = cait_data::load(
        &root().join("models/fashion-cait/samples.npy"),
        &Default::default(),
        parsed.config(),
        parsed.preprocess(),
    )
    .unwrap();
    let raw: Vec<u8> = data.images.iter().flat_map(|v| v.to_le_bytes()).collect();
    let out = dir.join("samples.f32");
    std::fs::write(&out, raw).unwrap();
    out
}

#[test]
fn every_host_and_kernel_set_gives_the_same_logits_bits() {
    require("qemu-aarch64", "qemu-user");
    require("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu");
    let tmp = tempfile::tempdir().unwrap();
    let models = root().join("models/fashion-cait");
    let f32_pack = tmp.path().join("f32.cait");
    ok(&[
        "quantize",
        p(&models.join("model.safetensors")),
        "--precision",
        "f32",
        "-o",
        p(&f32_pack),
    ]);
    let packs = [
        models.join("fashion-cait-int8.cait"),
        models.join("fashion-cait-f16.cait"),
        f32_pack,
    ];
    let host = build_logits(None);
    let arm = build_logits(Some("aarch64-unknown-linux-gnu"));
    let sysroot = "/usr/aarch64-linux-gnu";

    for pack in &packs {
        let images = raw_samples(pack, tmp.path());
        // This host with the kernels `CAIT_KERNELS` allows (unset: the best the CPU has).
        let on_host = |kernels: Option<&str>, what: &str| {
            let mut cmd = Command::new(&host);
            cmd.arg(pack).arg(&images).env_remove("CAIT_KERNELS");
            if let Some(k) = kernels {
                cmd.env("CAIT_KERNELS", k);
            }
            run(&mut cmd, what)
        };
        let native = on_host(None, "x86-64");
        let portable = on_host(Some("portable"), "x86-64 portable");
        let avx2 = on_host(Some("avx2"), "x86-64 avx2");
        let avx_vnni = on_host(Some("avx-vnni"), "x86-64 avx-vnni");
        let neon = run(
            Command::new("qemu-aarch64")
                .args(["-cpu", "cortex-a53", "-L", sysroot])
                .arg(&arm)
                .arg(pack)
                .arg(&images),
            "aarch64 cortex-a53",
        );
        let sdot = run(
            Command::new("qemu-aarch64")
                .args(["-cpu", "cortex-a76", "-L", sysroot])
                .arg(&arm)
                .arg(pack)
                .arg(&images),
            "aarch64 cortex-a76",
        );
        // Each run chose the kernels it is meant to test.
        assert_eq!(portable.kernels, "int8=portable float=portable");
        assert!(!avx2.kernels.contains("vnni"), "{}", avx2.kernels);
        assert!(!avx_vnni.kernels.contains("avx512"), "{}", avx_vnni.kernels);
        eprintln!("x86-64 with CAIT_KERNELS=avx-vnni: {}", avx_vnni.kernels);
        assert_eq!(neon.kernels, "int8=portable float=portable");
        assert_eq!(sdot.kernels, "int8=aarch64 sdot float=portable");

        assert_eq!(native.logits.len(), 10, "{}", pack.display());
        // The integer-only kernels (crates/cait-core/src/kernels/fixed): the same bits everywhere,
        // and the program's call is the one made here.
        let here = cait_core::check::fixed_kernels_digest(1, 500);
        for r in [&native, &avx_vnni, &avx2, &portable, &neon, &sdot] {
            assert_eq!(r.fixed, here, "fixed-point digest of {}", r.kernels);
        }
        for (name, other) in [
            ("x86-64 avx-vnni", &avx_vnni),
            ("x86-64 avx2", &avx2),
            ("x86-64 portable", &portable),
            ("aarch64 neon", &neon),
            ("aarch64 sdot", &sdot),
        ] {
            assert_eq!(
                other.logits,
                native.logits,
                "{name} ({}) and x86-64 ({}) differ on {}",
                other.kernels,
                native.kernels,
                pack.display()
            );
        }

        // The command line's logits (shortest round-tripping decimals) are the same values.
        let cli = json(&ok(&[
            "classify",
            "--json",
            "--model",
            p(pack),
            p(&models.join("samples.npy")),
        ]));
        assert_eq!(
            logit_bits(&cli),
            native.logits,
            "cait classify on {}",
            pack.display()
        );
    }
}
