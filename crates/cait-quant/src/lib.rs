#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
//!
//! ## How int8 is chosen
//!
//! int8 ([`quantize_int8`]) never judges on what it fitted: the images are split into a fit, a
//! select and a report part (see [`split`]; or `--holdout` gives select and report), and
//! 1. the float (f32) engine runs over the **fit** images with a probe, recording every quantized
//!    activation's range and the per-channel ranges of LayerNorm outputs;
//! 2. for each per-channel smoothing candidate, the smoothing factors are derived — from those
//!    ranges where every channel was seen often enough ([`MIN_CHANNEL_SAMPLES`]), else from the
//!    LayerNorm's own affine parameters, which generalise to any image — and every activation is
//!    histogrammed (a second float pass over the fit images);
//! 3. for each smoothing candidate (MSE ranges), then for each calibration method (the chosen
//!    smoothing), the int8 pack is built and the **int8 engine** runs on the **select** images:
//!    the best end-to-end logit SQNR against the float logits is kept (the measured choice is
//!    recorded in the pack);
//! 4. likewise for q·kᵀ and attention·v in int8 or f32, with the calibrated activation scales and
//!    with every row quantized at run time ([`ActivationScales`]), and then for the scales: the
//!    better measured is kept;
//! 5. with a [`Budget`], blocks are kept in f16 until the select images meet it (see [`mixed`]);
//! 6. the chosen pack runs on the **report** images: its logit SQNR and top-1 agreement there go
//!    into the summary and the pack's metadata; optionally the per-layer report measures both
//!    engines on them, activation by activation.
//!
//! Everything measured runs through the same engine the device runs, so the numbers are the
//! pack's, not a simulation's.

mod calib;
mod int8;
pub mod mixed;
mod observe;
mod report;
pub mod split;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

use cait_core::{Point, Site, Tap};
use cait_pack::{BlockParam, TensorId};

pub use mixed::{Budget, MixedReport};
pub use report::{Candidate, Choice, LayerRow, Report};

use cait_data::Dataset;
use cait_data::progress::{Progress, parallel};
use cait_import::{Checkpoint, ImportError};
use calib::ActParams;
use int8::{Plan, Smooth};
use observe::{
    Comparer, Energy, HistPlan, HistProbe, PackBuf, Recorder, Runner, StatsProbe, TapStats, argmax,
    is_layer_norm, is_symmetric,
};

/// How a static activation range is chosen from the calibration activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CalibMethod {
    /// The observed minimum and maximum.
    MinMax,
    /// The 0.01% and 99.99% percentiles (`|x|` at 99.99% for symmetric activations).
    Percentile,
    /// The range that minimises the expected squared quantization error (clipping + rounding).
    Mse,
}

impl CalibMethod {
    /// Every method, in the order they are tried.
    pub const ALL: [CalibMethod; 3] = [
        CalibMethod::MinMax,
        CalibMethod::Percentile,
        CalibMethod::Mse,
    ];

    /// `minmax`, `percentile` or `mse`.
    pub fn as_str(self) -> &'static str {
        match self {
            CalibMethod::MinMax => "minmax",
            CalibMethod::Percentile => "percentile",
            CalibMethod::Mse => "mse",
        }
    }
}

/// Per-channel smoothing of the LayerNorm outputs (RepQ-ViT's reparameterisation, with
/// SmoothQuant's migration strength): each channel `c` of a LayerNorm output is shifted to the
/// centre of its calibration range `m_c` and divided by `r_c = h_c^α / w_c^(1-α)` (`h_c` its
/// half-range, `w_c` the largest weight magnitude of input column `c` of the consuming layers).
/// `(x - m) / r` is folded into the LayerNorm's affine parameters and `r`, `m` into the consumers'
/// weights and biases, so the float function is unchanged; α = 1 makes every channel's range
/// equal (RepQ-ViT), α = 0.5 splits the outliers between activations and weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Smoothing {
    /// None: the LayerNorm outputs are quantized as they are.
    Off,
    /// Migration strength α in (0, 1].
    Alpha(f32),
}

impl Smoothing {
    /// The candidates measured by default.
    pub const CANDIDATES: [Smoothing; 3] =
        [Smoothing::Off, Smoothing::Alpha(0.5), Smoothing::Alpha(1.0)];

    /// `off` or `alpha=<α>`.
    pub fn as_string(self) -> String {
        match self {
            Smoothing::Off => "off".into(),
            Smoothing::Alpha(a) => format!("alpha={a}"),
        }
    }
}

/// How one of the attention's matmuls runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttnMode {
    /// int8 operands, i32 sums.
    Int8,
    /// f32 operand against the dequantized int8 keys or values.
    F32,
}

impl AttnMode {
    fn as_str(self) -> &'static str {
        match self {
            AttnMode::Int8 => "int8",
            AttnMode::F32 => "f32",
        }
    }
}

/// How the class-token path's input rows are quantized (`quant.class_path`, see
/// [`cait_pack::int8::is_class_path_linear`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ClassPath {
    /// Each row at run time, over its own range (one row per image: the cost is a pass over it).
    /// Measured across the fixture family on held-out images, +0.1 to +0.7 dB logit SQNR over
    /// `Static`, better on every member: the default.
    #[default]
    Dynamic,
    /// The calibrated `act_quant` rows, as every other activation.
    Static,
}

impl ClassPath {
    /// The metadata value: `dynamic` or `static`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClassPath::Dynamic => "dynamic",
            ClassPath::Static => "static",
        }
    }
}

/// How the input rows of the linear layers (all but the patch embedding) are quantized
/// (`quant.activation_scales`, see [`cait_pack::int8::is_block_linear`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActivationScales {
    /// The calibrated per-tensor scale and zero point of each activation.
    Static,
    /// Each row at run time, over its own range, as ONNX Runtime's dynamic quantization does per
    /// tensor: a pass over the row before each layer, f32 copies of the MLP's rows, and each
    /// query, key and value row with its own symmetric scale (the int8 attention weights per
    /// head). Implies a dynamic [`ClassPath`].
    Dynamic,
}

impl ActivationScales {
    /// The metadata value: `static` or `dynamic`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationScales::Static => "static",
            ActivationScales::Dynamic => "dynamic",
        }
    }
}

/// Metadata keys of the held-out figures as plain numbers (`cait inspect --json` reads them back):
/// logit SQNR in dB, top-1 agreement as a fraction, and the number of report images they rest on.
pub const META_HELD_OUT_SQNR_DB: &str = "quant.held_out.logit_sqnr_db";
/// See [`META_HELD_OUT_SQNR_DB`].
pub const META_HELD_OUT_AGREEMENT: &str = "quant.held_out.top1_agreement";
/// See [`META_HELD_OUT_SQNR_DB`].
pub const META_HELD_OUT_IMAGES: &str = "quant.held_out.images";

/// How much better (logit SQNR, dB) f32 attention must measure before it is kept instead of
/// int8: below this the difference is within what another calibration subset changes.
pub const ATTENTION_F32_MARGIN_DB: f64 = 1.0;

/// Options of [`quantize_int8`]: `None` means "measure the candidates and keep the best".
#[derive(Clone, Debug)]
pub struct Int8Options {
    /// Calibration method.
    pub method: Option<CalibMethod>,
    /// Smoothing of the LayerNorm outputs.
    pub smoothing: Option<Smoothing>,
    /// q·kᵀ.
    pub qk: Option<AttnMode>,
    /// Attention·v.
    pub av: Option<AttnMode>,
    /// At most this many selection images compare the candidates (0 = the whole select part).
    pub select_images: usize,
    /// Images from the same distribution as the calibration set, to select and report on instead
    /// of a part of the calibration images (see [`split`]).
    pub holdout: Option<Dataset>,
    /// Worker threads.
    pub threads: usize,
    /// Also measure the per-layer report (another float and int8 pass over every image).
    pub report: bool,
    /// Where the calibration data came from, recorded in the pack.
    pub calib_source: String,
    /// Keep blocks in f16 until this holds on the selection images (see [`mixed`]).
    pub budget: Option<Budget>,
    /// The class-token path's quantization (with dynamic activation scales, dynamic whatever
    /// this says).
    pub class_path: ClassPath,
    /// Static or dynamic activation scales.
    pub activation_scales: Option<ActivationScales>,
}

impl Default for Int8Options {
    fn default() -> Self {
        Int8Options {
            method: None,
            smoothing: None,
            qk: None,
            av: None,
            select_images: 64,
            holdout: None,
            threads: cait_data::progress::threads(),
            report: false,
            calib_source: String::new(),
            budget: None,
            class_path: ClassPath::default(),
            activation_scales: None,
        }
    }
}

/// A quantized pack and what it cost.
#[derive(Clone, Debug)]
pub struct Quantized {
    /// The pack.
    pub bytes: Vec<u8>,
    /// The measured choices and, when asked for, the per-layer report.
    pub report: Report,
}

/// Why quantization failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum QuantError {
    /// The checkpoint's tensors are missing, mis-shaped or not finite.
    Import(ImportError),
    /// The calibration set holds no images.
    EmptyCalibration,
    /// The calibration images do not have the model's input shape.
    CalibrationShape {
        /// `[C, H, W]` of the images.
        found: [usize; 3],
        /// `[C, H, W]` the model takes.
        expected: [usize; 3],
    },
    /// The calibration images hold NaN or infinite values.
    CalibrationNotFinite {
        /// Image index.
        image: usize,
    },
    /// Too few images to fit, select and report on disjoint images.
    TooFewImages {
        /// Calibration images given.
        calibration: usize,
        /// Hold-out images given, if any.
        holdout: Option<usize>,
        /// Images in the fit, select and report parts.
        parts: [usize; 3],
    },
    /// The hold-out set holds no images.
    EmptyHoldout,
    /// The hold-out images do not have the model's input shape.
    HoldoutShape {
        /// `[C, H, W]` of the images.
        found: [usize; 3],
        /// `[C, H, W]` the model takes.
        expected: [usize; 3],
    },
    /// The hold-out images hold NaN or infinite values.
    HoldoutNotFinite {
        /// Image index.
        image: usize,
    },
    /// A budget that is not a finite, non-negative number.
    BadBudget(Budget),
    /// `--max-drop` on images without labels.
    BudgetNeedsLabels,
    /// The engine refused the pack or an input.
    Engine(cait_core::Error),
    /// A bug: the quantizer built something inconsistent.
    Internal(String),
}

impl fmt::Display for QuantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantError::Import(e) => write!(f, "{e}"),
            QuantError::EmptyCalibration => f.write_str("the calibration set holds no images"),
            QuantError::CalibrationShape { found, expected } => write!(
                f,
                "calibration images are {found:?} (C, H, W) but the model takes {expected:?}"
            ),
            QuantError::CalibrationNotFinite { image } => {
                write!(f, "calibration image {image} holds NaN or infinite values")
            }
            QuantError::TooFewImages {
                calibration,
                holdout,
                parts,
            } => {
                let given = match holdout {
                    None => format!("{calibration} calibration images"),
                    Some(h) => format!("{calibration} calibration and {h} hold-out images"),
                };
                write!(
                    f,
                    "{given} are too few to fit, select and report on different images (fit {}, select {}, report {}; each needs at least {}): give at least {} calibration images, or --holdout with at least {}",
                    parts[0],
                    parts[1],
                    parts[2],
                    split::MIN_PART_IMAGES,
                    4 * split::MIN_PART_IMAGES,
                    2 * split::MIN_PART_IMAGES
                )
            }
            QuantError::EmptyHoldout => f.write_str("the hold-out set holds no images"),
            QuantError::HoldoutShape { found, expected } => write!(
                f,
                "hold-out images are {found:?} (C, H, W) but the model takes {expected:?}"
            ),
            QuantError::HoldoutNotFinite { image } => {
                write!(f, "hold-out image {image} holds NaN or infinite values")
            }
            QuantError::BadBudget(b) => write!(
                f,
                "budget {} is not a finite, non-negative number",
                b.describe()
            ),
            QuantError::BudgetNeedsLabels => f.write_str(
                "--max-drop measures top-1 accuracy, which needs labelled images: give labelled calibration data (IDX, or an image folder with class sub-folders) or --holdout with labels, or use --min-sqnr, which needs none",
            ),
            QuantError::Engine(e) => write!(f, "engine: {e}"),
            QuantError::Internal(e) => write!(f, "internal error: {e}"),
        }
    }
}

impl std::error::Error for QuantError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QuantError::Import(e) => Some(e),
            QuantError::Engine(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ImportError> for QuantError {
    fn from(e: ImportError) -> Self {
        QuantError::Import(e)
    }
}

/// Refuses an empty, mis-shaped or non-finite hold-out set.
fn check_holdout(ckpt: &Checkpoint, set: &Dataset) -> Result<(), QuantError> {
    check_calibration(ckpt, set).map_err(|e| match e {
        QuantError::EmptyCalibration => QuantError::EmptyHoldout,
        QuantError::CalibrationShape { found, expected } => {
            QuantError::HoldoutShape { found, expected }
        }
        QuantError::CalibrationNotFinite { image } => QuantError::HoldoutNotFinite { image },
        other => other,
    })
}

fn check_calibration(ckpt: &Checkpoint, calib: &Dataset) -> Result<(), QuantError> {
    let cfg = &ckpt.config;
    let expected = [
        cfg.in_chans as usize,
        cfg.img_size[0] as usize,
        cfg.img_size[1] as usize,
    ];
    if calib.n == 0 {
        return Err(QuantError::EmptyCalibration);
    }
    if calib.sample_shape != expected || calib.images.len() != calib.n * calib.sample_len() {
        return Err(QuantError::CalibrationShape {
            found: calib.sample_shape,
            expected,
        });
    }
    if let Some(i) = calib.images.iter().position(|v| !v.is_finite()) {
        return Err(QuantError::CalibrationNotFinite {
            image: i / calib.sample_len(),
        });
    }
    Ok(())
}

/// Logit SQNR (dB) and top-1 agreement (a fraction) of each `(want, got)` pair of logit vectors,
/// `want` the reference: the figures the quantizer reports and `cait eval --reference` prints.
pub fn logit_agreement<'a>(pairs: impl IntoIterator<Item = (&'a [f32], &'a [f32])>) -> (f64, f64) {
    let mut e = Energy::default();
    let (mut same, mut n) = (0usize, 0usize);
    for (w, g) in pairs {
        for (&a, &b) in w.iter().zip(g) {
            e.add(a, b);
        }
        same += (argmax(w) == argmax(g)) as usize;
        n += 1;
    }
    (e.sqnr_db(), same as f64 / n.max(1) as f64)
}

/// Logit SQNR and top-1 agreement of `got` against `want` (one logit vector per image).
fn agreement(want: &[Vec<f32>], got: &[Vec<f32>]) -> (f64, f64) {
    logit_agreement(
        want.iter()
            .map(Vec::as_slice)
            .zip(got.iter().map(Vec::as_slice)),
    )
}

/// `want` and `got` (one logit vector per image) measured as [`mixed::Measured`]: with `labels`,
/// also the drop in top-1 accuracy, in points.
fn measure_logits(
    want: &[Vec<f32>],
    got: &[Vec<f32>],
    labels: Option<&[u32]>,
    bytes: usize,
) -> mixed::Measured {
    let (sqnr_db, agreement) = agreement(want, got);
    let drop_points = labels.map(|labels| {
        let correct = |l: &[Vec<f32>]| {
            l.iter()
                .zip(labels)
                .filter(|(v, y)| argmax(v) == **y as usize)
                .count() as f64
        };
        100.0 * (correct(want) - correct(got)) / want.len().max(1) as f64
    });
    mixed::Measured {
        sqnr_db,
        agreement,
        drop_points,
        bytes,
    }
}

/// Runs `model` on images `0..n`, returning the logits in image order.
fn logits_of(
    pack: &PackBuf,
    calib: &Dataset,
    n: usize,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Vec<Vec<f32>>, QuantError> {
    let model = pack.model()?;
    let states = parallel::<_, QuantError>(
        n,
        threads,
        progress,
        || Ok((Runner::new(model), Vec::new())),
        |(runner, out): &mut (Runner<'_>, Vec<(usize, Vec<f32>)>), i| {
            runner.run(calib.image(i), None)?;
            out.push((i, runner.logits.clone()));
            Ok(())
        },
    )?;
    let mut all: Vec<(usize, Vec<f32>)> = states.into_iter().flat_map(|s| s.1).collect();
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, l)| l).collect())
}

/// Float and quantized logits, one vector per image in image order.
type LogitPairs = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// Per-layer report: both engines on every image, activation by activation; also their logits.
#[allow(clippy::too_many_arguments)]
fn measure(
    float: &PackBuf,
    quant: &PackBuf,
    calib: &Dataset,
    unsmooth: &HashMap<Tap, (Vec<f32>, Vec<f32>)>,
    threads: usize,
    progress: &dyn Progress,
) -> Result<(HashMap<Tap, Energy>, LogitPairs), QuantError> {
    let (fm, qm) = (float.model()?, quant.model()?);
    type State<'a> = (
        Runner<'a>,
        Runner<'a>,
        Recorder,
        HashMap<Tap, Energy>,
        Vec<(usize, Vec<f32>, Vec<f32>)>,
    );
    let states = parallel::<_, QuantError>(
        calib.n,
        threads,
        progress,
        || {
            Ok((
                Runner::new(fm),
                Runner::new(qm),
                Recorder::default(),
                HashMap::new(),
                Vec::new(),
            ))
        },
        |(f, q, rec, energy, logits): &mut State<'_>, i| {
            rec.clear();
            f.run(calib.image(i), Some(rec))?;
            let mut cmp = Comparer {
                reference: &rec.taps,
                unsmooth,
                cursor: HashMap::new(),
                energy: std::mem::take(energy),
            };
            q.run(calib.image(i), Some(&mut cmp))?;
            *energy = cmp.energy;
            logits.push((i, f.logits.clone(), q.logits.clone()));
            Ok(())
        },
    )?;
    let mut energy: HashMap<Tap, Energy> = HashMap::new();
    let (mut want, mut got) = (Vec::new(), Vec::new());
    let mut all = Vec::new();
    for s in states {
        for (tap, e) in s.3 {
            energy.entry(tap).or_default().merge(&e);
        }
        all.extend(s.4);
    }
    all.sort_by_key(|(i, _, _)| *i);
    for (_, w, g) in all {
        want.push(w);
        got.push(g);
    }
    Ok((energy, (want, got)))
}

/// An f16 pack of `ckpt` (see [`cait_import::write_pack_f16`]). With calibration data,
/// the report measures the f16 engine against the f32 one on it; without, only the weights.
pub fn quantize_f16(
    ckpt: &Checkpoint,
    calib: Option<&Dataset>,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Quantized, QuantError> {
    ckpt.check_tensors()?;
    let metadata = [
        (
            "quant.weights",
            "f16 (round to nearest even): patch_embed, q/k/v, proj, fc1, fc2, head".to_string(),
        ),
        (
            "quant.f32",
            "compute; LayerNorm statistics; norms, LayerScale, biases, tokens, pos_embed, talking-heads mixes"
                .to_string(),
        ),
    ];
    let bytes = cait_import::write_pack_f16(ckpt, &metadata)?;
    // Weight SQNR of each linear layer.
    let mut weights = Vec::new();
    for spec in ckpt.config.tensors().filter(|s| s.id.is_linear_weight()) {
        let t = ckpt
            .tensor(spec.id)
            .ok_or_else(|| QuantError::Internal(format!("no {}", spec.id)))?;
        let mut e = Energy::default();
        for &v in &t.data {
            e.add(v, half::f16::from_f32(v).to_f32());
        }
        let name = spec.id.to_string();
        weights.push((name.trim_end_matches(".weight").to_owned(), e));
    }
    let mut report = Report {
        precision: "f16".into(),
        images: 0,
        fit_images: 0,
        select_images: 0,
        layers: report::layers(&ckpt.config, &weights, &HashMap::new()),
        logit_sqnr_db: None,
        top1_agreement: None,
        choices: Vec::new(),
        warnings: Vec::new(),
        mixed: None,
    };
    if let Some(calib) = calib {
        check_calibration(ckpt, calib)?;
        let float = PackBuf::new(&cait_import::write_pack_f32(ckpt)?);
        let quant = PackBuf::new(&bytes);
        progress.begin("measure", calib.n as u64);
        let (acts, (want, got)) =
            measure(&float, &quant, calib, &HashMap::new(), threads, progress)?;
        progress.end();
        let (sqnr, agree) = agreement(&want, &got);
        report.images = calib.n;
        report.layers = report::layers(&ckpt.config, &weights, &acts);
        report.logit_sqnr_db = Some(sqnr);
        report.top1_agreement = Some(agree);
    }
    Ok(Quantized { bytes, report })
}

/// The consumers of a LayerNorm output: the linear weights whose input columns its smoothing
/// scales.
fn consumers(tap: Tap) -> Vec<TensorId> {
    use BlockParam::*;
    match (tap.site, tap.point) {
        (Site::Block(i), Point::Norm1) => vec![TensorId::Block(i, QkvWeight)],
        (Site::Block(i), Point::Norm2) => vec![TensorId::Block(i, Fc1Weight)],
        (Site::TokenBlock(i), Point::Norm1) => vec![
            TensorId::TokenBlock(i, QWeight),
            TensorId::TokenBlock(i, KWeight),
            TensorId::TokenBlock(i, VWeight),
        ],
        (Site::TokenBlock(i), Point::Norm2) => vec![TensorId::TokenBlock(i, Fc1Weight)],
        (Site::Head, Point::Input) => vec![TensorId::HeadWeight],
        _ => Vec::new(),
    }
}

/// Fewest fit samples per channel (rows of a LayerNorm output) for per-channel smoothing factors
/// from observed ranges. A channel's range over fewer values is the range of a handful of draws:
/// the class-attention blocks' `norm2` and the final norm see one row per image, and factors fitted
/// on 64 of them clip on the next image. Below this the factors come from the LayerNorm's affine
/// parameters instead ([`affine_ranges`]).
pub const MIN_CHANNEL_SAMPLES: usize = 1024;

/// The LayerNorm (weight, bias) whose output a smoothing tap is.
fn layer_norm_of(tap: Tap) -> Option<(TensorId, TensorId)> {
    use BlockParam::*;
    match (tap.site, tap.point) {
        (Site::Block(i), Point::Norm1) => Some((
            TensorId::Block(i, Norm1Weight),
            TensorId::Block(i, Norm1Bias),
        )),
        (Site::Block(i), Point::Norm2) => Some((
            TensorId::Block(i, Norm2Weight),
            TensorId::Block(i, Norm2Bias),
        )),
        (Site::TokenBlock(i), Point::Norm1) => Some((
            TensorId::TokenBlock(i, Norm1Weight),
            TensorId::TokenBlock(i, Norm1Bias),
        )),
        (Site::TokenBlock(i), Point::Norm2) => Some((
            TensorId::TokenBlock(i, Norm2Weight),
            TensorId::TokenBlock(i, Norm2Bias),
        )),
        (Site::Head, Point::Input) => Some((TensorId::NormWeight, TensorId::NormBias)),
        _ => None,
    }
}

/// Per-channel ranges a LayerNorm output `γ·x̂ + β` takes when every normalised `x̂` lies in
/// `[-1, 1]`: `β ± |γ|`. Only the channels' relative sizes and centres matter to smoothing (the
/// factors are normalised), and these come from the weights, so they hold on any image.
fn affine_ranges(ckpt: &Checkpoint, tap: Tap) -> Option<Vec<(f32, f32)>> {
    let (w, b) = layer_norm_of(tap)?;
    let (w, b) = (&ckpt.tensor(w)?.data, &ckpt.tensor(b)?.data);
    Some(
        w.iter()
            .zip(b)
            .map(|(&g, &m)| (m - g.abs(), m + g.abs()))
            .collect(),
    )
}

/// The smoothing of one LayerNorm output for `alpha`: from its per-channel fit ranges when each
/// channel was seen at least [`MIN_CHANNEL_SAMPLES`] times, else from the LayerNorm's affine
/// parameters; and its consumers' column maxima.
fn smoothing_factors(ckpt: &Checkpoint, tap: Tap, stats: &TapStats, alpha: f32) -> Option<Smooth> {
    let affine;
    let channels: &[(f32, f32)] = if stats.rows >= MIN_CHANNEL_SAMPLES {
        &stats.channels
    } else {
        affine = affine_ranges(ckpt, tap)?;
        &affine
    };
    let ids = consumers(tap);
    let d = channels.len();
    let mut wmax = vec![0.0f64; d];
    for id in &ids {
        if !ckpt.config.has_tensor(*id) {
            return None;
        }
        let w = &ckpt.tensor(*id)?.data;
        for row in w.chunks_exact(d) {
            for (m, &v) in wmax.iter_mut().zip(row) {
                *m = m.max(v.abs() as f64);
            }
        }
    }
    if ids.is_empty() {
        return None;
    }
    let alpha = alpha as f64;
    let mut scale = Vec::with_capacity(d);
    let mut shift = Vec::with_capacity(d);
    for (&(lo, hi), &w) in channels.iter().zip(&wmax) {
        if !(lo.is_finite() && hi.is_finite()) {
            scale.push(1.0);
            shift.push(0.0);
            continue;
        }
        let half = ((hi as f64 - lo as f64) / 2.0).max(1e-6);
        let r = if w > 0.0 {
            half.powf(alpha) / w.powf(1.0 - alpha)
        } else {
            half.powf(alpha)
        };
        scale.push(r);
        shift.push((lo as f64 + hi as f64) / 2.0);
    }
    // Normalise the factors to a geometric mean of 1 (any common factor cancels out).
    let mean_log = scale.iter().map(|r| r.ln()).sum::<f64>() / d as f64;
    let norm = mean_log.exp();
    Some(Smooth {
        scale: scale.iter().map(|r| (r / norm) as f32).collect(),
        shift: shift.iter().map(|&m| m as f32).collect(),
    })
}

/// Calibrates on `calib` and writes an int8 pack of `ckpt`; see the module docs. The images are
/// split as [`split`] documents (or `opts.holdout` selects and reports), so every figure the
/// report and the pack state is measured on images the ranges were not fitted on.
pub fn quantize_int8(
    ckpt: &Checkpoint,
    calib: &Dataset,
    opts: &Int8Options,
    progress: &dyn Progress,
) -> Result<Quantized, QuantError> {
    ckpt.check_tensors()?;
    check_calibration(ckpt, calib)?;
    if let Some(h) = &opts.holdout {
        check_holdout(ckpt, h)?;
    }
    if let Some(b @ (Budget::MaxDrop(x) | Budget::MinSqnr(x))) = opts.budget
        && (!x.is_finite() || x < 0.0)
    {
        return Err(QuantError::BadBudget(b));
    }
    let parts = split::split(calib, opts.holdout.as_ref(), opts.select_images)?;
    let labelled = parts.select.labels.is_some() && parts.report.labels.is_some();
    if matches!(opts.budget, Some(Budget::MaxDrop(_))) && !labelled {
        return Err(QuantError::BudgetNeedsLabels);
    }
    let (fit, select_set, report_set) = (&parts.fit, &parts.select, &parts.report);
    let cfg = ckpt.config;
    let threads = opts.threads.max(1);
    let select = select_set.n;
    let mut warnings = Vec::new();
    if report_set.n < split::FEW_REPORT_IMAGES {
        warnings.push(format!(
            "the held-out figures rest on {} image(s); give more calibration images (or --holdout) for figures that tell tenths of a dB apart",
            report_set.n
        ));
    }
    let float = PackBuf::new(&cait_import::write_pack_f32(ckpt)?);
    let fm = float.model()?;

    // Pass 1, fit images: ranges.
    progress.begin("ranges", fit.n as u64);
    let states = parallel::<_, QuantError>(
        fit.n,
        threads,
        progress,
        || Ok((Runner::new(fm), StatsProbe::default())),
        |(runner, stats): &mut (Runner<'_>, StatsProbe), i| runner.run(fit.image(i), Some(stats)),
    )?;
    progress.end();
    let mut stats = StatsProbe::default();
    for s in states {
        stats.merge(s.1);
    }

    // Smoothing candidates: factors per LayerNorm output.
    let smoothings: Vec<Smoothing> = match opts.smoothing {
        Some(s) => vec![s],
        None => Smoothing::CANDIDATES.to_vec(),
    };
    let smooth_maps: Vec<HashMap<Tap, Smooth>> = smoothings
        .iter()
        .map(|s| match s {
            Smoothing::Off => HashMap::new(),
            Smoothing::Alpha(a) => stats
                .taps
                .iter()
                .filter(|(tap, _)| is_layer_norm(**tap))
                .filter_map(|(tap, st)| smoothing_factors(ckpt, *tap, st, *a).map(|f| (*tap, f)))
                .collect(),
        })
        .collect();

    // Pass 2, fit images: histograms (LayerNorm outputs once per smoothing candidate).
    let mut plans: HashMap<Tap, HistPlan> = HashMap::new();
    for (tap, st) in &stats.taps {
        let symmetric = is_symmetric(tap.point);
        let mut transforms = Vec::new();
        let mut ranges = Vec::new();
        let candidates: Vec<Option<&Smooth>> = if is_layer_norm(*tap) {
            smooth_maps.iter().map(|m| m.get(tap)).collect()
        } else {
            vec![None]
        };
        for smooth in candidates {
            let (lo, hi) = match smooth {
                Some(s) => transformed_range(&st.channels, s),
                None => (st.min, st.max),
            };
            ranges.push(if symmetric {
                (0.0, lo.abs().max(hi.abs()))
            } else {
                (lo, hi)
            });
            transforms.push(smooth.map(|s| (s.scale.clone(), s.shift.clone())));
        }
        plans.insert(
            *tap,
            HistPlan {
                symmetric,
                transforms,
                ranges,
            },
        );
    }
    progress.begin("histograms", fit.n as u64);
    let states = parallel::<_, QuantError>(
        fit.n,
        threads,
        progress,
        || Ok((Runner::new(fm), HistProbe::new(&plans))),
        |(runner, hist): &mut (Runner<'_>, HistProbe<'_>), i| runner.run(fit.image(i), Some(hist)),
    )?;
    progress.end();
    let mut hists = HistProbe::new(&plans);
    for s in states {
        hists.merge(s.1);
    }

    // Activation parameters of a (method, smoothing candidate).
    let params = |method: CalibMethod, cand: usize| -> HashMap<Tap, ActParams> {
        let mut out = HashMap::new();
        for (tap, st) in &stats.taps {
            let plan = &plans[tap];
            let k = if is_layer_norm(*tap) { cand } else { 0 };
            let hist = &hists.hists[tap][k];
            let (lo, hi) = match &plan.transforms[k] {
                Some((scale, shift)) => transformed_range(
                    &st.channels,
                    &Smooth {
                        scale: scale.clone(),
                        shift: shift.clone(),
                    },
                ),
                None => (st.min, st.max),
            };
            let p = calib::choose(hist, plan.symmetric, method, lo as f64, hi as f64);
            out.insert(*tap, p);
        }
        out
    };

    // Float logits of the selection images.
    progress.begin("float logits", select as u64);
    let float_select = logits_of(&float, select_set, select, threads, progress)?;
    progress.end();
    let measure_mix = |acts: &HashMap<Tap, ActParams>,
                       smooth: &HashMap<Tap, Smooth>,
                       (qk, av): (AttnMode, AttnMode),
                       scales: ActivationScales,
                       f16_blocks: &[Site]|
     -> Result<mixed::Measured, QuantError> {
        let plan = Plan {
            smooth,
            acts,
            qk_int8: qk == AttnMode::Int8,
            av_int8: av == AttnMode::Int8,
            class_path: opts.class_path,
            activation_scales: scales,
            f16_blocks,
        };
        let (bytes, _) = int8::build(ckpt, &plan, &[])?;
        let got = logits_of(&PackBuf::new(&bytes), select_set, select, threads, progress)?;
        let labels = select_set.labels.as_deref();
        Ok(measure_logits(&float_select, &got, labels, bytes.len()))
    };
    let evaluate = |acts: &HashMap<Tap, ActParams>,
                    smooth: &HashMap<Tap, Smooth>,
                    attention: (AttnMode, AttnMode),
                    scales: ActivationScales|
     -> Result<(f64, f64), QuantError> {
        let m = measure_mix(acts, smooth, attention, scales, &[])?;
        Ok((m.sqnr_db, m.agreement))
    };

    // Choices, one at a time (attention int8, activation scales static unless given): the
    // smoothing with MSE ranges (or the given method), then the method with that smoothing, then
    // the attention modes for each kind of activation scales: methods + smoothings − 1 passes
    // over the selection images instead of methods × smoothings.
    let methods: Vec<CalibMethod> = match opts.method {
        Some(m) => vec![m],
        None => CalibMethod::ALL.to_vec(),
    };
    let qk0 = opts.qk.unwrap_or(AttnMode::Int8);
    let av0 = opts.av.unwrap_or(AttnMode::Int8);
    let scales0 = opts.activation_scales.unwrap_or(ActivationScales::Static);
    let mut choices = Vec::new();
    let first = methods
        .iter()
        .position(|&m| m == CalibMethod::Mse)
        .unwrap_or(0);
    let (mut best_method, mut best_smooth) = (methods[first], 0usize);
    let mut measured: Vec<(CalibMethod, usize, f64, f64)> = Vec::new();
    if methods.len() * smoothings.len() > 1 {
        let passes = smoothings.len() + methods.len() - 1;
        progress.begin("choose calibration", (passes * select) as u64);
        let mut best_sqnr = f64::NEG_INFINITY;
        for (k, smooth) in smooth_maps.iter().enumerate() {
            let (sqnr, agree) = evaluate(&params(best_method, k), smooth, (qk0, av0), scales0)?;
            measured.push((best_method, k, sqnr, agree));
            if sqnr > best_sqnr {
                (best_smooth, best_sqnr) = (k, sqnr);
            }
        }
        for (i, &m) in methods.iter().enumerate() {
            if i == first {
                continue;
            }
            let smooth = &smooth_maps[best_smooth];
            let (sqnr, agree) = evaluate(&params(m, best_smooth), smooth, (qk0, av0), scales0)?;
            measured.push((m, best_smooth, sqnr, agree));
            if sqnr > best_sqnr {
                (best_method, best_sqnr) = (m, sqnr);
            }
        }
        progress.end();
    }
    let selection = format!("int8 engine, {select} held-out selection images");
    let pick = |fixed: bool| {
        if fixed {
            "given".to_string()
        } else {
            format!("highest logit SQNR vs float ({selection})")
        }
    };
    let by_method: Vec<Candidate> = measured
        .iter()
        .filter(|(_, k, _, _)| *k == best_smooth)
        .map(|&(m, _, s, a)| Candidate {
            value: m.as_str().into(),
            logit_sqnr_db: s,
            top1_agreement: a,
        })
        .collect();
    let by_smoothing: Vec<Candidate> = measured
        .iter()
        .filter(|(m, _, _, _)| *m == methods[first])
        .map(|&(_, k, s, a)| Candidate {
            value: smoothings[k].as_string(),
            logit_sqnr_db: s,
            top1_agreement: a,
        })
        .collect();
    choices.push(Choice {
        name: "calibration".into(),
        chosen: best_method.as_str().into(),
        candidates: if methods.len() > 1 {
            by_method
        } else {
            Vec::new()
        },
        reason: pick(opts.method.is_some()),
    });
    choices.push(Choice {
        name: "smoothing".into(),
        chosen: smoothings[best_smooth].as_string(),
        candidates: if smoothings.len() > 1 {
            by_smoothing
        } else {
            Vec::new()
        },
        reason: pick(opts.smoothing.is_some()),
    });
    let acts = params(best_method, best_smooth);
    let smooth = &smooth_maps[best_smooth];

    // Attention modes, for each kind of activation scales; then the scales.
    let all_scales: Vec<ActivationScales> = match opts.activation_scales {
        Some(a) => vec![a],
        None => vec![ActivationScales::Static, ActivationScales::Dynamic],
    };
    let qks: &[AttnMode] = match opts.qk {
        None => &[AttnMode::Int8, AttnMode::F32],
        Some(_) => &[qk0],
    };
    let avs: &[AttnMode] = match opts.av {
        None => &[AttnMode::Int8, AttnMode::F32],
        Some(_) => &[av0],
    };
    // Measured at the calibration choice: (int8, int8) or the given modes, the first scales.
    let first_measured = measured
        .iter()
        .find(|(m, k, _, _)| *m == best_method && *k == best_smooth)
        .map(|&(_, _, s, g)| (s, g));
    let mut per_scales = Vec::new();
    let passes = all_scales.len() * qks.len() * avs.len();
    if passes > 1 {
        progress.begin("choose attention and scales", (passes * select) as u64);
    }
    for &scales in &all_scales {
        let mut results = Vec::new();
        for &q in qks {
            for &a in avs {
                let r = match first_measured {
                    Some(r) if (q, a, scales) == (qk0, av0, scales0) => r,
                    _ if passes == 1 => (f64::NAN, f64::NAN),
                    _ => evaluate(&acts, smooth, (q, a), scales)?,
                };
                results.push(((q, a), r));
            }
        }
        // Most int8 first; f32 only where it wins by the margin.
        let f32s = |(q, a): (AttnMode, AttnMode)| {
            (q == AttnMode::F32) as usize + (a == AttnMode::F32) as usize
        };
        let mut best = results[0];
        for &(modes, r) in &results[1..] {
            let extra = f32s(modes).saturating_sub(f32s(best.0)) as f64;
            if r.0 > best.1.0 + ATTENTION_F32_MARGIN_DB * extra {
                best = (modes, r);
            }
        }
        per_scales.push((scales, best, results));
    }
    if passes > 1 {
        progress.end();
    }
    // Dynamic scales only where they measure better than static.
    let mut chosen = 0;
    for (i, (_, best, _)) in per_scales.iter().enumerate().skip(1) {
        if best.1.0 > per_scales[chosen].1.1.0 {
            chosen = i;
        }
    }
    let (scales, ((qk, av), _), attn_results) = &per_scales[chosen];
    let (scales, qk, av) = (*scales, *qk, *av);
    let attn_candidates = if qks.len() * avs.len() > 1 {
        attn_results
            .iter()
            .map(|&((q, a), (s, g))| Candidate {
                value: format!("qk={} av={}", q.as_str(), a.as_str()),
                logit_sqnr_db: s,
                top1_agreement: g,
            })
            .collect()
    } else {
        Vec::new()
    };
    choices.push(Choice {
        name: "attention".into(),
        chosen: format!("qk={} av={}", qk.as_str(), av.as_str()),
        candidates: attn_candidates,
        reason: if opts.qk.is_some() && opts.av.is_some() {
            "given".into()
        } else {
            format!(
                "int8 unless f32 gains > {ATTENTION_F32_MARGIN_DB} dB of logit SQNR, with {} activation scales ({selection})",
                scales.as_str()
            )
        },
    });
    choices.push(Choice {
        name: "activation_scales".into(),
        chosen: scales.as_str().into(),
        candidates: if per_scales.len() > 1 {
            per_scales
                .iter()
                .map(|&(s, (modes, (db, agree)), _)| Candidate {
                    value: format!(
                        "{} (qk={} av={})",
                        s.as_str(),
                        modes.0.as_str(),
                        modes.1.as_str()
                    ),
                    logit_sqnr_db: db,
                    top1_agreement: agree,
                })
                .collect()
        } else {
            Vec::new()
        },
        reason: if opts.activation_scales.is_some() {
            "given".into()
        } else {
            format!("dynamic where it measures a higher logit SQNR than static ({selection})")
        },
    });

    // Mixed precision: blocks kept in f16 until the budget holds on the selection images.
    let mut mix = None;
    if let Some(budget) = opts.budget {
        let blocks: Vec<Site> = (0..cfg.depth)
            .map(Site::Block)
            .chain((0..cfg.depth_token_only).map(Site::TokenBlock))
            .collect();
        progress.begin("mixed precision", ((2 * blocks.len() + 1) * select) as u64);
        let base = measure_mix(&acts, smooth, (qk, av), scales, &[])?;
        let chosen = mixed::choose(&blocks, base, budget, |kept| {
            measure_mix(&acts, smooth, (qk, av), scales, kept)
        })?;
        progress.end();
        if let Budget::MaxDrop(points) = budget {
            let per_image = 100.0 / select.max(1) as f64;
            if per_image > points {
                warnings.push(format!(
                    "one selection image is {per_image:.2} points of top-1 accuracy, more than the {points}-point budget: the budget was checked at that resolution; give more selection images (--select-count, more calibration or hold-out images)"
                ));
            }
        }
        mix = Some((budget, base, chosen));
    }
    let f16_blocks: Vec<Site> = mix.as_ref().map_or(Vec::new(), |m| m.2.kept.clone());

    // The pack, measured on the report images, then written with its record.
    let plan = Plan {
        smooth,
        acts: &acts,
        qk_int8: qk == AttnMode::Int8,
        av_int8: av == AttnMode::Int8,
        class_path: opts.class_path,
        activation_scales: scales,
        f16_blocks: &f16_blocks,
    };
    // One pass of both engines over the report images: the logits always, every activation too
    // when the per-layer report is asked for (the metadata written below changes no numerics).
    let (unrecorded, _) = int8::build(ckpt, &plan, &[])?;
    // `measure` ticks once per image for both engines; two `logits_of` passes tick twice.
    let passes = if opts.report { 1 } else { 2 };
    progress.begin("held-out images", (passes * report_set.n) as u64);
    let quant = PackBuf::new(&unrecorded);
    let (acts, held) = if opts.report {
        let unsmooth: HashMap<Tap, (Vec<f32>, Vec<f32>)> = smooth
            .iter()
            .filter(|(t, _)| !f16_blocks.contains(&t.site))
            .map(|(t, s)| (*t, (s.scale.clone(), s.shift.clone())))
            .collect();
        measure(&float, &quant, report_set, &unsmooth, threads, progress)?
    } else {
        let want = logits_of(&float, report_set, report_set.n, threads, progress)?;
        let got = logits_of(&quant, report_set, report_set.n, threads, progress)?;
        (HashMap::new(), (want, got))
    };
    progress.end();
    let held = measure_logits(
        &held.0,
        &held.1,
        report_set.labels.as_deref(),
        unrecorded.len(),
    );
    let (held_sqnr, held_agree) = (held.sqnr_db, held.agreement);
    let mixed_report = mix.map(|(budget, base, chosen)| {
        let met_on_selection = budget.margin(&chosen.measured) >= 0.0;
        let met_on_held_out = budget.margin(&held) >= 0.0;
        if !met_on_selection {
            warnings.push(format!(
                "no mix of f16 blocks meets {}: the best measured keeps {} block(s) in f16 and gives {} on the selection images",
                budget.describe(),
                chosen.kept.len(),
                budget.figure_text(&chosen.measured)
            ));
        } else if !met_on_held_out {
            warnings.push(format!(
                "{} holds on the selection images ({}) but not on the {} held-out images ({})",
                budget.describe(),
                budget.figure_text(&chosen.measured),
                report_set.n,
                budget.figure_text(&held)
            ));
        }
        MixedReport {
            budget: budget.describe(),
            unit: budget.unit(),
            kept: chosen.kept.iter().map(|&s| mixed::block_name(s)).collect(),
            sensitivity: chosen
                .sensitivity
                .iter()
                .map(|&(s, db)| (mixed::block_name(s), db))
                .collect(),
            selection: (budget.figure(&base), budget.figure(&chosen.measured)),
            met_on_selection,
            held_out: budget.figure(&held),
            met_on_held_out,
            added_bytes: chosen.measured.bytes.saturating_sub(base.bytes),
        }
    });
    let source = if opts.calib_source.is_empty() {
        String::new()
    } else {
        format!(" from {}", opts.calib_source)
    };
    let mut metadata: Vec<(String, String)> = vec![
        ("quant.weights".into(), "int8 symmetric per output channel (max-abs scale), int32 bias".into()),
        (
            "quant.activations".into(),
            match scales {
                ActivationScales::Static => "int8 static per tensor: zero point for linear-layer inputs, symmetric for q, k, v and attention weights",
                ActivationScales::Dynamic => "int8 per row at run time: zero point over the row's range for linear-layer inputs (the patch embedding's static per tensor), symmetric for q, k and v, per head with a zero point for attention weights",
            }
            .into(),
        ),
        ("quant.layer_scale".into(), "folded into attn.proj and mlp.fc2".into()),
        ("quant.f32".into(), "residual stream, LayerNorm, softmax, GELU, talking-heads mixes, logits".into()),
        ("quant.calibration".into(), best_method.as_str().into()),
        ("quant.smoothing".into(), smoothings[best_smooth].as_string()),
        (
            "quant.calibration_data".into(),
            match &opts.holdout {
                None => format!(
                    "{} images{source}: {} fitted the ranges, {select} chose, {} held out for the report",
                    calib.n, fit.n, report_set.n
                ),
                Some(h) => format!(
                    "{} images{source} fitted the ranges; of {} hold-out images, {select} chose and {} reported",
                    calib.n, h.n, report_set.n
                ),
            },
        ),
        (
            "quant.held_out".into(),
            format!(
                "logit SQNR {held_sqnr:.2} dB, top-1 agreement {:.1}% against the float model on {} held-out images",
                100.0 * held_agree,
                report_set.n
            ),
        ),
    ];
    metadata.push((META_HELD_OUT_SQNR_DB.into(), format!("{held_sqnr:.4}")));
    metadata.push((META_HELD_OUT_AGREEMENT.into(), format!("{held_agree:.6}")));
    metadata.push((META_HELD_OUT_IMAGES.into(), report_set.n.to_string()));
    if let Some(m) = &mixed_report {
        let kept = if m.kept.is_empty() {
            "none (the all-int8 pack meets it)".to_string()
        } else {
            m.kept.join(", ")
        };
        metadata.push((
            "quant.mixed".into(),
            format!(
                "{}: blocks kept in f16: {kept}; {} on {select} selection images, {} on {} held-out images",
                m.budget,
                met_text(m.met_on_selection, m.selection.1),
                met_text(m.met_on_held_out, m.held_out),
                report_set.n
            ),
        ));
    }
    for c in &choices {
        if !c.candidates.is_empty() {
            let measured: Vec<String> = c
                .candidates
                .iter()
                .map(|k| {
                    format!(
                        "{} {:.2} dB {:.1}%",
                        k.value,
                        k.logit_sqnr_db,
                        100.0 * k.top1_agreement
                    )
                })
                .collect();
            metadata.push((
                format!("quant.measured.{}", c.name),
                format!(
                    "{} (logit SQNR, top-1 agreement on {select} held-out selection images)",
                    measured.join(", ")
                ),
            ));
        }
    }
    let (bytes, weights) = int8::build(ckpt, &plan, &metadata)?;
    let report = Report {
        precision: "int8".into(),
        images: report_set.n,
        fit_images: fit.n,
        select_images: select,
        layers: report::layers(&cfg, &weights, &acts),
        logit_sqnr_db: Some(held_sqnr),
        top1_agreement: Some(held_agree),
        choices,
        warnings,
        mixed: mixed_report,
    };
    Ok(Quantized { bytes, report })
}

/// `met (31.20)` / `not met (28.10)`.
fn met_text(met: bool, figure: f64) -> String {
    format!("{} ({figure:.2})", if met { "met" } else { "not met" })
}

/// The range of `(x - shift[c]) / scale[c]` over channels with ranges `channels`.
fn transformed_range(channels: &[(f32, f32)], s: &Smooth) -> (f32, f32) {
    let mut lo = f32::INFINITY;
    let mut hi = f32::NEG_INFINITY;
    for ((&(a, b), &r), &m) in channels.iter().zip(&s.scale).zip(&s.shift) {
        if a.is_finite() && b.is_finite() {
            lo = lo.min((a - m) / r);
            hi = hi.max((b - m) / r);
        }
    }
    if lo.is_finite() { (lo, hi) } else { (0.0, 0.0) }
}
