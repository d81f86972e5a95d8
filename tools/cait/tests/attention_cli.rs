//! `cait attention`: the maps it writes are the model's class attention (core and burn agree), the
//! PNGs have the promised sizes, quantized packs report their distance to the float maps, and bad
//! input is named.

use std::path::{Path, PathBuf};

mod common;
use common::{cait, json, ok, p, tiny};

fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    cait_data::npy::read_f32(path).unwrap()
}

#[test]
fn maps_are_the_class_attention_on_core_and_burn() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny().join("model.safetensors");
    let input = tiny().join("input.npy");
    let (core_dir, burn_dir) = (tmp.path().join("core"), tmp.path().join("burn"));
    let v = json(&ok(&[
        "attention",
        "--json",
        "--model",
        p(&ckpt),
        p(&input),
        "-o",
        p(&core_dir),
    ]));
    ok(&[
        "attention",
        "--backend",
        "burn-cpu",
        "--model",
        p(&ckpt),
        p(&input),
        "-o",
        p(&burn_dir),
    ]);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "two images in the fixture's batch");
    for (i, r) in results.iter().enumerate() {
        for b in r["blocks"].as_array().unwrap() {
            let block = b["block"].as_u64().unwrap();
            let name = format!("input_{i}_block{block}");
            let (shape, maps) = npy(&core_dir.join(format!("{name}_maps.npy")));
            // tiny: 4 heads over a 4×4 patch grid (32×32 input, patch 8).
            assert_eq!(shape, [4, 4, 4]);
            // Each head's softmax row: patches + the class token's own share sum to 1.
            for (h, head) in maps.chunks(16).enumerate() {
                let cls = b["cls_self_attention"][h].as_f64().unwrap() as f32;
                let total: f32 = head.iter().sum::<f32>() + cls;
                assert!(
                    (total - 1.0).abs() < 1e-5,
                    "{name} head {h}: sums to {total}"
                );
                assert!(head.iter().all(|&a| a >= 0.0));
            }
            // The burn reference's maps are the same to float rounding.
            let (_, burn) = npy(&burn_dir.join(format!("{name}_maps.npy")));
            let diff = maps
                .iter()
                .zip(&burn)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(diff < 1e-5, "{name}: core vs burn maps differ by {diff}");
            // Saliency: min-max normalised, at the input size.
            let (sshape, sal) = npy(&core_dir.join(format!("{name}_saliency.npy")));
            assert_eq!(sshape, [32, 32]);
            let (lo, hi) = sal
                .iter()
                .fold((1.0f32, 0.0f32), |(l, h), &v| (l.min(v), h.max(v)));
            assert_eq!((lo, hi), (0.0, 1.0));
            // PNGs: the overlay zoomed 7× to 224 px, the heads side by side with 4 px gaps.
            let overlay = image::open(core_dir.join(format!("{name}_overlay.png"))).unwrap();
            assert_eq!((overlay.width(), overlay.height()), (224, 224));
            let grid = image::open(core_dir.join(format!("{name}_heads.png"))).unwrap();
            assert_eq!((grid.width(), grid.height()), (4 * 224 + 3 * 4, 224));
        }
    }
}

#[test]
fn quantized_pack_reports_cosine_to_float_maps() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny().join("model.safetensors");
    let input = tiny().join("input.npy");
    let pack = tmp.path().join("tiny-f16.cait");
    ok(&["quantize", "--precision", "f16", "-o", p(&pack), p(&ckpt)]);
    let v = json(&ok(&[
        "attention",
        "--json",
        "--block",
        "1",
        "--model",
        p(&pack),
        "--compare",
        p(&ckpt),
        p(&input),
        "-o",
        p(&tmp.path().join("att")),
    ]));
    for r in v["results"].as_array().unwrap() {
        let blocks = r["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 1, "--block 1 only");
        let cos: Vec<f64> = blocks[0]["cosine_to_float"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_f64().unwrap())
            .collect();
        assert_eq!(cos.len(), 4);
        // f16 weights (11 significant bits) move the maps very little.
        assert!(cos.iter().all(|&c| c > 0.999 && c <= 1.0 + 1e-9), "{cos:?}");
    }
}

#[test]
fn grayscale_image_feeds_a_three_channel_model() {
    let tmp = tempfile::tempdir().unwrap();
    let gray = tmp.path().join("gray.png");
    image::GrayImage::from_fn(32, 32, |x, y| image::Luma([(x * 8 + y) as u8]))
        .save(&gray)
        .unwrap();
    let ckpt = tiny().join("model.safetensors");
    ok(&[
        "attention",
        "--model",
        p(&ckpt),
        p(&gray),
        "-o",
        p(&tmp.path().join("att")),
    ]);
    assert!(tmp.path().join("att/gray_block0_overlay.png").is_file());
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny().join("model.safetensors");
    let input = tiny().join("input.npy");
    let out_dir = tmp.path().join("att");
    let out = cait(&[
        "attention",
        "--block",
        "2",
        "--model",
        p(&ckpt),
        p(&input),
        "-o",
        p(&out_dir),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--block 2 is out of range") && err.contains("2 class-attention blocks"),
        "{err}"
    );
    assert!(!out_dir.exists(), "nothing is written on error");

    let junk = tmp.path().join("junk.png");
    std::fs::write(&junk, b"not a png").unwrap();
    let out = cait(&[
        "attention",
        "--model",
        p(&ckpt),
        p(&junk),
        "-o",
        p(&out_dir),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("junk.png") && err.contains("not a readable image"),
        "{err}"
    );
}

#[test]
fn classify_writes_overlays_of_the_last_block() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("att");
    let v = json(&ok(&[
        "classify",
        "--json",
        "--model",
        p(&tiny().join("model.safetensors")),
        p(&tiny().join("input.npy")),
        "--attention",
        p(&dir),
    ]));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (i, r) in results.iter().enumerate() {
        let overlay = PathBuf::from(r["attention_overlay"].as_str().unwrap());
        assert_eq!(overlay, dir.join(format!("input_{i}_block1_overlay.png")));
        assert!(overlay.is_file());
        assert!(
            !dir.join(format!("input_{i}_block0_overlay.png")).exists(),
            "last block only"
        );
    }
}
