//! The int8 engine against the f32 engine on the same random models, quantized here by a minimal
//! min-max quantizer (the real one, with calibration choices, is cait-quant's).
//!
//! The f32 engine is itself checked against a plain f64 reference of timm's `cait.py`
//! (`crate::tests`), and the int8 kernels against their plain reference implementations; these
//! tests check the int8 stages' wiring (layouts, scales, zero points, folding, modes, workspace),
//! where any mistake moves the outputs far beyond int8 rounding.

use std::collections::HashMap;
use std::vec;
use std::vec::Vec;

use cait_pack::int8::{Int8Tensor, META_ACTIVATION_SCALES, META_AV, META_CLASS_PATH, META_QK, act};
use cait_pack::{
    BlockParam, GlobalPool, ModelConfig, Pack, PackWriter, Precision, Quant, TensorId,
};

use super::QLinear;
use crate::kernels::int8::ActQuant;
use crate::probe::{Point, Probe, Site, Tap, Values};
use crate::tests::{
    AlignedBytes, Rng, Run, Weights, config, pack_bytes, preprocess, random_weights, run, workspace,
};
use crate::{Error, Model, Outputs, workspace_bytes};

/// Ranges of every activation the f32 engine shows, optionally with `(x - m) / r` per channel
/// applied to the head input (a smoothing folded into the final norm).
#[derive(Default)]
struct Ranges {
    taps: HashMap<Tap, (f32, f32)>,
    head_smooth: Option<(Vec<f32>, Vec<f32>)>,
}

impl Probe for Ranges {
    fn observe(&mut self, tap: Tap, width: usize, values: Values<'_>) {
        let r = self
            .taps
            .entry(tap)
            .or_insert((f32::INFINITY, f32::NEG_INFINITY));
        for i in 0..values.len() {
            let mut v = values.get(i);
            if let (Some((scale, shift)), Site::Head, Point::Input) =
                (&self.head_smooth, tap.site, tap.point)
            {
                v = (v - shift[i % width]) / scale[i % width];
            }
            r.0 = r.0.min(v);
            r.1 = r.1.max(v);
        }
    }
}

/// `(scale, zero_point)` from a range: symmetric for the attention's operands, else with a zero
/// point (as the engine expects).
fn act_params(point: Point, (lo, hi): (f32, f32)) -> [f32; 2] {
    if matches!(point, Point::Q | Point::K | Point::V | Point::Attention) {
        [lo.abs().max(hi.abs()).max(1e-6) / 127.0, 0.0]
    } else {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let s = ((hi - lo) / 255.0).max(1e-6);
        [s, (-128.0 - lo / s).round().clamp(-128.0, 127.0)]
    }
}

/// The input column smoothing of the head, `(scale, shift)` per channel.
type Smooth = (Vec<f32>, Vec<f32>);

/// An int8 pack of `w`: LayerScale folded into proj/fc2, `head_dim^-0.5` into q, weights
/// per-channel, ranges from the f32 engine on `calib`, `smooth` folded into the final norm.
fn int8_pack(
    cfg: &ModelConfig,
    w: &Weights,
    calib: &[Vec<f32>],
    qk: &str,
    av: &str,
    smooth: Option<Smooth>,
) -> AlignedBytes {
    let float = pack_bytes(cfg, w, Precision::F32, None);
    let pack = Pack::parse(float.bytes()).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let mut ws = workspace(model.workspace_bytes());
    let mut ranges = Ranges {
        taps: HashMap::new(),
        head_smooth: smooth.clone(),
    };
    for image in calib {
        let mut logits = vec![0.0; model.logits_len()];
        model
            .forward_with_probe(
                image,
                bytemuck::cast_slice_mut(&mut ws),
                Outputs::logits(&mut logits),
                &mut ranges,
            )
            .unwrap();
    }
    let act = |site: Site, point: Point| act_params(point, ranges.taps[&Tap { site, point }]);
    let (d, hd) = (cfg.embed_dim as usize, cfg.head_dim());
    let qscale = (1.0 / libm::sqrt(hd as f64)) as f32;

    let mut writer = PackWriter::new(*cfg, Precision::Int8, preprocess(cfg));
    writer.metadata(META_QK, qk).metadata(META_AV, av);
    use BlockParam::*;
    for spec in cfg.tensors() {
        let id = spec.id;
        let (name, dims) = (id.to_string(), spec.shape.dims());
        let mut values = w[&id].clone();
        if id.is_linear_weight() {
            let out = dims[0] as usize;
            let k = values.len() / out;
            let (site, gamma, bias_id, input) = match id {
                TensorId::PatchEmbedWeight => (
                    Site::PatchEmbed,
                    None,
                    TensorId::PatchEmbedBias,
                    Point::Input,
                ),
                TensorId::HeadWeight => (Site::Head, None, TensorId::HeadBias, Point::Input),
                TensorId::Block(i, p) | TensorId::TokenBlock(i, p) => {
                    let token = matches!(id, TensorId::TokenBlock(..));
                    let site = if token {
                        Site::TokenBlock(i)
                    } else {
                        Site::Block(i)
                    };
                    let make = |p| {
                        if token {
                            TensorId::TokenBlock(i, p)
                        } else {
                            TensorId::Block(i, p)
                        }
                    };
                    let (gamma, bias, input) = match p {
                        QkvWeight => (None, QkvBias, Point::Norm1),
                        QWeight => (None, QBias, Point::Norm1),
                        KWeight => (None, KBias, Point::Norm1),
                        VWeight => (None, VBias, Point::Norm1),
                        ProjWeight => (Some(make(Gamma1)), ProjBias, Point::AttentionOut),
                        Fc1Weight => (None, Fc1Bias, Point::Norm2),
                        _ => (Some(make(Gamma2)), Fc2Bias, Point::Hidden),
                    };
                    (site, gamma, make(bias), input)
                }
                _ => unreachable!(),
            };
            let mut bias = w.get(&bias_id).cloned().unwrap_or_else(|| vec![0.0; out]);
            if let (TensorId::HeadWeight, Some((scale, shift))) = (id, &smooth) {
                for (row, b) in values.chunks_exact_mut(k).zip(bias.iter_mut()) {
                    *b += row.iter().zip(shift).map(|(w, m)| w * m).sum::<f32>();
                    for (v, r) in row.iter_mut().zip(scale) {
                        *v *= r;
                    }
                }
            }
            let query_rows = match id {
                TensorId::Block(_, QkvWeight) | TensorId::TokenBlock(_, QWeight) => d,
                _ => 0,
            };
            for o in 0..query_rows {
                bias[o] *= qscale;
                values[o * k..(o + 1) * k]
                    .iter_mut()
                    .for_each(|v| *v *= qscale);
            }
            if let Some(g) = gamma {
                for ((row, b), g) in values.chunks_exact_mut(k).zip(bias.iter_mut()).zip(&w[&g]) {
                    *b *= g;
                    row.iter_mut().for_each(|v| *v *= g);
                }
            }
            let [xs, zp] = act(site, input);
            let mut q = Vec::new();
            let mut scales = Vec::new();
            let mut acc_bias = Vec::new();
            for (row, b) in values.chunks_exact(k).zip(&bias) {
                let s = row.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-8) / 127.0;
                let qr: Vec<i8> = row.iter().map(|v| (v / s).round() as i8).collect();
                let sum: i32 = qr.iter().map(|&v| v as i32).sum();
                acc_bias.push((b / (xs * s)).round() as i32 - zp as i32 * sum);
                q.extend(qr);
                scales.push(s);
            }
            let s = writer
                .add_f32(
                    &Int8Tensor::WeightScale(id).to_string(),
                    &[out as u32],
                    &scales,
                )
                .unwrap();
            let quant = Quant::PerChannel { axis: 0, scales: s };
            writer.add_i8(&name, dims, &q, quant).unwrap();
            writer
                .add_i32(
                    &Int8Tensor::AccBias(id).to_string(),
                    &[out as u32],
                    &acc_bias,
                    Quant::None,
                )
                .unwrap();
            continue;
        }
        let folded = matches!(
            id,
            TensorId::Block(_, Gamma1 | Gamma2 | QkvBias | ProjBias | Fc1Bias | Fc2Bias)
                | TensorId::TokenBlock(
                    _,
                    Gamma1 | Gamma2 | QBias | KBias | VBias | ProjBias | Fc1Bias | Fc2Bias
                )
                | TensorId::PatchEmbedBias
                | TensorId::HeadBias
        );
        if folded {
            continue;
        }
        if let Some((scale, shift)) = &smooth {
            match id {
                TensorId::NormWeight => values.iter_mut().zip(scale).for_each(|(v, r)| *v /= r),
                TensorId::NormBias => values
                    .iter_mut()
                    .zip(scale.iter().zip(shift))
                    .for_each(|(v, (r, m))| *v = (*v - m) / r),
                _ => {}
            }
        }
        writer.add_f32(&name, dims, &values).unwrap();
    }
    let points = [
        (act::NORM1, Point::Norm1),
        (act::Q, Point::Q),
        (act::K, Point::K),
        (act::V, Point::V),
        (act::ATTENTION, Point::Attention),
        (act::ATTENTION_OUT, Point::AttentionOut),
        (act::NORM2, Point::Norm2),
        (act::HIDDEN, Point::Hidden),
    ];
    for (token_only, depth) in [(false, cfg.depth), (true, cfg.depth_token_only)] {
        for index in 0..depth {
            let site = if token_only {
                Site::TokenBlock(index)
            } else {
                Site::Block(index)
            };
            let mut table = vec![0.0f32; act::ROWS * 2];
            for (row, point) in points {
                table[row * 2..row * 2 + 2].copy_from_slice(&act(site, point));
            }
            let t = Int8Tensor::BlockActQuant { token_only, index };
            writer
                .add_f32(&t.to_string(), &[act::ROWS as u32, 2], &table)
                .unwrap();
        }
    }
    let pe = act(Site::PatchEmbed, Point::Input);
    writer
        .add_f32(&Int8Tensor::PatchEmbedActQuant.to_string(), &[1, 2], &pe)
        .unwrap();
    if cfg.num_classes > 0 {
        let head = act(Site::Head, Point::Input);
        writer
            .add_f32(&Int8Tensor::HeadActQuant.to_string(), &[1, 2], &head)
            .unwrap();
    }
    let (scale, shift) = smooth.unwrap_or_else(|| (vec![1.0; d], vec![0.0; d]));
    let table: Vec<f32> = scale.iter().chain(&shift).copied().collect();
    writer
        .add_f32(&Int8Tensor::NormSmooth.to_string(), &[2, d as u32], &table)
        .unwrap();
    AlignedBytes::new(&writer.finish().unwrap())
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn images(cfg: &ModelConfig, seed: u32, n: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| rng.vec(cfg.input_len().unwrap(), 1.5, 0.0))
        .collect()
}

fn run_pack(bytes: &AlignedBytes, image: &[f32]) -> Run {
    let pack = Pack::parse(bytes.bytes()).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let mut ws = workspace(model.workspace_bytes());
    run(&model, image, bytemuck::cast_slice_mut(&mut ws)).unwrap()
}

/// Every config shape of `crate::tests`, every q·kᵀ / attention·v mode, with and without a
/// smoothing folded into the final norm: the int8 features, logits and class attention follow the
/// f32 engine's. Bounds: min-max int8 (6 calibration images) on these random models gives feature
/// cosines of 0.9986 to 0.99999 and logit cosines of 0.9908 to 0.99999 (the lowest with only 3
/// classes, where one logit's error weighs most); a wrong scale, zero point, index or fold gives
/// well below 0.9.
#[test]
fn int8_engine_tracks_the_f32_engine() {
    let mut avg = config([32, 32], 8, 3, 10, 32, 2, 4);
    avg.global_pool = GlobalPool::Avg;
    let mut no_bias = config([32, 32], 8, 3, 7, 32, 2, 2);
    no_bias.qkv_bias = false;
    let mut odd = config([10, 12], 2, 2, 3, 36, 2, 3);
    odd.mlp_hidden_dim = 37;
    odd.mlp_hidden_dim_token_only = 90;
    odd.depth_token_only = 1;
    let mut headless = config([16, 16], 4, 3, 0, 16, 1, 2);
    headless.global_pool = GlobalPool::Avg;
    let cases = [
        (config([32, 32], 8, 3, 10, 32, 3, 4), 31),
        (avg, 32),
        (no_bias, 33),
        (config([24, 40], 8, 3, 5, 24, 2, 3), 34),
        (odd, 35),
        (config([8, 8], 8, 3, 4, 16, 0, 4), 36),
        (headless, 37),
    ];
    for (cfg, seed) in cases {
        let w = random_weights(&cfg, seed);
        let calib = images(&cfg, seed + 200, 6);
        let test = &images(&cfg, seed + 300, 1)[0];
        let want = run_pack(&pack_bytes(&cfg, &w, Precision::F32, None), test);
        let d = cfg.embed_dim as usize;
        let mut rng = Rng::new(seed + 400);
        let smooth: Smooth = (
            (0..d).map(|_| 1.0 + 0.6 * rng.uniform()).collect(),
            rng.vec(d, 0.3, 0.0),
        );
        for (qk, av, smooth) in [
            ("int8", "int8", None),
            ("int8", "f32", None),
            ("f32", "int8", None),
            ("f32", "f32", Some(smooth)),
        ] {
            let bytes = int8_pack(&cfg, &w, &calib, qk, av, smooth);
            let variants = [
                ("static", &bytes),
                ("class path dynamic", &dynamic(&cfg, &bytes)),
                ("activations dynamic", &rows_dynamic(&cfg, &bytes)),
            ];
            for (rows, bytes) in variants {
                let got = run_pack(bytes, test);
                let what = format!("{cfg:?} qk={qk} av={av} {rows}");
                let c = cosine(&got.features, &want.features);
                assert!(c > 0.998, "{what}: features cosine {c}");
                let c = cosine(&got.logits, &want.logits);
                assert!(c > 0.98, "{what}: logits cosine {c}");
                assert_eq!(got.attention.0.len(), want.attention.0.len());
                for (a, b) in got.attention.0.iter().zip(&want.attention.0) {
                    assert_eq!((a.0, a.1), (b.0, b.1));
                    // Total variation between the softmax rows (half the L1 distance): these random
                    // models' attention is very peaked (q/k weights at twice unit gain), so int8 inputs
                    // move up to 0.13 of the mass (measured); a wrong row or head moves most of it.
                    let tv =
                        a.2.iter()
                            .zip(&b.2)
                            .map(|(x, y)| (x - y).abs())
                            .sum::<f32>()
                            / 2.0;
                    assert!(
                        tv < 0.3,
                        "{what}: class attention {}/{} moved {tv}",
                        a.0,
                        a.1
                    );
                    let sum: f32 = a.2.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5, "{what}: row sums to {sum}");
                }
            }
        }
    }
}

/// `bytes` with its class-token path quantized at run time: `quant.class_path` `dynamic` and a
/// `row_sum` beside each class-path layer (as cait-quant writes them).
fn dynamic(cfg: &ModelConfig, bytes: &AlignedBytes) -> AlignedBytes {
    run_time(
        cfg,
        bytes,
        META_CLASS_PATH,
        cait_pack::int8::is_class_path_linear,
    )
}

/// `bytes` with every block linear layer's input rows quantized at run time: `quant.activation_scales`
/// `dynamic` and a `row_sum` beside each such layer (as cait-quant writes them).
fn rows_dynamic(cfg: &ModelConfig, bytes: &AlignedBytes) -> AlignedBytes {
    run_time(
        cfg,
        bytes,
        META_ACTIVATION_SCALES,
        cait_pack::int8::is_block_linear,
    )
}

/// `bytes` with metadata `key` `dynamic` and a `row_sum` beside each weight `layer` accepts.
fn run_time(
    cfg: &ModelConfig,
    bytes: &AlignedBytes,
    key: &str,
    layer: fn(TensorId) -> bool,
) -> AlignedBytes {
    let meta = [(key, "dynamic")];
    rewrite_with(
        cfg,
        bytes,
        |_, _, _| true,
        &meta,
        |name, data, dims| {
            let id = cfg
                .tensors()
                .map(|t| t.id)
                .find(|id| id.to_string() == name)?;
            if !layer(id) {
                return None;
            }
            let k = data.len() / dims[0] as usize;
            let sums = data
                .chunks_exact(k)
                .map(|row| row.iter().map(|&v| i32::from(v as i8)).sum())
                .collect();
            Some((Int8Tensor::RowSum(id).to_string(), sums))
        },
    )
}

/// Rows quantized at run time: `forward_rows` is the documented formula, bit for bit, with the
/// integer parts exact, each row with its own quantization, and agrees with the static forward
/// when the row's quantization is the reference.
#[test]
fn forward_rows_is_the_documented_formula() {
    let mut rng = Rng::new(77);
    for (out, k) in [(1, 1), (3, 5), (7, 33), (16, 64)] {
        let weight: Vec<i8> = (0..out * k)
            .map(|_| (rng.uniform() * 254.0 - 127.0) as i8)
            .collect();
        let weight_scale: Vec<f32> = (0..out).map(|_| 0.001 + 0.01 * rng.uniform()).collect();
        let bias: Vec<i32> = (0..out)
            .map(|_| (rng.uniform() * 2000.0 - 1000.0) as i32)
            .collect();
        let row_sum: Vec<i32> = weight
            .chunks_exact(k)
            .map(|r| r.iter().map(|&v| i32::from(v)).sum())
            .collect();
        let layer = QLinear {
            weight: &weight,
            weight_scale: &weight_scale,
            bias: &bias,
            row_sum: &row_sum,
            in_features: k,
        };
        // Three rows of different ranges, each quantized over its own.
        let rows_f: Vec<Vec<f32>> = [3.0, 0.25, 40.0]
            .iter()
            .map(|&r| (0..k).map(|_| (rng.uniform() - 0.2) * r).collect())
            .collect();
        let rows: Vec<ActQuant> = rows_f.iter().map(|x| ActQuant::of_row(x)).collect();
        let mut x = vec![0i8; 3 * k];
        for ((xf, q), out) in rows_f.iter().zip(&rows).zip(x.chunks_exact_mut(k)) {
            q.quantize_slice(xf, out);
        }
        let reference = ActQuant::new(0.02, -7.0).unwrap();
        let mut got = vec![f32::NAN; 3 * out];
        layer.forward_rows(&x, &rows, &reference, &mut got);
        for (t, row) in rows.iter().enumerate() {
            for o in 0..out {
                let w = &weight[o * k..(o + 1) * k];
                let acc: i32 = w
                    .iter()
                    .zip(&x[t * k..(t + 1) * k])
                    .map(|(&a, &b)| i32::from(a) * i32::from(b))
                    .sum();
                let centred = acc - row.zero_point * row_sum[o];
                let b = bias[o] + reference.zero_point * row_sum[o];
                let want =
                    (centred as f32 * row.scale + b as f32 * reference.scale) * weight_scale[o];
                let got = got[t * out + o];
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "row {t} out {o} of {out}x{k}"
                );
            }
        }
        let xf = &rows_f[0];
        let mut got = vec![f32::NAN; out];
        // With the reference's own quantization and zero bias the two paths agree to rounding.
        let zero = vec![0; out];
        let layer = QLinear {
            bias: &zero,
            ..layer
        };
        let mut static_ = vec![0.0; out];
        let mut xr = vec![0i8; k];
        reference.quantize_slice(xf, &mut xr);
        let folded: Vec<i32> = row_sum.iter().map(|&s| -reference.zero_point * s).collect();
        let folded_layer = QLinear {
            bias: &folded,
            ..layer
        };
        folded_layer.forward(&xr, reference.scale, &mut |_, o, y| static_[o] = y);
        layer.forward_rows(&xr, &[reference], &ActQuant::UNIT, &mut got);
        for o in 0..out {
            assert!(
                (got[o] - static_[o]).abs() <= 1e-5 * (1.0 + static_[o].abs()),
                "{o}"
            );
        }
        // Without row sums nothing is emitted (a layer resolved for the static path).
        let bare = QLinear {
            row_sum: &[],
            ..layer
        };
        let mut untouched = vec![f32::NAN; 3 * out];
        bare.forward_rows(&x, &rows, &reference, &mut untouched);
        assert!(untouched.iter().all(|v| v.is_nan()));
    }
}

/// The probe sees the same points, with the same number of values, in both engines.
#[test]
fn both_engines_report_the_same_points() {
    #[derive(Default)]
    struct Counts(Vec<(Tap, usize, usize)>);
    impl Probe for Counts {
        fn observe(&mut self, tap: Tap, width: usize, values: Values<'_>) {
            match self.0.iter_mut().find(|(t, _, _)| *t == tap) {
                Some(e) => e.2 += values.len(),
                None => self.0.push((tap, width, values.len())),
            }
        }
    }
    let cfg = config([24, 40], 8, 3, 5, 24, 2, 3);
    let w = random_weights(&cfg, 41);
    let image = &images(&cfg, 42, 1)[0];
    let float = pack_bytes(&cfg, &w, Precision::F32, None);
    let int8 = int8_pack(&cfg, &w, &images(&cfg, 43, 2), "int8", "int8", None);
    let int8_dynamic = dynamic(&cfg, &int8);
    let int8_rows = rows_dynamic(&cfg, &int8);
    let counts: Vec<Counts> = [&float, &int8, &int8_dynamic, &int8_rows]
        .iter()
        .map(|bytes| {
            let pack = Pack::parse(bytes.bytes()).unwrap();
            let model = Model::from_pack(&pack).unwrap();
            let mut ws = workspace(model.workspace_bytes());
            let mut logits = vec![0.0; model.logits_len()];
            let mut counts = Counts::default();
            let outputs = Outputs::logits(&mut logits);
            let ws = bytemuck::cast_slice_mut(&mut ws);
            model
                .forward_with_probe(image, ws, outputs, &mut counts)
                .unwrap();
            counts
        })
        .collect();
    let mut a = counts[0].0.clone();
    a.sort();
    for other in &counts[1..] {
        let mut b = other.0.clone();
        b.sort();
        assert_eq!(a, b);
    }
    // 15 patches, 16 tokens: 2 SA blocks × 9 points + 2 CA blocks × 9 + patch embed 2 + head 2.
    assert_eq!(a.len(), 2 * 9 + 2 * 9 + 2 + 2);
    let k = a
        .iter()
        .find(|(t, _, _)| t.site == Site::TokenBlock(1) && t.point == Point::K)
        .unwrap();
    assert_eq!((k.1, k.2), (16, 24 * 16));
}

fn small_int8() -> (ModelConfig, AlignedBytes) {
    let cfg = config([16, 24], 8, 3, 5, 16, 2, 2);
    let w = random_weights(&cfg, 9);
    let bytes = int8_pack(&cfg, &w, &images(&cfg, 10, 2), "int8", "int8", None);
    (cfg, bytes)
}

#[test]
fn int8_workspace_is_exact() {
    let (cfg, bytes) = small_int8();
    let pack = Pack::parse(bytes.bytes()).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let needed = model.workspace_bytes();
    assert_eq!(needed, workspace_bytes(&cfg, Precision::Int8));
    assert_eq!(crate::try_workspace_bytes_for(bytes.bytes()), Ok(needed));
    // N = 6, T = 7, R = 7, D = 16, H = 2: tokens 4·6·16 + cls 4·16 + attention scratch
    // (keys 112 + values 112 + logits/weights 2·4·14 + int8 weights 16 + tiles 112 + 4·112 +
    // row 4·16 + output tile 112 + key and value scales 2·4·7 + value sums 4·16).
    assert_eq!(
        needed,
        4 * 96 + 64 + (112 + 112 + 112 + 16 + 112 + 448 + 64 + 112 + 56 + 64)
    );
    let image = &images(&cfg, 11, 1)[0];
    let mut ws = workspace(needed + 64);
    let all: &mut [u8] = bytemuck::cast_slice_mut(&mut ws);
    let exact = run(&model, image, &mut all[..needed]).unwrap();
    assert_eq!(
        run(&model, image, &mut all[..needed - 1]).err(),
        Some(Error::WorkspaceTooSmall {
            needed,
            got: needed - 1
        })
    );
    all.fill(0xA5);
    let larger = run(&model, image, all).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&exact.logits), bits(&larger.logits));
    assert_eq!(bits(&exact.features), bits(&larger.features));
    let mut logits = vec![0.0; 5];
    assert_eq!(
        model.forward(image, &mut all[2..], &mut logits),
        Err(Error::WorkspaceMisaligned { align: 4 })
    );
}

#[test]
fn cait_xxs24_224_int8_workspace() {
    let cfg = ModelConfig {
        img_size: [224, 224],
        patch_size: 16,
        in_chans: 3,
        num_classes: 1000,
        embed_dim: 192,
        depth: 24,
        num_heads: 4,
        mlp_hidden_dim: 768,
        depth_token_only: 2,
        mlp_hidden_dim_token_only: 768,
        qkv_bias: true,
        global_pool: GlobalPool::Token,
    };
    // tokens 4·196·192 + cls 4·192 + attention (2·192·197 int8 keys/values, 2·4·4·197 f32
    // logits/weights, ⌈4·197⌉₄ int8 weights, 8·192 int8 tile, 4·8·192 query tile, 4·192 row,
    // 8·192 int8 output tile, 2·4·197 f32 key and value scales, 4·192 i32 value sums): 246,364
    // bytes, under the 256 KiB goal.
    let bytes = workspace_bytes(&cfg, Precision::Int8);
    assert_eq!(
        bytes,
        150_528 + 768 + 75_648 + 6_304 + 788 + 1_536 + 6_144 + 768 + 1_536 + 1_576 + 768
    );
    assert_eq!(bytes, 246_364);
    assert!(bytes <= 256 * 1024);
}

/// Rebuilds `bytes` with `edit` applied to its tensors and metadata.
fn rewrite(
    cfg: &ModelConfig,
    bytes: &AlignedBytes,
    edit: impl Fn(&str, &mut Vec<u8>, &mut Quant) -> bool,
    meta: &[(&str, &str)],
) -> AlignedBytes {
    rewrite_with(cfg, bytes, edit, meta, |_, _, _| None)
}

/// [`rewrite`], adding after a kept tensor (name, data, dims) the i32 tensor `extra` returns.
fn rewrite_with(
    cfg: &ModelConfig,
    bytes: &AlignedBytes,
    edit: impl Fn(&str, &mut Vec<u8>, &mut Quant) -> bool,
    meta: &[(&str, &str)],
    extra: impl Fn(&str, &[u8], &[u32]) -> Option<(String, Vec<i32>)>,
) -> AlignedBytes {
    let pack = Pack::parse(bytes.bytes()).unwrap();
    let mut writer = PackWriter::new(*cfg, Precision::Int8, preprocess(cfg));
    for (k, v) in pack.metadata().iter() {
        if !meta.iter().any(|(m, _)| *m == k) {
            writer.metadata(k, v);
        }
    }
    for (k, v) in meta {
        if !v.is_empty() {
            writer.metadata(k, v);
        }
    }
    // Scales indices shift when tensors are dropped: re-link by name.
    let mut index = HashMap::new();
    for t in pack.tensors() {
        let mut data = t.data.to_vec();
        let mut quant = t.quant;
        if !edit(t.name, &mut data, &mut quant) {
            continue;
        }
        if let Quant::PerChannel { axis, scales } = quant {
            let name = pack.tensor_at(scales as usize).unwrap().name;
            quant = Quant::PerChannel {
                axis,
                scales: index[name],
            };
        }
        let dims = t.shape.dims();
        let i = match t.dtype {
            cait_pack::DType::F32 => writer.add_f32(t.name, dims, bytemuck::cast_slice(&data)),
            cait_pack::DType::I8 => writer.add_i8(t.name, dims, bytemuck::cast_slice(&data), quant),
            cait_pack::DType::I32 => {
                let v: Vec<i32> = data
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                writer.add_i32(t.name, dims, &v, quant)
            }
            other => unreachable!("{other:?}"),
        }
        .unwrap();
        index.insert(t.name, i);
        if let Some((name, values)) = extra(t.name, &data, dims) {
            let len = values.len() as u32;
            writer.add_i32(&name, &[len], &values, Quant::None).unwrap();
        }
    }
    AlignedBytes::new(&writer.finish().unwrap())
}

#[test]
fn int8_pack_errors_name_what_is_wrong() {
    let (cfg, bytes) = small_int8();
    let build = |b: &AlignedBytes| {
        let pack = Pack::parse(b.bytes()).unwrap();
        Model::from_pack(&pack).err()
    };
    assert_eq!(build(&bytes), None);

    let act0 = Int8Tensor::BlockActQuant {
        token_only: false,
        index: 1,
    };
    let name = act0.to_string();
    // `bytes` without tensor `t` is refused, naming it.
    let refused_without = |bytes: &AlignedBytes, t: Int8Tensor| {
        let name = t.to_string();
        let gone = rewrite(&cfg, bytes, |n, _, _| n != name, &[]);
        assert_eq!(build(&gone), Some(Error::MissingInt8Tensor(t)));
    };
    refused_without(&bytes, act0);
    let bias = Int8Tensor::AccBias(TensorId::TokenBlock(0, BlockParam::Fc2Weight));
    refused_without(&bytes, bias);

    // Row 6 (norm2) of block 1: scale 0.
    let zero = rewrite(
        &cfg,
        &bytes,
        |n, d, _| {
            if n == name {
                d[6 * 8..6 * 8 + 4].copy_from_slice(&0f32.to_le_bytes());
            }
            true
        },
        &[],
    );
    assert_eq!(
        build(&zero),
        Some(Error::BadActivationQuant {
            tensor: act0,
            row: 6
        })
    );

    for (key, value) in [
        (META_QK, ""),
        (META_AV, "int4"),
        (META_CLASS_PATH, "sometimes"),
        (META_ACTIVATION_SCALES, "Dynamic"),
    ] {
        let bad = rewrite(&cfg, &bytes, |_, _, _| true, &[(key, value)]);
        assert_eq!(build(&bad), Some(Error::BadMetadata { key }));
    }
    // A dynamic class path needs each class-path layer's row sums.
    let dynamic = dynamic(&cfg, &bytes);
    assert_eq!(build(&dynamic), None);
    refused_without(&dynamic, Int8Tensor::RowSum(TensorId::HeadWeight));
    // Dynamic activations need every block layer's (a class path's are not enough).
    let rows = rows_dynamic(&cfg, &bytes);
    assert_eq!(build(&rows), None);
    let sums = Int8Tensor::RowSum(TensorId::Block(1, BlockParam::Fc2Weight));
    refused_without(&rows, sums);
    let class_only = rewrite(
        &cfg,
        &dynamic,
        |_, _, _| true,
        &[(META_ACTIVATION_SCALES, "dynamic")],
    );
    let first = Int8Tensor::RowSum(TensorId::Block(0, BlockParam::QkvWeight));
    assert_eq!(build(&class_only), Some(Error::MissingInt8Tensor(first)));

    let fc1 = TensorId::Block(0, BlockParam::Fc1Weight).to_string();
    let per_tensor = rewrite(
        &cfg,
        &bytes,
        |n, _, q| {
            if n == fc1 {
                *q = Quant::PerTensor {
                    scale: 0.01,
                    zero_point: 0,
                };
            }
            true
        },
        &[],
    );
    match build(&per_tensor) {
        Some(Error::NotPerChannel(n)) => assert_eq!(n.as_str(), fc1),
        other => panic!("expected NotPerChannel, got {other:?}"),
    }
    // The messages say what is wrong.
    let e = Error::BadActivationQuant {
        tensor: act0,
        row: 6,
    };
    assert!(e.to_string().contains("blocks.1.act_quant"), "{e}");
    assert!(
        Error::MissingInt8Tensor(bias)
            .to_string()
            .contains("blocks_token_only.0.mlp.fc2.acc_bias")
    );
}

/// Extreme inputs (huge, NaN) saturate instead of wrapping or panicking.
#[test]
fn int8_engine_saturates_on_wild_inputs() {
    let (cfg, bytes) = small_int8();
    let pack = Pack::parse(bytes.bytes()).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let mut ws = workspace(model.workspace_bytes());
    let mut logits = vec![0.0; 5];
    let n = cfg.input_len().unwrap();
    for image in [vec![1e30f32; n], vec![f32::NAN; n], vec![-f32::INFINITY; n]] {
        model
            .forward(&image, bytemuck::cast_slice_mut(&mut ws), &mut logits)
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 8-bit input

/// 8-bit pixels given to the engine ([`crate::Input::Pixels`], planar or interleaved) give the
/// logits of the host-normalized image (`Preprocess::normalize`), bit for bit, on f32, f16 and
/// int8 packs, with three channels and with one; a frame of the wrong size is refused.
#[test]
fn pixel_input_equals_the_normalized_image() {
    use crate::{Input, PixelLayout};
    for chans in [3, 1] {
        let cfg = config([16, 24], 8, chans, 5, 16, 2, 2);
        let w = random_weights(&cfg, 21);
        let pre = preprocess(&cfg);
        let (c, h, wd) = (chans as usize, 16, 24);
        let mut rng = Rng::new(77 + chans);
        let planar: Vec<u8> = (0..c * h * wd)
            .map(|_| ((rng.uniform() + 1.0) * 127.99) as u8)
            .collect();
        let mut interleaved = vec![0u8; planar.len()];
        for ch in 0..c {
            for p in 0..h * wd {
                interleaved[p * c + ch] = planar[ch * h * wd + p];
            }
        }
        let normalized: Vec<f32> = planar
            .iter()
            .enumerate()
            .map(|(i, &v)| pre.normalize(i / (h * wd), v))
            .collect();
        let packs = [
            pack_bytes(&cfg, &w, Precision::F32, None),
            pack_bytes(&cfg, &w, Precision::F16, None),
            int8_pack(&cfg, &w, &images(&cfg, 3, 2), "int8", "int8", None),
        ];
        for bytes in &packs {
            let pack = Pack::parse(bytes.bytes()).unwrap();
            let model = Model::from_pack(&pack).unwrap();
            let mut ws = workspace(model.workspace_bytes());
            let ws = bytemuck::cast_slice_mut(&mut ws);
            let mut want = vec![0f32; model.logits_len()];
            model.forward(&normalized, ws, &mut want).unwrap();
            for (data, layout) in [
                (&planar, PixelLayout::Chw),
                (&interleaved, PixelLayout::Hwc),
            ] {
                let mut got = vec![f32::NAN; model.logits_len()];
                let input = Input::Pixels { data, layout };
                model
                    .forward_input(input, ws, Outputs::logits(&mut got))
                    .unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{:?} pack, {chans} channels, {layout:?}",
                    pack.precision()
                );
            }
            let short = Input::Pixels {
                data: &planar[1..],
                layout: PixelLayout::Hwc,
            };
            let e = model
                .forward_input(short, ws, Outputs::logits(&mut want))
                .unwrap_err();
            assert!(matches!(e, Error::InputLength { .. }), "{e}");
        }
    }
}

/// A frame held in the workspace itself ([`Model::forward_frame`], [`crate::Session::frame_mut`])
/// gives the logits of the same HWC pixels given as [`crate::Input::Pixels`], bit for bit, on f32,
/// f16 and int8 packs; whatever the rest of the workspace holds; with the frame ending
/// inside the layout and beyond it; when the tokens outgrow the pixels row by row (`4·D > C·p²`)
/// and when they do not; with odd widths. One byte less than
/// `frame_workspace_bytes` is refused.
#[test]
fn frame_in_the_workspace_equals_pixel_input() {
    use crate::{Input, PixelLayout, Session};
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut odd = config([20, 12], 4, 2, 3, 36, 1, 3);
    odd.mlp_hidden_dim = 37;
    let cases = [
        // 4·D = 64 < C·p² = 192: the pixels are consumed faster than tokens are written.
        config([16, 24], 8, 3, 5, 16, 2, 2),
        // 4·D = 128 > C·p² = 16: the tokens outgrow the pixels; the offset grows with the rows.
        config([16, 20], 4, 1, 4, 32, 1, 2),
        // 4·D = 768 = C·p² (cait_xxs24_224's ratio), 3 × 3 patches.
        config([48, 48], 16, 3, 4, 192, 1, 4),
        // 5 × 3 patches, D 36 (not a multiple of 8), 3 heads, an odd MLP width.
        odd,
    ];
    for (k, cfg) in cases.iter().enumerate() {
        let w = random_weights(cfg, 30 + k as u32);
        let mut rng = Rng::new(90 + k as u32);
        let len = cfg.input_len().unwrap();
        let frame: Vec<u8> = (0..len)
            .map(|_| ((rng.uniform() + 1.0) * 127.99) as u8)
            .collect();
        let int8 = int8_pack(cfg, &w, &images(cfg, 3, 2), "int8", "int8", None);
        let packs = [
            pack_bytes(cfg, &w, Precision::F32, None),
            pack_bytes(cfg, &w, Precision::F16, None),
            int8,
        ];
        for bytes in &packs {
            let pack = Pack::parse(bytes.bytes()).unwrap();
            let model = Model::from_pack(&pack).unwrap();
            let what = format!("case {k}, {:?} pack", pack.precision());
            let mut ws = workspace(model.workspace_bytes());
            let ws = bytemuck::cast_slice_mut(&mut ws);
            let mut want = vec![0f32; model.logits_len()];
            let input = Input::Pixels {
                data: &frame,
                layout: PixelLayout::Hwc,
            };
            model
                .forward_input(input, ws, Outputs::logits(&mut want))
                .unwrap();
            let bytes_needed = model.frame_workspace_bytes();
            let header = cait_pack::PackHeader::read(bytes.bytes()).unwrap();
            assert_eq!(
                bytes_needed,
                crate::frame_workspace_bytes(cfg, pack.precision(), header.mixed),
                "{what}"
            );
            assert_eq!(
                bytes_needed,
                crate::frame_workspace_bytes_for(bytes.bytes())
            );
            // Fill every byte but the frame with noise: the pass must not read it.
            let mut big = workspace(bytes_needed);
            let big: &mut [u8] = bytemuck::cast_slice_mut(&mut big);
            let big = &mut big[..bytes_needed];
            for b in big.iter_mut() {
                *b = (rng.uniform() * 100.0) as i8 as u8;
            }
            let mut session = Session::new(bytes.bytes(), big).unwrap();
            session.frame_mut().unwrap().copy_from_slice(&frame);
            let mut got = vec![f32::NAN; model.logits_len()];
            session.classify_frame(&mut got).unwrap();
            assert_eq!(bits(&got), bits(&want), "{what}");
            // One byte short: the frame does not fit (the layout alone may).
            let mut short = workspace(bytes_needed);
            let short: &mut [u8] = bytemuck::cast_slice_mut(&mut short);
            let short = &mut short[..bytes_needed - 1];
            let e = model
                .forward_frame(short, Outputs::logits(&mut got))
                .unwrap_err();
            assert!(matches!(e, Error::WorkspaceTooSmall { .. }), "{what}: {e}");
            if bytes_needed > model.workspace_bytes() {
                let mut session = Session::new(bytes.bytes(), short).unwrap();
                let e = session.frame_mut().unwrap_err();
                assert!(matches!(e, Error::WorkspaceTooSmall { .. }), "{what}: {e}");
            }
        }
    }
}

/// The frame's offset is the least that keeps every pass of the in-place patch embedding below
/// the unread frame: pass `r` writes `(r+1)·row_tokens` bytes of tokens and `row_cols` of columns
/// after them, and frame row `r·p` starts at `offset + r·row_pixels`. Checked pass by pass (not
/// by the closed form) on random shapes, with equality at the tightest pass.
#[test]
fn frame_offset_is_the_least_safe_one() {
    let mut rng = Rng::new(5);
    for _ in 0..2000 {
        let mut pick =
            |lo: u32, hi: u32| lo + ((rng.uniform() + 1.0) * 0.5 * (hi - lo) as f32) as u32;
        let p = pick(1, 17);
        let img = [p * pick(1, 9), p * pick(1, 9)];
        let cfg = config(img, p, pick(1, 5), 3, 4 * pick(1, 64), 1, 4);
        for precision in [Precision::F32, Precision::Int8] {
            let value = if precision == Precision::Int8 { 1 } else { 4 };
            let (rows, cols) = ((img[0] / p) as usize, (img[1] / p) as usize);
            let (c, d, p) = (cfg.in_chans as usize, cfg.embed_dim as usize, p as usize);
            let row_tokens = cols * d * 4;
            let row_cols = cols * c * p * p * value;
            let row_pixels = p * img[1] as usize * c;
            let offset = crate::frame_offset(&cfg, precision);
            let slack: Vec<i64> = (0..rows)
                .map(|r| {
                    (offset + r * row_pixels) as i64 - ((r + 1) * row_tokens + row_cols) as i64
                })
                .collect();
            assert!(slack.iter().all(|&s| s >= 0), "{cfg:?} {precision:?}");
            assert_eq!(slack.iter().min(), Some(&0), "{cfg:?} {precision:?}");
        }
    }
}

/// A build with one engine, or one kind of int8 scales, left out refuses the packs it cannot run
/// by the feature that builds them in, and runs the rest (tools/test.sh runs this with each engine
/// alone and with each kind of int8 scales beside the float engine; with everything it is not
/// compiled).
#[test]
#[cfg(not(all(feature = "float", feature = "int8-static", feature = "int8-dynamic")))]
fn engine_left_out_is_refused() {
    let cfg = config([16, 24], 8, 3, 5, 16, 2, 2);
    let w = random_weights(&cfg, 4);
    let refused = |bytes: &AlignedBytes| {
        let pack = Pack::parse(bytes.bytes()).unwrap();
        Model::from_pack(&pack).err()
    };
    let (statics, dynamics) = (
        cfg!(feature = "int8-static"),
        cfg!(feature = "int8-dynamic"),
    );
    if cfg!(feature = "float") {
        let calib = images(&cfg, 204, 6);
        let test = &images(&cfg, 304, 1)[0];
        let want = run_pack(&pack_bytes(&cfg, &w, Precision::F32, None), test);
        let static_pack = int8_pack(&cfg, &w, &calib, "int8", "int8", None);
        let dynamic_pack = rows_dynamic(&cfg, &static_pack);
        for (bytes, built, feature) in [
            (&static_pack, statics, "int8-static"),
            (&dynamic_pack, dynamics, "int8-dynamic"),
        ] {
            let feature = if statics || dynamics { feature } else { "int8" };
            if built {
                // `int8_engine_tracks_the_f32_engine`'s bound. The bits are the full build's: the
                // firmware tests run each kind alone in QEMU (tools/cait/tests/qemu.rs).
                let c = cosine(&run_pack(bytes, test).features, &want.features);
                assert!(c > 0.998, "{feature}: features cosine {c}");
            } else {
                let e = refused(bytes);
                assert_eq!(
                    e,
                    Some(Error::NotBuiltIn {
                        precision: Precision::Int8,
                        feature
                    })
                );
                assert!(e.unwrap().to_string().contains(&format!("`{feature}`")));
            }
        }
    } else {
        for precision in [Precision::F32, Precision::F16] {
            let bytes = pack_bytes(&cfg, &w, precision, None);
            let e = refused(&bytes);
            assert_eq!(
                e,
                Some(Error::NotBuiltIn {
                    precision,
                    feature: "float"
                })
            );
            assert!(e.unwrap().to_string().contains("`float`"));
        }
    }
}

/// The x86-64 AVX2 epilogues (the sums of four rows buffered, then the outputs eight lanes at a
/// time: GELU and the quantization for fc1, the quantization for keys and queries, the residual
/// add for proj and fc2) give the scalar epilogues' bits, over row counts that are and are not
/// multiples of four, widths with and without a tail of eight, inputs reaching GELU's flat parts,
/// and saturating outputs; and refuse rows wider than their buffer.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[test]
fn vectorized_epilogues_are_the_scalar_ones() {
    use crate::kernels::gelu::gelu_rational;
    if !crate::kernels::x86::avx2() {
        return;
    }
    let mut rng = Rng::new(2027);
    let mut saturated = false;
    for (rows, out, k) in [(1, 1, 1), (3, 5, 7), (4, 8, 16), (9, 37, 33), (197, 96, 24)] {
        let weight: Vec<i8> = (0..out * k)
            .map(|_| (rng.uniform() * 254.0 - 127.0) as i8)
            .collect();
        let weight_scale: Vec<f32> = (0..out).map(|_| 0.0005 + 0.02 * rng.uniform()).collect();
        let bias: Vec<i32> = (0..out)
            .map(|_| (rng.uniform() * 20000.0 - 10000.0) as i32)
            .collect();
        let layer = QLinear {
            weight: &weight,
            weight_scale: &weight_scale,
            bias: &bias,
            row_sum: &[],
            in_features: k,
        };
        let x: Vec<i8> = (0..rows * k)
            .map(|_| (rng.uniform() * 255.0 - 128.0) as i8)
            .collect();
        let case = format!("{rows} rows of {out} outputs, k {k}");
        // A narrow output range: some outputs saturate at either end.
        let q = ActQuant::new(0.02, 3.0).unwrap();
        let mut want = vec![0i8; rows * out];
        layer.forward(&x, 0.05, &mut |t, o, y| {
            want[t * out + o] = q.quantize(gelu_rational(y))
        });
        let mut got = vec![0i8; rows * out];
        assert!(layer.forward_gelu_quantized_avx2(&x, 0.05, q, &mut got));
        assert_eq!(got, want, "GELU: {case}");
        saturated |= got.contains(&127);

        layer.forward(&x, 0.05, &mut |t, o, y| want[t * out + o] = q.quantize(y));
        assert!(layer.forward_quantized_avx2(&x, 0.05, q, &mut got));
        assert_eq!(got, want, "quantized: {case}");

        let residual: Vec<f32> = (0..rows * out).map(|_| rng.uniform() * 8.0 - 4.0).collect();
        let mut want = residual.clone();
        layer.forward(&x, 0.05, &mut |t, o, y| want[t * out + o] += y);
        let mut got = residual.clone();
        assert!(layer.forward_add_avx2(&x, 0.05, &mut got));
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "residual add: {case}");
    }
    assert!(saturated, "no saturated output");
    let wide = vec![0i32; 1025];
    let weight = vec![1i8; 1025];
    let layer = QLinear {
        weight: &weight,
        weight_scale: &[1.0; 1025],
        bias: &wide,
        row_sum: &[],
        in_features: 1,
    };
    let mut out = vec![5i8; 1025];
    assert!(!layer.forward_gelu_quantized_avx2(&[1], 1.0, ActQuant::UNIT, &mut out));
    assert!(!layer.forward_quantized_avx2(&[1], 1.0, ActQuant::UNIT, &mut out));
    assert!(out.iter().all(|&v| v == 5), "nothing written");
    let mut residual = vec![0.5f32; 1025];
    assert!(!layer.forward_add_avx2(&[1], 1.0, &mut residual));
    assert!(residual.iter().all(|&v| v == 0.5), "nothing added");
}
