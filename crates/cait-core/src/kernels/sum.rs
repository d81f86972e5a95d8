//! Blocked summation: the one reduction order every float kernel uses.
//!
//! A length-`K` reduction keeps [`LANES`] independent partial sums: element `i` goes to partial sum
//! `i % LANES`, visited in increasing `i`; the tail (`K % LANES` elements) is zero-padded to a whole
//! chunk, so every partial sum gets exactly `ceil(K / LANES)` additions. The partials are then
//! combined by [`reduce`] in a fixed tree. This is the order an
//! 8-wide vector unit (or two 4-wide ones) computes naturally, so LLVM vectorises it without needing
//! to reassociate anything, and a scalar FPU (Cortex-M4F) computes exactly the same sums.

/// Independent partial sums per reduction.
pub(crate) const LANES: usize = 8;

/// Combines the partial sums in a fixed order: `((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7))`.
#[inline(always)]
pub(crate) fn reduce(acc: [f32; LANES]) -> f32 {
    let s0 = acc[0] + acc[4];
    let s1 = acc[1] + acc[5];
    let s2 = acc[2] + acc[6];
    let s3 = acc[3] + acc[7];
    (s0 + s2) + (s1 + s3)
}

/// The last `a.len() < LANES` elements as a whole chunk, zero-padded.
#[inline(always)]
pub(crate) fn tail(a: &[f32]) -> [f32; LANES] {
    let mut t = [0.0f32; LANES];
    for (t, &a) in t.iter_mut().zip(a) {
        *t = a;
    }
    t
}

/// `sum_i a[i] * b[i]` in the blocked order. `a` and `b` have the same length.
///
/// The specification the linear kernel's register tiles are tested against (bit for bit).
#[cfg(test)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let (ac, at) = a.as_chunks::<LANES>();
    let (bc, bt) = b.as_chunks::<LANES>();
    for (x, y) in ac.iter().zip(bc) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    if !at.is_empty() {
        let (x, y) = (tail(at), tail(bt));
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    reduce(acc)
}

/// `sum_i a[i]` in the blocked order.
#[inline(always)]
pub(crate) fn sum(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ac, at) = a.as_chunks::<LANES>();
    for x in ac {
        for l in 0..LANES {
            acc[l] += x[l];
        }
    }
    if !at.is_empty() {
        let x = tail(at);
        for l in 0..LANES {
            acc[l] += x[l];
        }
    }
    reduce(acc)
}

/// `sum_i (a[i] - c)^2` in the blocked order (the second pass of a two-pass variance).
#[inline(always)]
pub(crate) fn sum_sq_dev(a: &[f32], c: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ac, at) = a.as_chunks::<LANES>();
    for x in ac {
        for l in 0..LANES {
            let d = x[l] - c;
            acc[l] += d * d;
        }
    }
    // Padded lanes would add (0 - c)², so the tail adds only its real elements.
    for (l, x) in acc.iter_mut().zip(at) {
        let d = x - c;
        *l += d * d;
    }
    reduce(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked order written out the slow way: the specification `dot` must equal bit for bit.
    fn dot_spec(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; LANES];
        for i in 0..a.len().next_multiple_of(LANES) {
            let (x, y) = (
                a.get(i).copied().unwrap_or(0.0),
                b.get(i).copied().unwrap_or(0.0),
            );
            acc[i % LANES] += x * y;
        }
        reduce(acc)
    }

    proptest::proptest! {
        #[test]
        fn dot_follows_the_blocked_order(v in proptest::collection::vec((-1e3f32..1e3, -1e3f32..1e3), 0..100)) {
            let (a, b): (Vec<f32>, Vec<f32>) = v.into_iter().unzip();
            proptest::prop_assert_eq!(dot(&a, &b).to_bits(), dot_spec(&a, &b).to_bits());
            let ones = vec![1.0f32; a.len()];
            proptest::prop_assert_eq!(sum(&a).to_bits(), dot_spec(&a, &ones).to_bits());
            // Accurate to f32 rounding against an f64 sum (bound: n * eps * sum|a_i b_i|).
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let mag: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
            proptest::prop_assert!((dot(&a, &b) as f64 - exact).abs() <= 1e-6 * a.len() as f64 * mag + 1e-30);
        }
    }
}
