//! `cait bench`: how long one image takes on this machine — median and spread over timed runs after
//! warm-ups, one thread by default, with the kernels this build selected.

use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;

use crate::model::{AlignedBytes, LoadedModel, Runner};
use crate::{Backend, ModelArgs};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    cait bench --model models/fashion-cait/fashion-cait-int8.cait\n  \
    cait bench --model model.cait --runs 50 --threads 2 --json\n  \
    cait bench --model model.safetensors --backend burn-cpu\n\n\
    The image is a fixed pseudo-random normalized one (latency does not depend on the values).\n\
    Each thread runs its own model view and workspace; ms_per_image is the median over every timed run of every\n\
    thread, images_per_second what all threads together classified per second of wall time.\n\
    Build with --release: a debug build measures the debug build.")]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Timed runs per thread.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed runs per thread first (caches, page faults, the GPU's compilation).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Threads, each with its own model and workspace, running at once (core backend only).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Where to run the model.
    #[arg(long, value_enum, default_value_t = Backend::Core)]
    backend: Backend,
    /// Print one JSON object: {"ms_per_image", "ms_min", "ms_p90", "ms_max", "images_per_second",
    /// "kernels", ...}.
    #[arg(long)]
    json: bool,
}

/// The kernels this build of cait-core runs: the int8 matmul and f32 linear builds cait-core
/// selected (on x86-64, the AVX2 builds when the CPU has it), and the target features the rest was
/// compiled for.
pub fn kernels(backend: Backend, precision: &str) -> String {
    if backend != Backend::Core {
        return format!("burn ({})", backend.name());
    }
    let mut features: Vec<&str> = Vec::new();
    for (on, name) in [
        (cfg!(target_feature = "sse2"), "sse2"),
        (cfg!(target_feature = "avx"), "avx"),
        (cfg!(target_feature = "avx2"), "avx2"),
        (cfg!(target_feature = "avx512f"), "avx512f"),
        (cfg!(target_feature = "neon"), "neon"),
    ] {
        if on {
            features.push(name);
        }
    }
    let target = format!(
        "the rest built for {} {}",
        std::env::consts::ARCH,
        features.join("+")
    );
    let float = cait_core::float_kernels_selected();
    match precision {
        "int8" => format!(
            "int8 matmul: {}; f32 linear: {float} ({target})",
            cait_core::int8_kernels::selected()
        ),
        "f16" => format!("f32 linear on f16 weights widened per element: {float} ({target})"),
        _ => format!("f32 linear: {float} ({target})"),
    }
}

/// A fixed normalized image of `len` values in [-2, 2) (xorshift; the same on every run).
fn image(len: usize) -> Vec<f32> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// `sorted[⌈p·n⌉ − 1]`: the nearest-rank percentile `p` of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// The median of sorted values (the mean of the two middle ones for an even count).
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// `warmup` untimed then `runs` timed calls of `once` (one image each): each call's milliseconds.
fn time_runs(mut once: impl FnMut() -> Result<()>, warmup: usize, runs: usize) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        once()?;
    }
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        once()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(ms)
}

/// Times the no_std engine itself on one thread: its own model view and workspace, no allocation
/// per image.
fn time_core(
    pack: &cait_pack::Pack<'_>,
    img: &[f32],
    warmup: usize,
    runs: usize,
) -> Result<Vec<f64>> {
    let model = cait_core::Model::from_pack(pack).context("building the model from the pack")?;
    let mut workspace = AlignedBytes::zeroed(model.workspace_bytes());
    let mut logits = vec![0f32; model.logits_len()];
    time_runs(
        || {
            model
                .forward(
                    std::hint::black_box(img),
                    workspace.bytes_mut(),
                    &mut logits,
                )
                .context("inference failed")?;
            std::hint::black_box(&logits);
            Ok(())
        },
        warmup,
        runs,
    )
}

pub fn run(args: Args) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs 0: nothing to time; give at least 1");
    }
    if args.threads == 0 {
        bail!("--threads 0: give at least 1");
    }
    if args.threads > 1 && args.backend != Backend::Core {
        bail!(
            "--threads {} runs one session per thread on --backend core; --backend {} batches on \
             its own device, so it is timed on one thread",
            args.threads,
            args.backend.name()
        );
    }
    let loaded = LoadedModel::load(&args.model)?;
    let pack = loaded.pack()?;
    let config = *pack.config();
    let input_len = config
        .input_len()
        .ok_or_else(|| anyhow!("the model's input size overflows"))?;
    let img = image(input_len);
    let precision = pack.precision().as_str();

    let spinner = crate::progress::spinner(format!(
        "timing {} runs on {} thread(s)",
        args.runs + args.warmup,
        args.threads
    ));
    let wall = Instant::now();
    let per_thread: Vec<Result<Vec<f64>>> = match args.backend {
        Backend::Core => std::thread::scope(|s| {
            let handles: Vec<_> = (0..args.threads)
                .map(|_| s.spawn(|| time_core(&pack, &img, args.warmup, args.runs)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a timing thread panicked")))
                })
                .collect()
        }),
        _ => {
            let mut runner = Runner::new(&loaded, &pack, args.backend)?;
            vec![time_runs(
                || {
                    runner
                        .run(std::hint::black_box(&img))
                        .map(|p| drop(std::hint::black_box(p)))
                },
                args.warmup,
                args.runs,
            )]
        }
    };
    let wall_s = wall.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    let mut ms: Vec<f64> = Vec::new();
    for t in per_thread {
        ms.extend(t?);
    }
    ms.sort_by(f64::total_cmp);
    let timed = ms.len();
    // Throughput over the timed runs only: each thread's warm-ups are a fixed share of its wall time.
    let timed_share = args.runs as f64 / (args.runs + args.warmup) as f64;
    let images_per_second = timed as f64 / (wall_s * timed_share);
    let kernels = kernels(args.backend, precision);
    let (med, min, p90, max) = (median(&ms), ms[0], percentile(&ms, 0.9), ms[timed - 1]);

    if args.json {
        let out = json!({
            "model": loaded.path.display().to_string(),
            "backend": args.backend.name(),
            "precision": precision,
            "threads": args.threads,
            "runs": args.runs,
            "warmup": args.warmup,
            "ms_per_image": med,
            "ms_min": min,
            "ms_p90": p90,
            "ms_max": max,
            "images_per_second": images_per_second,
            "kernels": kernels,
            "release_build": !cfg!(debug_assertions),
        });
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!(
            "{} ({precision}, {}, {} thread{}): {med:.3} ms per image (median of {timed} runs; min {min:.3}, p90 {p90:.3}, max {max:.3}), {images_per_second:.1} images/s",
            loaded.path.display(),
            args.backend.name(),
            args.threads,
            if args.threads == 1 { "" } else { "s" },
        );
        println!("kernels: {kernels}");
        if cfg!(debug_assertions) {
            println!(
                "note: this cait is a debug build (debug assertions on); time a --release build"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.9), 9.0);
        assert_eq!(percentile(&v, 1.0), 10.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(median(&v), 5.5);
        assert_eq!(median(&v[..3]), 2.0);
    }

    #[test]
    fn the_image_is_fixed_and_in_range() {
        let a = image(100);
        assert_eq!(a, image(100));
        assert!(a.iter().all(|v| (-2.0..2.0).contains(v)));
        // Not constant.
        assert!(a.iter().any(|&v| v != a[0]));
    }
}
