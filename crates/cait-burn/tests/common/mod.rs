//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use cait_tests::synth;

pub fn fixture(name: &str) -> PathBuf {
    synth::fixtures_dir().join(name)
}

pub fn npy(name: &str, file: &str) -> (Vec<usize>, Vec<f32>) {
    synth::read_npy_f32(&fixture(name).join(file)).unwrap()
}

pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The committed fixtures, whose inputs are in the repository.
pub const COMMITTED: [&str; 4] = ["tiny", "tiny_avg", "gray", "noqkvbias"];
