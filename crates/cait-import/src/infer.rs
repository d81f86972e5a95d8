//! The CaiT config a state dict implies, and the tensor check (timm's published variants, which
//! the config is recognised as, are `cait_pack::timm`'s).
//!
//! Everything here works on shapes alone (`BTreeMap<key, shape>`), so it is tested without weights.

use std::collections::{BTreeMap, BTreeSet};

use cait_pack::timm::Variant;
use cait_pack::{GlobalPool, ModelConfig};

use crate::error::TensorProblem;
use crate::hub_config::HubConfig;

/// Largest block count believed (timm's largest CaiT has 48); a larger index is a malformed key.
const MAX_BLOCKS: u32 = 1024;

/// State-dict entries that are not weights and are skipped without complaint: BatchNorm step
/// counters (integer buffers). CaiT has none, but fine-tuning code that adds a BatchNorm and removes
/// it again can leave them; they never carry weights. Every other extra tensor is an error, as timm
/// loads CaiT weights with `strict=True`.
pub const IGNORED_SUFFIXES: [&str; 1] = ["num_batches_tracked"];

/// Facts a config file may supply that shapes cannot: a non-square image, and the pooling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// `[height, width]`; without it the patch grid is assumed square.
    pub img_size: Option<[u32; 2]>,
    /// Patch side, used only if `patch_embed.proj.weight` is absent.
    pub patch_size: Option<u32>,
    /// Input channels, used only if `patch_embed.proj.weight` is absent.
    pub in_chans: Option<u32>,
    /// Head pooling; token pooling when not given (shapes cannot tell).
    pub global_pool: Option<GlobalPool>,
}

/// Why shapes do not give a CaiT config.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InferError {
    /// The keys lack CaiT's signature (talking-heads `proj_l`, class-attention blocks).
    NotCait {
        /// What is missing.
        reason: String,
        /// The first few keys.
        found_keys_sample: Vec<String>,
    },
    /// A CaiT, but a defining shape is inconsistent.
    CannotInfer(String),
    /// A hint disagrees with the shapes.
    Mismatch {
        /// The field.
        field: &'static str,
        /// The hint's value.
        config: String,
        /// What the shapes imply.
        checkpoint: String,
    },
}

/// Splits `blocks.{i}.rest` / `blocks_token_only.{i}.rest` into `(token_only, i, rest)`.
fn block_key(key: &str) -> Option<(bool, u32, &str)> {
    let (token_only, rest) = if let Some(r) = key.strip_prefix("blocks_token_only.") {
        (true, r)
    } else {
        (false, key.strip_prefix("blocks.")?)
    };
    let (index, rest) = rest.split_once('.')?;
    if index.is_empty() || index.len() > 9 || !index.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((token_only, index.parse().ok()?, rest))
}

fn dim(d: usize, what: &str) -> Result<u32, InferError> {
    u32::try_from(d).map_err(|_| InferError::CannotInfer(format!("{what} {d} is too large")))
}

/// Up to eight keys that show what a checkpoint is: one per top-level module first, then the rest.
fn key_sample(shapes: &BTreeMap<String, Vec<usize>>) -> Vec<String> {
    const SAMPLE: usize = 8;
    let mut seen = BTreeSet::new();
    let mut sample: Vec<String> = shapes
        .keys()
        .filter(|k| seen.insert(k.split('.').next().unwrap_or(k)))
        .take(SAMPLE)
        .cloned()
        .collect();
    for k in shapes.keys() {
        if sample.len() >= SAMPLE {
            break;
        }
        if !sample.contains(k) {
            sample.push(k.clone());
        }
    }
    sample
}

/// Infers a CaiT config from tensor shapes (timm keys, prefixes stripped):
/// `D` from `pos_embed` `[1, N, D]`, `N` from its second dimension, the patch size and input
/// channels from `patch_embed.proj.weight` `[D, C, p, p]`, `H` from `blocks.*.attn.proj_l.weight`
/// `[H, H]`, the depths from the highest block indices, the MLP widths from `mlp.fc1.weight` in
/// each stack, the classes from `head.weight` (0 without a head), `qkv_bias` from whether any q/k/v
/// bias is present. The image is `sqrt(N) * p` square unless `hints.img_size` says otherwise.
///
/// Shapes that contradict this config are not errors here: [`check_tensors`] lists them all.
pub fn infer_config(
    shapes: &BTreeMap<String, Vec<usize>>,
    hints: &Hints,
) -> Result<ModelConfig, InferError> {
    let rank = |key: &str, r: usize| shapes.get(key).filter(|s| s.len() == r);
    let mut talking_heads = None;
    let (mut depth, mut depth_token_only) = (0u32, 0u32);
    let (mut any_sa, mut any_ca) = (false, false);
    let mut qkv_bias = false;
    for (key, shape) in shapes {
        let Some((token_only, i, rest)) = block_key(key) else {
            continue;
        };
        if i >= MAX_BLOCKS {
            return Err(InferError::CannotInfer(format!(
                "block index {i} in {key} is implausibly large"
            )));
        }
        if token_only {
            any_ca = true;
            depth_token_only = depth_token_only.max(i + 1);
            qkv_bias |= matches!(rest, "attn.q.bias" | "attn.k.bias" | "attn.v.bias");
        } else {
            any_sa = true;
            depth = depth.max(i + 1);
            qkv_bias |= rest == "attn.qkv.bias";
            if rest == "attn.proj_l.weight" && talking_heads.is_none() && shape.len() == 2 {
                talking_heads = Some(shape[0]);
            }
        }
    }
    let has_proj_l = shapes
        .keys()
        .any(|k| block_key(k).is_some_and(|(tok, _, rest)| !tok && rest == "attn.proj_l.weight"));
    let mut missing = Vec::new();
    if !has_proj_l {
        missing.push(if any_sa {
            "its blocks have no talking-heads attention (blocks.*.attn.proj_l.weight)"
        } else {
            "no transformer blocks (blocks.*)"
        });
    }
    if !any_ca {
        missing.push("no class-attention blocks (blocks_token_only.*)");
    }
    if !missing.is_empty() {
        return Err(InferError::NotCait {
            reason: missing.join("; "),
            found_keys_sample: key_sample(shapes),
        });
    }
    let heads = talking_heads.ok_or_else(|| {
        InferError::CannotInfer("blocks.*.attn.proj_l.weight is not a matrix [H, H]".into())
    })?;

    // D: pos_embed, else the other tensors that carry it.
    let pos = rank("pos_embed", 3);
    let embed_dim = pos
        .map(|s| s[2])
        .or_else(|| rank("patch_embed.proj.weight", 4).map(|s| s[0]))
        .or_else(|| rank("cls_token", 3).map(|s| s[2]))
        .or_else(|| rank("norm.weight", 1).map(|s| s[0]))
        .ok_or_else(|| {
            InferError::CannotInfer(
                "no pos_embed [1, N, D] (nor patch_embed, cls_token or norm) gives the width"
                    .into(),
            )
        })?;

    let (in_chans, patch) = match rank("patch_embed.proj.weight", 4) {
        Some(s) if s[2] != s[3] => {
            return Err(InferError::CannotInfer(format!(
                "patch_embed.proj.weight has a non-square kernel {}x{}",
                s[2], s[3]
            )));
        }
        Some(s) => (dim(s[1], "in_chans")?, dim(s[2], "patch size")?),
        None => match (hints.in_chans, hints.patch_size) {
            (Some(c), Some(p)) => (c, p),
            _ => {
                return Err(InferError::CannotInfer(
                    "no patch_embed.proj.weight [D, C, p, p] gives the patch size".into(),
                ));
            }
        },
    };

    let num_patches = match pos {
        Some(s) => Some(s[1]),
        None => hints
            .img_size
            .map(|[h, w]| (h / patch.max(1)) as usize * (w / patch.max(1)) as usize),
    }
    .ok_or_else(|| {
        InferError::CannotInfer("no pos_embed [1, N, D] gives the patch count".into())
    })?;

    let img_size = match hints.img_size {
        Some([h, w]) => {
            let fits = patch > 0 && h % patch == 0 && w % patch == 0;
            let n = (h / patch.max(1)) as usize * (w / patch.max(1)) as usize;
            if !fits || n != num_patches {
                return Err(InferError::Mismatch {
                    field: "img_size",
                    config: format!("[{h}, {w}]"),
                    checkpoint: format!(
                        "{num_patches} patches of {patch}x{patch} (pos_embed {:?})",
                        pos.cloned().unwrap_or_default()
                    ),
                });
            }
            [h, w]
        }
        None => {
            let g = num_patches.isqrt();
            if g * g != num_patches {
                return Err(InferError::CannotInfer(format!(
                    "pos_embed has {num_patches} patches, not a square grid; a config.json with \
                     img_size is needed"
                )));
            }
            let side = dim(g, "grid side")?
                .checked_mul(patch)
                .ok_or_else(|| InferError::CannotInfer("image size overflows".into()))?;
            [side, side]
        }
    };

    let hidden = |token_only: bool| -> Option<usize> {
        let first = |suffix: &str, r: usize, axis: usize| {
            shapes.iter().find_map(|(k, s)| {
                let (tok, _, rest) = block_key(k)?;
                (tok == token_only && rest == suffix && s.len() == r).then(|| s[axis])
            })
        };
        first("mlp.fc1.weight", 2, 0)
            .or_else(|| first("mlp.fc2.weight", 2, 1))
            .or_else(|| first("mlp.fc1.bias", 1, 0))
    };
    let default_hidden = embed_dim.saturating_mul(4);
    let mlp_hidden_dim = hidden(false).unwrap_or(default_hidden);
    let mlp_hidden_dim_token_only = hidden(true).unwrap_or(default_hidden);

    let num_classes = rank("head.weight", 2)
        .map(|s| s[0])
        .or_else(|| rank("head.bias", 1).map(|s| s[0]))
        .unwrap_or(0);

    Ok(ModelConfig {
        img_size,
        patch_size: patch,
        in_chans,
        num_classes: dim(num_classes, "num_classes")?,
        embed_dim: dim(embed_dim, "embed_dim")?,
        depth,
        num_heads: dim(heads, "num_heads")?,
        mlp_hidden_dim: dim(mlp_hidden_dim, "mlp hidden width")?,
        depth_token_only,
        mlp_hidden_dim_token_only: dim(mlp_hidden_dim_token_only, "mlp hidden width")?,
        qkv_bias,
        global_pool: hints.global_pool.unwrap_or(GlobalPool::Token),
    })
}

/// Checks every field `config.json` states against the config the tensors imply.
pub fn cross_check(cfg: &ModelConfig, hub: &HubConfig) -> Result<(), InferError> {
    let mismatch = |field, config: String, checkpoint: String| {
        Err(InferError::Mismatch {
            field,
            config,
            checkpoint,
        })
    };
    let ints = [
        ("num_classes", hub.num_classes, cfg.num_classes),
        ("in_chans", hub.in_chans, cfg.in_chans),
        ("patch_size", hub.patch_size, cfg.patch_size),
        ("embed_dim", hub.embed_dim, cfg.embed_dim),
        ("depth", hub.depth, cfg.depth),
        ("num_heads", hub.num_heads, cfg.num_heads),
        (
            "depth_token_only",
            hub.depth_token_only,
            cfg.depth_token_only,
        ),
    ];
    for (field, stated, actual) in ints {
        if let Some(stated) = stated
            && stated != actual
        {
            return mismatch(field, stated.to_string(), actual.to_string());
        }
    }
    if let Some(b) = hub.qkv_bias
        && b != cfg.qkv_bias
    {
        return mismatch("qkv_bias", b.to_string(), cfg.qkv_bias.to_string());
    }
    // timm: hidden = int(dim * mlp_ratio).
    let ratios = [
        ("mlp_ratio", hub.mlp_ratio, cfg.mlp_hidden_dim),
        (
            "mlp_ratio_token_only",
            hub.mlp_ratio_token_only,
            cfg.mlp_hidden_dim_token_only,
        ),
    ];
    for (field, ratio, hidden) in ratios {
        if let Some(r) = ratio
            && (cfg.embed_dim as f64 * r) as u64 != hidden as u64
        {
            return mismatch(
                field,
                format!("{r} (hidden width {})", (cfg.embed_dim as f64 * r) as u64),
                format!("hidden width {hidden}"),
            );
        }
    }
    if let Some(name) = &hub.architecture
        && let Some(v) = Variant::named(name)
    {
        // Fine-tuning may change the head, pooling and input size; the body is the name's,
        // with whatever `model_args` overrode.
        let body = |c: &ModelConfig| {
            (
                c.embed_dim,
                c.depth,
                c.num_heads,
                c.patch_size,
                c.depth_token_only,
            )
        };
        let named = v.config();
        let stated = (
            hub.embed_dim.unwrap_or(named.embed_dim),
            hub.depth.unwrap_or(named.depth),
            hub.num_heads.unwrap_or(named.num_heads),
            hub.patch_size.unwrap_or(named.patch_size),
            hub.depth_token_only.unwrap_or(named.depth_token_only),
        );
        if stated != body(cfg) {
            return mismatch(
                "architecture",
                name.clone(),
                format!(
                    "embed_dim {}, depth {}, {} heads, patch {}, {} class-attention blocks",
                    cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.patch_size, cfg.depth_token_only
                ),
            );
        }
    }
    Ok(())
}

/// Every way `shapes` differs from the tensors `cfg` needs: missing and mis-shaped tensors in
/// canonical order, then unexpected keys in key order (minus [`IGNORED_SUFFIXES`]).
pub fn check_tensors(
    cfg: &ModelConfig,
    shapes: &BTreeMap<String, Vec<usize>>,
) -> Vec<TensorProblem> {
    let mut problems = Vec::new();
    let mut expected = BTreeSet::new();
    for spec in cfg.tensors() {
        let name = spec.id.to_string();
        let want: Vec<usize> = spec.shape.dims().iter().map(|&d| d as usize).collect();
        match shapes.get(&name) {
            None => problems.push(TensorProblem::Missing(name.clone(), want)),
            Some(found) if *found != want => {
                problems.push(TensorProblem::WrongShape(name.clone(), want, found.clone()))
            }
            Some(_) => {}
        }
        expected.insert(name);
    }
    for key in shapes.keys() {
        if !expected.contains(key) && !IGNORED_SUFFIXES.iter().any(|s| key.ends_with(s)) {
            problems.push(TensorProblem::Unexpected(key.clone()));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use cait_pack::timm::{VARIANTS, identify};

    use super::*;

    fn shapes_of(cfg: &ModelConfig) -> BTreeMap<String, Vec<usize>> {
        cfg.tensors()
            .map(|t| {
                (
                    t.id.to_string(),
                    t.shape.dims().iter().map(|&d| d as usize).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn all_ten_variants_are_inferred_and_recognised_from_shapes() {
        for v in &VARIANTS {
            let cfg = infer_config(&shapes_of(&v.config()), &Hints::default()).unwrap();
            assert_eq!(cfg, v.config(), "{}", v.name);
            assert_eq!(identify(&cfg).map(|v| v.name), Some(v.name));
            assert!(check_tensors(&cfg, &shapes_of(&v.config())).is_empty());
        }
    }

    #[test]
    fn small_custom_configs_and_hints() {
        let cfg = ModelConfig {
            img_size: [32, 48],
            patch_size: 8,
            in_chans: 1,
            num_classes: 0,
            embed_dim: 24,
            depth: 3,
            num_heads: 3,
            mlp_hidden_dim: 40,
            depth_token_only: 1,
            mlp_hidden_dim_token_only: 72,
            qkv_bias: false,
            global_pool: GlobalPool::Avg,
        };
        let shapes = shapes_of(&cfg);
        assert!(!shapes.contains_key("head.weight"));
        let hints = Hints {
            img_size: Some([32, 48]),
            global_pool: Some(GlobalPool::Avg),
            ..Hints::default()
        };
        assert_eq!(infer_config(&shapes, &hints).unwrap(), cfg);
        // 4 x 6 = 24 patches: not square without the hint.
        assert!(matches!(
            infer_config(&shapes, &Hints::default()),
            Err(InferError::CannotInfer(_))
        ));
        let wrong = Hints {
            img_size: Some([32, 32]),
            ..Hints::default()
        };
        assert!(matches!(
            infer_config(&shapes, &wrong),
            Err(InferError::Mismatch {
                field: "img_size",
                ..
            })
        ));
    }

    #[test]
    fn vit_and_resnet_are_not_cait() {
        let mut vit = BTreeMap::new();
        vit.insert("cls_token".to_string(), vec![1, 1, 192]);
        vit.insert("pos_embed".to_string(), vec![1, 197, 192]);
        vit.insert("patch_embed.proj.weight".to_string(), vec![192, 3, 16, 16]);
        vit.insert("blocks.0.attn.qkv.weight".to_string(), vec![576, 192]);
        let Err(InferError::NotCait { reason, .. }) = infer_config(&vit, &Hints::default()) else {
            panic!()
        };
        assert!(
            reason.contains("proj_l") && reason.contains("blocks_token_only"),
            "{reason}"
        );

        let mut resnet = BTreeMap::new();
        resnet.insert("conv1.weight".to_string(), vec![64, 3, 7, 7]);
        resnet.insert("fc.weight".to_string(), vec![1000, 2048]);
        let Err(InferError::NotCait {
            reason,
            found_keys_sample,
        }) = infer_config(&resnet, &Hints::default())
        else {
            panic!()
        };
        assert!(reason.contains("no transformer blocks"), "{reason}");
        assert_eq!(found_keys_sample, vec!["conv1.weight", "fc.weight"]);
    }

    #[test]
    fn check_tensors_lists_every_problem() {
        let cfg = VARIANTS[0].config();
        let mut shapes = shapes_of(&cfg);
        shapes.remove("blocks.3.gamma_1");
        shapes.insert("blocks.5.attn.proj.weight".into(), vec![192, 191]);
        shapes.insert("head_dist.weight".into(), vec![1000, 192]);
        shapes.insert("blocks.0.norm1.num_batches_tracked".into(), vec![]);
        let problems = check_tensors(&cfg, &shapes);
        assert_eq!(
            problems,
            vec![
                TensorProblem::Missing("blocks.3.gamma_1".into(), vec![192]),
                TensorProblem::WrongShape(
                    "blocks.5.attn.proj.weight".into(),
                    vec![192, 192],
                    vec![192, 191]
                ),
                TensorProblem::Unexpected("head_dist.weight".into()),
            ]
        );
    }

    #[test]
    fn cross_check_names_the_field() {
        let cfg = VARIANTS[0].config();
        let hub = HubConfig {
            num_heads: Some(8),
            ..HubConfig::default()
        };
        assert!(matches!(
            cross_check(&cfg, &hub),
            Err(InferError::Mismatch {
                field: "num_heads",
                ..
            })
        ));
        let hub = HubConfig {
            architecture: Some("cait_s24_224".into()),
            mlp_ratio: Some(4.0),
            ..HubConfig::default()
        };
        assert!(matches!(
            cross_check(&cfg, &hub),
            Err(InferError::Mismatch {
                field: "architecture",
                ..
            })
        ));
        let hub = HubConfig {
            architecture: Some("cait_xxs24_224.fb_dist_in1k".into()),
            mlp_ratio: Some(4.0),
            ..HubConfig::default()
        };
        assert_eq!(cross_check(&cfg, &hub), Ok(()));
    }
}
