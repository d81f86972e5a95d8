//! Bad input: one clear line on stderr, a non-zero exit, and nothing written.

mod common;
use std::path::Path;

use common::{assert_error, cait, p, tiny};

#[test]
fn missing_model_file() {
    let out = cait(&[
        "classify",
        "--model",
        "/nonexistent/model.cait",
        p(&tiny().join("input.npy")),
    ]);
    assert_error(&out, &["/nonexistent/model.cait", "no such file"]);
}

#[test]
fn input_of_the_wrong_shape() {
    // gray takes [N, 1, 28, 28]; tiny's input is [2, 3, 32, 32].
    let gray = cait_tests::synth::fixtures_dir().join("gray/model.safetensors");
    let out = cait(&[
        "classify",
        "--model",
        p(&gray),
        p(&tiny().join("input.npy")),
    ]);
    assert_error(&out, &["input.npy", "[2, 3, 32, 32]", "[N, 1, 28, 28]"]);
}

/// 8-bit frames are HWC: a uint8 batch in CHW order (or of another size) is refused naming the
/// shape both layouts would need; an int64 array names the dtypes taken.
#[test]
fn frames_of_the_wrong_shape_or_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny().join("model.safetensors");
    let chw = tmp.path().join("chw.npy");
    cait_data::npy::write_u8(&chw, &[2, 3, 32, 32], &vec![7u8; 2 * 3 * 32 * 32]).unwrap();
    assert_error(
        &cait(&["classify", "--model", p(&model), p(&chw)]),
        &["chw.npy", "[2, 3, 32, 32]", "[N, 32, 32, 3] (uint8, HWC)"],
    );
    let ints = tmp.path().join("ints.npy");
    cait_data::npy::write_labels(&ints, &[1, 2]).unwrap();
    assert_error(
        &cait(&["classify", "--model", p(&model), p(&ints)]),
        &["ints.npy", "'<i8'", "'|u1'"],
    );
}

/// A NaN or infinite pixel is an error naming the file, the image and the element, for every
/// engine and for the firmware runner; so is an empty batch.
#[test]
fn non_finite_and_empty_npy_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (shape, mut data) = cait_data::npy::read_f32(tiny().join("input.npy")).unwrap();
    assert_eq!(shape, [2, 3, 32, 32]);
    data[3 * 32 * 32 + 2 * 32 * 32 + 5 * 32 + 7] = f32::NAN; // image 1, channel 2, y 5, x 7
    let nan = tmp.path().join("nan.npy");
    cait_data::npy::write_f32(&nan, &shape, &data).unwrap();
    let model = tiny().join("model.safetensors");
    for cmd in [&["classify"][..], &["attention", "-o", p(tmp.path())][..]] {
        let mut args = cmd.to_vec();
        args.extend(["--model", p(&model), p(&nan)]);
        assert_error(
            &cait(&args),
            &["nan.npy[1]", "element [2, 5, 7] is NaN", "finite"],
        );
    }
    // eval reads .npy batches through the dataset loader: the same error.
    let labels = tmp.path().join("labels.npy");
    cait_data::npy::write_labels(&labels, &[0, 1]).unwrap();
    assert_error(
        &cait(&[
            "eval",
            "--model",
            p(&model),
            "--data",
            p(&nan),
            "--labels",
            p(&labels),
        ]),
        &["nan.npy[1]", "element [2, 5, 7] is NaN", "finite"],
    );
    data[0] = f32::INFINITY;
    cait_data::npy::write_f32(&nan, &shape, &data).unwrap();
    assert_error(
        &cait(&["classify", "--model", p(&model), p(&nan)]),
        &["nan.npy[0]", "element [0, 0, 0] is inf"],
    );
    let empty = tmp.path().join("empty.npy");
    cait_data::npy::write_f32(&empty, &[0, 3, 32, 32], &[]).unwrap();
    assert_error(
        &cait(&["classify", "--model", p(&model), p(&empty)]),
        &["empty.npy", "holds no images"],
    );
}

#[test]
fn unreadable_image() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("broken.png");
    std::fs::write(&img, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let out = cait(&[
        "classify",
        "--model",
        p(&tiny().join("model.safetensors")),
        p(&img),
    ]);
    assert_error(&out, &["broken.png"]);
}

#[test]
fn a_file_that_is_not_a_model() {
    let out = cait(&["inspect", p(&tiny().join("spec.json"))]);
    assert_error(&out, &["spec.json"]);
}

#[test]
fn corrupted_pack_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let pack = tmp.path().join("tiny.cait");
    let st = cait(&[
        "quantize",
        "--precision",
        "f32",
        "-o",
        p(&pack),
        p(&tiny().join("model.safetensors")),
    ]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&pack, &bytes).unwrap();
    let out = cait(&[
        "classify",
        "--model",
        p(&pack),
        p(&tiny().join("input.npy")),
    ]);
    assert_error(&out, &["tiny.cait", "checksum"]);

    bytes.truncate(100);
    std::fs::write(&pack, &bytes).unwrap();
    let out = cait(&["inspect", p(&pack)]);
    assert_error(&out, &["tiny.cait"]);
}

#[test]
fn precision_is_required_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("x.cait");
    let ckpt = tiny().join("model.safetensors");
    let out = cait(&["quantize", "-o", p(&out_path), p(&ckpt)]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--precision"));
    let out = cait(&[
        "quantize",
        "--precision",
        "int4",
        "-o",
        p(&out_path),
        p(&ckpt),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!out_path.exists(), "nothing may be written on error");
}

#[test]
fn burn_backend_needs_a_checkpoint_not_a_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let pack = tmp.path().join("tiny.cait");
    let out = cait(&[
        "quantize",
        "--precision",
        "f32",
        "-o",
        p(&pack),
        p(&tiny().join("model.safetensors")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cait(&[
        "classify",
        "--backend",
        "burn-cpu",
        "--model",
        p(&pack),
        p(&tiny().join("input.npy")),
    ]);
    assert_error(&out, &["burn-cpu", "checkpoint", "--backend core"]);
}

/// `cait … | head -1`: when the reader goes away, cait ends quietly (killed by SIGPIPE, as `cat`
/// is), not with a panic, a backtrace and exit code 101. The read end is closed before cait
/// writes anything, so every one of its writes meets a closed pipe.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let input = tiny().join("input.npy");
    let model = tiny().join("model.safetensors");
    for args in [
        vec!["inspect", p(&model)],
        vec!["classify", "--model", p(&model), p(&input)],
        vec!["classify", "--json", "--model", p(&model), p(&input)],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cait"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}

/// A checkpoint without `config.json`: the pooling and preprocessing it runs with are guesses, and
/// every command says so on stderr, with the values and the flags that set them; with the model's
/// real values given, no warning and the right answer (the bundled sneaker: `Sandal` with the
/// guessed normalization, `Sneaker` with the model's). A pack made from the guesses carries them,
/// and warns again wherever it is used; preprocessing flags on a pack are an error.
#[test]
fn guessed_preprocessing_is_announced_and_can_be_given() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fashion-cait");
    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("model.safetensors");
    std::fs::copy(models.join("model.safetensors"), &bare).unwrap();
    let sneaker = models.join("images/07-sneaker.png");
    let top1 = |out: &std::process::Output| -> String {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["results"][0]["top_k"][0]["class"].to_string()
    };
    let out = cait(&["classify", "--json", "--model", p(&bare), p(&sneaker)]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    for needle in [
        "warning: ",
        "model.safetensors",
        "guessed (global_pool token, mean [0.449], std [0.226], crop_pct 1, interpolation bicubic)",
        "--global-pool --mean --std --crop-pct --interpolation",
    ] {
        assert!(err.contains(needle), "`{needle}` not in {err}");
    }
    assert_ne!(
        top1(&out),
        "7",
        "the guessed normalization is not the model's"
    );
    let given = [
        "--global-pool",
        "token",
        "--mean",
        "0.286",
        "--std",
        "0.353",
        "--crop-pct",
        "1.0",
        "--interpolation",
        "bicubic",
    ];
    let mut args = vec!["classify", "--json", "--model", p(&bare), p(&sneaker)];
    args.extend(given);
    let out = cait(&args);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(top1(&out), "7", "Sneaker");
    // Only some given: the warning names the rest.
    let out = cait(&[
        "eval",
        "--model",
        p(&bare),
        "--data",
        p(&models.join("samples.npy")),
        "--labels",
        p(&models.join("samples_labels.npy")),
        "--mean",
        "0.286",
        "--std",
        "0.353",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("guessed (global_pool token, crop_pct 1, interpolation bicubic)"),
        "{err}"
    );

    // A pack made from the guesses records them and warns wherever it is used.
    let pack = tmp.path().join("guessed.cait");
    let out = cait(&["quantize", "--precision", "f32", "-o", p(&pack), p(&bare)]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: "));
    let out = cait(&["classify", "--model", p(&pack), p(&sneaker)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "its global_pool, mean, std, crop_pct, interpolation were guessed when it was made"
        ),
        "{err}"
    );
    let mut args = vec!["classify", "--model", p(&pack), p(&sneaker)];
    args.extend(&given[2..4]);
    assert_error(
        &cait(&args),
        &["apply to checkpoints; a pack records its preprocessing"],
    );
    // Bad values are one-line errors naming them.
    let mut args = vec!["classify", "--model", p(&bare), p(&sneaker)];
    args.extend(["--std", "0.3,0.4"]);
    assert_error(&cait(&args), &["--std has 2 values", "1 input channel(s)"]);
    let mut args = vec!["classify", "--model", p(&bare), p(&sneaker)];
    args.extend(["--crop-pct", "0"]);
    assert_error(&cait(&args), &["--crop-pct 0: must be a positive number"]);
}

/// One clause per cause: an I/O error that both a wrapper's message and its source carry is said
/// once.
#[test]
fn a_missing_dataset_is_said_once() {
    let out = cait(&[
        "eval",
        "--model",
        p(&tiny().join("model.safetensors")),
        "--data",
        "/nonexistent/data",
    ]);
    assert_error(&out, &["/nonexistent/data"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let os = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
    assert_eq!(err.matches("No such file").count(), 1, "{err} ({os})");
}

/// Output paths are checked before the work: a missing folder for `--save-logits` or `-o` is a
/// one-line error at once (no eval, no calibration run first); `--limit 0` is a usage error.
#[test]
fn output_paths_and_limits_are_checked_first() {
    let model = tiny().join("model.safetensors");
    let input = tiny().join("input.npy");
    let out = cait(&[
        "eval",
        "--model",
        p(&model),
        "--data",
        p(&input),
        "--save-logits",
        "/nonexistent/dir/logits.npy",
    ]);
    assert_error(
        &out,
        &[
            "--save-logits",
            "the folder /nonexistent/dir does not exist",
        ],
    );
    let out = cait(&[
        "eval",
        "--model",
        p(&model),
        "--data",
        p(&input),
        "--limit",
        "0",
    ]);
    assert_error(&out, &["--limit 0"]);
    let tmp = tempfile::tempdir().unwrap();
    let out = cait(&[
        "quantize",
        p(&model),
        "--precision",
        "f16",
        "-o",
        p(tmp.path()),
    ]);
    assert_error(&out, &["-o", "is a folder"]);
}

/// `classify DIR` reads every image under the folder, in sorted order, as timm's inference
/// script does; an empty folder is an error.
#[test]
fn classify_reads_a_folder_of_images() {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fashion-cait/images");
    let pack = images.join("../fashion-cait-int8.cait");
    let out = cait(&["classify", "--json", "--model", p(&pack), p(&images)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 10);
    for (i, r) in results.iter().enumerate() {
        assert!(
            r["input"].as_str().unwrap().contains(&format!("{i:02}-")),
            "{r}"
        );
        assert_eq!(r["top_k"][0]["class"], i, "{}", r["input"]);
    }
    let tmp = tempfile::tempdir().unwrap();
    assert_error(
        &cait(&["classify", "--model", p(&pack), p(tmp.path())]),
        &["holds no PNG or JPEG image"],
    );
}

/// A corrupt JPEG on which the decoder itself panics (zune-jpeg's AVX2 IDCT; the image fuzz target
/// found it) is that file's one-line error, with no panic message: exit 1, not a crash.
#[test]
fn a_decoder_panic_is_the_files_error() {
    let jpeg = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/cait-data/fuzz/corpus/image/regression-zune-jpeg-avx2-idct-panic.jpg");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jpg");
    std::fs::copy(&jpeg, &bad).unwrap();
    let pack = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/fashion-cait/fashion-cait-int8.cait");
    let out = cait(&["classify", "--model", p(&pack), p(&bad)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    if !out.status.success() {
        assert_error(&out, &["bad.jpg: not a readable image"]);
    }
}
