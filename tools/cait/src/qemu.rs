//! `cait qemu`: builds the Cortex-M firmware (`firmware/`) with a pack and a batch of images, runs it
//! in `qemu-system-arm`, and reports the device's logits and its measured instructions, RAM and
//! flash.
//!
//! The firmware prints `CAIT …` lines over semihosting (format in `firmware/src/report.rs`); logits
//! come as the hex of their f32 bits, so what is printed here is exactly what the device computed.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use cait_pack::{ModelConfig, Pack, PackError};
use serde_json::json;

use crate::firmware_build::{
    FIRMWARE_TARGET, FPU_LESS_TARGET, HELIUM_TARGET, firmware_cargo, firmware_elf,
};
use crate::output::group;

/// Arguments of `cait qemu`.
#[derive(clap::Args)]
pub struct Args {
    /// The `.cait` pack to link into the firmware.
    #[arg(long, short = 'm', value_name = "PACK")]
    model: PathBuf,
    /// A `.npy` batch: float32 [N, C, H, W] (or one image [C, H, W]), already normalized; or
    /// uint8 [N, H, W, C] 8-bit camera frames (HWC), which the firmware copies, one at a time,
    /// into the frame buffer inside its workspace and classifies in place, as a camera's DMA
    /// would fill it (RAM: the workspace, frame included, and the stack).
    #[arg(value_name = "INPUT.npy")]
    input: PathBuf,
    /// The emulated board.
    #[arg(long, value_enum, default_value_t = Machine::Mps2An386)]
    machine: Machine,
    /// Print one JSON object: {"results": [{"logits": [...]}], "instructions": n, "ram_bytes": n,
    /// "flash_bytes": n, ...}.
    #[arg(long)]
    json: bool,
    /// Link the pack into the board's 16 MiB PSRAM (DDR on mps3-an547) even when it fits in the
    /// code memory (4 MiB on MPS2, 512 KiB of ITCM on mps3-an547).
    #[arg(long)]
    psram: bool,
    /// Build the int8 kernels without the DSP extension (SXTB16/SMLAD): the portable kernel, for
    /// before/after comparisons. Results are bit-identical either way. (mps2-an385's Cortex-M3 has
    /// no DSP extension, and mps3-an547's Cortex-M55 vectorizes the portable kernel with Helium:
    /// always the portable kernel there.)
    #[arg(long)]
    no_dsp: bool,
    /// Seconds the firmware may run in QEMU before it is stopped.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    timeout: u64,
    /// The firmware crate to build (default: $CAIT_FIRMWARE_DIR, else this repository's firmware/).
    #[arg(long, value_name = "DIR")]
    firmware: Option<PathBuf>,
    /// Link a pack that fails only its checksum, to see the device refuse it.
    #[arg(long, hide = true)]
    allow_corrupt_pack: bool,
}

/// The emulated boards (QEMU machine names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Machine {
    /// Arm MPS2 AN386: Cortex-M4, PSRAM at 0x21000000.
    #[value(name = "mps2-an386")]
    Mps2An386,
    /// Arm MPS2 AN500: Cortex-M7, PSRAM at 0x60000000.
    #[value(name = "mps2-an500")]
    Mps2An500,
    /// Arm MPS2 AN385: Cortex-M3 (no FPU: f32 in soft-float; no DSP extension), AN386's map.
    #[value(name = "mps2-an385")]
    Mps2An385,
    /// Arm MPS3 AN547 (Corstone-300): Cortex-M55 with Helium (MVE), 512 KiB ITCM as code memory,
    /// 512 KiB DTCM as RAM, DDR at 0x60000000 for packs and images that do not fit the ITCM.
    #[value(name = "mps3-an547")]
    Mps3An547,
}

impl Machine {
    fn name(self) -> &'static str {
        match self {
            Machine::Mps2An386 => "mps2-an386",
            Machine::Mps2An500 => "mps2-an500",
            Machine::Mps2An385 => "mps2-an385",
            Machine::Mps3An547 => "mps3-an547",
        }
    }

    fn cpu(self) -> &'static str {
        match self {
            Machine::Mps2An386 => "cortex-m4",
            Machine::Mps2An500 => "cortex-m7",
            Machine::Mps2An385 => "cortex-m3",
            Machine::Mps3An547 => "cortex-m55",
        }
    }

    /// The firmware's target triple.
    fn triple(self) -> &'static str {
        match self {
            Machine::Mps2An385 => FPU_LESS_TARGET,
            Machine::Mps2An386 | Machine::Mps2An500 => FIRMWARE_TARGET,
            Machine::Mps3An547 => HELIUM_TARGET,
        }
    }

    /// Whether the firmware uses the DSP extension's int8 kernel (SXTB16/SMLAD). The M3 has no
    /// DSP extension; the M55's portable kernel is vectorized with Helium, which beats SMLAD.
    fn has_dsp(self) -> bool {
        matches!(self, Machine::Mps2An386 | Machine::Mps2An500)
    }

    /// The firmware's cargo feature for this board.
    fn feature(self) -> &'static str {
        self.name()
    }

    /// `(flash, ram, psram)` regions `[start, end)`, as in `firmware/boards/*/memory.x`.
    fn regions(self) -> [(u64, u64); 3] {
        let (code, ram) = match self {
            Machine::Mps3An547 => (512 << 10, 512 << 10),
            _ => (4 << 20, 4 << 20),
        };
        let psram = match self {
            Machine::Mps2An386 | Machine::Mps2An385 => 0x2100_0000,
            Machine::Mps2An500 | Machine::Mps3An547 => 0x6000_0000,
        };
        [
            (0, code),
            (0x2000_0000, 0x2000_0000 + ram),
            (psram, psram + (16 << 20)),
        ]
    }
}

/// What the device reported.
#[derive(Debug, Default)]
struct DeviceRun {
    pack_region: String,
    workspace_bytes: u64,
    clock_hz: u64,
    overhead_ticks: u64,
    images: Vec<DeviceImage>,
    peak_stack: Option<u64>,
    error: Option<String>,
    done: bool,
}

#[derive(Debug)]
struct DeviceImage {
    ticks: u64,
    top: Vec<usize>,
    logits: Vec<f32>,
}

/// Static memory of the linked ELF, by region.
#[derive(Debug, Default, PartialEq, Eq)]
struct ElfSizes {
    /// Code memory: vectors, code, read-only data and the initial image of `.data`.
    flash: u64,
    /// SRAM: `.data`, `.bss` (the workspace included), `.uninit`; the stack is measured apart.
    ram: u64,
    /// External PSRAM: `.psram_rodata` (a pack or images too large for flash).
    psram: u64,
}

pub fn run(args: Args) -> Result<()> {
    let qemu = find_qemu()?;
    let pack_path = fs::canonicalize(&args.model)
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    let input_path = fs::canonicalize(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let bytes = fs::read(&pack_path).with_context(|| pack_path.display().to_string())?;
    let config = read_config(&bytes, args.allow_corrupt_pack)
        .with_context(|| pack_path.display().to_string())?;
    let (images, batch) = crate::input::read_npy(&input_path, &config)?;
    let frames = matches!(batch, crate::input::NpyBatch::Frames(_));

    let firmware = firmware_dir(args.firmware.as_deref())?;
    let engines = engine_features(&bytes)?;
    let elf = build_firmware(&firmware, &args, &pack_path, &input_path, engines)?;
    let sizes = elf_sizes(&fs::read(&elf)?, args.machine)
        .with_context(|| format!("{}: not a 32-bit little-endian ELF", elf.display()))?;
    let spinner = crate::progress::spinner(format!(
        "running {images} image(s) on the emulated {}",
        args.machine.cpu()
    ));
    let output = run_qemu(&qemu, args.machine, &elf, Duration::from_secs(args.timeout));
    spinner.finish_and_clear();
    let _ = fs::remove_file(&elf);
    let device = parse_lines(&output?)?;
    if let Some(err) = &device.error {
        bail!("firmware error on {}: {err}", args.machine.name());
    }
    if !device.done || device.images.len() != images {
        bail!(
            "firmware stopped after {} of {images} images without saying why",
            device.images.len()
        );
    }

    // Under -icount shift=0 virtual time advances 1 ns per instruction.
    let per_tick = 1e9 / device.clock_hz as f64;
    let instructions: Vec<u64> = device
        .images
        .iter()
        .map(|i| (i.ticks as f64 * per_tick).round() as u64)
        .collect();
    let mean = instructions.iter().sum::<u64>() / instructions.len().max(1) as u64;
    let macs = macs(&config);
    let per_mac = mean as f64 / macs as f64;
    let value_bytes = if frames { 1 } else { 4 };
    let input_bytes = (images
        * config.in_chans as usize
        * (config.img_size[0] * config.img_size[1]) as usize
        * value_bytes) as u64;
    let code = code_bytes(&sizes, &device.pack_region, bytes.len() as u64, input_bytes);

    if args.json {
        let results: Vec<_> = device
            .images
            .iter()
            .zip(&instructions)
            .map(|(img, n)| json!({"logits": img.logits, "instructions": n, "top": img.top}))
            .collect();
        let out = json!({
            "results": results,
            "instructions": mean,
            "ram_bytes": sizes.ram,
            "flash_bytes": sizes.flash,
            "code_bytes": code,
            "psram_bytes": sizes.psram,
            "peak_stack_bytes": device.peak_stack,
            "workspace_bytes": device.workspace_bytes,
            "input": if frames { "frames" } else { "normalized" },
            "macs": macs,
            "instructions_per_mac": per_mac,
            "machine": args.machine.name(),
            "cpu": args.machine.cpu(),
            "pack_region": device.pack_region,
            "pack_bytes": bytes.len(),
            "timer_hz": device.clock_hz,
            "timer_overhead_ticks": device.overhead_ticks,
        });
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!(
            "{} ({}): {} pack of {} bytes in {}",
            args.machine.name(),
            args.machine.cpu(),
            precision_name(&bytes),
            bytes.len(),
            device.pack_region
        );
        for (i, (img, n)) in device.images.iter().zip(&instructions).enumerate() {
            let top: Vec<String> = img.top.iter().map(|c| c.to_string()).collect();
            println!(
                "  image {i}: top classes {}  ({} instructions)",
                top.join(", "),
                group(*n)
            );
        }
        println!(
            "instructions per inference: {} ({} MACs, {per_mac:.2} instructions/MAC)",
            group(mean),
            group(macs)
        );
        println!(
            "static RAM {} bytes (workspace {}{}), peak stack {} bytes, flash {} bytes (code {}), PSRAM {} bytes",
            group(sizes.ram),
            group(device.workspace_bytes),
            if frames { ", the frame in it" } else { "" },
            device.peak_stack.map_or("?".into(), group),
            group(sizes.flash),
            group(code),
            group(sizes.psram)
        );
    }
    Ok(())
}

/// The firmware's own flash bytes: flash minus the pack and the input images where they were linked
/// into flash (the build puts the pack in PSRAM when `pack_region` says so, and the images there
/// when PSRAM holds them too).
fn code_bytes(sizes: &ElfSizes, pack_region: &str, pack: u64, inputs: u64) -> u64 {
    let pack_in_psram = pack_region == "psram";
    let inputs_in_psram = sizes.psram >= if pack_in_psram { pack } else { 0 } + inputs;
    let data_in_flash =
        if pack_in_psram { 0 } else { pack } + if inputs_in_psram { 0 } else { inputs };
    sizes.flash.saturating_sub(data_in_flash)
}

/// `qemu-system-arm`, or a message saying how to install it.
fn find_qemu() -> Result<PathBuf> {
    let qemu = PathBuf::from("qemu-system-arm");
    match Command::new(&qemu)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(qemu),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("qemu-system-arm not found: install it with `apt-get install -y qemu-system-arm`")
        }
        Err(e) => Err(anyhow!("cannot run qemu-system-arm: {e}")),
    }
}

/// The config from the pack's header; `allow_corrupt` reads it past a bad checksum.
fn read_config(bytes: &[u8], allow_corrupt: bool) -> Result<ModelConfig> {
    match Pack::parse(bytes) {
        Ok(pack) => Ok(*pack.config()),
        Err(PackError::ChecksumMismatch { .. }) if allow_corrupt => {
            let mut copy = bytes.to_vec();
            cait_pack::reseal(&mut copy);
            Ok(*Pack::parse(&copy)?.config())
        }
        Err(e) => Err(e.into()),
    }
}

/// The firmware features for cait-core's engines the pack needs, so the firmware links only them:
/// `float` for f32 and f16 packs; for int8 packs the int8 path of their activation scales
/// (`int8-static` or `int8-dynamic`, from `quant.activation_scales`), with `float` for a mixed pack.
fn engine_features(bytes: &[u8]) -> Result<&'static str> {
    let header = cait_pack::PackHeader::read(bytes)?;
    if header.precision != cait_pack::Precision::Int8 {
        return Ok("float");
    }
    // Read past a bad checksum: a corrupt pack (--allow-corrupt-pack) still names its scales.
    let mut copy = bytes.to_vec();
    cait_pack::reseal(&mut copy);
    let dynamic = Pack::parse(&copy).is_ok_and(|p| {
        p.metadata().get(cait_pack::int8::META_ACTIVATION_SCALES) == Some("dynamic")
    });
    Ok(match (dynamic, header.mixed) {
        (false, false) => "int8-static",
        (false, true) => "int8-static,float",
        (true, false) => "int8-dynamic",
        (true, true) => "int8-dynamic,float",
    })
}

fn precision_name(bytes: &[u8]) -> &'static str {
    let mut copy = bytes.to_vec();
    cait_pack::reseal(&mut copy);
    Pack::parse(&copy).map_or("?", |p| p.precision().as_str())
}

fn firmware_dir(arg: Option<&Path>) -> Result<PathBuf> {
    let dir = match (arg, std::env::var_os("CAIT_FIRMWARE_DIR")) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../firmware"),
    };
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "no firmware crate at {} (give --firmware DIR or set CAIT_FIRMWARE_DIR)",
            dir.display()
        );
    }
    Ok(fs::canonicalize(&dir)?)
}

/// Builds `classify` for the board with the pack and images linked in, and returns a private copy
/// of the ELF (builds of other packs may overwrite cargo's output as soon as the lock is released).
fn build_firmware(
    firmware: &Path,
    args: &Args,
    pack: &Path,
    input: &Path,
    engines: &str,
) -> Result<PathBuf> {
    // The firmware's own target dir (its .cargo/config.toml applies only when cargo runs there).
    let target = std::env::var_os("CAIT_FIRMWARE_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| firmware.join("target"));
    fs::create_dir_all(&target)?;
    // One build-and-copy at a time per target dir (parallel tests, several shells).
    let lock = File::create(target.join("cait-qemu.lock"))?;
    lock.lock()?;

    let spinner =
        crate::progress::spinner(format!("building firmware for {}", args.machine.name()));

    let triple = args.machine.triple();
    let mut build = firmware_cargo(firmware, &target, triple)
        .with_context(|| format!("cannot set up the firmware build in {}", firmware.display()))?;
    let cmd = &mut build.command;
    cmd.args(["--release", "--bin", "classify", "--no-default-features"])
        .args(["--features", args.machine.feature()])
        .args(["--features", engines])
        .args(if args.no_dsp || !args.machine.has_dsp() {
            &[][..]
        } else {
            &["--features", "dsp"][..]
        })
        .env("CAIT_PACK", pack)
        .env("CAIT_INPUT", input)
        .env_remove("CAIT_PACK_UNCHECKED");
    if args.psram {
        cmd.env("CAIT_PACK_REGION", "psram");
    } else {
        cmd.env_remove("CAIT_PACK_REGION");
    }
    if args.allow_corrupt_pack {
        cmd.env("CAIT_PACK_UNCHECKED", "1");
    }
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("cannot run cargo to build the firmware")?;
    spinner.finish_and_clear();
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr);
        let first = log
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or("see `cargo build --release` in the firmware directory");
        bail!(
            "firmware build failed (cargo build in {}): {first}",
            firmware.display()
        );
    }
    let built = firmware_elf(&target, triple, "classify");
    let copy = target.join(format!(
        "classify-{}-{}.elf",
        args.machine.name(),
        std::process::id()
    ));
    fs::copy(&built, &copy).with_context(|| built.display().to_string())?;
    drop(lock);
    Ok(copy)
}

/// Runs the ELF in QEMU and returns its output lines (stdout then stderr), or why not.
fn run_qemu(qemu: &Path, machine: Machine, elf: &Path, timeout: Duration) -> Result<Vec<String>> {
    let mut child = Command::new(qemu)
        .args(["-machine", machine.name(), "-cpu", machine.cpu()])
        .args(["-display", "none", "-monitor", "none", "-serial", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-icount", "shift=0", "-kernel"])
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-arm")?;
    let read_all = |stream: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut lines = Vec::new();
            if let Some(s) = stream {
                for line in BufReader::new(s).lines() {
                    match line {
                        Ok(l) => lines.push(l),
                        Err(_) => break,
                    }
                }
            }
            lines
        })
    };
    let stdout = read_all(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = read_all(child.stderr.take().map(|s| Box::new(s) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut lines = stdout.join().unwrap_or_default();
    let errors = stderr.join().unwrap_or_default();
    lines.extend(errors.iter().cloned());
    match status {
        None => bail!(
            "firmware timed out after {} s in qemu-system-arm -machine {} (raise --timeout)",
            timeout.as_secs(),
            machine.name()
        ),
        Some(status) if !status.success() => {
            // The firmware's own error line says more than the exit status.
            if let Some(err) = lines.iter().find_map(|l| l.strip_prefix("CAIT error ")) {
                bail!("firmware error on {}: {err}", machine.name());
            }
            let last = errors.last().map(String::as_str).unwrap_or("no output");
            bail!("qemu-system-arm exited with {status}: {last}");
        }
        Some(_) => Ok(lines),
    }
}

/// Reads the `CAIT …` lines.
fn parse_lines(lines: &[String]) -> Result<DeviceRun> {
    let mut run = DeviceRun::default();
    let num = |s: Option<&str>, what: &str| -> Result<u64> {
        s.and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("firmware output: bad {what}"))
    };
    for line in lines {
        let Some(rest) = line.strip_prefix("CAIT ") else {
            continue;
        };
        let mut words = rest.split_ascii_whitespace();
        match words.next() {
            Some("pack") => {
                let _bytes = words.next();
                let _precision = words.next();
                run.pack_region = words.next().unwrap_or("?").to_owned();
                let _ = words.next();
                run.workspace_bytes = num(words.next(), "workspace")?;
            }
            Some("clock") => {
                run.clock_hz = num(words.next(), "clock")?;
                let _ = words.next();
                run.overhead_ticks = num(words.next(), "overhead")?;
            }
            Some("image") => {
                let index = num(words.next(), "image index")?;
                if index as usize != run.images.len() {
                    bail!("firmware output: image {index} out of order");
                }
                let _ = words.next();
                let ticks = num(words.next(), "ticks")?;
                let _ = words.next();
                let top = words
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|c| c.parse().map_err(|_| anyhow!("firmware output: bad top")))
                    .collect::<Result<_>>()?;
                if words.next() != Some("logits") {
                    bail!("firmware output: no logits for image {index}");
                }
                let logits = words
                    .map(|h| {
                        u32::from_str_radix(h, 16)
                            .map(f32::from_bits)
                            .map_err(|_| anyhow!("firmware output: bad logit {h:?}"))
                    })
                    .collect::<Result<_>>()?;
                run.images.push(DeviceImage { ticks, top, logits });
            }
            Some("stack") => {
                run.peak_stack = Some(num(words.next(), "stack")?);
            }
            Some("error") => {
                let msg = rest.strip_prefix("error").unwrap_or(rest).trim();
                run.error = Some(msg.to_owned());
            }
            Some("done") => run.done = true,
            _ => {}
        }
    }
    if run.clock_hz == 0 && run.error.is_none() {
        bail!("firmware output has no results (did it start?)");
    }
    Ok(run)
}

/// Sizes of the allocated sections of a 32-bit little-endian ELF, by the board's regions.
fn elf_sizes(elf: &[u8], machine: Machine) -> Option<ElfSizes> {
    const SHF_ALLOC: u32 = 2;
    const SHT_NOBITS: u32 = 8;
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    // ELFCLASS32, ELFDATA2LSB.
    if elf.get(..6)? != b"\x7fELF\x01\x01" {
        return None;
    }
    let shoff = u32_at(0x20)? as usize;
    let shentsize = u16_at(0x2e)? as usize;
    let shnum = u16_at(0x30)? as usize;
    let [flash, ram, psram] = machine.regions();
    let inside = |addr: u64, (start, end): (u64, u64)| addr >= start && addr < end;
    let mut sizes = ElfSizes::default();
    for i in 0..shnum {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let (kind, flags) = (u32_at(h + 4)?, u32_at(h + 8)?);
        let (addr, size) = (u64::from(u32_at(h + 12)?), u64::from(u32_at(h + 20)?));
        if flags & SHF_ALLOC == 0 || size == 0 {
            continue;
        }
        if inside(addr, flash) {
            sizes.flash += size;
        } else if inside(addr, ram) {
            sizes.ram += size;
            // `.data` is copied from flash at reset.
            if kind != SHT_NOBITS {
                sizes.flash += size;
            }
        } else if inside(addr, psram) {
            sizes.psram += size;
        }
    }
    Some(sizes)
}

/// Multiply-accumulates of one forward pass: every matmul of timm's CaiT (the patch-embedding
/// conv, q/k/v/proj, q·kᵀ and attention·v, the talking-heads mixes, fc1/fc2, the head). Norms,
/// softmax, GELU and residual adds are not counted.
pub fn macs(cfg: &ModelConfig) -> u64 {
    let c = |v: u32| u64::from(v);
    let p = c(cfg.patch_size);
    let n = (c(cfg.img_size[0]) / p.max(1)) * (c(cfg.img_size[1]) / p.max(1));
    let (d, h) = (c(cfg.embed_dim), c(cfg.num_heads));
    let patch = n * d * c(cfg.in_chans) * p * p;
    // qkv, q·kᵀ, proj_l and proj_w (H×H per score), attention·v, proj, fc1 + fc2.
    let sa = 3 * n * d * d
        + n * n * d
        + 2 * n * n * h * h
        + n * n * d
        + n * d * d
        + 2 * n * d * c(cfg.mlp_hidden_dim);
    // Class attention over T = N + 1 tokens: q from the class token, k and v from all, proj, MLP.
    let t = n + 1;
    let ca = d * d + 2 * t * d * d + 2 * t * d + d * d + 2 * d * c(cfg.mlp_hidden_dim_token_only);
    let head = d * c(cfg.num_classes);
    patch + c(cfg.depth) * sa + c(cfg.depth_token_only) * ca + head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_bytes_leave_out_the_linked_data() {
        let sizes = |flash, psram| ElfSizes {
            flash,
            ram: 0,
            psram,
        };
        // Pack and images in flash.
        assert_eq!(code_bytes(&sizes(1000, 0), "flash", 600, 100), 300);
        // Pack in PSRAM, images in flash.
        assert_eq!(code_bytes(&sizes(400, 640), "psram", 600, 100), 300);
        // Both in PSRAM.
        assert_eq!(code_bytes(&sizes(300, 704), "psram", 600, 100), 300);
        // Pack in flash, images in PSRAM.
        assert_eq!(code_bytes(&sizes(900, 128), "flash", 600, 100), 300);
    }

    #[test]
    fn parses_device_lines() {
        let lines: Vec<String> = [
            "CAIT board mps2-an386 cortex-m4 fpscr 00000000",
            "noise",
            "CAIT pack 1000 f32 flash workspace 4096",
            "CAIT clock 25000000 overhead 3",
            "CAIT image 0 ticks 100 top 1,0 logits 3f800000 bf800000",
            "CAIT stack 512 of 4096",
            "CAIT done",
        ]
        .map(String::from)
        .to_vec();
        let run = parse_lines(&lines).unwrap();
        assert_eq!(run.pack_region, "flash");
        assert_eq!((run.clock_hz, run.overhead_ticks), (25_000_000, 3));
        assert_eq!(run.images[0].logits, [1.0, -1.0]);
        assert_eq!(run.images[0].top, [1, 0]);
        assert_eq!(run.peak_stack, Some(512));
        assert!(run.done);
    }

    #[test]
    fn reports_the_firmware_error() {
        let lines = vec!["CAIT error pack refused: checksum".to_owned()];
        let run = parse_lines(&lines).unwrap();
        assert_eq!(run.error.as_deref(), Some("pack refused: checksum"));
    }

    #[test]
    fn xxs24_macs_match_the_published_count() {
        let cfg = ModelConfig {
            img_size: [224, 224],
            patch_size: 16,
            in_chans: 3,
            num_classes: 1000,
            embed_dim: 192,
            depth: 24,
            num_heads: 4,
            mlp_hidden_dim: 768,
            depth_token_only: 2,
            mlp_hidden_dim_token_only: 768,
            qkv_bias: true,
            global_pool: cait_pack::GlobalPool::Token,
        };
        // The CaiT paper gives 2.5 GFLOPs (multiply-adds) for XXS-24 at 224.
        let m = macs(&cfg) as f64 / 1e9;
        assert!((2.4..2.6).contains(&m), "{m} GMACs");
    }
}
