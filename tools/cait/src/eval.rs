//! `cait eval`: accuracy of a model on a labelled dataset.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cait_data::{ClassMap, DataOptions, Dataset, Split};
use cait_pack::Pack;
use indicatif::ProgressBar;
use serde_json::json;

use crate::model::{LoadedModel, Runner, load_path, parse_pool};
use crate::{Backend, ModelArgs, progress};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// A `.npy` float32 batch [N, C, H, W] (normalized; labels from --labels), a Fashion-MNIST IDX
    /// folder (e.g. /usr/share/datasets/fashion-mnist), or an image folder with one sub-folder per
    /// class. Sub-folders named after the model's classes (case and punctuation aside: `t_shirt_top`
    /// is `T-shirt/top`) are scored as those classes; otherwise the sorted sub-folders are classes
    /// 0, 1, … and a warning prints the mapping.
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
    /// Print one JSON object: {"model", "data", "n", "top1", "top5", "class_names", ...}.
    #[arg(long)]
    json: bool,
    /// Also run this float model (a pack or a checkpoint, on the core backend) on the same images
    /// and report the top-1 agreement and logit SQNR against it: the regression check for a
    /// quantized pack.
    #[arg(long, value_name = "FLOAT_MODEL")]
    reference: Option<PathBuf>,
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
    if args.limit == Some(0) {
        bail!("--limit 0: there would be no image to score");
    }
    if let Some(path) = &args.save_logits {
        crate::output::check_file(path, "--save-logits")?;
    }
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
    let mut dataset = cait_data::load_with_progress(
        &args.data,
        &opts,
        &cfg,
        pack.preprocess(),
        &progress::Bars::default(),
    )?;
    let model_labels: Vec<&str> = pack.labels().iter().collect();
    let folder_names = dataset.class_names.clone();
    if let (ClassMap::Unmatched(missing), Some(names)) = (
        cait_data::map_classes(&mut dataset, &model_labels),
        &folder_names,
    ) {
        let mapping: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{i} = {n}"))
            .collect();
        eprintln!(
            "warning: {} of {}'s classes ({}) are not among the model's labels: scoring the dataset's classes by position ({}), which may not be the model's order",
            missing.len(),
            args.data.display(),
            missing.join(", "),
            mapping.join(", ")
        );
    }
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
    let reference = match &args.reference {
        None => None,
        Some(path) => {
            let pool = parse_pool(args.model.global_pool.as_deref())?;
            let r = load_path(path, pool, &args.model.preprocess)
                .with_context(|| format!("--reference {}", path.display()))?;
            let rc = *r.pack()?.config();
            if rc.logits_len() != classes
                || rc.img_size != cfg.img_size
                || rc.in_chans != cfg.in_chans
            {
                bail!(
                    "--reference {}: it takes {}x{}x{} images and gives {} logits, the model {}x{}x{} and {}",
                    path.display(),
                    rc.in_chans,
                    rc.img_size[0],
                    rc.img_size[1],
                    rc.logits_len(),
                    cfg.in_chans,
                    cfg.img_size[0],
                    cfg.img_size[1],
                    classes
                );
            }
            Some(r)
        }
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if args.threads.is_some() && args.backend != Backend::Core {
        bail!("--threads applies to the core backend; burn chooses its own parallelism");
    }

    let bar = progress::bar(dataset.n as u64, "eval");
    let start = Instant::now();
    let logits = logits_of(&loaded, &pack, &dataset, args.backend, threads, &bar)?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let agreement = match &reference {
        None => None,
        Some(r) => {
            let bar = progress::bar(dataset.n as u64, "reference");
            let want = logits_of(r, &r.pack()?, &dataset, Backend::Core, threads, &bar)?;
            bar.finish_and_clear();
            Some(cait_quant::logit_agreement(
                want.chunks_exact(classes).zip(logits.chunks_exact(classes)),
            ))
        }
    };

    // Written after the scores are printed: a failed write does not lose them.
    let save = || -> Result<()> {
        if let Some(path) = &args.save_logits {
            cait_data::npy::write_f32(path, &[dataset.n, classes], &logits)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    };
    let scores = score(&logits, classes, labels);
    // The names of the classes as scored: the model's labels once the dataset's classes were
    // matched to them, else the dataset's own names, else the indices.
    let names: Vec<String> = (0..classes)
        .map(|i| {
            dataset
                .class_names
                .as_ref()
                .and_then(|n| n.get(i).cloned())
                .or_else(|| pack.labels().get(i).map(str::to_owned))
                .unwrap_or_else(|| i.to_string())
        })
        .collect();
    if args.json {
        let mut v = json!({
            "model": args.model.model.display().to_string(),
            "data": args.data.display().to_string(),
            "n": dataset.n,
            "top1": scores.top1,
            "top5": scores.top5,
            "backend": args.backend.name(),
            "precision": if args.backend == Backend::Core { pack.precision().as_str() } else { "f32" },
            "seconds": seconds,
            "images_per_s": dataset.n as f64 / seconds,
            "class_names": names,
        });
        if cait_data::is_idx_folder(&args.data, opts.split) {
            v["split"] = json!(match opts.split {
                Split::Train => "train",
                Split::Test => "test",
            });
        }
        if let (Some((sqnr, agree)), Some(r)) = (agreement, &args.reference) {
            v["reference"] = json!(r.display().to_string());
            v["top1_agreement"] = json!(agree);
            v["logit_sqnr_db"] = json!(sqnr);
        }
        if args.confusion {
            v["confusion"] = json!(scores.confusion);
        }
        println!("{}", serde_json::to_string(&v)?);
        return save();
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
    if let (Some((sqnr, agree)), Some(r)) = (agreement, &args.reference) {
        println!(
            "  against {}: top-1 agreement {:.2}%, logit SQNR {sqnr:.2} dB",
            r.display(),
            100.0 * agree
        );
    }
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
    save()
}

/// Logits of every image of `dataset` (`[n, classes]`, image order) on `backend`.
fn logits_of(
    loaded: &LoadedModel,
    pack: &Pack<'_>,
    dataset: &Dataset,
    backend: Backend,
    threads: usize,
    bar: &ProgressBar,
) -> Result<Vec<f32>> {
    let classes = pack.config().logits_len();
    let mut logits = vec![0.0f32; dataset.n * classes];
    if backend == Backend::Core {
        let threads = threads.clamp(1, dataset.n.max(1));
        let per = dataset.n.div_ceil(threads).max(1);
        std::thread::scope(|s| -> Result<()> {
            let workers: Vec<_> = logits
                .chunks_mut(per * classes)
                .enumerate()
                .map(|(t, out)| {
                    s.spawn(move || -> Result<()> {
                        let mut runner = Runner::new(loaded, pack, backend)?;
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
        let mut runner = Runner::new(loaded, pack, backend)?;
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
    Ok(logits)
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
