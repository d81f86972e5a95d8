//! Runs a checkpoint on burn-cpu and on cait-core's f32 pack over a dataset and reports the max
//! abs logits difference and both top-1 accuracies (the issue's agreement check).
//!
//! ```text
//! cargo run -p cait-burn --example agree_core -- MODEL_DIR [DATA] [--limit N]
//! ```

use std::path::PathBuf;

use cait_burn::{BackendKind, Reference};
use cait_core::{Model, Outputs, workspace_bytes};
use cait_data::{DataOptions, Split, load};
use cait_import::{ImportOptions, load_checkpoint, write_pack_f32};
use cait_pack::Pack;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model_dir = PathBuf::from(
        args.first()
            .ok_or("usage: agree_core MODEL_DIR [DATA] [--limit N]")?,
    );
    let data_dir = PathBuf::from(
        args.get(1)
            .filter(|a| !a.starts_with("--"))
            .map(String::as_str)
            .unwrap_or("/usr/share/datasets/fashion-mnist"),
    );
    let limit = args
        .iter()
        .position(|a| a == "--limit")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse())
        .transpose()?;

    let reference = Reference::load(&model_dir, &ImportOptions::default(), BackendKind::Cpu)?;
    let cfg = *reference.config();
    let data = load(
        &data_dir,
        &DataOptions {
            split: Split::Test,
            labels: None,
            limit,
        },
        &cfg,
        reference.preprocess(),
    )?;
    let labels = data.labels.clone().ok_or("dataset has no labels")?;
    let burn = reference.forward(&data.images, data.n)?.logits;

    let ckpt = load_checkpoint(&model_dir, &ImportOptions::default())?;
    let bytes = write_pack_f32(&ckpt)?;
    let mut storage = vec![0u64; bytes.len().div_ceil(8)];
    let raw = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut storage)[..bytes.len()];
    raw.copy_from_slice(&bytes);
    let pack = Pack::parse(raw).map_err(|e| format!("{e:?}"))?;
    let model = Model::from_pack(&pack).map_err(|e| format!("{e:?}"))?;
    let mut ws = vec![0u64; workspace_bytes(&cfg, pack.precision()).div_ceil(8)];
    let k = cfg.logits_len();
    let mut core = vec![0.0f32; data.n * k];
    for (i, image) in data.images.chunks_exact(data.sample_len()).enumerate() {
        model
            .forward_with(
                image,
                bytemuck::cast_slice_mut(&mut ws),
                Outputs::logits(&mut core[i * k..(i + 1) * k]),
            )
            .map_err(|e| format!("{e:?}"))?;
    }
    let top1 = |logits: &[f32]| {
        logits
            .chunks_exact(k)
            .zip(&labels)
            .filter(|(row, y)| {
                (0..k).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u32 == **y
            })
            .count() as f64
            / labels.len() as f64
    };
    let max_abs = burn
        .iter()
        .zip(&core)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "n {} burn-cpu top1 {:.4} core-f32 top1 {:.4} logits max abs diff {max_abs:e}",
        data.n,
        top1(&burn),
        top1(&core)
    );
    Ok(())
}
