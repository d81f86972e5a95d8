//! Progress on a terminal (issue 15, item 10): every command that can run long shows a bar or a
//! spinner on stderr while it works — decoding an image folder, evaluating, calibrating, a JSON
//! classification batch. Bars draw only on a terminal, so each command runs under `script(1)`,
//! which gives it a pseudo-terminal and echoes what was drawn.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What `cait args…` draws on a terminal (stdout and stderr together, control codes included).
fn on_terminal(args: &[&str]) -> String {
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_cait"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let out = Command::new("script")
        .args(["-qec", &quoted.join(" "), "/dev/null"])
        .output()
        .expect("script(1) (util-linux) runs the commands on a pseudo-terminal");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "cait {args:?} failed: {text}");
    text
}

/// A folder of two classes (`a/`, `b/`) holding the committed preprocessing photos, which the
/// bundled 28×28 model resizes: real PNG decoding and resizing for every image.
fn image_folder(dir: &Path) -> PathBuf {
    let photos = cait_tests::synth::fixtures_dir().join("../preprocess");
    let root = dir.join("images");
    for (class, stem) in [("a", "chelsea"), ("b", "coffee")] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for entry in std::fs::read_dir(&photos).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if name.starts_with(stem) && name.ends_with(".png") {
                std::fs::copy(&path, root.join(class).join(name)).unwrap();
            }
        }
    }
    root
}

fn bundled(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/fashion-cait")
        .join(file)
        .to_str()
        .unwrap()
        .to_owned()
}

fn assert_bar(drawn: &str, phase: &str, what: &str) {
    assert!(
        drawn.contains(&format!("{phase} [")),
        "{what}: no `{phase}` bar on the terminal:\n{drawn}"
    );
}

#[test]
fn long_work_shows_progress_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let images = image_folder(tmp.path());
    let images = images.to_str().unwrap();
    let int8 = bundled("fashion-cait-int8.cait");

    let drawn = on_terminal(&["classify", "--json", "--model", &int8, images]);
    assert_bar(&drawn, "decode", "classify DIR");
    assert_bar(&drawn, "classify", "classify --json");

    let drawn = on_terminal(&["eval", "--model", &int8, "--data", images]);
    assert_bar(&drawn, "decode", "eval --data DIR");
    assert_bar(&drawn, "eval", "eval");

    let out = tmp.path().join("q.cait");
    let drawn = on_terminal(&[
        "quantize",
        "--precision",
        "int8",
        "--calib",
        images,
        "-o",
        out.to_str().unwrap(),
        &bundled(""),
    ]);
    assert_bar(&drawn, "decode", "quantize --calib DIR");
    assert_bar(&drawn, "ranges", "quantize calibration");
}
