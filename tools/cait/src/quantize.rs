//! `cait quantize`: timm checkpoint → `.cait` pack.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use crate::model::{load_path, parse_pool};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PrecisionArg {
    /// f32 weights: the float reference, on device.
    F32,
    /// f16 weights, f32 compute.
    F16,
    /// int8 weights per output channel, static activation scales from calibration.
    Int8,
}

#[derive(clap::Args)]
pub struct Args {
    /// The timm checkpoint: model.safetensors, a .pth (incl. the original {"model": {"module.…"}}
    /// release layout), or a hub folder with config.json.
    #[arg(value_name = "CHECKPOINT")]
    checkpoint: PathBuf,
    /// Weight precision of the pack.
    #[arg(long, short = 'p', value_enum)]
    precision: PrecisionArg,
    /// Calibration data for int8 (a .npy batch, an image folder, or a Fashion-MNIST folder).
    #[arg(long, value_name = "DATA")]
    calib: Option<PathBuf>,
    /// Where to write the pack.
    #[arg(long, short = 'o', value_name = "OUT.cait")]
    output: PathBuf,
    /// Print what quantization cost, layer by layer.
    #[arg(long)]
    report: bool,
    /// Head pooling of a checkpoint without config.json (token or avg).
    #[arg(long, value_name = "POOL", value_parser = ["token", "avg"])]
    global_pool: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    if args.precision != PrecisionArg::F32 {
        bail!(
            "--precision {:?} is not implemented yet; this build writes f32 packs",
            args.precision
        );
    }
    if args.calib.is_some() {
        bail!("--calib is only used by int8 quantization");
    }
    let loaded = load_path(&args.checkpoint, parse_pool(args.global_pool.as_deref())?)?;
    if loaded.checkpoint().is_none() {
        bail!(
            "{} is already a pack; quantize takes a timm checkpoint",
            args.checkpoint.display()
        );
    }
    let pack = loaded.pack()?;
    let bytes = loaded.bytes();
    std::fs::write(&args.output, bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let c = pack.config();
    eprintln!(
        "wrote {} ({} bytes, f32, {} parameters, workspace {} bytes)",
        args.output.display(),
        bytes.len(),
        c.num_params(),
        cait_core::workspace_bytes(c, pack.precision())
    );
    if args.report {
        eprintln!("f32 packs are lossless: every weight is stored exactly as in the checkpoint");
    }
    Ok(())
}
