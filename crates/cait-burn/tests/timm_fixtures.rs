//! The burn reference against timm's golden fixtures, on burn-cpu (flex) and burn-wgpu.
//!
//! Tolerances: 1e-4 max abs on the CPU (DESIGN.md's float-reference bound; timm's own f32 vs f64
//! gap on these fixtures is < 1e-6); 1e-3 on wgpu, whose kernels (lavapipe's or a GPU's) may use
//! other summation orders and fused multiply-adds.

mod common;

use std::path::Path;

use cait_burn::{BackendKind, Reference, WeightSource};
use cait_import::ImportOptions;
use cait_tests::synth::{self, SynthSpec};
use common::{COMMITTED, fixture, max_abs, npy};

const CPU_TOL: f32 = 1e-4;
const WGPU_TOL: f32 = 1e-3;

/// Max abs error of (logits, features) against the fixture's timm outputs.
fn errors(backend: BackendKind, name: &str, checkpoint: &Path, input: &[f32]) -> (f32, f32) {
    let model = Reference::load(checkpoint, &ImportOptions::default(), backend)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let n = input.len() / model.config().input_len().unwrap();
    let out = model.forward(input, n).unwrap();
    let logits = max_abs(&out.logits, &npy(name, "logits.npy").1);
    let features = max_abs(&out.features, &npy(name, "features.npy").1);
    (logits, features)
}

fn committed(backend: BackendKind, tol: f32) {
    for name in COMMITTED {
        let input = npy(name, "input.npy").1;
        let (el, ef) = errors(
            backend,
            name,
            &fixture(name).join("model.safetensors"),
            &input,
        );
        eprintln!("{backend} {name}: logits {el:e}, features {ef:e}");
        assert!(
            el <= tol,
            "{backend} {name}: logits max abs error {el:e} > {tol:e}"
        );
        assert!(
            ef <= tol,
            "{backend} {name}: features max abs error {ef:e} > {tol:e}"
        );
    }
}

fn synthesized(backend: BackendKind, tol: f32) {
    for name in ["wide288", "xxs24_224"] {
        let spec = SynthSpec::load(&fixture(name)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.safetensors");
        synth::write_safetensors(&spec, &path).unwrap();
        let batch = npy(name, "logits.npy").0[0];
        let (_, input) = synth::input(&spec, batch);
        let (el, ef) = errors(backend, name, &path, &input);
        eprintln!("{backend} {name}: logits {el:e}, features {ef:e}");
        assert!(
            el <= tol,
            "{backend} {name}: logits max abs error {el:e} > {tol:e}"
        );
        assert!(
            ef <= tol,
            "{backend} {name}: features max abs error {ef:e} > {tol:e}"
        );
    }
}

#[test]
fn cpu_committed_fixtures_match_timm() {
    committed(BackendKind::Cpu, CPU_TOL);
}

#[test]
fn cpu_synthesized_fixtures_match_timm() {
    synthesized(BackendKind::Cpu, CPU_TOL);
}

/// The weights reach the module through burn's stores, not the fallback.
#[test]
fn weights_load_through_burns_stores() {
    let input = npy("tiny", "input.npy").1;
    let cases = [
        ("model.safetensors", WeightSource::SafetensorsStore),
        (
            "model.pth",
            WeightSource::PytorchStore {
                top_level_key: None,
            },
        ),
        // The original release: {"model": {"module.…": …}}.
        (
            "release.pth",
            WeightSource::PytorchStore {
                top_level_key: Some("model".into()),
            },
        ),
    ];
    for (file, want) in cases {
        let model = Reference::load(
            &fixture("tiny").join(file),
            &ImportOptions::default(),
            BackendKind::Cpu,
        )
        .unwrap();
        assert_eq!(model.weight_source(), &want, "{file}");
        let out = model.forward(&input, 2).unwrap();
        let el = max_abs(&out.logits, &npy("tiny", "logits.npy").1);
        assert!(el <= CPU_TOL, "{file}: logits max abs error {el:e}");
    }
}

/// Requires a wgpu adapter: a GPU, or lavapipe (`apt-get install -y mesa-vulkan-drivers`). Fails,
/// rather than skips, without one: CI installs lavapipe so that this always runs.
#[test]
fn wgpu_fixtures_match_timm() {
    match BackendKind::Wgpu.device() {
        Ok(device) => eprintln!("wgpu adapter: {:?}", device.identity()),
        Err(e) => panic!("{e}"),
    }
    committed(BackendKind::Wgpu, WGPU_TOL);
    synthesized(BackendKind::Wgpu, WGPU_TOL);
}

#[test]
fn bad_inputs_are_errors() {
    let path = fixture("tiny").join("model.safetensors");
    let model = Reference::load(&path, &ImportOptions::default(), BackendKind::Cpu).unwrap();
    let err = model.forward(&[0.0; 10], 1).unwrap_err().to_string();
    assert!(err.contains("should hold 3072 floats but has 10"), "{err}");

    let err = Reference::load(
        Path::new("/nonexistent/model.safetensors"),
        &ImportOptions::default(),
        BackendKind::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("/nonexistent/model.safetensors"), "{err}");
}
