//! Label files: a `.npy` of integer class labels (`npy::parse_labels`, what `cait eval --labels`
//! reads) and class names as a dataset names them, matched to a model's labels
//! (`map_classes`).
#![no_main]

use cait_data::{Dataset, FASHION_MNIST_CLASSES, map_classes, npy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(labels) = npy::parse_labels(data, "labels.npy") {
        std::hint::black_box(labels.iter().map(|&l| u32::try_from(l).is_ok()).count());
    }
    // One class name per line (folder names), the labels indexing them.
    let text = String::from_utf8_lossy(data);
    let names: Vec<String> = text.lines().take(1024).map(str::to_string).collect();
    let n = names.len();
    let mut d = Dataset {
        images: vec![0.0; n + 1],
        labels: Some((0..n as u32).chain([n as u32]).collect()),
        n: n + 1,
        sample_shape: [1, 1, 1],
        class_names: Some(names),
    };
    let _ = std::hint::black_box(map_classes(&mut d, &FASHION_MNIST_CLASSES));
});
