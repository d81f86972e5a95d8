//! `cait eval` on a labelled `.npy` batch and `cait classify` on PNG files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cait_tests::{argmax, synth};

fn cait(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cait"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cait {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fixture(name: &str) -> PathBuf {
    synth::fixtures_dir().join(name)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// With timm's own predictions as labels the model must score 100% top-1, and the saved logits
/// must be the ones `classify` prints.
#[test]
fn eval_scores_against_labels_and_saves_logits() {
    let dir = fixture("gray");
    let (shape, timm) = synth::read_npy_f32(&dir.join("logits.npy")).unwrap();
    let classes = shape[1];
    let mut labels: Vec<i64> = timm.chunks(classes).map(|r| argmax(r) as i64).collect();
    let tmp = tempfile::tempdir().unwrap();
    let lp = tmp.path().join("labels.npy");
    cait_data::npy::write_labels(&lp, &labels).unwrap();
    let saved = tmp.path().join("logits.npy");
    let model = dir.join("model.safetensors");
    let input = dir.join("input.npy");
    // The same arguments on the core engine and on the burn float reference.
    for backend in ["core", "burn-cpu"] {
        let out = cait(&[
            "eval",
            "--json",
            "--backend",
            backend,
            "--model",
            p(&model),
            "--data",
            p(&input),
            "--labels",
            p(&lp),
            "--save-logits",
            p(&saved),
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["n"], shape[0], "{backend}");
        assert_eq!(v["backend"], backend);
        assert_eq!(v["top1"], 1.0, "{backend}");
        assert_eq!(v["top5"], 1.0, "{backend}");
        let (sshape, logits) = cait_data::npy::read_f32(&saved).unwrap();
        assert_eq!(sshape, shape);
        let max_err = logits
            .iter()
            .zip(&timm)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            max_err <= 1e-4,
            "{backend}: saved logits differ from timm's by {max_err:e}"
        );
    }

    // A wrong label on one of the two images halves top-1; --confusion reports where it went.
    labels[0] = (labels[0] + 1) % classes as i64;
    cait_data::npy::write_labels(&lp, &labels).unwrap();
    let out = cait(&[
        "eval",
        "--json",
        "--confusion",
        "--model",
        p(&model),
        "--data",
        p(&input),
        "--labels",
        p(&lp),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["top1"], 0.5);
    let predicted = argmax(&timm[..classes]);
    assert_eq!(v["confusion"][labels[0] as usize][predicted], 1);
}

/// A PNG at the model's size needs no resampling, so classifying it must equal classifying the
/// `.npy` of its normalized pixels, bit for bit.
#[test]
fn png_input_is_normalized_like_the_pretrained_cfg() {
    let dir = fixture("gray"); // 28x28, 1 channel, mean 0.449, std 0.226 (timm's 1-channel rule)
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("digit.png");
    let img =
        image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((x * 9 + y * 5) % 256) as u8]));
    img.save(&png).unwrap();
    let normalized: Vec<f32> = img
        .pixels()
        .map(|px| (px.0[0] as f32 / 255.0 - 0.449) / 0.226)
        .collect();
    let npy = tmp.path().join("digit.npy");
    cait_data::npy::write_f32(&npy, &[1, 1, 28, 28], &normalized).unwrap();
    let model = dir.join("model.safetensors");
    let from_png: serde_json::Value = serde_json::from_slice(
        &cait(&["classify", "--json", "--model", p(&model), p(&png)]).stdout,
    )
    .unwrap();
    let from_npy: serde_json::Value = serde_json::from_slice(
        &cait(&["classify", "--json", "--model", p(&model), p(&npy)]).stdout,
    )
    .unwrap();
    assert_eq!(
        from_png["results"][0]["logits"],
        from_npy["results"][0]["logits"]
    );
    // Each result names its input as given: the image file, or the batch and index.
    assert_eq!(from_png["results"][0]["input"], p(&png));
    assert_eq!(from_npy["results"][0]["input"], format!("{}[0]", p(&npy)));

    // A larger RGB photo-like image is resized, cropped and converted to one channel.
    let big = tmp.path().join("big.png");
    image::RgbImage::from_fn(90, 60, |x, y| image::Rgb([x as u8, y as u8, 128]))
        .save(&big)
        .unwrap();
    let out = cait(&[
        "classify",
        "--json",
        "--top-k",
        "2",
        "--model",
        p(&model),
        p(&big),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][0]["logits"].as_array().unwrap().len(), 7);
    assert_eq!(v["results"][0]["top_k"].as_array().unwrap().len(), 2);
}

#[test]
fn labels_file_names_the_classes() {
    let dir = fixture("gray");
    let tmp = tempfile::tempdir().unwrap();
    let names = tmp.path().join("names.txt");
    std::fs::write(&names, "zero\none\ntwo\nthree\nfour\nfive\nsix\n").unwrap();
    let model = dir.join("model.safetensors");
    let input = dir.join("input.npy");
    let out = cait(&[
        "classify",
        "--json",
        "--labels",
        p(&names),
        "--model",
        p(&model),
        p(&input),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top = &v["results"][0]["top_k"][0];
    let words = ["zero", "one", "two", "three", "four", "five", "six"];
    assert_eq!(top["label"], words[top["class"].as_u64().unwrap() as usize]);

    // Six names for seven classes is refused with a clear message.
    std::fs::write(&names, "a\nb\nc\nd\ne\nf\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cait"))
        .args([
            "classify",
            "--labels",
            p(&names),
            "--model",
            p(&model),
            p(&input),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("6 labels for a model with 7 classes"));
}

/// An image folder whose sub-folders are the model's own class names (in any case and
/// punctuation) is scored as those classes, not by the folders' sorted order: the bundled model,
/// which classifies its ten sample images correctly, scores 100% on two folders (`Bag/`,
/// `sneaker/` — sorted, they would be classes 0 and 1) and on all ten. The JSON names the classes
/// as scored. Folders that are not the model's classes are scored by position, with a warning
/// that prints the mapping.
#[test]
fn image_folders_named_after_the_models_classes_are_scored_as_them() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fashion-cait");
    let pack = models.join("fashion-cait-int8.cait");
    let images = models.join("images");
    let labels = [
        "T-shirt_top",
        "Trouser",
        "pullover",
        "Dress",
        "COAT",
        "Sandal",
        "Shirt",
        "sneaker",
        "Bag",
        "ankle boot",
    ];
    let tmp = tempfile::tempdir().unwrap();
    let folder = |name: &str, classes: &[usize], folder_names: &dyn Fn(usize) -> String| {
        let dir = tmp.path().join(name);
        for &c in classes {
            let src = std::fs::read_dir(&images)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .starts_with(&format!("{c:02}-"))
                })
                .unwrap();
            let sub = dir.join(folder_names(c));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::copy(&src, sub.join(src.file_name().unwrap())).unwrap();
        }
        dir
    };
    let named = |c: usize| labels[c].to_string();
    for (name, classes) in [
        ("two", &[8usize, 7][..]),
        ("ten", &(0..10).collect::<Vec<_>>()[..]),
    ] {
        let dir = folder(name, classes, &named);
        let out = cait(&["eval", "--json", "--model", p(&pack), "--data", p(&dir)]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["top1"], 1.0, "{name}: {v}");
        assert_eq!(v["class_names"][8], "Bag");
        assert_eq!(v["n"], classes.len());
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Folders that name no class of the model: by position, and a warning with the mapping.
    let dir = folder("other", &[8, 7], &|c| format!("class_{c}"));
    let out = cait(&["eval", "--model", p(&pack), "--data", p(&dir)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: 2 of")
            && err.contains("(class_7, class_8) are not among the model's labels")
            && err.contains("0 = class_7, 1 = class_8"),
        "{err}"
    );
}
