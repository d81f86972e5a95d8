//! Writing a model as a timm hub folder: `model.safetensors` with timm's key names and layout
//! (burn's `BurnToPyTorchAdapter`) and timm's `config.json` (`save_for_hf` format), so that
//! `timm.create_model(architecture, **model_args)` + `load_state_dict` and cait-import's import
//! both read it.

use std::path::{Path, PathBuf};

use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use cait_pack::{GlobalPool, ModelConfig, Preprocess};
use serde_json::{Value, json};

use crate::Error;
use crate::model::Cait;

/// The timm factory trained models are described with: any CaiT can be rebuilt from it with
/// explicit `model_args`.
pub const DEFAULT_ARCHITECTURE: &str = "cait_xxs24_224";

/// What `config.json` records besides the module's weights.
#[derive(Clone, Debug)]
pub struct HubExport {
    /// The architecture.
    pub config: ModelConfig,
    /// Eval preprocessing (input size, mean/std, interpolation, crop_pct).
    pub preprocess: Preprocess,
    /// timm factory name (`cait_xxs24_224` ...).
    pub architecture: String,
    /// Class names, one per class.
    pub labels: Option<Vec<String>>,
    /// LayerScale init value the model was trained with (recorded in `model_args`).
    pub init_values: Option<f32>,
}

/// Writes `dir/model.safetensors` and `dir/config.json` (creating `dir`); returns the weights' path.
pub fn save_hub(model: &Cait, export: &HubExport, dir: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let weights = dir.join("model.safetensors");
    save_safetensors(model, &weights)?;
    let config_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&hub_config_json(export)).expect("json serializes");
    write_atomic(&config_path, text.as_bytes())?;
    Ok(weights)
}

/// Writes the module's weights with timm's names and layout.
pub fn save_safetensors(model: &Cait, path: &Path) -> Result<(), Error> {
    let mut store = SafetensorsStore::from_file(path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .metadata("format", "pt")
        .overwrite(true);
    model.save_into(&mut store).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("burn SafetensorsStore: {e}"),
    })
}

/// Writes `bytes` to a sibling temporary file and renames it into place.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// A ratio `r` with `int(dim * r) == hidden` in Python's float arithmetic.
fn mlp_ratio(dim: u32, hidden: u32) -> f64 {
    let mut r = hidden as f64 / dim as f64;
    while ((dim as f64) * r).floor() < hidden as f64 {
        r = r.next_up();
    }
    r
}

/// An f32 as the decimal it was written as (0.1, not 0.10000000149011612).
fn round6(v: f32) -> f64 {
    (v as f64 * 1e6).round() / 1e6
}

/// timm's hub `config.json` for `export` (keys in `save_for_hf`'s order).
pub fn hub_config_json(export: &HubExport) -> Value {
    let cfg = &export.config;
    let pool = match cfg.global_pool {
        GlobalPool::Token => "token",
        GlobalPool::Avg => "avg",
    };
    let mut args = serde_json::Map::new();
    args.insert("img_size".into(), json!([cfg.img_size[0], cfg.img_size[1]]));
    args.insert("patch_size".into(), json!(cfg.patch_size));
    args.insert("in_chans".into(), json!(cfg.in_chans));
    args.insert("num_classes".into(), json!(cfg.num_classes));
    args.insert("embed_dim".into(), json!(cfg.embed_dim));
    args.insert("depth".into(), json!(cfg.depth));
    args.insert("num_heads".into(), json!(cfg.num_heads));
    args.insert(
        "mlp_ratio".into(),
        json!(mlp_ratio(cfg.embed_dim, cfg.mlp_hidden_dim)),
    );
    args.insert("depth_token_only".into(), json!(cfg.depth_token_only));
    args.insert(
        "mlp_ratio_token_only".into(),
        json!(mlp_ratio(cfg.embed_dim, cfg.mlp_hidden_dim_token_only)),
    );
    args.insert("qkv_bias".into(), json!(cfg.qkv_bias));
    if let Some(v) = export.init_values {
        args.insert("init_values".into(), json!(round6(v)));
    }
    args.insert("global_pool".into(), json!(pool));

    let p = &export.preprocess;
    let n = (p.norm_channels as usize).clamp(1, p.mean.len());
    let interpolation = p.interpolation.as_str();
    let pretrained = json!({
        "tag": "cait_edge",
        "custom_load": false,
        "input_size": [cfg.in_chans, cfg.img_size[0], cfg.img_size[1]],
        "fixed_input_size": true,
        "interpolation": interpolation,
        "crop_pct": round6(p.crop_pct),
        "crop_mode": "center",
        "mean": p.mean[..n].iter().map(|&v| round6(v)).collect::<Vec<_>>(),
        "std": p.std[..n].iter().map(|&v| round6(v)).collect::<Vec<_>>(),
        "num_classes": cfg.num_classes,
        "pool_size": null,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "license": "apache-2.0",
    });

    let mut top = serde_json::Map::new();
    top.insert("architecture".into(), json!(export.architecture));
    top.insert("num_classes".into(), json!(cfg.num_classes));
    top.insert("num_features".into(), json!(cfg.embed_dim));
    top.insert("global_pool".into(), json!(pool));
    if let Some(labels) = &export.labels {
        top.insert("label_names".into(), json!(labels));
    }
    top.insert("model_args".into(), Value::Object(args));
    top.insert("pretrained_cfg".into(), pretrained);
    Value::Object(top)
}

#[cfg(test)]
mod tests {
    use super::mlp_ratio;

    #[test]
    fn mlp_ratio_round_trips_through_python_int() {
        for (d, h) in [
            (16, 64),
            (96, 288),
            (100, 333),
            (24, 96),
            (192, 768),
            (7, 10),
        ] {
            let r = mlp_ratio(d, h);
            assert_eq!(((d as f64) * r).floor() as u32, h, "{d} {h}");
        }
    }
}
