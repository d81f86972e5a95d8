//! The `K` largest logits in a fixed-capacity `heapless::Vec`, so a device's result needs no
//! allocator. (Kept here until cait-core offers its own top-k.)

use heapless::Vec;

/// Indices and values of the `min(K, logits.len())` largest logits, largest first; ties go to the
/// lower index, NaN ranks last (`f32::total_cmp` order, as the host's `cait classify`).
pub fn top_k<const K: usize>(logits: &[f32]) -> Vec<(usize, f32), K> {
    let mut best: Vec<(usize, f32), K> = Vec::new();
    for (i, &v) in logits.iter().enumerate() {
        // First position whose value ranks below v (equal values keep the earlier index first).
        let at = best
            .iter()
            .position(|&(_, b)| v.total_cmp(&b).is_gt())
            .unwrap_or(best.len());
        if at == K {
            continue;
        }
        if best.is_full() {
            best.pop();
        }
        // Cannot fail: one slot is free.
        let _ = best.insert(at, (i, v));
    }
    best
}
