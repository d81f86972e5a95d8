//! `data::preprocess` against timm's own eval transform (torchvision Resize/CenterCrop on Pillow)
//! on real photos: `tests/fixtures/preprocess`, made by `tools/make_preprocess_fixtures.py`.
//!
//! Every `<photo>_<cfg>.png` there is the uint8 image timm feeds to `ToTensor` for that cfg
//! (recorded in `manifest.json`); ours must be identical, pixel for pixel.

use std::path::{Path, PathBuf};

use cait_data::{load_image, preprocess, preprocess_u8};
use cait_pack::{GlobalPool, Interpolation, ModelConfig, Preprocess};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/preprocess")
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest.json")).unwrap())
        .unwrap()
}

/// Model cfg + preprocessing for a manifest cfg entry.
fn cfg_of(entry: &Value) -> (ModelConfig, Preprocess) {
    let size: Vec<u32> = entry["input_size"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let cfg = ModelConfig {
        img_size: [size[1], size[2]],
        patch_size: 4,
        in_chans: size[0],
        num_classes: 10,
        embed_dim: 16,
        depth: 1,
        num_heads: 2,
        mlp_hidden_dim: 32,
        depth_token_only: 1,
        mlp_hidden_dim_token_only: 32,
        qkv_bias: true,
        global_pool: GlobalPool::Token,
    };
    let mut pre = Preprocess::imagenet([size[0], size[1], size[2]]);
    pre.interpolation = match entry["interpolation"].as_str().unwrap() {
        "nearest" => Interpolation::Nearest,
        "bilinear" => Interpolation::Bilinear,
        "bicubic" => Interpolation::Bicubic,
        other => panic!("interpolation {other}"),
    };
    pre.crop_pct = entry["crop_pct"].as_f64().unwrap() as f32;
    let mean = entry["mean"].as_array().unwrap();
    let std = entry["std"].as_array().unwrap();
    pre.norm_channels = mean.len() as u8;
    for (i, (m, s)) in mean.iter().zip(std).enumerate() {
        pre.mean[i] = m.as_f64().unwrap() as f32;
        pre.std[i] = s.as_f64().unwrap() as f32;
    }
    (cfg, pre)
}

/// timm's uint8 output as `[C, H, W]` planes.
fn expected_planes(path: &Path, chans: usize) -> Vec<u8> {
    let img = image::open(path).unwrap();
    match chans {
        1 => img.as_luma8().expect("an L png").as_raw().clone(),
        3 => {
            let rgb = img.as_rgb8().expect("an RGB png");
            (0..3)
                .flat_map(|c| rgb.pixels().map(move |p| p.0[c]))
                .collect()
        }
        _ => unreachable!(),
    }
}

#[test]
fn preprocess_matches_timm_pil_on_real_photos() {
    let m = manifest();
    let photos = m["photos"].as_object().unwrap();
    let cfgs = m["cfgs"].as_object().unwrap();
    assert!(photos.len() >= 2 && cfgs.len() >= 5);
    let mut worst_levels = 0u8;
    let mut worst_norm = 0f32;
    let mut report = Vec::new();
    for photo in photos.keys() {
        let src_path = fixtures().join(format!("{photo}.png"));
        let img = image::open(&src_path).unwrap();
        for (name, entry) in cfgs {
            let (cfg, pre) = cfg_of(entry);
            let chans = cfg.in_chans as usize;
            let want = expected_planes(&fixtures().join(format!("{photo}_{name}.png")), chans);
            let got = preprocess_u8(&img, &cfg, &pre).unwrap();
            assert_eq!(got.len(), want.len(), "{photo} {name}");
            let diffs = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            let max = got
                .iter()
                .zip(&want)
                .map(|(&a, &b)| a.abs_diff(b))
                .max()
                .unwrap();
            // The normalized tensor, through the file loader too, against timm's from the png.
            let norm = load_image(&src_path, &cfg, &pre).unwrap();
            assert_eq!(norm, preprocess(&img, &cfg, &pre).unwrap());
            let pixels = want.len() / chans;
            let max_norm = norm
                .iter()
                .zip(&want)
                .enumerate()
                .map(|(i, (&v, &u))| {
                    let c = i / pixels;
                    (v - (u as f32 / 255.0 - pre.mean[c]) / pre.std[c]).abs()
                })
                .fold(0f32, f32::max);
            report.push(format!(
                "{photo:>8} {name:<18} max |diff| {max} levels, {diffs} of {} values differ, \
                 normalized max {max_norm:.2e}",
                want.len()
            ));
            worst_levels = worst_levels.max(max);
            worst_norm = worst_norm.max(max_norm);
        }
    }
    println!("{}", report.join("\n"));
    assert!(worst_norm < 0.05, "normalized difference {worst_norm}");
    assert_eq!(
        worst_levels,
        0,
        "not bit-exact with PIL:\n{}",
        report.join("\n")
    );
    assert_eq!(worst_norm, 0.0);
}

/// The committed logits belong to the 224 cfg's photos (shape check only; parity is elsewhere).
#[test]
fn xxs24_logits_fixtures_present() {
    let m = manifest();
    for photo in m["photos"].as_object().unwrap().keys() {
        let bytes = std::fs::read(fixtures().join(format!("{photo}_xxs24_logits.npy"))).unwrap();
        assert_eq!(bytes.len(), 128 + 4000, "{photo}: [1, 1000] float32 npy");
    }
}
