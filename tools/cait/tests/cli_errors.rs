//! Bad input: one clear line on stderr, a non-zero exit, and nothing written.

mod common;
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

/// A NaN or infinite pixel is an error naming the file, the image and the element, for every
/// engine and for the firmware runner; so is an empty batch.
#[test]
fn non_finite_and_empty_npy_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (shape, mut data) = cait_quant::npy::read_f32(tiny().join("input.npy")).unwrap();
    assert_eq!(shape, [2, 3, 32, 32]);
    data[3 * 32 * 32 + 2 * 32 * 32 + 5 * 32 + 7] = f32::NAN; // image 1, channel 2, y 5, x 7
    let nan = tmp.path().join("nan.npy");
    cait_quant::npy::write_f32(&nan, &shape, &data).unwrap();
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
    cait_quant::npy::write_labels(&labels, &[0, 1]).unwrap();
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
    cait_quant::npy::write_f32(&nan, &shape, &data).unwrap();
    assert_error(
        &cait(&["classify", "--model", p(&model), p(&nan)]),
        &["nan.npy[0]", "element [0, 0, 0] is inf"],
    );
    let empty = tmp.path().join("empty.npy");
    cait_quant::npy::write_f32(&empty, &[0, 3, 32, 32], &[]).unwrap();
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
