//! Checkpoints written by timm and torch themselves (`tests/fixtures/timm`, made by
//! `tools/make_fixtures.py`): every format loads the same tensors, and the config inferred matches
//! the fixture's `spec.json`.

use std::path::{Path, PathBuf};

use cait_import::{CheckpointFormat, ConfigSource, ImportOptions, load_checkpoint, write_pack_f32};
use cait_pack::timm::default_preprocess;
use cait_pack::{GlobalPool, Pack, Preprocess};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/timm")
}

fn spec(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(name).join("spec.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn u(v: &Value, key: &str) -> u32 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key}")) as u32
}

/// Loads every committed weight file of fixture `name` and checks them against `spec.json`.
fn check(name: &str) -> cait_import::Checkpoint {
    let dir = fixtures().join(name);
    let spec = spec(name);
    let m = &spec["model"];
    let files: Vec<&str> = ["model.safetensors", "model.pth", "release.pth"]
        .into_iter()
        .filter(|f| dir.join(f).is_file())
        .collect();
    assert!(files.contains(&"model.safetensors"), "{name}: no weights");
    let mut first: Option<cait_import::Checkpoint> = None;
    for file in &files {
        let ckpt = load_checkpoint(&dir.join(file), &ImportOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let c = &ckpt.config;
        let img = u(m, "img_size");
        assert_eq!(c.img_size, [img, img], "{name}/{file}");
        assert_eq!(c.patch_size, u(m, "patch_size"));
        assert_eq!(c.in_chans, u(m, "in_chans"));
        assert_eq!(c.num_classes, u(m, "num_classes"));
        assert_eq!(c.embed_dim, u(m, "embed_dim"));
        assert_eq!(c.depth, u(m, "depth"));
        assert_eq!(c.num_heads, u(m, "num_heads"));
        assert_eq!(c.mlp_hidden_dim, u(m, "mlp_hidden"));
        assert_eq!(c.depth_token_only, u(m, "depth_token_only"));
        assert_eq!(c.mlp_hidden_dim_token_only, u(m, "mlp_hidden_token_only"));
        assert_eq!(c.qkv_bias, m["qkv_bias"].as_bool().unwrap());
        let pool = match m["global_pool"].as_str().unwrap() {
            "avg" => GlobalPool::Avg,
            _ => GlobalPool::Token,
        };
        assert_eq!(c.global_pool, pool, "{name}/{file}");
        assert_eq!(
            c.num_patches(),
            Some(m["num_patches"].as_u64().unwrap() as usize)
        );
        assert_eq!(ckpt.num_params(), spec["param_count"].as_u64().unwrap());
        let expected_format = if file.ends_with(".safetensors") {
            CheckpointFormat::Safetensors
        } else {
            CheckpointFormat::TorchZip
        };
        assert_eq!(ckpt.format, expected_format);

        // The first four values of every tensor, bit for bit, and its shape.
        for fp in spec["fingerprints"].as_array().unwrap() {
            let key = fp["name"].as_str().unwrap();
            if key == "input" {
                continue;
            }
            let t = &ckpt.tensors[key];
            let shape: Vec<usize> = fp["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape, shape, "{name}/{file}: {key}");
            let bits: Vec<u64> = t.data.iter().take(4).map(|v| v.to_bits() as u64).collect();
            let want: Vec<u64> = fp["first4_bits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap())
                .collect();
            assert_eq!(bits, want, "{name}/{file}: {key}");
        }
        match &first {
            None => first = Some(ckpt),
            Some(f) => {
                // Identical tensors, config, preprocessing and labels from every format.
                assert_eq!(f.tensors, ckpt.tensors, "{name}/{file}");
                assert_eq!(f.config, ckpt.config);
                assert_eq!(f.preprocess, ckpt.preprocess);
                assert_eq!(f.labels, ckpt.labels);
                assert_eq!(f.architecture, ckpt.architecture);
            }
        }
    }
    let ckpt = first.unwrap();
    // A directory resolves to its model.safetensors.
    let from_dir = load_checkpoint(&dir, &ImportOptions::default()).unwrap();
    assert_eq!(from_dir.source, dir.join("model.safetensors"));
    assert_eq!(from_dir.tensors, ckpt.tensors);
    // And the pack holds the same thing.
    let bytes = write_pack_f32(&ckpt).unwrap();
    let pack = Pack::parse(&bytes).unwrap();
    assert_eq!(*pack.config(), ckpt.config);
    assert_eq!(pack.tensor_count(), ckpt.tensors.len());
    ckpt
}

#[test]
fn tiny_three_formats_and_hub_config() {
    let ckpt = check("tiny");
    let dir = fixtures().join("tiny");
    assert_eq!(
        ckpt.config_source,
        ConfigSource::HubConfig(dir.join("config.json"))
    );
    // config.json's factory name is kept; the 16-wide body is not that published variant.
    assert_eq!(ckpt.architecture, None);
    assert_eq!(ckpt.timm_architecture.as_deref(), Some("cait_xxs24_224"));
    let labels: Vec<String> = spec("tiny")["label_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ckpt.labels.as_ref(), Some(&labels));
    // Bicubic, crop 1.0, ImageNet mean/std (their values: cait_pack::timm's tests).
    assert_eq!(ckpt.preprocess, Preprocess::imagenet([3, 32, 32]));
}

#[test]
fn tiny_avg_pool_comes_from_config_json_and_can_be_overridden() {
    let ckpt = check("tiny_avg");
    assert_eq!(ckpt.config.global_pool, GlobalPool::Avg);
    let opts = ImportOptions {
        global_pool: Some(GlobalPool::Token),
    };
    let dir = fixtures().join("tiny_avg");
    let token = load_checkpoint(&dir, &opts).unwrap();
    assert_eq!(token.config.global_pool, GlobalPool::Token);
}

#[test]
fn gray_infers_from_shapes_with_timms_one_channel_normalisation() {
    let ckpt = check("gray");
    assert_eq!(ckpt.config_source, ConfigSource::Inferred);
    assert_eq!(ckpt.architecture, None);
    assert_eq!(ckpt.labels, None);
    assert_eq!(ckpt.preprocess, default_preprocess(&ckpt.config));
    assert_eq!(ckpt.preprocess.input_size, [1, 28, 28]);
    assert_eq!(ckpt.preprocess.norm_channels, 1);
    // timm writes [0.449] / [0.226] for one channel (TIMM_FACTS.md); f32 of their f64 averages.
    assert!((ckpt.preprocess.mean[0] - 0.449).abs() < 1e-6);
    assert!((ckpt.preprocess.std[0] - 0.226).abs() < 1e-6);
}

#[test]
fn noqkvbias_has_no_qkv_bias() {
    let ckpt = check("noqkvbias");
    assert!(!ckpt.tensors.contains_key("blocks.0.attn.qkv.bias"));
    assert!(!ckpt.tensors.contains_key("blocks_token_only.0.attn.q.bias"));
}
