//! Learning rate: linear warmup then cosine decay, a pure function of the step so that a resumed
//! run follows the same curve with no scheduler state beyond the step counter.

/// Warmup + cosine schedule over `total` optimizer steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupCosine {
    /// Peak learning rate, reached at the end of warmup.
    pub peak: f64,
    /// Final learning rate.
    pub min: f64,
    /// Steps of linear warmup (from `peak / warmup` up to `peak`).
    pub warmup: u64,
    /// All steps of the run.
    pub total: u64,
}

impl WarmupCosine {
    /// The learning rate for 0-based step `step`.
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let t = ((step - self.warmup) as f64 / span as f64).min(1.0);
        self.min + 0.5 * (self.peak - self.min) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_min() {
        let s = WarmupCosine {
            peak: 1e-3,
            min: 1e-5,
            warmup: 10,
            total: 110,
        };
        assert!((s.lr(0) - 1e-4).abs() < 1e-12);
        assert!((s.lr(9) - 1e-3).abs() < 1e-12);
        assert!((s.lr(10) - 1e-3).abs() < 1e-12);
        // Half way through the cosine: the mean of peak and min.
        assert!((s.lr(60) - (1e-3 + 1e-5) / 2.0).abs() < 1e-12);
        assert!((s.lr(110) - 1e-5).abs() < 1e-12);
        for step in 10..110 {
            assert!(s.lr(step + 1) <= s.lr(step));
        }
    }
}
