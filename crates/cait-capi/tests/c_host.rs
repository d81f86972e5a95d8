//! The C API from a C program on this host (`tests/c/host_test.c`, built with the system `cc`
//! against this crate's static library): every bad-argument status checked in C, then the
//! bundled int8 pack's logits from C, bit-identical to cait-core's own on the same pixels.

use std::path::{Path, PathBuf};
use std::process::Command;

use cait_core::{AttentionSink, Input, Outputs, PixelLayout, Session};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// This build's `libcait_capi.a`: cargo builds every crate type of the library for the tests and
/// leaves them in `deps/`, beside this test's executable (only `cargo build` copies them one folder
/// up, so that copy may be missing or stale).
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let lib = deps.join("libcait_capi.a");
    assert!(lib.exists(), "{} not built", lib.display());
    lib
}

/// What cait-core gives for one input: the logits' bits and top class, and, when asked for, every
/// class-attention row in `[block][head]` order as bits and the top 3 classes.
#[derive(Debug, PartialEq)]
struct Run {
    logits: Vec<u32>,
    top1: usize,
    attention: Vec<u32>,
    top3: Vec<usize>,
}

fn rust_run(pack: &[u8], input: Input<'_>, with_attention: bool) -> Run {
    struct Rows(Vec<(usize, usize, Vec<u32>)>);
    impl AttentionSink for Rows {
        fn class_attention(&mut self, block: usize, head: usize, weights: &[f32]) {
            self.0
                .push((block, head, weights.iter().map(|v| v.to_bits()).collect()));
        }
    }
    // Pack tensors are aligned within the pack: 8-aligned storage keeps them aligned.
    let mut storage = vec![0u64; pack.len().div_ceil(8)];
    let pack_bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut storage)[..pack.len()];
    pack_bytes.copy_from_slice(pack);
    let parsed = cait_pack::Pack::parse(pack_bytes).unwrap();
    let workspace_bytes = cait_core::Model::from_pack(&parsed)
        .unwrap()
        .workspace_bytes();
    let mut ws = vec![0u64; workspace_bytes.div_ceil(8)];
    let mut session = Session::new(pack_bytes, bytemuck::cast_slice_mut(&mut ws)).unwrap();
    let mut logits = vec![0f32; session.model().logits_len()];
    let mut rows = Rows(Vec::new());
    let outputs = Outputs::logits(&mut logits);
    let outputs = if with_attention {
        outputs.attention(&mut rows)
    } else {
        outputs
    };
    session.run_with(input, outputs).unwrap();
    rows.0.sort_by_key(|r| (r.0, r.1));
    Run {
        logits: logits.iter().map(|v| v.to_bits()).collect(),
        top1: cait_core::top_k::<1>(&logits)[0].0,
        attention: rows.0.into_iter().flat_map(|r| r.2).collect(),
        top3: cait_core::top_k::<3>(&logits).iter().map(|t| t.0).collect(),
    }
}

/// `XXXXXXXX XXXXXXXX …` as the bits it prints.
fn hex_bits(line: &str) -> Vec<u32> {
    line.split(' ')
        .map(|h| u32::from_str_radix(h, 16).unwrap())
        .collect()
}

/// The `logits …` / `top1 N` pairs the C program printed.
fn printed(stdout: &str) -> Vec<(Vec<u32>, usize)> {
    let lines: Vec<&str> = stdout.lines().collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let bits = w[0].strip_prefix("logits ")?;
            let top1 = w[1].strip_prefix("top1 ")?.parse().unwrap();
            Some((hex_bits(bits), top1))
        })
        .collect()
}

#[test]
fn c_program_gets_every_status_and_the_cores_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("host_test");
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1"])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("tests/c/host_test.c"))
        .arg(static_lib())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&exe)
        .output()
        .expect("cc (Debian's gcc) is needed for the C API tests");
    assert!(
        out.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pack_path = root().join("models/fashion-cait/fashion-cait-int8.cait");
    let image_path = root().join("firmware/src/bin/ankle-boot.gray");
    let run = Command::new(&exe)
        .arg(&pack_path)
        .arg(&image_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "host_test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Every expectation in C printed its line (a test that stopped early would not).
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        35,
        "{stdout}"
    );

    let pack = std::fs::read(&pack_path).unwrap();
    let pixels = std::fs::read(&image_path).unwrap();
    let hwc = Input::Pixels {
        data: &pixels,
        layout: PixelLayout::Hwc,
    };
    let chw = Input::Pixels {
        data: &pixels,
        layout: PixelLayout::Chw,
    };
    let zeros = vec![0f32; pixels.len()];
    let want: Vec<(Vec<u32>, usize)> = [hwc, chw, Input::Normalized(&zeros)]
        .into_iter()
        .map(|input| {
            let run = rust_run(&pack, input, false);
            (run.logits, run.top1)
        })
        .collect();
    let got = printed(&stdout);
    assert_eq!(got.len(), 5, "{stdout}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "C and cait-core differ");
    }
    // The sample is an ankle boot (class 9), as the firmware example classifies it.
    assert_eq!(got[0].1, 9);
    // Collecting the attention changes no logit; the frame in the workspace is the HWC pixels.
    assert_eq!(got[3], want[0]);
    assert_eq!(got[4], want[0], "the frame in the workspace");

    // The attention map, laid out [block][head][token] as cait.h documents.
    let with = rust_run(&pack, hwc, true);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("attention "))
        .expect("an attention line");
    assert_eq!(
        hex_bits(line),
        with.attention,
        "C and cait-core attention differ"
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("top3 "))
        .expect("a top3 line");
    let c_top3: Vec<usize> = line.split(' ').map(|c| c.parse().unwrap()).collect();
    assert_eq!(c_top3, with.top3);
}
