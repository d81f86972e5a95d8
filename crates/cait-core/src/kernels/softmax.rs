//! Softmax over one row.

/// In place: `x[i] = exp(x[i] - max) / sum_j exp(x[j] - max)`.
///
/// The sum is sequential (rows are a few hundred keys; `expf` dominates). `x` must not be empty.
#[inline]
pub(crate) fn softmax(x: &mut [f32]) {
    let max = x
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let mut total = 0.0f32;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        total += *v;
    }
    for v in x.iter_mut() {
        *v /= total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn matches_an_f64_reference(x in proptest::collection::vec(-80f32..80.0, 1..300)) {
            let mut y = x.clone();
            softmax(&mut y);
            let max = x.iter().cloned().fold(f64::NEG_INFINITY, |m, v| m.max(v as f64));
            let total: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
            for (i, &v) in x.iter().enumerate() {
                let want = (v as f64 - max).exp() / total;
                // `x - max` is rounded to f32 (half an ulp of |x - max|, an absolute error that exp
                // turns into a relative one); expf, the sum and the division add a few ulp more.
                let bound = want * (1e-6 + 6e-8 * (v as f64 - max).abs()) + 1e-30;
                proptest::prop_assert!((y[i] as f64 - want).abs() <= bound);
            }
        }
    }
}
