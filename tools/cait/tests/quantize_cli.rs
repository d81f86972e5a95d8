//! `cait quantize` end to end: int8 and f16 packs from the tiny timm fixture, their report, the
//! choices `cait inspect` shows, `cait eval` / `classify` on every precision, and every bad input.

use std::path::{Path, PathBuf};

use cait_tests::synth;

mod common;
use common::{assert_error, cait, json, ok, p, tiny};

/// `n` images `[n, c, size, size]` from the fixtures' input distribution (0.8 · normal).
fn calibration(dir: &Path, n: usize, c: usize, size: usize) -> PathBuf {
    let shape = [n, c, size, size];
    let data = synth::tensor(4242, "calibration", &shape, synth::Kind::Input);
    let path = dir.join(format!("calib_{n}x{c}x{size}.npy"));
    cait_data::npy::write_f32(&path, &shape, &data).unwrap();
    path
}

#[test]
fn int8_pack_with_report_inspect_eval_and_classify() {
    let tmp = tempfile::tempdir().unwrap();
    let calib = calibration(tmp.path(), 32, 3, 32);
    let pack = tmp.path().join("tiny_int8.cait");
    let ckpt = tiny().join("model.safetensors");
    let out = ok(&[
        "quantize",
        p(&ckpt),
        "--precision",
        "int8",
        "--calib",
        p(&calib),
        "--calib-count",
        "24",
        "--select-count",
        "16",
        "-o",
        p(&pack),
        "--report",
        "--json",
    ]);
    let v = json(&out);
    assert_eq!(v["precision"], "int8");
    assert_eq!(v["pack_bytes"], std::fs::metadata(&pack).unwrap().len());
    let r = &v["report"];
    // 24 images dealt round-robin: 12 fit the ranges, 6 choose, 6 are held out for the figures.
    assert_eq!(
        (&r["fit_images"], &r["select_images"], &r["images"]),
        (&12.into(), &6.into(), &6.into())
    );
    let choices: Vec<&str> = r["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        choices,
        ["calibration", "smoothing", "attention", "activation_scales"]
    );
    assert!(r["logit_sqnr_db"].as_f64().unwrap() > 25.0);
    assert!(r["top1_agreement"].as_f64().unwrap() >= 0.9);
    // One row per linear layer, attention matmul and block; 2 SA + 2 CA blocks.
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1 + 2 * 7 + 2 * 9 + 1);
    for l in layers {
        for (_, db) in l["activation_sqnr_db"].as_object().unwrap() {
            assert!(db.as_f64().unwrap() > 15.0, "{l}");
        }
    }

    // The table.
    let out = ok(&[
        "quantize",
        p(&ckpt),
        "--precision",
        "int8",
        "--calib",
        p(&calib),
        "--calib-count",
        "8",
        "--method",
        "mse",
        "--smoothing",
        "0.5",
        "--qk",
        "f32",
        "--av",
        "int8",
        "--activation-scales",
        "dynamic",
        "-o",
        p(&tmp.path().join("fixed.cait")),
        "--report",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "weights dB",
        "blocks.1.attn.qkv",
        "blocks.0.attn.q@k",
        "logits: SQNR",
    ] {
        assert!(table.contains(needle), "{needle} not in\n{table}");
    }

    // inspect shows the recorded choices.
    let v = json(&ok(&[
        "inspect",
        "--json",
        p(&tmp.path().join("fixed.cait")),
    ]));
    assert_eq!(v["precision"], "int8");
    let meta = &v["metadata"];
    assert_eq!(meta["quant.calibration"], "mse");
    assert_eq!(meta["quant.smoothing"], "alpha=0.5");
    assert_eq!(meta["quant.qk"], "f32");
    assert_eq!(meta["quant.av"], "int8");
    // The class-token path is quantized at run time unless asked otherwise.
    assert_eq!(meta["quant.class_path"], "dynamic");
    assert_eq!(v["quantization"]["class_path"], "dynamic");
    assert_eq!(meta["quant.activation_scales"], "dynamic");
    assert_eq!(v["quantization"]["activation_scales"], "dynamic");
    assert_eq!(v["workspace_bytes"], 3276);
    let text = String::from_utf8_lossy(&ok(&["inspect", p(&pack)]).stdout).into_owned();
    assert!(text.contains("quant.measured.smoothing"), "{text}");

    // eval and classify run int8 packs, with --save-logits.
    let input = tiny().join("input.npy");
    let labels = tmp.path().join("labels.npy");
    let logits = synth::read_npy_f32(&tiny().join("logits.npy")).unwrap().1;
    let classes = 10;
    let want: Vec<i64> = logits
        .chunks_exact(classes)
        .map(|r| (0..classes).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap() as i64)
        .collect();
    cait_data::npy::write_labels(&labels, &want).unwrap();
    let saved = tmp.path().join("int8_logits.npy");
    let v = json(&ok(&[
        "eval",
        "--model",
        p(&pack),
        "--data",
        p(&input),
        "--labels",
        p(&labels),
        "--json",
        "--save-logits",
        p(&saved),
    ]));
    assert_eq!(v["n"], 2);
    // int8 keeps timm's top-1 on both images (cosine 0.99999 on this fixture).
    assert_eq!(v["top1"], 1.0);
    let (shape, got) = synth::read_npy_f32(&saved).unwrap();
    assert_eq!(shape, [2, 10]);
    let err = got
        .iter()
        .zip(&logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err < 0.05, "int8 logits off timm's by {err}");
    let v = json(&ok(&["classify", "--json", "--model", p(&pack), p(&input)]));
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
}

#[test]
fn f16_pack_eval_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    let pack = tmp.path().join("tiny_f16.cait");
    let ckpt = tiny().join("model.safetensors");
    let v = json(&ok(&[
        "quantize",
        p(&ckpt),
        "--precision",
        "f16",
        "-o",
        p(&pack),
        "--json",
    ]));
    assert_eq!(v["precision"], "f16");
    // Nothing measured without calibration data: the figures are absent, not null.
    let report = v["report"].as_object().unwrap();
    for key in ["logit_sqnr_db", "top1_agreement", "mixed"] {
        assert!(!report.contains_key(key), "{key} in {v}");
    }
    // With calibration data, the report measures the f16 engine against f32 on it.
    let calib = calibration(tmp.path(), 8, 3, 32);
    let out = ok(&[
        "quantize",
        p(&ckpt),
        "-p",
        "f16",
        "--calib",
        p(&calib),
        "-o",
        p(&pack),
        "--report",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("f16 quantization"));
    let input = tiny().join("input.npy");
    let saved = tmp.path().join("f16_logits.npy");
    let labels = tmp.path().join("labels.npy");
    cait_data::npy::write_labels(&labels, &[0, 0]).unwrap();
    ok(&[
        "eval",
        "--model",
        p(&pack),
        "--data",
        p(&input),
        "--labels",
        p(&labels),
        "--save-logits",
        p(&saved),
    ]);
    let got = synth::read_npy_f32(&saved).unwrap().1;
    let want = synth::read_npy_f32(&tiny().join("logits.npy")).unwrap().1;
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    // f16 weights: logits within 1e-2 of timm on this fixture (f32 packs: 1e-4).
    assert!(err < 1e-2, "f16 logits off timm's by {err}");
}

#[test]
fn precision_is_required_and_checked_by_clap() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny().join("model.safetensors");
    let out_path = tmp.path().join("x.cait");
    let out = cait(&["quantize", p(&ckpt), "-o", p(&out_path)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--precision <PRECISION>"), "{err}");
    let out = cait(&[
        "quantize",
        p(&ckpt),
        "--precision",
        "int4",
        "-o",
        p(&out_path),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'int4'") && err.contains("f32, f16, int8"),
        "{err}"
    );
    assert!(!out_path.exists());
}

#[test]
fn bad_calibration_data_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tiny().join("model.safetensors");
    let out_path = tmp.path().join("x.cait");
    let run = |calib: &Path, extra: &[&str]| {
        let mut args = vec![
            "quantize",
            p(&ckpt),
            "--precision",
            "int8",
            "--calib",
            p(calib),
            "-o",
            p(&out_path),
        ];
        args.extend_from_slice(extra);
        cait(&args)
    };
    // No --calib at all.
    let out = cait(&[
        "quantize",
        p(&ckpt),
        "--precision",
        "int8",
        "-o",
        p(&out_path),
    ]);
    assert_error(
        &out,
        &["--precision int8 needs calibration data", "--calib"],
    );
    // Wrong image size, wrong channel count.
    let small = calibration(tmp.path(), 4, 3, 16);
    assert_error(
        &run(&small, &[]),
        &["calib_4x3x16.npy", "[4, 3, 16, 16]", "[3, 32, 32]"],
    );
    let gray = calibration(tmp.path(), 4, 1, 32);
    assert_error(
        &run(&gray, &[]),
        &["calib_4x1x32.npy", "[4, 1, 32, 32]", "[3, 32, 32]"],
    );
    // An empty set: an empty batch, or a count of 0.
    let empty = tmp.path().join("empty.npy");
    cait_data::npy::write_f32(&empty, &[0, 3, 32, 32], &[]).unwrap();
    assert_error(&run(&empty, &[]), &["empty.npy", "holds no images"]);
    let fine = calibration(tmp.path(), 4, 3, 32);
    assert_error(
        &run(&fine, &["--calib-count", "0"]),
        &["--calib-count 0", "empty"],
    );
    // Not a dataset.
    assert_error(
        &run(&tiny().join("spec.json"), &[]),
        &["spec.json", "not a dataset"],
    );
    assert_error(&run(&fine, &["--smoothing", "2"]), &["--smoothing `2`"]);
    assert!(!out_path.exists());
}

/// A checkpoint with a NaN weight is refused, naming the tensor, at every precision.
#[test]
fn non_finite_weights_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(tiny().join("model.safetensors")).unwrap();
    // safetensors: u64 header length, JSON header, data; poison element 3 of fc1's weight.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let name = "blocks.1.mlp.fc1.weight";
    let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    let at = 8 + n + start + 3 * 4;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let bad = tmp.path().join("nan.safetensors");
    std::fs::write(&bad, &bytes).unwrap();
    let calib = calibration(tmp.path(), 4, 3, 32);
    let out_path = tmp.path().join("x.cait");
    for precision in ["int8", "f16"] {
        let out = cait(&[
            "quantize",
            p(&bad),
            "--precision",
            precision,
            "--calib",
            p(&calib),
            "-o",
            p(&out_path),
        ]);
        assert_error(&out, &["nan.safetensors", name, "NaN"]);
    }
    assert!(!out_path.exists());
}

/// `--holdout`: every calibration image fits, the hold-out images choose and report; the summary
/// says on how many; wrong hold-out data and too few images are one-line errors.
#[test]
fn int8_with_a_holdout_set_and_too_few_images() {
    let tmp = tempfile::tempdir().unwrap();
    let calib = calibration(tmp.path(), 8, 3, 32);
    let holdout = tmp.path().join("holdout.npy");
    let shape = [10, 3, 32, 32];
    let data = synth::tensor(4242, "holdout", &shape, synth::Kind::Input);
    cait_data::npy::write_f32(&holdout, &shape, &data).unwrap();
    let ckpt = tiny().join("model.safetensors");
    let pack = tmp.path().join("h.cait");
    let args = |extra: &[&'static str]| {
        let mut a: Vec<String> = [
            "quantize",
            p(&ckpt),
            "--precision",
            "int8",
            "--calib",
            p(&calib),
            "-o",
            p(&pack),
            "--method",
            "minmax",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    fn refs(a: &[String]) -> Vec<&str> {
        a.iter().map(String::as_str).collect()
    }
    let with = |extra: &[&'static str], holdout: &Path| {
        let mut a = args(extra);
        a.extend(["--holdout".to_string(), p(holdout).to_string()]);
        a
    };
    let out = ok(&refs(&with(&["--json"], &holdout)));
    let r = &json(&out)["report"];
    assert_eq!(
        (&r["fit_images"], &r["select_images"], &r["images"]),
        (&8.into(), &5.into(), &5.into())
    );
    assert!(r["logit_sqnr_db"].as_f64().unwrap() > 20.0);
    // 5 report images: the figures come with a warning on stderr.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: the held-out figures rest on 5 image(s)"),
        "{err}"
    );
    // The summary line states the held-out figure and its image counts.
    let out = ok(&refs(&with(&[], &holdout)));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("held out: logit SQNR")
            && err.contains("on 5 images (ranges fitted on 8, choices made on 5 others)"),
        "{err}"
    );
    let meta = json(&ok(&["inspect", "--json", p(&pack)]))["metadata"].clone();
    assert!(
        meta["quant.held_out"]
            .as_str()
            .unwrap()
            .ends_with("on 5 held-out images")
    );

    // A hold-out set of the wrong shape; one too small to split; a calibration set too small.
    let gray = calibration(tmp.path(), 4, 1, 32);
    assert_error(
        &cait(&refs(&with(&[], &gray))),
        &[
            "hold-out data",
            "calib_4x1x32.npy",
            "[4, 1, 32, 32]",
            "[3, 32, 32]",
        ],
    );
    let three = calibration(tmp.path(), 3, 3, 32);
    assert_error(
        &cait(&refs(&with(&[], &three))),
        &["too few", "select 2, report 1", "--holdout with at least 4"],
    );
    assert_error(
        &cait(&refs(&args(&["--calib-count", "6"]))),
        &[
            "6 calibration images are too few",
            "give at least 8 calibration images",
        ],
    );
    // --holdout is an int8 option.
    let f16 = [
        "quantize",
        p(&ckpt),
        "--precision",
        "f16",
        "--holdout",
        p(&holdout),
        "-o",
        p(&pack),
    ];
    assert_error(&cait(&f16), &["--holdout is only used by int8"]);
}

/// `--min-sqnr` / `--max-drop`: a budget above what all-int8 reaches keeps blocks in f16 (the
/// summary, the JSON report and `inspect` say which, and the pack runs); an unreachable budget is
/// a best effort with a warning; a top-1 budget without labels, a negative budget and a budget on a
/// float pack are one-line errors.
#[test]
fn mixed_precision_budgets() {
    let tmp = tempfile::tempdir().unwrap();
    let calib = calibration(tmp.path(), 24, 3, 32);
    let ckpt = tiny().join("model.safetensors");
    let pack = tmp.path().join("mixed.cait");
    let run = |precision: &'static str, extra: &[&str]| {
        let mut a = vec![
            "quantize",
            p(&ckpt),
            "--precision",
            precision,
            "--calib",
            p(&calib),
            "-o",
            p(&pack),
            "--method",
            "minmax",
            // The calibrated scales: on 6 selection images every block kept alone in f16 measured
            // below the dynamic all-int8 pack (noise), so no mix would be kept there.
            "--activation-scales",
            "static",
        ];
        a.extend(extra);
        cait(&a)
    };
    let out = run("int8", &["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = json(&out);
    // Well above the held-out figure, and above the selection figure (6 images each: they differ).
    let target = plain["report"]["logit_sqnr_db"].as_f64().unwrap() + 6.0;
    let target = format!("{target:.1}");
    let out = run("int8", &["--min-sqnr", &target, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let m = &v["report"]["mixed"];
    assert_eq!(m["unit"], "dB");
    let kept: Vec<&str> = m["f16_blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert!(!kept.is_empty(), "{m}");
    let inspect = json(&ok(&["inspect", "--json", p(&pack)]));
    let mut listed: Vec<&str> = inspect["f16_blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["block"].as_str().unwrap())
        .collect();
    let mut kept_sorted = kept.clone();
    kept_sorted.sort();
    listed.sort();
    assert_eq!(listed, kept_sorted);
    assert_eq!(inspect["workspace_bytes"], v["workspace_bytes"]);
    // The mixed pack classifies.
    let input = tiny().join("input.npy");
    let c = json(&ok(&["classify", "--json", "--model", p(&pack), p(&input)]));
    assert_eq!(c["results"].as_array().unwrap().len(), 2);
    // The summary line.
    let out = run("int8", &["--min-sqnr", &target]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("mixed precision: logit SQNR ≥ {target} dB: ")),
        "{err}"
    );

    // Unreachable: a best effort, with a warning.
    let out = run("int8", &["--min-sqnr", "150"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NOT met on the selection images")
            && err.contains("warning: no mix of f16 blocks meets logit SQNR ≥ 150 dB"),
        "{err}"
    );

    assert_error(
        &run("int8", &["--max-drop", "0.1"]),
        &["--max-drop measures top-1 accuracy, which needs labelled images"],
    );
    assert_error(
        &run("int8", &["--min-sqnr=-3"]),
        &["budget logit SQNR ≥ -3 dB is not a finite, non-negative number"],
    );
    assert_error(
        &run("f16", &["--min-sqnr", "30"]),
        &["--max-drop and --min-sqnr choose int8 mixed precision"],
    );
}

/// `cait eval --reference FLOAT_MODEL`: the top-1 agreement and logit SQNR of a quantized pack
/// against its float model on the same images, as a regression check would compute them from the
/// two models' saved logits; the JSON names the model, the data and the classes.
#[test]
fn eval_against_a_float_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let calib = calibration(tmp.path(), 16, 3, 32);
    let ckpt = tiny().join("model.safetensors");
    let pack = tmp.path().join("q.cait");
    ok(&[
        "quantize",
        p(&ckpt),
        "--precision",
        "int8",
        "--calib",
        p(&calib),
        "--method",
        "minmax",
        "-o",
        p(&pack),
    ]);
    let data = calibration(tmp.path(), 12, 3, 32);
    let labels = tmp.path().join("labels.npy");
    cait_data::npy::write_labels(&labels, &[3; 12]).unwrap();
    let (q_logits, f_logits) = (tmp.path().join("q.npy"), tmp.path().join("f.npy"));
    let eval = |model: &Path, save: &Path, extra: &[&str]| {
        let mut a = vec![
            "eval",
            "--json",
            "--model",
            p(model),
            "--data",
            p(&data),
            "--labels",
            p(&labels),
            "--save-logits",
            p(save),
        ];
        a.extend(extra);
        json(&ok(&a))
    };
    let v = eval(&pack, &q_logits, &["--reference", p(&ckpt)]);
    eval(&ckpt, &f_logits, &[]);
    let (_, q) = cait_data::npy::read_f32(&q_logits).unwrap();
    let (_, f) = cait_data::npy::read_f32(&f_logits).unwrap();
    let classes = q.len() / 12;
    let argmax = |r: &[f32]| cait_tests::argmax(r);
    let same = q
        .chunks(classes)
        .zip(f.chunks(classes))
        .filter(|(a, b)| argmax(a) == argmax(b))
        .count();
    let signal: f64 = f.iter().map(|&x| (x as f64).powi(2)).sum();
    let noise: f64 = f
        .iter()
        .zip(&q)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    assert_eq!(v["top1_agreement"], same as f64 / 12.0);
    let sqnr = v["logit_sqnr_db"].as_f64().unwrap();
    assert!(
        (sqnr - 10.0 * (signal / noise).log10()).abs() < 1e-6,
        "{sqnr} vs {}",
        10.0 * (signal / noise).log10()
    );
    assert_eq!(v["model"], p(&pack));
    assert_eq!(v["data"], p(&data));
    assert_eq!(v["reference"], p(&ckpt));
    assert_eq!(v["class_names"].as_array().unwrap().len(), classes);
    assert!(v.get("split").is_none(), "a .npy batch has no split: {v}");

    // A reference of another shape is refused before any work.
    let gray = synth::fixtures_dir().join("gray/model.safetensors");
    let mut a = vec!["eval", "--model", p(&pack), "--data", p(&data)];
    a.extend(["--labels", p(&labels), "--reference", p(&gray)]);
    assert_error(&cait(&a), &["--reference", "gray", "gives"]);
}
