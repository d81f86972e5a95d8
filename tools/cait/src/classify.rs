//! `cait classify`: top-k predictions for images or a `.npy` batch.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::input::load_inputs;
use crate::model::{LoadedModel, Runner};
use crate::{Backend, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Image files (PNG/JPEG, preprocessed as the model's pretrained cfg says), folders of them
    /// (every image under the folder, sorted), or `.npy` float32 batches [N, C, H, W] already
    /// normalized.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Class names to report instead of the model's: a text file with one name per line, or a
    /// JSON list.
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// How many of the most likely classes to report.
    #[arg(long, short = 'k', default_value_t = 5)]
    top_k: usize,
    /// Print one JSON object: {"results": [{"input": "samples.npy[3]", "logits": [...], "top_k":
    /// [{"class", "label", "prob"}]}]}, one result per image in input order.
    #[arg(long)]
    json: bool,
    /// With --json, also include each input's pre-logits features (the pooled, normalized token
    /// the head reads) as "features".
    #[arg(long, requires = "json")]
    features: bool,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = Backend::Core)]
    backend: Backend,
    /// Also write where the class token looked (last class-attention block) into DIR: a saliency
    /// overlay and per-head maps per input (PNG + .npy; `cait attention` has every option).
    #[arg(long, value_name = "DIR")]
    attention: Option<PathBuf>,
}

/// One top-k entry.
pub struct Ranked {
    pub class: usize,
    pub prob: f64,
}

/// Softmax probabilities of the `k` largest logits, most likely first (ties: lower index first).
pub fn top_k(logits: &[f32], k: usize) -> Vec<Ranked> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let denom: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|class| Ranked {
            class,
            prob: (logits[class] as f64 - max).exp() / denom,
        })
        .collect()
}

pub fn run(args: Args) -> Result<()> {
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let loaded = LoadedModel::load(&args.model)?;
    let pack = loaded.pack()?;
    let cfg = *pack.config();
    let inputs = load_inputs(&args.inputs, &cfg, pack.preprocess())?;
    let own = match &args.labels {
        Some(path) => Some(read_labels(path, cfg.logits_len())?),
        None => None,
    };
    let labels = pack.labels();
    let label = |i: usize| match &own {
        Some(names) => names.get(i).cloned(),
        None => labels.get(i).map(str::to_owned),
    };
    let mut runner = Runner::new(&loaded, &pack, args.backend)?;

    let mut results = Vec::with_capacity(inputs.len());
    // The JSON comes at the end, so a long batch shows a bar meanwhile (text prints as it goes).
    let bar = (args.json && inputs.len() > 1)
        .then(|| crate::progress::bar(inputs.len() as u64, "classify"));
    for input in &inputs {
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        let pred = runner.run(&input.data)?;
        let ranked = top_k(&pred.logits, args.top_k);
        if args.json {
            let top: Vec<_> = ranked
                .iter()
                .map(|r| json!({"class": r.class, "label": label(r.class), "prob": r.prob}))
                .collect();
            let mut result = json!({"input": input.name, "logits": pred.logits, "top_k": top});
            if args.features {
                result["features"] = json!(pred.features);
            }
            results.push(result);
        } else {
            println!("{}", input.name);
            println!("  {:>4}  {:>6}  {:>8}  label", "rank", "class", "prob");
            for (rank, r) in ranked.iter().enumerate() {
                println!(
                    "  {:>4}  {:>6}  {:>7.2}%  {}",
                    rank + 1,
                    r.class,
                    100.0 * r.prob,
                    label(r.class).unwrap_or_else(|| "-".into())
                );
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let overlays = match &args.attention {
        Some(dir) => {
            if cfg.depth_token_only == 0 {
                bail!("--attention: the model has no class-attention blocks");
            }
            let maps = crate::attention::maps_of(&loaded, &inputs, args.backend)?;
            let last = cfg.depth_token_only.saturating_sub(1) as usize;
            let written = crate::attention::Written {
                cfg: &cfg,
                pre: pack.preprocess(),
                inputs: &inputs,
                maps: &maps,
                float_maps: None,
            };
            crate::attention::write_maps(&written, &[last], dir)?
                .iter()
                .map(|r| {
                    r["blocks"][0]["overlay"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        }
        None => Vec::new(),
    };
    if args.json {
        for (r, o) in results.iter_mut().zip(&overlays) {
            r["attention_overlay"] = json!(o);
        }
        println!("{}", serde_json::to_string(&json!({ "results": results }))?);
    } else if let Some(dir) = &args.attention {
        println!(
            "attention overlays (class-attention block {}): {}",
            cfg.depth_token_only.saturating_sub(1),
            dir.display()
        );
        for o in &overlays {
            println!("  {o}");
        }
    }
    Ok(())
}

/// Class names from a text file (one per line) or a JSON list; exactly `classes` of them.
fn read_labels(path: &std::path::Path, classes: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read labels", path.display()))?;
    let names: Vec<String> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a JSON list of strings", path.display()))?
    } else {
        text.lines()
            .map(|l| l.trim_end_matches('\r').to_owned())
            .collect()
    };
    if names.len() != classes {
        bail!(
            "{}: {} labels for a model with {classes} classes",
            path.display(),
            names.len()
        );
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_normalises() {
        let r = top_k(&[0.0, 2.0, 1.0, 2.0], 3);
        assert_eq!(r.iter().map(|r| r.class).collect::<Vec<_>>(), [1, 3, 2]);
        let total: f64 = top_k(&[0.0, 2.0, 1.0, 2.0], 4).iter().map(|r| r.prob).sum();
        assert!((total - 1.0).abs() < 1e-12, "probabilities sum to {total}");
        assert!((r[0].prob - r[1].prob).abs() < 1e-15);
    }
}
