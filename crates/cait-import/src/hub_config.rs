//! timm's hub `config.json`, as `timm.models.push_to_hf_hub` / `save_for_hf` write it:
//!
//! ```json
//! { "architecture": "cait_xxs24_224", "num_classes": 1000, "num_features": 192,
//!   "global_pool": "token",
//!   "model_args": { "img_size": [224, 224], "patch_size": 16, "embed_dim": 192, ... },
//!   "pretrained_cfg": { "input_size": [3, 224, 224], "interpolation": "bicubic", "crop_pct": 1.0,
//!                       "crop_mode": "center", "mean": [...], "std": [...], "num_classes": 1000, ... },
//!   "label_names": ["tench", ...] }
//! ```
//!
//! `model_args` holds only the arguments that differ from the architecture's defaults (and is absent
//! from configs written by older timm), so every field here is optional.

use serde_json::Value as Json;

use cait_pack::{GlobalPool, Interpolation};

/// What a hub `config.json` says, every field optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HubConfig {
    /// `architecture`, e.g. `cait_xxs24_224`.
    pub architecture: Option<String>,
    /// Top-level `num_classes` (else `model_args.num_classes`, else `pretrained_cfg.num_classes`).
    pub num_classes: Option<u32>,
    /// `global_pool` (top level, else `model_args.global_pool`).
    pub global_pool: Option<GlobalPool>,
    /// `model_args.img_size` (int or `[h, w]`), else `pretrained_cfg.input_size[1..]`: `[h, w]`.
    pub img_size: Option<[u32; 2]>,
    /// `model_args.in_chans`, else `pretrained_cfg.input_size[0]`.
    pub in_chans: Option<u32>,
    /// `model_args.patch_size`.
    pub patch_size: Option<u32>,
    /// `model_args.embed_dim`, else top-level `num_features`.
    pub embed_dim: Option<u32>,
    /// `model_args.depth`.
    pub depth: Option<u32>,
    /// `model_args.num_heads`.
    pub num_heads: Option<u32>,
    /// `model_args.mlp_ratio`.
    pub mlp_ratio: Option<f64>,
    /// `model_args.depth_token_only`.
    pub depth_token_only: Option<u32>,
    /// `model_args.mlp_ratio_token_only`.
    pub mlp_ratio_token_only: Option<f64>,
    /// `model_args.qkv_bias`.
    pub qkv_bias: Option<bool>,
    /// `pretrained_cfg.interpolation`.
    pub interpolation: Option<Interpolation>,
    /// `pretrained_cfg.crop_pct`.
    pub crop_pct: Option<f32>,
    /// `pretrained_cfg.mean`.
    pub mean: Option<Vec<f64>>,
    /// `pretrained_cfg.std`.
    pub std: Option<Vec<f64>>,
    /// `label_names` (list, or dict from index to name), else `pretrained_cfg.label_names`.
    pub labels: Option<Labels>,
}

/// Class names as the config gives them.
#[derive(Clone, Debug, PartialEq)]
pub enum Labels {
    /// A list: entry `i` names class `i`.
    List(Vec<String>),
    /// A dict from class index to name, possibly with gaps.
    Map(Vec<(u32, String)>),
}

impl HubConfig {
    /// Whether this looks like a timm config at all (another tool's `config.json` is ignored).
    pub fn is_timm(json: &Json) -> bool {
        ["architecture", "pretrained_cfg", "model_args"]
            .iter()
            .any(|k| json.get(k).is_some())
    }

    /// Parses the JSON text; the error says which field is wrong.
    pub fn parse(text: &str) -> Result<Option<HubConfig>, String> {
        let json: Json =
            serde_json::from_str(text).map_err(|e| format!("config.json is not JSON: {e}"))?;
        if !json.is_object() {
            return Err("config.json is not a JSON object".into());
        }
        if !Self::is_timm(&json) {
            return Ok(None);
        }
        let none = Json::Null;
        let args = json.get("model_args").unwrap_or(&none);
        let pcfg = json.get("pretrained_cfg").unwrap_or(&none);
        let mut c = HubConfig {
            architecture: string(&json, "architecture")?,
            ..HubConfig::default()
        };
        c.num_classes = match uint(&json, "num_classes", "num_classes")? {
            Some(n) => Some(n),
            None => match uint(args, "num_classes", "model_args.num_classes")? {
                Some(n) => Some(n),
                None => uint(pcfg, "num_classes", "pretrained_cfg.num_classes")?,
            },
        };
        c.global_pool = match string(&json, "global_pool")? {
            Some(p) => Some(pool(&p)?),
            None => match string(args, "global_pool")? {
                Some(p) => Some(pool(&p)?),
                None => None,
            },
        };
        let input_size = match pcfg.get("input_size") {
            None | Some(Json::Null) => None,
            Some(v) => {
                let dims = uint_list(v, "pretrained_cfg.input_size")?;
                match dims.as_slice() {
                    [c, h, w] => Some([*c, *h, *w]),
                    _ => return Err("pretrained_cfg.input_size must be [C, H, W]".into()),
                }
            }
        };
        c.img_size = match args.get("img_size") {
            None | Some(Json::Null) => input_size.map(|s| [s[1], s[2]]),
            Some(v) if v.is_number() => {
                let s = as_uint(v).ok_or("model_args.img_size must be a positive integer")?;
                Some([s, s])
            }
            Some(v) => match uint_list(v, "model_args.img_size")?.as_slice() {
                [h, w] => Some([*h, *w]),
                [s] => Some([*s, *s]),
                _ => return Err("model_args.img_size must be an int or [h, w]".into()),
            },
        };
        c.in_chans = match uint(args, "in_chans", "model_args.in_chans")? {
            Some(n) => Some(n),
            None => input_size.map(|s| s[0]),
        };
        c.patch_size = uint(args, "patch_size", "model_args.patch_size")?;
        c.embed_dim = match uint(args, "embed_dim", "model_args.embed_dim")? {
            Some(n) => Some(n),
            None => uint(&json, "num_features", "num_features")?,
        };
        c.depth = uint(args, "depth", "model_args.depth")?;
        c.num_heads = uint(args, "num_heads", "model_args.num_heads")?;
        c.mlp_ratio = float(args, "mlp_ratio", "model_args.mlp_ratio")?;
        c.depth_token_only = uint(args, "depth_token_only", "model_args.depth_token_only")?;
        c.mlp_ratio_token_only = float(
            args,
            "mlp_ratio_token_only",
            "model_args.mlp_ratio_token_only",
        )?;
        c.qkv_bias = match args.get("qkv_bias") {
            None | Some(Json::Null) => None,
            Some(Json::Bool(b)) => Some(*b),
            Some(_) => return Err("model_args.qkv_bias must be true or false".into()),
        };
        c.interpolation = match string(pcfg, "interpolation")? {
            None => None,
            Some(s) => Some(match s.as_str() {
                "bicubic" => Interpolation::Bicubic,
                "bilinear" => Interpolation::Bilinear,
                "nearest" => Interpolation::Nearest,
                other => {
                    return Err(format!(
                        "pretrained_cfg.interpolation '{other}' is not supported \
                         (bicubic, bilinear, nearest)"
                    ));
                }
            }),
        };
        c.crop_pct = match float(pcfg, "crop_pct", "pretrained_cfg.crop_pct")? {
            None => None,
            Some(p) if p > 0.0 && p <= 4.0 => Some(p as f32),
            Some(p) => return Err(format!("pretrained_cfg.crop_pct {p} is out of range")),
        };
        if let Some(mode) = string(pcfg, "crop_mode")?
            && mode != "center"
        {
            return Err(format!(
                "pretrained_cfg.crop_mode '{mode}' is not supported (only 'center')"
            ));
        }
        c.mean = float_list(pcfg, "mean", "pretrained_cfg.mean")?;
        c.std = float_list(pcfg, "std", "pretrained_cfg.std")?;
        if let Some(std) = &c.std
            && std.iter().any(|&s| s <= 0.0 || !s.is_finite())
        {
            return Err("pretrained_cfg.std must be positive".into());
        }
        let labels = json
            .get("label_names")
            .or_else(|| json.get("labels"))
            .or_else(|| pcfg.get("label_names"));
        c.labels = match labels {
            None | Some(Json::Null) => None,
            Some(Json::Array(items)) => Some(Labels::List(
                items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or("label_names must be strings")
                    })
                    .collect::<Result<_, _>>()?,
            )),
            Some(Json::Object(map)) => {
                let mut entries = Vec::with_capacity(map.len());
                for (k, v) in map {
                    let i: u32 = k
                        .parse()
                        .map_err(|_| format!("label_names key '{k}' is not a class index"))?;
                    let name = v.as_str().ok_or("label_names must be strings")?;
                    entries.push((i, name.to_string()));
                }
                Some(Labels::Map(entries))
            }
            Some(_) => return Err("label_names must be a list or a dict".into()),
        };
        Ok(Some(c))
    }
}

fn pool(s: &str) -> Result<GlobalPool, String> {
    match s {
        "token" => Ok(GlobalPool::Token),
        "avg" => Ok(GlobalPool::Avg),
        other => Err(format!(
            "global_pool '{other}' is not supported (CaiT classifies with 'token' or 'avg')"
        )),
    }
}

fn string(obj: &Json, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn as_uint(v: &Json) -> Option<u32> {
    if let Some(n) = v.as_u64() {
        return u32::try_from(n).ok();
    }
    // Some writers emit integral floats (224.0).
    let f = v.as_f64()?;
    (f >= 0.0 && f.fract() == 0.0 && f <= u32::MAX as f64).then_some(f as u32)
}

fn uint(obj: &Json, key: &str, what: &str) -> Result<Option<u32>, String> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => as_uint(v)
            .map(Some)
            .ok_or_else(|| format!("{what} must be a non-negative integer")),
    }
}

fn uint_list(v: &Json, what: &str) -> Result<Vec<u32>, String> {
    v.as_array()
        .ok_or_else(|| format!("{what} must be a list"))?
        .iter()
        .map(|x| as_uint(x).ok_or_else(|| format!("{what} must hold non-negative integers")))
        .collect()
}

fn float(obj: &Json, key: &str, what: &str) -> Result<Option<f64>, String> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| format!("{what} must be a number")),
    }
}

fn float_list(obj: &Json, key: &str, what: &str) -> Result<Option<Vec<f64>>, String> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(v) if v.is_number() => Ok(Some(vec![v.as_f64().unwrap_or(0.0)])),
        Some(v) => {
            let list: Vec<f64> = v
                .as_array()
                .ok_or_else(|| format!("{what} must be a list of numbers"))?
                .iter()
                .map(|x| {
                    x.as_f64()
                        .filter(|f| f.is_finite())
                        .ok_or_else(|| format!("{what} must be a list of numbers"))
                })
                .collect::<Result<_, _>>()?;
            if list.is_empty() {
                return Err(format!("{what} is empty"));
            }
            Ok(Some(list))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_save_for_hf_writes() {
        // Written by timm 1.0 save_for_hf for create_model('cait_xxs24_224', depth=2, img_size=32,
        // patch_size=8, embed_dim=16, num_heads=2, num_classes=5).
        let text = r#"{
  "architecture": "cait_xxs24_224", "num_classes": 5, "num_features": 16, "global_pool": "token",
  "model_args": {"depth": 2, "img_size": [32, 32], "patch_size": 8, "embed_dim": 16,
                 "num_heads": 2, "num_classes": 5, "in_chans": 3, "global_pool": "token"},
  "pretrained_cfg": {"tag": "fb_dist_in1k", "custom_load": false, "input_size": [3, 32, 32],
    "fixed_input_size": true, "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center",
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "num_classes": 5,
    "pool_size": null, "first_conv": "patch_embed.proj", "classifier": "head",
    "license": "apache-2.0"}}"#;
        let c = HubConfig::parse(text).unwrap().unwrap();
        assert_eq!(c.architecture.as_deref(), Some("cait_xxs24_224"));
        assert_eq!(c.num_classes, Some(5));
        assert_eq!(c.global_pool, Some(GlobalPool::Token));
        assert_eq!(c.img_size, Some([32, 32]));
        assert_eq!(
            (c.patch_size, c.embed_dim, c.depth, c.num_heads, c.in_chans),
            (Some(8), Some(16), Some(2), Some(2), Some(3))
        );
        assert_eq!(c.interpolation, Some(Interpolation::Bicubic));
        assert_eq!(c.crop_pct, Some(1.0));
        assert_eq!(c.mean, Some(vec![0.485, 0.456, 0.406]));
        assert_eq!(c.labels, None);
    }

    #[test]
    fn older_configs_without_model_args_and_label_maps() {
        let text = r#"{"architecture": "cait_s24_384", "num_classes": 3, "num_features": 384,
          "pretrained_cfg": {"input_size": [3, 384, 384], "interpolation": "bilinear",
                             "crop_pct": 0.9, "mean": [0.5], "std": 0.5},
          "label_names": {"0": "cat", "2": "dog"}}"#;
        let c = HubConfig::parse(text).unwrap().unwrap();
        assert_eq!(c.img_size, Some([384, 384]));
        assert_eq!(c.in_chans, Some(3));
        assert_eq!(c.embed_dim, Some(384));
        assert_eq!(c.global_pool, None);
        assert_eq!(c.interpolation, Some(Interpolation::Bilinear));
        assert_eq!(c.std, Some(vec![0.5]));
        assert_eq!(
            c.labels,
            Some(Labels::Map(vec![(0, "cat".into()), (2, "dog".into())]))
        );
    }

    #[test]
    fn foreign_configs_are_ignored_and_bad_fields_named() {
        assert_eq!(
            HubConfig::parse(r#"{"architectures": ["BertModel"]}"#),
            Ok(None)
        );
        let e = HubConfig::parse(r#"{"architecture": "x", "global_pool": ""}"#).unwrap_err();
        assert!(e.contains("global_pool"), "{e}");
        let e =
            HubConfig::parse(r#"{"architecture": "x", "model_args": {"depth": -1}}"#).unwrap_err();
        assert!(e.contains("model_args.depth"), "{e}");
        let e = HubConfig::parse(
            r#"{"architecture": "x", "pretrained_cfg": {"interpolation": "lanczos"}}"#,
        )
        .unwrap_err();
        assert!(e.contains("lanczos"), "{e}");
        assert!(HubConfig::parse("{").is_err());
    }
}
