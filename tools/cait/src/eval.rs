//! `cait eval`: accuracy of a model on a labelled dataset.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cait_quant::data::{self, DataOptions, Split};
use serde_json::json;

use crate::model::{LoadedModel, Runner};
use crate::{Backend, ModelArgs, progress};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// A `.npy` float32 batch [N, C, H, W] (normalized; labels from --labels), a Fashion-MNIST IDX
    /// folder (e.g. /usr/share/datasets/fashion-mnist), or an image folder with one sub-folder per
    /// class.
    #[arg(long, value_name = "DATA")]
    data: PathBuf,
    /// Labels of a `.npy` batch: 1-D integer `.npy` of length N.
    #[arg(long, value_name = "LABELS.npy")]
    labels: Option<PathBuf>,
    /// Which split of an IDX folder.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Evaluate only the first N images.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Print one JSON object: {"n", "top1", "top5", ...}.
    #[arg(long)]
    json: bool,
    /// Also print the confusion matrix (rows: true class, columns: predicted).
    #[arg(long)]
    confusion: bool,
    /// Write every image's logits as a float32 `.npy` [N, classes].
    #[arg(long, value_name = "OUT.npy")]
    save_logits: Option<PathBuf>,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = Backend::Core)]
    backend: Backend,
    /// Worker threads for the core backend (default: all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SplitArg {
    Train,
    Test,
}

/// Scores of a set of logits against labels.
pub struct Scores {
    pub top1: f64,
    pub top5: f64,
    pub confusion: Vec<Vec<u64>>,
}

/// Top-1 / top-5 accuracy and the confusion matrix of `logits` ([n, classes]) against `labels`.
pub fn score(logits: &[f32], classes: usize, labels: &[u32]) -> Scores {
    let mut confusion = vec![vec![0u64; classes]; classes];
    let (mut top1, mut top5) = (0u64, 0u64);
    for (row, &label) in logits.chunks_exact(classes).zip(labels) {
        let label = label as usize;
        let mine = row[label];
        // Rank = how many classes score strictly higher, ties going to the lower index.
        let rank = row
            .iter()
            .enumerate()
            .filter(|&(i, &v)| v > mine || (v == mine && i < label))
            .count();
        top1 += (rank == 0) as u64;
        top5 += (rank < 5) as u64;
        let pred = crate::classify::top_k(row, 1)[0].class;
        confusion[label][pred] += 1;
    }
    let n = labels.len().max(1) as f64;
    Scores {
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
        confusion,
    }
}

pub fn run(args: Args) -> Result<()> {
    let loaded = LoadedModel::load(&args.model)?;
    let pack = loaded.pack()?;
    let cfg = *pack.config();
    let opts = DataOptions {
        split: match args.split {
            SplitArg::Train => Split::Train,
            SplitArg::Test => Split::Test,
        },
        labels: args.labels.clone(),
        limit: args.limit,
    };
    let dataset = data::load(&args.data, &opts, &cfg, pack.preprocess())?;
    let Some(labels) = dataset.labels.as_deref() else {
        bail!(
            "{}: a .npy batch needs --labels LABELS.npy to be scored",
            args.data.display()
        );
    };
    let classes = cfg.logits_len();
    if cfg.num_classes == 0 {
        bail!("the model has no classification head (num_classes 0): nothing to score");
    }

    let bar = progress::bar(dataset.n as u64, "eval");
    let start = Instant::now();
    let mut logits = vec![0.0f32; dataset.n * classes];
    if args.backend == Backend::Core {
        let threads = args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .clamp(1, dataset.n.max(1));
        let per = dataset.n.div_ceil(threads).max(1);
        std::thread::scope(|s| -> Result<()> {
            let workers: Vec<_> = logits
                .chunks_mut(per * classes)
                .enumerate()
                .map(|(t, out)| {
                    let (loaded, pack, dataset, bar) = (&loaded, &pack, &dataset, &bar);
                    s.spawn(move || -> Result<()> {
                        let mut runner = Runner::new(loaded, pack, args.backend)?;
                        for (j, row) in out.chunks_exact_mut(classes).enumerate() {
                            let pred = runner.run(dataset.image(t * per + j))?;
                            row.copy_from_slice(&pred.logits);
                            bar.inc(1);
                        }
                        Ok(())
                    })
                })
                .collect();
            for w in workers {
                w.join()
                    .map_err(|_| anyhow::anyhow!("an eval worker panicked"))??;
            }
            Ok(())
        })?;
    } else {
        // The burn backends parallelise inside each batch (rayon threads or the GPU).
        if args.threads.is_some() {
            bail!("--threads applies to the core backend; burn chooses its own parallelism");
        }
        let mut runner = Runner::new(&loaded, &pack, args.backend)?;
        let batch = runner.batch_size();
        let per = dataset.images.len() / dataset.n.max(1);
        for (i, out) in logits.chunks_mut(batch * classes).enumerate() {
            let n = out.len() / classes;
            let images = &dataset.images[i * batch * per..(i * batch + n) * per];
            for (row, pred) in out
                .chunks_exact_mut(classes)
                .zip(runner.run_batch(images, n)?)
            {
                row.copy_from_slice(&pred.logits);
            }
            bar.inc(n as u64);
        }
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();

    if let Some(path) = &args.save_logits {
        cait_quant::npy::write_f32(path, &[dataset.n, classes], &logits)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let scores = score(&logits, classes, labels);
    let names: Vec<String> = (0..classes)
        .map(|i| {
            pack.labels()
                .get(i)
                .map(str::to_owned)
                .or_else(|| dataset.class_names.as_ref().and_then(|n| n.get(i).cloned()))
                .unwrap_or_else(|| i.to_string())
        })
        .collect();
    if args.json {
        let mut v = json!({
            "n": dataset.n,
            "top1": scores.top1,
            "top5": scores.top5,
            "backend": args.backend.name(),
            "precision": if args.backend == Backend::Core { pack.precision().as_str() } else { "f32" },
            "seconds": seconds,
            "images_per_s": dataset.n as f64 / seconds,
        });
        if args.confusion {
            v["confusion"] = json!(scores.confusion);
            v["class_names"] = json!(names);
        }
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    let what = match args.backend {
        Backend::Core => format!("{} pack", pack.precision().as_str()),
        _ => "float reference".to_owned(),
    };
    println!(
        "{} on {}: {} images, {} backend, {what}",
        args.model.model.display(),
        args.data.display(),
        dataset.n,
        args.backend.name(),
    );
    println!("  top-1  {:>7.2}%", 100.0 * scores.top1);
    println!("  top-5  {:>7.2}%", 100.0 * scores.top5);
    println!(
        "  speed  {:>7.1} images/s ({seconds:.2} s)",
        dataset.n as f64 / seconds
    );
    if args.confusion {
        println!("confusion (rows: true class, columns: predicted)");
        print!("  {:>14}", "");
        for j in 0..classes {
            print!(" {j:>5}");
        }
        println!();
        for (i, row) in scores.confusion.iter().enumerate() {
            print!("  {:>14}", truncate(&names[i], 14));
            for c in row {
                print!(" {c:>5}");
            }
            println!();
        }
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::score;

    #[test]
    fn scores_top1_top5_and_confusion() {
        // 3 images, 6 classes.
        let logits = [
            0.0, 5.0, 1.0, 2.0, 3.0, 4.0, // label 1: rank 0
            6.0, 5.0, 4.0, 3.0, 2.0, 1.0, // label 5: rank 5
            1.0, 2.0, 3.0, 4.0, 5.0, 0.5, // label 0: rank 4
        ];
        let s = score(&logits, 6, &[1, 5, 0]);
        assert_eq!(s.top1, 1.0 / 3.0);
        assert_eq!(s.top5, 2.0 / 3.0);
        assert_eq!(s.confusion[1][1], 1);
        assert_eq!(s.confusion[5][0], 1);
        assert_eq!(s.confusion[0][4], 1);
    }
}
