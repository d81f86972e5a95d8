//! The C API from a C program on this host (`tests/c/host_test.c`, built with the system `cc`
//! against this crate's static library): every bad-argument status checked in C, then the
//! bundled int8 pack's logits from C, bit-identical to cait-core's own on the same pixels.

use std::path::{Path, PathBuf};
use std::process::Command;

use cait_core::{AttentionSink, Input, Outputs, PixelLayout, Session};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// This build's `libcait_capi.a` (cargo builds every crate type of the library for the tests).
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let lib = dir.join("libcait_capi.a");
    assert!(lib.exists(), "{} not built", lib.display());
    lib
}

/// cait-core's logits for `input` on `pack`.
fn rust_logits(pack: &[u8], input: Input<'_>) -> (Vec<u32>, usize) {
    let parsed = cait_pack::Pack::parse(pack).unwrap();
    let model = cait_core::Model::from_pack(&parsed).unwrap();
    let mut ws = vec![0u32; model.workspace_bytes().div_ceil(4)];
    let mut session = Session::new(pack, bytemuck_bytes(&mut ws)).unwrap();
    let mut logits = vec![0f32; session.model().logits_len()];
    let (top1, _) = session.classify(input, &mut logits).unwrap();
    (logits.iter().map(|v| v.to_bits()).collect(), top1)
}

/// Every class-attention row cait-core reports, in report order, as bits; and the top 3 classes.
fn rust_attention(pack: &[u8], input: Input<'_>) -> (Vec<u32>, Vec<usize>) {
    struct Rows(Vec<(usize, usize, Vec<u32>)>);
    impl AttentionSink for Rows {
        fn class_attention(&mut self, block: usize, head: usize, weights: &[f32]) {
            self.0
                .push((block, head, weights.iter().map(|v| v.to_bits()).collect()));
        }
    }
    let parsed = cait_pack::Pack::parse(pack).unwrap();
    let model = cait_core::Model::from_pack(&parsed).unwrap();
    let mut ws = vec![0u32; model.workspace_bytes().div_ceil(4)];
    let mut session = Session::new(pack, bytemuck_bytes(&mut ws)).unwrap();
    let mut logits = vec![0f32; session.model().logits_len()];
    let mut rows = Rows(Vec::new());
    session
        .run_with(input, Outputs::logits(&mut logits).attention(&mut rows))
        .unwrap();
    rows.0.sort_by_key(|r| (r.0, r.1));
    let map = rows.0.into_iter().flat_map(|r| r.2).collect();
    let top3 = cait_core::top_k::<3>(&logits).iter().map(|t| t.0).collect();
    (map, top3)
}

/// A file's bytes at a 64-byte aligned address (as a pack must be).
struct Aligned {
    blocks: Vec<Block>,
    len: usize,
}

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Block([u8; 64]);

impl Aligned {
    fn read(path: &Path) -> Aligned {
        let data = std::fs::read(path).unwrap();
        let mut blocks = vec![Block([0; 64]); data.len().div_ceil(64)];
        for (b, chunk) in blocks.iter_mut().zip(data.chunks(64)) {
            b.0[..chunk.len()].copy_from_slice(chunk);
        }
        Aligned {
            blocks,
            len: data.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the blocks are plain bytes, at least `len` of them.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len) }
    }
}

fn bytemuck_bytes(words: &mut [u32]) -> &mut [u8] {
    let len = words.len() * 4;
    // SAFETY: u32 storage viewed as bytes (any bit pattern is valid, alignment only decreases).
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) }
}

/// The `logits …` / `top1 N` pairs the C program printed.
fn printed(stdout: &str) -> Vec<(Vec<u32>, usize)> {
    let lines: Vec<&str> = stdout.lines().collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let bits = w[0].strip_prefix("logits ")?;
            let top1 = w[1].strip_prefix("top1 ")?.parse().unwrap();
            let bits = bits
                .split(' ')
                .map(|h| u32::from_str_radix(h, 16).unwrap())
                .collect();
            Some((bits, top1))
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
        30,
        "{stdout}"
    );

    let pack = Aligned::read(&pack_path);
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
    let want = [
        rust_logits(pack.bytes(), hwc),
        rust_logits(pack.bytes(), chw),
        rust_logits(pack.bytes(), Input::Normalized(&zeros)),
    ];
    let got = printed(&stdout);
    assert_eq!(got.len(), 4, "{stdout}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "C and cait-core differ");
    }
    // The sample is an ankle boot (class 9), as the firmware example classifies it.
    assert_eq!(got[0].1, 9);
    // Collecting the attention changes no logit.
    assert_eq!(got[3], want[0]);

    // The attention map, laid out [block][head][token] as cait.h documents.
    let (map, top3) = rust_attention(pack.bytes(), hwc);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("attention "))
        .expect("an attention line");
    let c_map: Vec<u32> = line
        .split(' ')
        .map(|h| u32::from_str_radix(h, 16).unwrap())
        .collect();
    assert_eq!(c_map, map, "C and cait-core attention differ");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("top3 "))
        .expect("a top3 line");
    let c_top3: Vec<usize> = line.split(' ').map(|c| c.parse().unwrap()).collect();
    assert_eq!(c_top3, top3);
}
