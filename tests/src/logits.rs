//! Running a pack over a batch and comparing logits: what every int8 test and the family example
//! measure.

use cait_core::Model;
use cait_pack::Pack;

/// Logits of every image of `images` (a flat `[n, C, H, W]` batch) through the core engine.
///
/// Panics on a pack the engine refuses: callers pass packs the quantizer just wrote.
pub fn run_pack(pack_bytes: &[u8], images: &[f32]) -> Vec<Vec<f32>> {
    // Pack tensors are 64-aligned within the pack: copy it to an 8-aligned buffer.
    let mut storage = vec![0u64; pack_bytes.len().div_ceil(8)];
    let raw = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut storage)[..pack_bytes.len()];
    raw.copy_from_slice(pack_bytes);
    let pack = Pack::parse(raw).expect("the pack parses");
    let model = Model::from_pack(&pack).expect("the engine takes the pack");
    let mut ws = vec![0u64; model.workspace_bytes().div_ceil(8)];
    images
        .chunks_exact(model.input_len())
        .map(|image| {
            let mut logits = vec![0.0; model.logits_len()];
            model
                .forward(image, bytemuck::cast_slice_mut(&mut ws), &mut logits)
                .expect("forward");
            logits
        })
        .collect()
}

/// How far `got` is from `want`, image by image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agreement {
    /// The lowest per-image cosine of the logits.
    pub worst_cosine: f64,
    /// The mean per-image cosine.
    pub mean_cosine: f64,
    /// `10·log10(Σ want² / Σ (want − got)²)` over every logit, dB.
    pub sqnr_db: f64,
    /// Fraction of images with the same top-1 class.
    pub top1: f64,
}

/// Compares one logit vector per image.
pub fn compare(want: &[Vec<f32>], got: &[Vec<f32>]) -> Agreement {
    assert_eq!(want.len(), got.len(), "images");
    let (mut worst, mut sum, mut signal, mut noise, mut same) = (1.0f64, 0.0, 0.0, 0.0, 0usize);
    for (w, g) in want.iter().zip(got) {
        let (mut dot, mut nw, mut ng) = (0.0f64, 0.0f64, 0.0f64);
        for (&a, &b) in w.iter().zip(g) {
            let (a, b) = (a as f64, b as f64);
            dot += a * b;
            nw += a * a;
            ng += b * b;
            signal += a * a;
            noise += (a - b) * (a - b);
        }
        let c = dot / (nw * ng).sqrt();
        worst = worst.min(c);
        sum += c;
        same += (crate::argmax(w) == crate::argmax(g)) as usize;
    }
    let n = want.len().max(1) as f64;
    Agreement {
        worst_cosine: worst,
        mean_cosine: sum / n,
        sqnr_db: 10.0 * (signal / noise).log10(),
        top1: same as f64 / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_measures_cosine_sqnr_and_top1() {
        let want = vec![vec![1.0, 0.0], vec![0.0, 2.0]];
        let a = compare(&want, &want);
        assert_eq!((a.worst_cosine, a.top1), (1.0, 1.0));
        assert!(a.sqnr_db.is_infinite());
        // Second image flipped to the other class: cosine 0, noise 8 against signal 5.
        let got = vec![vec![1.0, 0.0], vec![2.0, 0.0]];
        let a = compare(&want, &got);
        assert_eq!((a.worst_cosine, a.mean_cosine, a.top1), (0.0, 0.5, 0.5));
        assert!((a.sqnr_db - 10.0 * (5.0f64 / 8.0).log10()).abs() < 1e-12);
    }
}
