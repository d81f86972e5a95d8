//! The `K` most likely classes in a fixed-capacity [`heapless::Vec`], so a device's result needs
//! no allocator.

use heapless::Vec;

/// Indices and values of the `min(K, logits.len())` largest logits, largest first.
///
/// The order is `f32::total_cmp`'s, the host `cait classify` order: equal values keep the lower
/// index first, `-0.0` ranks below `0.0`, and a NaN with the sign bit clear ranks above every
/// number (one with it set, below). One pass, `O(len · K)`, no allocation.
///
/// ```
/// let top: heapless::Vec<(usize, f32), 3> = cait_core::top_k(&[0.1, 2.0, -1.0, 2.0, 0.5]);
/// assert_eq!(top.as_slice(), &[(1, 2.0), (3, 2.0), (4, 0.5)]);
/// ```
pub fn top_k<const K: usize>(logits: &[f32]) -> Vec<(usize, f32), K> {
    let mut best: Vec<(usize, f32), K> = Vec::new();
    for (i, &v) in logits.iter().enumerate() {
        // The first kept entry that ranks strictly below `v`: ties keep the earlier index first.
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
        // Cannot fail: a slot is free (K > at >= 0 and one entry was dropped if full).
        let _ = best.insert(at, (i, v));
    }
    best
}

#[cfg(test)]
mod tests {
    use super::top_k;
    use proptest::prelude::*;

    /// The specification: a stable sort by total order, descending, then the first K.
    fn reference(logits: &[f32], k: usize) -> std::vec::Vec<(usize, u32)> {
        let mut all: std::vec::Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.into_iter()
            .take(k)
            .map(|(i, v)| (i, v.to_bits()))
            .collect()
    }

    fn bits<const K: usize>(v: &heapless::Vec<(usize, f32), K>) -> std::vec::Vec<(usize, u32)> {
        v.iter().map(|&(i, x)| (i, x.to_bits())).collect()
    }

    proptest! {
        #[test]
        fn equals_a_sort(logits in proptest::collection::vec(
            prop_oneof![-4.0f32..4.0, Just(0.0), Just(-0.0), Just(1.0), Just(f32::NAN), Just(f32::NEG_INFINITY)],
            0..40,
        )) {
            prop_assert_eq!(bits(&top_k::<1>(&logits)), reference(&logits, 1));
            prop_assert_eq!(bits(&top_k::<5>(&logits)), reference(&logits, 5));
            prop_assert_eq!(bits(&top_k::<64>(&logits)), reference(&logits, 64));
        }
    }

    #[test]
    fn zero_capacity_and_empty_input() {
        assert!(top_k::<0>(&[1.0, 2.0]).is_empty());
        assert!(top_k::<3>(&[]).is_empty());
    }
}
