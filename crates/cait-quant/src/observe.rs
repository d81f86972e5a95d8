//! Running the engine over calibration images, in parallel, with probes that collect what the
//! quantizer needs.

use std::collections::HashMap;

use cait_core::{Model, Outputs, Point, Probe, Site, Tap, Values};
use cait_pack::Pack;

use super::QuantError;

/// Pack bytes at an 8-byte aligned address (tensors are 64-aligned within the pack, so every f32
/// or i32 view works in place).
pub(crate) struct PackBuf {
    words: Vec<u64>,
    len: usize,
}

impl PackBuf {
    pub(crate) fn new(bytes: &[u8]) -> PackBuf {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        PackBuf {
            words,
            len: bytes.len(),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    pub(crate) fn model(&self) -> Result<Model<'_>, QuantError> {
        let pack = Pack::parse(self.bytes()).map_err(|e| QuantError::Internal(e.to_string()))?;
        Model::from_pack(&pack).map_err(QuantError::Engine)
    }
}

/// A model and a workspace for it: one per worker thread.
pub(crate) struct Runner<'a> {
    pub(crate) model: Model<'a>,
    workspace: Vec<u64>,
    pub(crate) logits: Vec<f32>,
}

impl<'a> Runner<'a> {
    pub(crate) fn new(model: Model<'a>) -> Runner<'a> {
        let workspace = vec![0u64; model.workspace_bytes().div_ceil(8)];
        let logits = vec![0.0; model.logits_len()];
        Runner {
            model,
            workspace,
            logits,
        }
    }

    /// Runs `image`, showing `probe` its activations; the logits are left in `self.logits`.
    pub(crate) fn run(
        &mut self,
        image: &[f32],
        probe: Option<&mut dyn Probe>,
    ) -> Result<(), QuantError> {
        let ws = bytemuck::cast_slice_mut(&mut self.workspace);
        let outputs = Outputs::logits(&mut self.logits);
        match probe {
            Some(p) => self.model.forward_with_probe(image, ws, outputs, p),
            None => self.model.forward_with(image, ws, outputs),
        }
        .map_err(QuantError::Engine)
    }
}

/// Whether an activation at this point is quantized per tensor with a zero point (linear-layer
/// inputs) or symmetrically (the attention's operands, which the engine multiplies without
/// zero-point corrections).
pub(crate) fn is_symmetric(point: Point) -> bool {
    matches!(point, Point::Q | Point::K | Point::V | Point::Attention)
}

/// Whether the engine quantizes the activation at this point (every point but the stage outputs).
pub(crate) fn is_quantized(tap: Tap) -> bool {
    tap.point != Point::Output
}

/// Whether this is a LayerNorm output, the place per-channel smoothing applies.
pub(crate) fn is_layer_norm(tap: Tap) -> bool {
    matches!(tap.point, Point::Norm1 | Point::Norm2)
        || (tap.site == Site::Head && tap.point == Point::Input)
}

/// Range of one activation over the calibration set (pass 1).
#[derive(Clone, Debug)]
pub(crate) struct TapStats {
    pub(crate) min: f32,
    pub(crate) max: f32,
    /// Per channel `(min, max)`, LayerNorm outputs only.
    pub(crate) channels: Vec<(f32, f32)>,
    /// Rows observed (values per channel, for LayerNorm outputs).
    pub(crate) rows: usize,
}

impl TapStats {
    fn new(channels: usize) -> TapStats {
        TapStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            channels: vec![(f32::INFINITY, f32::NEG_INFINITY); channels],
            rows: 0,
        }
    }

    pub(crate) fn merge(&mut self, other: &TapStats) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.rows += other.rows;
        for (a, b) in self.channels.iter_mut().zip(&other.channels) {
            a.0 = a.0.min(b.0);
            a.1 = a.1.max(b.1);
        }
    }
}

/// Pass 1: ranges (and per-channel ranges of LayerNorm outputs) of every quantized activation.
#[derive(Default)]
pub(crate) struct StatsProbe {
    pub(crate) taps: HashMap<Tap, TapStats>,
}

impl Probe for StatsProbe {
    fn observe(&mut self, tap: Tap, width: usize, values: Values<'_>) {
        if !is_quantized(tap) {
            return;
        }
        let per_channel = is_layer_norm(tap);
        let s = self
            .taps
            .entry(tap)
            .or_insert_with(|| TapStats::new(if per_channel { width } else { 0 }));
        s.rows += values.len().checked_div(width).unwrap_or(0);
        for i in 0..values.len() {
            let v = values.get(i);
            if !v.is_finite() {
                continue;
            }
            s.min = s.min.min(v);
            s.max = s.max.max(v);
            if per_channel {
                let c = &mut s.channels[i % width];
                c.0 = c.0.min(v);
                c.1 = c.1.max(v);
            }
        }
    }
}

impl StatsProbe {
    pub(crate) fn merge(&mut self, other: StatsProbe) {
        for (tap, s) in other.taps {
            match self.taps.get_mut(&tap) {
                Some(mine) => mine.merge(&s),
                None => {
                    self.taps.insert(tap, s);
                }
            }
        }
    }
}

/// Bins of a calibration histogram: 8 per quantization step of a full-range int8 grid.
pub(crate) const BINS: usize = 2048;

/// A histogram of values in `[lo, hi]` (values outside go to the end bins).
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    pub(crate) lo: f32,
    pub(crate) hi: f32,
    pub(crate) counts: Vec<u64>,
}

impl Histogram {
    pub(crate) fn new(lo: f32, hi: f32) -> Histogram {
        let hi = if hi > lo { hi } else { lo + 1e-6 };
        Histogram {
            lo,
            hi,
            counts: vec![0; BINS],
        }
    }

    #[inline]
    pub(crate) fn add(&mut self, v: f32) {
        if !v.is_finite() {
            return;
        }
        let t = (v - self.lo) / (self.hi - self.lo) * BINS as f32;
        let b = (t as isize).clamp(0, BINS as isize - 1) as usize;
        self.counts[b] += 1;
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Centre of bin `b`.
    pub(crate) fn center(&self, b: usize) -> f64 {
        self.lo as f64 + (b as f64 + 0.5) * (self.hi - self.lo) as f64 / BINS as f64
    }
}

/// What pass 2 histograms for one activation: `|x|` (symmetric) or `x`, after each of the
/// per-channel transforms `(x - shift[c]) / scale[c]` (one per smoothing candidate; LayerNorm
/// outputs) or as is.
pub(crate) struct HistPlan {
    pub(crate) symmetric: bool,
    /// One histogram per transform; `None` = identity.
    pub(crate) transforms: Vec<Option<(Vec<f32>, Vec<f32>)>>,
    /// Range of each histogram.
    pub(crate) ranges: Vec<(f32, f32)>,
}

/// Pass 2: histograms per the plans.
pub(crate) struct HistProbe<'p> {
    pub(crate) plans: &'p HashMap<Tap, HistPlan>,
    pub(crate) hists: HashMap<Tap, Vec<Histogram>>,
}

impl<'p> HistProbe<'p> {
    pub(crate) fn new(plans: &'p HashMap<Tap, HistPlan>) -> HistProbe<'p> {
        let hists = plans
            .iter()
            .map(|(tap, plan)| {
                let h = plan
                    .ranges
                    .iter()
                    .map(|&(lo, hi)| Histogram::new(lo, hi))
                    .collect();
                (*tap, h)
            })
            .collect();
        HistProbe { plans, hists }
    }

    pub(crate) fn merge(&mut self, other: HistProbe<'_>) {
        for (tap, hs) in other.hists {
            if let Some(mine) = self.hists.get_mut(&tap) {
                for (a, b) in mine.iter_mut().zip(&hs) {
                    a.merge(b);
                }
            }
        }
    }
}

impl Probe for HistProbe<'_> {
    fn observe(&mut self, tap: Tap, width: usize, values: Values<'_>) {
        let (Some(plan), Some(hists)) = (self.plans.get(&tap), self.hists.get_mut(&tap)) else {
            return;
        };
        for (transform, h) in plan.transforms.iter().zip(hists.iter_mut()) {
            for i in 0..values.len() {
                let mut v = values.get(i);
                if let Some((scale, shift)) = transform {
                    let c = i % width;
                    v = (v - shift[c]) / scale[c];
                }
                h.add(if plan.symmetric { v.abs() } else { v });
            }
        }
    }
}

/// Records every activation of one float run, concatenated per point.
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) taps: HashMap<Tap, Vec<f32>>,
}

impl Recorder {
    pub(crate) fn clear(&mut self) {
        for v in self.taps.values_mut() {
            v.clear();
        }
    }
}

impl Probe for Recorder {
    fn observe(&mut self, tap: Tap, _width: usize, values: Values<'_>) {
        let v = self.taps.entry(tap).or_default();
        v.extend((0..values.len()).map(|i| values.get(i)));
    }
}

/// Signal and noise energy of one activation, summed over images.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Energy {
    pub(crate) signal: f64,
    pub(crate) noise: f64,
}

impl Energy {
    pub(crate) fn add(&mut self, reference: f32, got: f32) {
        let (r, g) = (reference as f64, got as f64);
        self.signal += r * r;
        self.noise += (r - g) * (r - g);
    }

    pub(crate) fn merge(&mut self, other: &Energy) {
        self.signal += other.signal;
        self.noise += other.noise;
    }

    /// `10·log10(signal / noise)` dB (infinite when exact).
    pub(crate) fn sqnr_db(&self) -> f64 {
        if self.noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (self.signal / self.noise).log10()
        }
    }
}

/// Compares a quantized run's activations with a float run's (a [`Recorder`]), point by point;
/// LayerNorm outputs of a smoothed pack are mapped back (`x · scale[c] + shift[c]`) first.
pub(crate) struct Comparer<'r> {
    pub(crate) reference: &'r HashMap<Tap, Vec<f32>>,
    pub(crate) unsmooth: &'r HashMap<Tap, (Vec<f32>, Vec<f32>)>,
    pub(crate) cursor: HashMap<Tap, usize>,
    pub(crate) energy: HashMap<Tap, Energy>,
}

impl Probe for Comparer<'_> {
    fn observe(&mut self, tap: Tap, width: usize, values: Values<'_>) {
        let Some(reference) = self.reference.get(&tap) else {
            return;
        };
        let at = self.cursor.entry(tap).or_insert(0);
        let e = self.energy.entry(tap).or_default();
        let smooth = self.unsmooth.get(&tap);
        for i in 0..values.len() {
            let Some(&r) = reference.get(*at + i) else {
                break;
            };
            let mut v = values.get(i);
            if let Some((scale, shift)) = smooth {
                let c = i % width;
                v = v * scale[c] + shift[c];
            }
            e.add(r, v);
        }
        *at += values.len();
    }
}

/// Index of the largest value (the first of equals), as `cait classify` ranks.
pub(crate) fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
