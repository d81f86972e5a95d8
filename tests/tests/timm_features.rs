//! Library path (cait-import → cait-pack f32 pack → cait-core) against timm's pre-logits
//! features and logits for every golden fixture, plus agreement between the crates' views of a CaiT.
//!
//! Tolerance 1e-4 max abs (DESIGN.md's bound for f32 packs against timm); timm's own f32 vs f64
//! disagreement on these fixtures is below 1e-6.

use std::path::{Path, PathBuf};

use cait_core::{Model, Outputs, workspace_bytes};
use cait_import::{ImportOptions, load_checkpoint, write_pack_f32};
use cait_pack::{GlobalPool, Pack};
use cait_tests::synth::{self, SynthSpec};

const TOL: f32 = 1e-4;

struct Run {
    logits: Vec<f32>,
    features: Vec<f32>,
}

fn run_pack(pack_bytes: &[u8], input: &[f32]) -> Vec<Run> {
    // u64 storage: 8-byte alignment, enough for in-place f32 views of the 64-byte aligned tensors.
    let mut storage: Vec<u64> = vec![0; pack_bytes.len().div_ceil(8)];
    let raw = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut storage)[..pack_bytes.len()];
    raw.copy_from_slice(pack_bytes);
    let pack = Pack::parse(raw).expect("pack parses");
    let model = Model::from_pack(&pack).expect("model builds");
    let cfg = *pack.config();
    let mut ws = vec![0u64; workspace_bytes(&cfg, pack.precision()).div_ceil(8)];
    let per = cfg.input_len().unwrap();
    input
        .chunks_exact(per)
        .map(|img| {
            let mut logits = vec![0.0; cfg.logits_len()];
            let mut features = vec![0.0; cfg.embed_dim as usize];
            model
                .forward_with(
                    img,
                    bytemuck::cast_slice_mut(&mut ws),
                    Outputs::logits(&mut logits).features(&mut features),
                )
                .expect("forward");
            Run { logits, features }
        })
        .collect()
}

fn fixture(name: &str) -> PathBuf {
    synth::fixtures_dir().join(name)
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check(name: &str, checkpoint: &Path, input: &[f32]) {
    let ckpt = load_checkpoint(checkpoint, &ImportOptions::default()).unwrap();
    let bytes = write_pack_f32(&ckpt).unwrap();
    let runs = run_pack(&bytes, input);
    let want_logits = synth::read_npy_f32(&fixture(name).join("logits.npy"))
        .unwrap()
        .1;
    let want_features = synth::read_npy_f32(&fixture(name).join("features.npy"))
        .unwrap()
        .1;
    let logits: Vec<f32> = runs.iter().flat_map(|r| r.logits.clone()).collect();
    let features: Vec<f32> = runs.iter().flat_map(|r| r.features.clone()).collect();
    let (el, ef) = (
        max_abs(&logits, &want_logits),
        max_abs(&features, &want_features),
    );
    assert!(el <= TOL, "{name}: logits max abs error {el:e}");
    assert!(ef <= TOL, "{name}: features max abs error {ef:e}");
}

#[test]
fn committed_fixtures_features_match_timm() {
    for name in ["tiny", "tiny_avg", "gray", "noqkvbias"] {
        let input = synth::read_npy_f32(&fixture(name).join("input.npy"))
            .unwrap()
            .1;
        check(name, &fixture(name).join("model.safetensors"), &input);
    }
}

#[test]
fn synthesized_fixtures_features_match_timm() {
    for name in ["wide288", "xxs24_224"] {
        let spec = SynthSpec::load(&fixture(name)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.safetensors");
        synth::write_safetensors(&spec, &path).unwrap();
        let batch = synth::read_npy_f32(&fixture(name).join("logits.npy"))
            .unwrap()
            .0[0];
        let (_, input) = synth::input(&spec, batch);
        check(name, &path, &input);
    }
}

/// The pack crate's canonical tensor list is timm's state dict, name for name and shape for shape.
#[test]
fn canonical_tensor_list_is_timms() {
    for name in synth::fixture_names() {
        let spec = SynthSpec::load(&fixture(&name)).unwrap();
        let ours: Vec<(String, Vec<usize>)> = config_of(&spec)
            .tensors()
            .map(|t| {
                (
                    t.id.to_string(),
                    t.shape.dims().iter().map(|&d| d as usize).collect(),
                )
            })
            .collect();
        let timm: Vec<(String, Vec<usize>)> = synth::tensor_list(&spec)
            .into_iter()
            .map(|(n, s, _)| (n, s))
            .collect();
        assert_eq!(ours, timm, "{name}");
    }
}

fn config_of(s: &SynthSpec) -> cait_pack::ModelConfig {
    cait_pack::ModelConfig {
        img_size: [s.img_size as u32; 2],
        patch_size: s.patch_size as u32,
        in_chans: s.in_chans as u32,
        num_classes: s.num_classes as u32,
        embed_dim: s.embed_dim as u32,
        depth: s.depth as u32,
        num_heads: s.num_heads as u32,
        mlp_hidden_dim: s.mlp_hidden as u32,
        depth_token_only: s.depth_token_only as u32,
        mlp_hidden_dim_token_only: s.mlp_hidden_token_only as u32,
        qkv_bias: s.qkv_bias,
        global_pool: match s.global_pool {
            synth::Pool::Token => GlobalPool::Token,
            synth::Pool::Avg => GlobalPool::Avg,
        },
    }
}
