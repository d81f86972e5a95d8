//! `cait train` as a user runs it: a short run on real Fashion-MNIST (Debian's
//! dataset-fashion-mnist, which tools/test.sh installs), the timm hub folder it writes read back by
//! every other command, resuming, and the bad inputs the issue names.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::{cait, ok, p};

const FASHION: &str = "/usr/share/datasets/fashion-mnist";

fn fashion() -> &'static str {
    assert!(
        Path::new(FASHION)
            .join("t10k-images-idx3-ubyte.gz")
            .exists(),
        "{FASHION} missing: apt-get install -y dataset-fashion-mnist (tools/test.sh does)"
    );
    FASHION
}

/// Fails with exit status 1 and a single `error: ` line containing every `needle`.
fn assert_error(out: &Output, needles: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{err}");
    for n in needles {
        assert!(last.contains(n), "`{n}` not in: {last}");
    }
}

/// A small, fast model: patch 7 (16 tokens), D 16, one SA block.
const SMALL: [&str; 12] = [
    "--patch-size",
    "7",
    "--embed-dim",
    "16",
    "--depth",
    "1",
    "--num-heads",
    "2",
    "--batch-size",
    "64",
    "--warmup-epochs",
    "0.5",
];

fn train(out: &Path, epochs: &str, extra: &[&str]) -> Output {
    train_command(out, epochs, extra).output().unwrap()
}

fn train_command(out: &Path, epochs: &str, extra: &[&str]) -> Command {
    let mut args = vec![
        "train",
        "--data",
        fashion(),
        "-o",
        p(out),
        "--limit",
        "8192",
        "--eval-limit",
        "512",
        "--epochs",
        epochs,
    ];
    if !extra.contains(&"--lr") {
        args.extend(["--lr", "3e-3"]);
    }
    args.extend(SMALL);
    args.extend(extra);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cait"));
    cmd.args(&args);
    cmd
}

fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut all: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[test]
fn trains_writes_a_timm_hub_folder_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("run");
    let out = train(&out_dir, "2", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let epochs: Vec<&str> = stdout.lines().filter(|l| l.starts_with("epoch")).collect();
    assert_eq!(epochs.len(), 2, "{stdout}");
    assert!(epochs[1].contains("eval top-1"), "{stdout}");

    // timm's hub format: the file the import path reads.
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["num_classes"], 10);
    assert_eq!(cfg["model_args"]["patch_size"], 7);
    assert_eq!(cfg["model_args"]["in_chans"], 1);
    assert_eq!(cfg["model_args"]["img_size"], serde_json::json!([28, 28]));
    assert_eq!(
        cfg["pretrained_cfg"]["input_size"],
        serde_json::json!([1, 28, 28])
    );
    assert_eq!(cfg["label_names"][9], "Ankle boot");
    // Mean/std measured on the 8,192 training images, rounded to 4 decimals.
    let mean = cfg["pretrained_cfg"]["mean"][0].as_f64().unwrap();
    let std = cfg["pretrained_cfg"]["std"][0].as_f64().unwrap();
    assert!(
        (0.2..0.4).contains(&mean) && (0.25..0.45).contains(&std),
        "{mean} {std}"
    );
    assert!(
        tensors(&out_dir.join("model.safetensors"))
            .iter()
            .any(|(n, _)| n == "blocks.0.attn.proj_l.weight")
    );

    // Every other command reads it; it learned something (10 classes: chance is 10%).
    let eval = ok(&[
        "eval",
        "--json",
        "--model",
        p(&out_dir),
        "--data",
        FASHION,
        "--limit",
        "512",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    let top1 = v["top1"].as_f64().unwrap();
    // Chance is 10%; this small model (D 16, one block) reaches about 46% in these 256 steps.
    assert!(top1 > 0.3, "top-1 after 2 short epochs (256 steps): {top1}");
    let burn = ok(&[
        "eval",
        "--json",
        "--backend",
        "burn-cpu",
        "--model",
        p(&out_dir),
        "--data",
        FASHION,
        "--limit",
        "512",
    ]);
    let vb: serde_json::Value = serde_json::from_slice(&burn.stdout).unwrap();
    assert_eq!(
        vb["top1"], v["top1"],
        "core and burn agree on the trained model"
    );

    // Asking the finished 2-epoch run for 3 epochs changes the schedule: the checkpoint is
    // refused rather than silently mixed.
    let more = train(&out_dir, "3", &["--resume"]);
    assert_error(&more, &["checkpoint"]);

    // An interrupted run: killed during its third epoch, then the same command with --resume
    // continues from epoch 2's checkpoint and ends with the uninterrupted run's weights exactly.
    let killed_dir = tmp.path().join("killed");
    let mut child = train_command(&killed_dir, "3", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the run ended before epoch 2").unwrap();
        if line.starts_with("epoch") && line.contains(" 2/3") {
            break;
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run should have been killed in epoch 3"
    );
    let resumed = train(&killed_dir, "3", &["--resume"]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(
        String::from_utf8_lossy(&resumed.stderr).contains("after epoch 2"),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let resumed_epochs = String::from_utf8_lossy(&resumed.stdout)
        .lines()
        .filter(|l| l.starts_with("epoch"))
        .count();
    assert_eq!(resumed_epochs, 1, "only epoch 3 is left to train");

    let straight_dir = tmp.path().join("straight");
    let straight = train(&straight_dir, "3", &[]);
    assert!(straight.status.success());
    assert_eq!(
        tensors(&killed_dir.join("model.safetensors")),
        tensors(&straight_dir.join("model.safetensors")),
        "a resumed run must end with the uninterrupted run's weights"
    );
}

#[test]
fn bad_inputs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("run");

    // A dataset path that does not exist.
    let out = cait(&["train", "--data", "/no/such/dataset", "-o", p(&out_dir)]);
    assert_error(&out, &["/no/such/dataset"]);

    // Fine-tuning a 3×32×32 checkpoint on 1×28×28 Fashion-MNIST.
    let tiny = cait_tests::synth::fixtures_dir().join("tiny/model.safetensors");
    let mut args = vec![
        "train",
        "--data",
        fashion(),
        "-o",
        p(&out_dir),
        "--finetune",
        p(&tiny),
    ];
    args.extend(["--limit", "64", "--epochs", "1"]);
    let out = cait(&args);
    assert_error(&out, &["28", "32"]);

    // A learning rate that makes the loss blow up.
    let out = train(&out_dir, "1", &["--lr", "1e30"]);
    assert_error(&out, &["diverged"]);

    // Training needs autodiff: --backend does not offer the core engine (a usage error, clap's).
    let out = train(&out_dir, "1", &["--backend", "core"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'core'")
            && err.contains("[possible values: burn-cpu, burn-wgpu]"),
        "{err}"
    );
}
