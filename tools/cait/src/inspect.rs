//! `cait inspect`: what a checkpoint or pack holds and what running it costs.

use std::path::PathBuf;

use anyhow::Result;
use cait_pack::{ModelConfig, Pack, Precision};
use serde_json::{Value, json};

use crate::model::{Origin, PreprocessArgs, load_path, parse_pool};
use crate::output::group;

#[derive(clap::Args)]
pub struct Args {
    /// A `.cait` pack or a timm checkpoint (safetensors, .pth, or a hub folder).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Head pooling of a checkpoint without `config.json` (token or avg).
    #[arg(long, value_name = "POOL", value_parser = ["token", "avg"])]
    global_pool: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn config_json(c: &ModelConfig) -> Value {
    json!({
        "img_size": c.img_size,
        "patch_size": c.patch_size,
        "in_chans": c.in_chans,
        "num_classes": c.num_classes,
        "embed_dim": c.embed_dim,
        "depth": c.depth,
        "num_heads": c.num_heads,
        "mlp_hidden_dim": c.mlp_hidden_dim,
        "depth_token_only": c.depth_token_only,
        "mlp_hidden_dim_token_only": c.mlp_hidden_dim_token_only,
        "qkv_bias": c.qkv_bias,
        "global_pool": c.global_pool.as_str(),
        "num_patches": c.num_patches(),
    })
}

/// What quantization recorded, as numbers where it measured numbers; `null` for f32 weights.
fn quantization(pack: &Pack<'_>) -> Value {
    use cait_quant::{META_HELD_OUT_AGREEMENT, META_HELD_OUT_IMAGES, META_HELD_OUT_SQNR_DB};
    let meta = pack.metadata();
    let number = |key: &str| meta.get(key).and_then(|v| v.parse::<f64>().ok());
    let text = |key: &str| meta.get(key);
    match pack.precision() {
        Precision::F32 => Value::Null,
        Precision::F16 => json!({ "weights": "f16" }),
        Precision::Int8 => json!({
            "weights": "int8",
            "calibration": text("quant.calibration"),
            "smoothing": text("quant.smoothing"),
            "qk": text(cait_pack::int8::META_QK),
            "av": text(cait_pack::int8::META_AV),
            "class_path": text(cait_pack::int8::META_CLASS_PATH).unwrap_or("static"),
            "activation_scales": text(cait_pack::int8::META_ACTIVATION_SCALES).unwrap_or("static"),
            "f16_blocks": cait_pack::int8::f16_blocks(pack).count(),
            "held_out_logit_sqnr_db": number(META_HELD_OUT_SQNR_DB),
            "held_out_top1_agreement": number(META_HELD_OUT_AGREEMENT),
            "held_out_images": number(META_HELD_OUT_IMAGES).map(|n| n as u64),
        }),
        other => json!({ "weights": other.as_str() }),
    }
}

/// The blocks a mixed int8 pack keeps in f16, each with the bytes of its tensors' data.
fn f16_blocks(pack: &Pack<'_>) -> Vec<Value> {
    cait_pack::int8::f16_blocks(pack)
        .map(|(token_only, i)| {
            let prefix = if token_only {
                format!("blocks_token_only.{i}.")
            } else {
                format!("blocks.{i}.")
            };
            let bytes: usize = pack
                .tensors()
                .filter(|t| t.name.starts_with(&prefix))
                .map(|t| t.data.len())
                .sum();
            json!({ "block": prefix.trim_end_matches('.'), "tensor_bytes": bytes })
        })
        .collect()
}

/// The report as JSON; the table is printed from the same object.
fn report(pack: &Pack<'_>, kind: &str, extra: Value) -> Value {
    let c = pack.config();
    let pre = pack.preprocess();
    let n = c.num_patches().unwrap_or(0) as u64;
    let h = c.num_heads as u64;
    let mut v = json!({
        "kind": kind,
        "architecture": if pack.architecture().is_empty() { None } else { Some(pack.architecture()) },
        "precision": cait_pack::Precision::as_str(pack.precision()),
        "parameters": c.num_params(),
        "config": config_json(c),
        "preprocess": {
            "input_size": pre.input_size,
            "interpolation": cait_pack::Interpolation::as_str(pre.interpolation),
            "crop_pct": pre.crop_pct,
            "mean": short_floats(&pre.mean[..pre.norm_channels as usize]),
            "std": short_floats(&pre.std[..pre.norm_channels as usize]),
        },
        "timm_architecture": pack.metadata().get("timm_architecture"),
        "labels": pack.labels().len(),
        "label_names": pack.labels().iter().collect::<Vec<_>>(),
        "quantization": quantization(pack),
        "tensors": pack.tensor_count(),
        "tensor_bytes": pack.tensor_bytes(),
        "pack_bytes": pack.len(),
        "workspace_bytes": cait_core::pack_workspace_bytes(pack),
        // One f32 [H, N, N] attention tensor, which a plan that materialises attention would hold
        // (talking heads needs it twice: before and after the proj_w mix); the core never does.
        "hnn_attention_bytes": h * n * n * 4,
        "f16_blocks": f16_blocks(pack),
        "metadata": pack.metadata().iter().map(|(k, v)| (k.to_owned(), Value::from(v))).collect::<serde_json::Map<_, _>>(),
    });
    if let (Value::Object(map), Value::Object(extra)) = (&mut v, extra) {
        map.extend(extra);
    }
    v
}

pub fn run(args: Args) -> Result<()> {
    let pool = parse_pool(args.global_pool.as_deref())?;
    let loaded = load_path(&args.file, pool, &PreprocessArgs::default())?;
    let pack = loaded.pack()?;
    let (kind, extra) = match &loaded.origin {
        // The same keys for both kinds.
        Origin::Pack => (
            "pack",
            json!({
                "format": "cait",
                "config_source": match pack.metadata().get("config") {
                    Some("inferred") => "inferred from tensor shapes".to_owned(),
                    Some(c) => format!("{c} (recorded in the pack)"),
                    None => "recorded in the pack".to_owned(),
                },
                "source": args.file.display().to_string(),
                "file_bytes": std::fs::metadata(&args.file)?.len(),
            }),
        ),
        Origin::Checkpoint(ckpt) => (
            "checkpoint",
            json!({
                "format": ckpt.format.as_str(),
                "config_source": match &ckpt.config_source {
                    cait_import::ConfigSource::HubConfig(path) => path.display().to_string(),
                    cait_import::ConfigSource::Inferred => "inferred from tensor shapes".to_owned(),
                },
                "source": ckpt.source.display().to_string(),
                "file_bytes": std::fs::metadata(&ckpt.source)?.len(),
            }),
        ),
    };
    let v = report(&pack, kind, extra);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_table(&args.file.display().to_string(), &v);
    Ok(())
}

fn print_table(name: &str, v: &Value) {
    let c = &v["config"];
    let p = &v["preprocess"];
    let row = |k: &str, val: String| println!("  {k:<22} {val}");
    println!("{name}");
    row("kind", v["kind"].as_str().unwrap_or("").into());
    if let Some(f) = v.get("format") {
        row("format", f.as_str().unwrap_or("").into());
        row(
            "config from",
            v["config_source"].as_str().unwrap_or("").into(),
        );
    }
    row(
        "architecture",
        v["architecture"]
            .as_str()
            .unwrap_or("(not a named timm variant)")
            .into(),
    );
    if let Some(t) = v["timm_architecture"].as_str() {
        row(
            "timm architecture",
            format!("{t} (the timm factory config.json names)"),
        );
    }
    row("precision", v["precision"].as_str().unwrap_or("").into());
    row("parameters", group(v["parameters"].as_u64().unwrap_or(0)));
    row(
        "input",
        format!(
            "{} x {} x {} (patch {}, {} tokens)",
            c["in_chans"], c["img_size"][0], c["img_size"][1], c["patch_size"], c["num_patches"]
        ),
    );
    row(
        "width / heads",
        format!(
            "{} / {} (head dim {})",
            c["embed_dim"],
            c["num_heads"],
            c["embed_dim"].as_u64().unwrap_or(0) / c["num_heads"].as_u64().unwrap_or(1).max(1)
        ),
    );
    row(
        "blocks",
        format!(
            "{} talking-heads SA (MLP {}) + {} class-attention (MLP {})",
            c["depth"], c["mlp_hidden_dim"], c["depth_token_only"], c["mlp_hidden_dim_token_only"]
        ),
    );
    row("qkv bias", c["qkv_bias"].to_string());
    row(
        "pooling / classes",
        format!(
            "{} / {}",
            c["global_pool"].as_str().unwrap_or(""),
            c["num_classes"]
        ),
    );
    row(
        "preprocess",
        format!(
            "{} crop_pct {} mean {} std {}",
            p["interpolation"].as_str().unwrap_or(""),
            p["crop_pct"],
            p["mean"],
            p["std"]
        ),
    );
    row("labels", v["labels"].to_string());
    row(
        "tensors",
        format!(
            "{} ({} bytes of data)",
            v["tensors"],
            group(v["tensor_bytes"].as_u64().unwrap_or(0))
        ),
    );
    row("pack bytes", group(v["pack_bytes"].as_u64().unwrap_or(0)));
    row(
        "workspace bytes",
        group(v["workspace_bytes"].as_u64().unwrap_or(0)),
    );
    if let Some(blocks) = v["f16_blocks"].as_array()
        && !blocks.is_empty()
    {
        let list: Vec<String> = blocks
            .iter()
            .map(|b| {
                format!(
                    "{} ({} bytes)",
                    b["block"].as_str().unwrap_or(""),
                    group(b["tensor_bytes"].as_u64().unwrap_or(0))
                )
            })
            .collect();
        row("kept in f16", list.join(", "));
    }
    row(
        "[H,N,N] attention",
        format!(
            "{} bytes per f32 copy (never materialised)",
            group(v["hnn_attention_bytes"].as_u64().unwrap_or(0))
        ),
    );
    if let Some(meta) = v["metadata"].as_object() {
        for (k, val) in meta {
            row(&format!("meta {k}"), val.as_str().unwrap_or("").into());
        }
    }
}

/// f32 values as the shortest decimals that round-trip (0.485, not 0.48500001430511475).
fn short_floats(values: &[f32]) -> Vec<Value> {
    values
        .iter()
        .map(|v| {
            v.to_string()
                .parse::<f64>()
                .map_or(Value::Null, Value::from)
        })
        .collect()
}
