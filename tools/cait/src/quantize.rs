//! `cait quantize`: timm checkpoint → `.cait` pack (f32, f16, or int8 calibrated on data).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cait_data::{DataOptions, Split};
use cait_quant::{AttnMode, Budget, CalibMethod, Int8Options, Smoothing};
use clap::ValueEnum;
use serde_json::json;

use crate::model::{PreprocessArgs, load_path, parse_pool};
use crate::progress;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PrecisionArg {
    /// f32 weights: the float reference, on device.
    F32,
    /// f16 weights, f32 compute.
    F16,
    /// int8 weights per output channel, activation scales from calibration (or per row at run
    /// time, see --activation-scales).
    Int8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    /// Measure all three and keep the best.
    Auto,
    Minmax,
    Percentile,
    Mse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AttnArg {
    /// Measure int8 and f32 and keep int8 unless f32 is clearly better.
    Auto,
    Int8,
    F32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ClassPathArg {
    /// Each row quantized at run time over its own range.
    Dynamic,
    /// The calibrated scales, as every other activation.
    Static,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScalesArg {
    /// Measure both and keep dynamic only where it is better.
    Auto,
    /// The calibrated scale and zero point of each activation.
    Static,
    /// Each input row of every linear layer but the patch embedding quantized at run time over
    /// its own range.
    Dynamic,
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
    /// Calibration data (required for int8; optional for f16, where it feeds --report): a .npy
    /// batch, an image folder, or a Fashion-MNIST IDX folder (its training split). int8 splits it
    /// round-robin: half fits the activation ranges, a quarter chooses among the candidates, a
    /// quarter is held out for the figures it reports (see --holdout).
    #[arg(long, value_name = "DATA")]
    calib: Option<PathBuf>,
    /// Calibration images to use (the first N).
    #[arg(long, value_name = "N", default_value_t = 128)]
    calib_count: usize,
    /// int8: images from the same distribution, never used for fitting: the candidates are
    /// compared on half of them and the reported figures measured on the other half, and every
    /// --calib image fits the ranges. A .npy batch, an image folder, or a Fashion-MNIST IDX folder
    /// (its test split — the images `cait eval` scores, so the choices will have seen half of
    /// them).
    #[arg(long, value_name = "DATA")]
    holdout: Option<PathBuf>,
    /// Hold-out images to use (the first N).
    #[arg(long, value_name = "N", default_value_t = 128)]
    holdout_count: usize,
    /// Where to write the pack.
    #[arg(long, short = 'o', value_name = "OUT.cait")]
    output: PathBuf,
    /// Print what quantization cost, layer by layer (SQNR of weights and activations against
    /// the float model, logit SQNR, top-1 agreement), measured on held-out images only.
    #[arg(long)]
    report: bool,
    /// Print the summary (and the report) as one JSON object.
    #[arg(long)]
    json: bool,
    /// int8: how activation ranges are chosen.
    #[arg(long, value_enum, default_value_t = MethodArg::Auto)]
    method: MethodArg,
    /// int8: per-channel smoothing of LayerNorm outputs: auto, off, or the migration strength
    /// alpha in (0, 1] (1 = RepQ-ViT).
    #[arg(long, value_name = "auto|off|ALPHA", default_value = "auto")]
    smoothing: String,
    /// int8: q·kᵀ in int8 or f32.
    #[arg(long, value_enum, default_value_t = AttnArg::Auto)]
    qk: AttnArg,
    /// int8: attention·v in int8 or f32.
    #[arg(long, value_enum, default_value_t = AttnArg::Auto)]
    av: AttnArg,
    /// int8: how the class-token path's inputs are quantized (class-attention q, proj, fc1, fc2
    /// and the head: one row per image, under 1% of the MACs). `dynamic` quantizes each row at
    /// run time over its own range, which measured better than `static` on every fixture model.
    #[arg(long, value_enum, default_value_t = ClassPathArg::Dynamic)]
    class_path: ClassPathArg,
    /// int8: the linear layers' input scales. `static` uses the calibrated scale of each
    /// activation; `dynamic` quantizes every input row (but the patch embedding's) at run time
    /// over its own range, as ONNX Runtime's dynamic quantization does per tensor, for a pass over
    /// each row and f32 copies of the MLP's rows; it implies a dynamic class path. `auto` measures
    /// both on the selection images and keeps the better.
    #[arg(long, value_enum, default_value_t = ScalesArg::Auto)]
    activation_scales: ScalesArg,
    /// int8, mixed precision: keep the most sensitive blocks in f16 until top-1 accuracy is at
    /// most PTS points below the float model's on the selection images (labelled data: IDX or
    /// class sub-folders). The pack records the kept blocks; the summary says whether the budget
    /// also holds on the held-out images. A budget no mix meets gives the best mix, with a warning.
    #[arg(long, value_name = "PTS", conflicts_with = "min_sqnr")]
    max_drop: Option<f64>,
    /// int8, mixed precision: as --max-drop, for a logit SQNR against the float model of at least
    /// DB decibels (needs no labels).
    #[arg(long, value_name = "DB")]
    min_sqnr: Option<f64>,
    /// int8: at most N held-out images compare the candidate choices (0 = every selection image).
    #[arg(long, value_name = "N", default_value_t = 64)]
    select_count: usize,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Head pooling of a checkpoint without config.json (token or avg).
    #[arg(long, value_name = "POOL", value_parser = ["token", "avg"])]
    global_pool: Option<String>,
    /// The preprocessing recorded in the pack, for a checkpoint whose config.json does not state it.
    #[command(flatten)]
    preprocess: PreprocessArgs,
}

fn parse_smoothing(s: &str) -> Result<Option<Smoothing>> {
    Ok(match s {
        "auto" => None,
        "off" => Some(Smoothing::Off),
        a => match a.parse::<f32>() {
            Ok(alpha) if alpha > 0.0 && alpha <= 1.0 => Some(Smoothing::Alpha(alpha)),
            _ => bail!("--smoothing `{a}`: expected auto, off, or alpha in (0, 1]"),
        },
    })
}

fn attn(a: AttnArg) -> Option<AttnMode> {
    match a {
        AttnArg::Auto => None,
        AttnArg::Int8 => Some(AttnMode::Int8),
        AttnArg::F32 => Some(AttnMode::F32),
    }
}

pub fn run(args: Args) -> Result<()> {
    let smoothing = parse_smoothing(&args.smoothing)?;
    if args.precision == PrecisionArg::Int8 && args.calib.is_none() {
        bail!(
            "--precision int8 needs calibration data: --calib DATA (a .npy batch, an image folder or a Fashion-MNIST folder)"
        );
    }
    if args.precision == PrecisionArg::F32 && args.calib.is_some() {
        bail!("--calib is only used by int8 and f16 quantization");
    }
    if args.calib_count == 0 {
        bail!("--calib-count 0: the calibration set would be empty");
    }
    if args.holdout.is_some() && args.precision != PrecisionArg::Int8 {
        bail!("--holdout is only used by int8 quantization (f16 and f32 fit nothing)");
    }
    crate::output::check_file(&args.output, "-o")?;
    let budget = match (args.max_drop, args.min_sqnr) {
        (Some(p), _) => Some(Budget::MaxDrop(p)),
        (_, Some(db)) => Some(Budget::MinSqnr(db)),
        _ => None,
    };
    if budget.is_some() && args.precision != PrecisionArg::Int8 {
        bail!("--max-drop and --min-sqnr choose int8 mixed precision: they need --precision int8");
    }
    if args.holdout_count == 0 {
        bail!("--holdout-count 0: the hold-out set would be empty");
    }
    let pool = parse_pool(args.global_pool.as_deref())?;
    let loaded = load_path(&args.checkpoint, pool, &args.preprocess)?;
    let Some(ckpt) = loaded.checkpoint() else {
        bail!(
            "{} is already a pack; quantize takes a timm checkpoint",
            args.checkpoint.display()
        );
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Calibration (training split of an IDX folder) and hold-out (test split) data, one loader.
    let load = |path: Option<&PathBuf>, split, limit, what: &str| {
        path.map(|path| {
            let opts = DataOptions {
                split,
                labels: None,
                limit: Some(limit),
            };
            let mut set = cait_data::load_with_progress(path, &opts, &ckpt.config, &ckpt.preprocess, &progress::Bars::default())
                .with_context(|| format!("{what} {}", path.display()))?;
            // --max-drop scores labels: class sub-folders are the model's classes by name.
            let labels: Vec<&str> = ckpt.labels.iter().flatten().map(String::as_str).collect();
            if let cait_data::ClassMap::Unmatched(missing) = cait_data::map_classes(&mut set, &labels)
                && args.max_drop.is_some()
            {
                eprintln!(
                    "warning: {what} {}: classes {} are not among the model's labels; --max-drop scores its classes by position",
                    path.display(),
                    missing.join(", ")
                );
            }
            anyhow::Ok(set)
        })
        .transpose()
    };
    let calib = load(
        args.calib.as_ref(),
        Split::Train,
        args.calib_count,
        "calibration data",
    )?;
    let holdout = load(
        args.holdout.as_ref(),
        Split::Test,
        args.holdout_count,
        "hold-out data",
    )?;
    let bars = progress::Bars::default();
    let (bytes, report) = match args.precision {
        PrecisionArg::F32 => (loaded.bytes().to_vec(), None),
        PrecisionArg::F16 => {
            let q = cait_quant::quantize_f16(ckpt, calib.as_ref(), threads, &bars)
                .context("f16 quantization")?;
            (q.bytes, Some(q.report))
        }
        PrecisionArg::Int8 => {
            let opts = Int8Options {
                method: match args.method {
                    MethodArg::Auto => None,
                    MethodArg::Minmax => Some(CalibMethod::MinMax),
                    MethodArg::Percentile => Some(CalibMethod::Percentile),
                    MethodArg::Mse => Some(CalibMethod::Mse),
                },
                smoothing,
                qk: attn(args.qk),
                av: attn(args.av),
                select_images: args.select_count,
                holdout,
                threads,
                report: args.report,
                calib_source: args
                    .calib
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                budget,
                class_path: match args.class_path {
                    ClassPathArg::Dynamic => cait_quant::ClassPath::Dynamic,
                    ClassPathArg::Static => cait_quant::ClassPath::Static,
                },
                activation_scales: match args.activation_scales {
                    ScalesArg::Auto => None,
                    ScalesArg::Static => Some(cait_quant::ActivationScales::Static),
                    ScalesArg::Dynamic => Some(cait_quant::ActivationScales::Dynamic),
                },
            };
            let calib = calib.as_ref().context("int8 needs --calib")?;
            let q = cait_quant::quantize_int8(ckpt, calib, &opts, &bars)
                .context("int8 quantization")?;
            (q.bytes, Some(q.report))
        }
    };
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let pack = cait_pack::Pack::parse(&bytes).context("the written pack does not parse")?;
    let f32_tensor_bytes = loaded.pack()?.tensor_bytes();
    let c = pack.config();
    let workspace = cait_core::Model::from_pack(&pack)
        .context("the written pack does not load")?
        .workspace_bytes();
    let precision = pack.precision().as_str();
    if args.json {
        let mut v = json!({
            "output": args.output.display().to_string(),
            "precision": precision,
            "pack_bytes": bytes.len(),
            "tensor_bytes": pack.tensor_bytes(),
            "f32_tensor_bytes": f32_tensor_bytes,
            "workspace_bytes": workspace,
            "parameters": c.num_params(),
        });
        if let Some(r) = &report {
            v["report"] = r.to_json();
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        eprintln!(
            "wrote {} ({} bytes, {precision}, {:.1}% of the f32 tensor bytes, {} parameters, workspace {} bytes)",
            args.output.display(),
            bytes.len(),
            100.0 * bytes.len() as f64 / f32_tensor_bytes.max(1) as f64,
            c.num_params(),
            workspace
        );
        if let Some(r) = &report {
            for ch in &r.choices {
                eprintln!("  {}: {} ({})", ch.name, ch.chosen, ch.reason);
            }
            if r.fit_images > 0
                && let (Some(sqnr), Some(agree)) = (r.logit_sqnr_db, r.top1_agreement)
            {
                eprintln!(
                    "  held out: logit SQNR {sqnr:.2} dB, top-1 agreement {:.1}% against the float model on {} images (ranges fitted on {}, choices made on {} others)",
                    100.0 * agree,
                    r.images,
                    r.fit_images,
                    r.select_images
                );
            }
            if let Some(m) = &r.mixed {
                let kept = if m.kept.is_empty() {
                    "no block (the all-int8 pack meets it)".to_string()
                } else {
                    format!("{} in f16", m.kept.join(", "))
                };
                eprintln!(
                    "  mixed precision: {}: {kept}; {} on the selection images, {} on the held-out images ({:.2} {})",
                    m.budget,
                    if m.met_on_selection { "met" } else { "NOT met" },
                    if m.met_on_held_out { "met" } else { "NOT met" },
                    m.held_out,
                    m.unit,
                );
            }
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            if args.report {
                print!("{}", r.to_table());
            }
        } else if args.report {
            println!("f32 packs are lossless: every weight is stored exactly as in the checkpoint");
        }
    }
    Ok(())
}
