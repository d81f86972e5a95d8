//! The one way this repository runs cargo on `firmware/`: `cait qemu` builds `classify` with it, and
//! the firmware tests (which include this file) build their other binaries with it.
//!
//! The firmware ELF must not depend on where the checkout or the cargo home lies, or the flash
//! bytes and instruction counts the READMEs state would hold only in the checkout that measured
//! them. Two things tie a build to its location:
//! - panic locations put source paths into flash: remapped (`--remap-path-prefix`) to fixed names;
//! - cargo hashes the absolute path of a path dependency outside the building workspace (cait-core
//!   and cait-pack are outside firmware/) into its `-C metadata`, hence into every symbol name, and
//!   LLVM's inlining follows symbol order: the same source built in `/a/main` and `/b/longer/main`
//!   gave code 168 bytes apart. So cargo reads the checkout through a symlink at a fixed path
//!   ([`STABLE_ROOT`] in the temp dir), held under a lock while it builds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target triple of the boards with an FPU and the DSP extension, mps2-an386 (Cortex-M4) and
/// mps2-an500 (M7): firmware/.cargo/config.toml's default.
pub const FIRMWARE_TARGET: &str = "thumbv7em-none-eabihf";

/// The target triple of mps2-an385 (Cortex-M3: no FPU, no DSP extension).
pub const FPU_LESS_TARGET: &str = "thumbv7m-none-eabi";

/// The target triple of mps3-an547 (Cortex-M55: Armv8.1-M with Helium/MVE; firmware/.cargo/config.toml
/// adds `-C target-cpu=cortex-m55`).
pub const HELIUM_TARGET: &str = "thumbv8m.main-none-eabihf";

/// The symlink, in the temp dir, through which cargo sees the checkout.
pub const STABLE_ROOT: &str = "cait-edge-firmware-checkout";

/// A firmware build in progress: its cargo command (the caller adds the subcommand's arguments
/// after `build`) and the lock that keeps [`STABLE_ROOT`] pointing at this checkout meanwhile.
pub struct FirmwareCargo {
    pub command: Command,
    _lock: File,
}

/// `cargo build --target triple` set up to build `firmware` into `target_dir` ([`FIRMWARE_TARGET`]
/// or [`FPU_LESS_TARGET`]): the environment's RUSTFLAGS cleared
/// (they would replace the firmware's own link flags), source paths remapped, and the manifest
/// read through the fixed symlink. Blocks while another checkout's build holds the symlink.
pub fn firmware_cargo(
    firmware: &Path,
    target_dir: &Path,
    triple: &str,
) -> std::io::Result<FirmwareCargo> {
    let firmware = std::fs::canonicalize(firmware)?;
    let checkout = firmware
        .parent()
        .ok_or_else(|| std::io::Error::other("the firmware directory has no parent"))?;
    let temp = std::env::temp_dir();
    let lock = File::create(temp.join(format!("{STABLE_ROOT}.lock")))?;
    lock.lock()?;
    let stable = temp.join(STABLE_ROOT);
    let manifest = match point_at(&stable, checkout) {
        Ok(()) => stable.join("firmware/Cargo.toml"),
        // No symlinks here (or no rights): a build tied to this checkout's path, still correct.
        Err(_) => firmware.join("Cargo.toml"),
    };
    let mut flags = vec![remap(checkout, "/cait-edge"), remap(&stable, "/cait-edge")];
    let target_dir = std::fs::canonicalize(target_dir).unwrap_or_else(|_| target_dir.to_path_buf());
    flags.push(remap(&target_dir, "/cait-edge-target"));
    if let Some(home) = cargo_home() {
        flags.push(remap(&home, "/cargo"));
    }
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // `--config` arrays are appended to the config file's own rustflags (-Tlink.x stays). The
    // config file is found from the working directory, the real firmware/.
    command
        .arg("--config")
        .arg(format!("target.{triple}.rustflags=[{}]", flags.join(", ")))
        .arg("build")
        .args(["--target", triple])
        .arg("--manifest-path")
        .arg(manifest)
        .current_dir(&firmware)
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    Ok(FirmwareCargo {
        command,
        _lock: lock,
    })
}

/// Where a release build of `bin` for `triple` lands under `target_dir`.
pub fn firmware_elf(target_dir: &Path, triple: &str, bin: &str) -> PathBuf {
    target_dir.join(triple).join("release").join(bin)
}

/// Makes `link` a symlink to `target` (replacing another checkout's).
#[cfg(unix)]
fn point_at(link: &Path, target: &Path) -> std::io::Result<()> {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    match std::fs::remove_file(link) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn point_at(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other("no symlinks"))
}

/// `"--remap-path-prefix=FROM=TO"` as a TOML string (quotes and backslashes escaped).
fn remap(from: &Path, to: &str) -> String {
    let flag = format!("--remap-path-prefix={}={to}", from.display());
    format!("\"{}\"", flag.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `$CARGO_HOME`, else `~/.cargo`, as cargo itself resolves it.
fn cargo_home() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    Some(std::fs::canonicalize(&home).unwrap_or(home))
}
