//! Building an int8 pack from a checkpoint and the calibration's decisions: LayerScale and
//! smoothing folded, weights quantized per output channel, biases in accumulator units.

use std::collections::HashMap;

use cait_core::{Point, Site, Tap};
use cait_pack::int8::{Int8Tensor, META_ACTIVATION_SCALES, META_AV, META_CLASS_PATH, META_QK, act};
use cait_pack::{BlockParam, ModelConfig, Precision, Quant, TensorId};

use super::QuantError;
use super::calib::ActParams;
use super::observe::Energy;
use cait_import::Checkpoint;

/// Per-channel smoothing of a LayerNorm output: the quantized activation is
/// `(x - shift[c]) / scale[c]`, folded into the norm's affine and the consumers' weights.
#[derive(Clone, Debug)]
pub(crate) struct Smooth {
    pub(crate) scale: Vec<f32>,
    pub(crate) shift: Vec<f32>,
}

/// What an int8 pack is built from.
pub(crate) struct Plan<'a> {
    /// Smoothing per LayerNorm output tap (absent: none).
    pub(crate) smooth: &'a HashMap<Tap, Smooth>,
    /// `(scale, zero_point)` per quantized activation.
    pub(crate) acts: &'a HashMap<Tap, ActParams>,
    pub(crate) qk_int8: bool,
    pub(crate) av_int8: bool,
    pub(crate) class_path: super::ClassPath,
    pub(crate) activation_scales: super::ActivationScales,
    /// Blocks kept in f16 (mixed precision), as `Site::Block` / `Site::TokenBlock`.
    pub(crate) f16_blocks: &'a [Site],
}

impl Plan<'_> {
    /// Whether tensor `id` belongs to a block kept in f16.
    fn keeps_f16(&self, id: TensorId) -> bool {
        match id {
            TensorId::Block(..) | TensorId::TokenBlock(..) => {
                self.f16_blocks.contains(&site_of(id))
            }
            _ => false,
        }
    }
}

/// The block a LayerNorm or linear belongs to, as a probe site.
fn site_of(id: TensorId) -> Site {
    match id {
        TensorId::Block(i, _) => Site::Block(i),
        TensorId::TokenBlock(i, _) => Site::TokenBlock(i),
        TensorId::NormWeight | TensorId::NormBias | TensorId::HeadWeight | TensorId::HeadBias => {
            Site::Head
        }
        _ => Site::PatchEmbed,
    }
}

/// The activation a linear layer's weight multiplies, and the LayerNorm output tap whose
/// smoothing its input columns absorb (if that input is a LayerNorm output).
fn input_of(id: TensorId) -> Tap {
    use BlockParam::*;
    let site = site_of(id);
    let point = match id {
        TensorId::PatchEmbedWeight => Point::Input,
        TensorId::HeadWeight => Point::Input,
        TensorId::Block(_, p) | TensorId::TokenBlock(_, p) => match p {
            QkvWeight | QWeight | KWeight | VWeight => Point::Norm1,
            ProjWeight => Point::AttentionOut,
            Fc1Weight => Point::Norm2,
            _ => Point::Hidden,
        },
        _ => Point::Input,
    };
    Tap { site, point }
}

/// The bias of a linear layer's weight.
fn bias_of(id: TensorId) -> TensorId {
    use BlockParam::*;
    let b = |p| match p {
        QkvWeight => QkvBias,
        QWeight => QBias,
        KWeight => KBias,
        VWeight => VBias,
        ProjWeight => ProjBias,
        Fc1Weight => Fc1Bias,
        _ => Fc2Bias,
    };
    match id {
        TensorId::PatchEmbedWeight => TensorId::PatchEmbedBias,
        TensorId::HeadWeight => TensorId::HeadBias,
        TensorId::Block(i, p) => TensorId::Block(i, b(p)),
        TensorId::TokenBlock(i, p) => TensorId::TokenBlock(i, b(p)),
        other => other,
    }
}

/// The LayerScale folded into a linear layer's output rows, if any.
fn layer_scale_of(id: TensorId) -> Option<TensorId> {
    use BlockParam::*;
    match id {
        TensorId::Block(i, ProjWeight) => Some(TensorId::Block(i, Gamma1)),
        TensorId::Block(i, Fc2Weight) => Some(TensorId::Block(i, Gamma2)),
        TensorId::TokenBlock(i, ProjWeight) => Some(TensorId::TokenBlock(i, Gamma1)),
        TensorId::TokenBlock(i, Fc2Weight) => Some(TensorId::TokenBlock(i, Gamma2)),
        _ => None,
    }
}

/// `head_dim^-0.5` as the engine rounds it.
pub(crate) fn query_scale(cfg: &ModelConfig) -> f32 {
    (1.0 / (cfg.head_dim() as f64).sqrt()) as f32
}

/// Per-output-channel symmetric int8 weights: `(q, scales)`, `q` in `[-127, 127]`.
pub(crate) fn quantize_weight(w: &[f64], out: usize) -> (Vec<i8>, Vec<f32>) {
    let k = w.len() / out;
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(out);
    for row in w.chunks_exact(k) {
        let amax = row.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let s = (amax / 127.0) as f32;
        // An all-zero row: any positive scale represents it exactly.
        let s = if s.is_finite() && s > 0.0 { s } else { 1.0 };
        scales.push(s);
        q.extend(
            row.iter()
                .map(|&v| (v / s as f64).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

/// A pack and each linear layer's weight quantization energy, by layer name.
pub(crate) type Built = (Vec<u8>, Vec<(String, Energy)>);

/// Builds the pack; also returns each linear layer's weight quantization energy, by layer name.
pub(crate) fn build(
    ckpt: &Checkpoint,
    plan: &Plan<'_>,
    metadata: &[(String, String)],
) -> Result<Built, QuantError> {
    let cfg = ckpt.config;
    let d = cfg.embed_dim as usize;
    let tensor = |id: TensorId| -> Result<Vec<f64>, QuantError> {
        let t = ckpt
            .tensor(id)
            .ok_or_else(|| QuantError::Internal(format!("checkpoint lacks {id}")))?;
        Ok(t.data.iter().map(|&v| v as f64).collect())
    };
    let pack = |e: cait_pack::WriteError| QuantError::Internal(e.to_string());
    let mut w = cait_import::pack_writer(ckpt, Precision::Int8);
    for (k, v) in metadata {
        w.metadata(k, v);
    }
    w.metadata(META_QK, if plan.qk_int8 { "int8" } else { "f32" });
    w.metadata(META_AV, if plan.av_int8 { "int8" } else { "f32" });
    let dynamic = plan.activation_scales == super::ActivationScales::Dynamic;
    // Dynamic activation scales quantize the class path at run time too.
    let class_path = if dynamic {
        super::ClassPath::Dynamic
    } else {
        plan.class_path
    };
    w.metadata(META_CLASS_PATH, class_path.as_str());
    w.metadata(META_ACTIVATION_SCALES, plan.activation_scales.as_str());
    let mut energies = Vec::new();
    let smooth_of = |tap: Tap| plan.smooth.get(&tap);
    let act_of = |tap: Tap| -> Result<ActParams, QuantError> {
        plan.acts
            .get(&tap)
            .copied()
            .ok_or_else(|| QuantError::Internal(format!("no calibration for {tap:?}")))
    };
    let qscale = query_scale(&cfg) as f64;

    for spec in cfg.tensors() {
        let id = spec.id;
        let name = id.to_string();
        let dims = spec.shape.dims();
        use BlockParam::*;
        if plan.keeps_f16(id) {
            cait_import::add_float(&mut w, ckpt, id, true).map_err(pack)?;
            continue;
        }
        match id {
            TensorId::Block(_, Gamma1 | Gamma2) | TensorId::TokenBlock(_, Gamma1 | Gamma2) => {}
            _ if id.is_linear_weight() => {
                let out = dims[0] as usize;
                let mut weight = tensor(id)?;
                let k = weight.len() / out;
                let bias_id = bias_of(id);
                let mut bias = if cfg.has_tensor(bias_id) {
                    tensor(bias_id)?
                } else {
                    vec![0.0; out]
                };
                let input = input_of(id);
                // Smoothing of the input: x = x̃ · r + m, so W·x + b = (W·diag(r))·x̃ + (W·m + b).
                if let Some(s) = smooth_of(input) {
                    for (row, b) in weight.chunks_exact_mut(k).zip(bias.iter_mut()) {
                        let shift: f64 = row.iter().zip(&s.shift).map(|(w, m)| w * *m as f64).sum();
                        *b += shift;
                        for (w, r) in row.iter_mut().zip(&s.scale) {
                            *w *= *r as f64;
                        }
                    }
                }
                // Queries: timm scales q by head_dim^-0.5 after the bias; fold it in.
                let query_rows = match id {
                    TensorId::Block(_, QkvWeight) => 0..d,
                    TensorId::TokenBlock(_, QWeight) => 0..d,
                    _ => 0..0,
                };
                for o in query_rows {
                    bias[o] *= qscale;
                    for v in &mut weight[o * k..(o + 1) * k] {
                        *v *= qscale;
                    }
                }
                // LayerScale: gamma · (W·x + b) = (diag(gamma)·W)·x + gamma·b.
                if let Some(g) = layer_scale_of(id) {
                    let gamma = tensor(g)?;
                    for ((row, b), g) in weight.chunks_exact_mut(k).zip(bias.iter_mut()).zip(&gamma)
                    {
                        *b *= g;
                        for v in row.iter_mut() {
                            *v *= g;
                        }
                    }
                }
                let (q, scales) = quantize_weight(&weight, out);
                let mut e = Energy::default();
                for (row, (qr, &s)) in weight.chunks_exact(k).zip(q.chunks_exact(k).zip(&scales)) {
                    for (&v, &qv) in row.iter().zip(qr) {
                        e.add(v as f32, qv as f32 * s);
                    }
                }
                energies.push((name.trim_end_matches(".weight").to_owned(), e));
                let x = act_of(input)?;
                let acc_bias: Vec<i32> = bias
                    .iter()
                    .zip(q.chunks_exact(k))
                    .zip(&scales)
                    .map(|((&b, qr), &s)| {
                        let unit = x.scale as f64 * s as f64;
                        let sum: i64 = qr.iter().map(|&v| v as i64).sum();
                        let v = (b / unit).round() - (x.zero_point as i64 * sum) as f64;
                        v.clamp(i32::MIN as f64, i32::MAX as f64) as i32
                    })
                    .collect();
                let scale_index = w
                    .add_f32(
                        &Int8Tensor::WeightScale(id).to_string(),
                        &[out as u32],
                        &scales,
                    )
                    .map_err(pack)?;
                w.add_i8(
                    &name,
                    dims,
                    &q,
                    Quant::PerChannel {
                        axis: 0,
                        scales: scale_index,
                    },
                )
                .map_err(pack)?;
                w.add_i32(
                    &Int8Tensor::AccBias(id).to_string(),
                    &[out as u32],
                    &acc_bias,
                    Quant::None,
                )
                .map_err(pack)?;
                let class_path = class_path == super::ClassPath::Dynamic
                    && cait_pack::int8::is_class_path_linear(id);
                if class_path || (dynamic && cait_pack::int8::is_block_linear(id)) {
                    let sums: Vec<i32> = q
                        .chunks_exact(k)
                        .map(|row| row.iter().map(|&v| i32::from(v)).sum())
                        .collect();
                    w.add_i32(
                        &Int8Tensor::RowSum(id).to_string(),
                        &[out as u32],
                        &sums,
                        Quant::None,
                    )
                    .map_err(pack)?;
                }
            }
            // Linear biases live in `acc_bias`.
            TensorId::PatchEmbedBias | TensorId::HeadBias => {}
            TensorId::Block(_, QkvBias | QBias | KBias | VBias | ProjBias | Fc1Bias | Fc2Bias)
            | TensorId::TokenBlock(
                _,
                QkvBias | QBias | KBias | VBias | ProjBias | Fc1Bias | Fc2Bias,
            ) => {}
            TensorId::Block(_, Norm1Weight | Norm1Bias | Norm2Weight | Norm2Bias)
            | TensorId::TokenBlock(_, Norm1Weight | Norm1Bias | Norm2Weight | Norm2Bias)
            | TensorId::NormWeight
            | TensorId::NormBias => {
                let point = match id {
                    TensorId::Block(_, Norm1Weight | Norm1Bias)
                    | TensorId::TokenBlock(_, Norm1Weight | Norm1Bias) => Point::Norm1,
                    TensorId::NormWeight | TensorId::NormBias => Point::Input,
                    _ => Point::Norm2,
                };
                let is_bias = matches!(
                    id,
                    TensorId::NormBias
                        | TensorId::Block(_, Norm1Bias | Norm2Bias)
                        | TensorId::TokenBlock(_, Norm1Bias | Norm2Bias)
                );
                let mut v = tensor(id)?;
                // LN'(x) = (LN(x) - m) / r: weight / r, (bias - m) / r.
                if let Some(s) = smooth_of(Tap {
                    site: site_of(id),
                    point,
                }) {
                    for (c, x) in v.iter_mut().enumerate() {
                        let shift = if is_bias { s.shift[c] as f64 } else { 0.0 };
                        *x = (*x - shift) / s.scale[c] as f64;
                    }
                }
                let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                w.add_f32(&name, dims, &v).map_err(pack)?;
            }
            _ => {
                let v: Vec<f32> = tensor(id)?.iter().map(|&x| x as f32).collect();
                w.add_f32(&name, dims, &v).map_err(pack)?;
            }
        }
    }

    // Activation tables.
    let pair = |p: ActParams| [p.scale, p.zero_point as f32];
    let block_table = |site: Site| -> Result<Vec<f32>, QuantError> {
        let mut table = vec![0.0f32; act::ROWS * 2];
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
        for (row, point) in points {
            table[row * 2..row * 2 + 2].copy_from_slice(&pair(act_of(Tap { site, point })?));
        }
        Ok(table)
    };
    let shape = [act::ROWS as u32, 2];
    let blocks = (0..cfg.depth)
        .map(|i| (false, i, Site::Block(i)))
        .chain((0..cfg.depth_token_only).map(|i| (true, i, Site::TokenBlock(i))));
    for (token_only, index, site) in blocks {
        if plan.f16_blocks.contains(&site) {
            continue;
        }
        let t = Int8Tensor::BlockActQuant { token_only, index };
        w.add_f32(&t.to_string(), &shape, &block_table(site)?)
            .map_err(pack)?;
    }
    let input = act_of(Tap {
        site: Site::PatchEmbed,
        point: Point::Input,
    })?;
    w.add_f32(
        &Int8Tensor::PatchEmbedActQuant.to_string(),
        &[1, 2],
        &pair(input),
    )
    .map_err(pack)?;
    let head_input = Tap {
        site: Site::Head,
        point: Point::Input,
    };
    if cfg.num_classes > 0 {
        w.add_f32(
            &Int8Tensor::HeadActQuant.to_string(),
            &[1, 2],
            &pair(act_of(head_input)?),
        )
        .map_err(pack)?;
    }
    let mut smooth = vec![1.0f32; d];
    smooth.extend(std::iter::repeat_n(0.0f32, d));
    if let Some(s) = smooth_of(head_input) {
        smooth[..d].copy_from_slice(&s.scale);
        smooth[d..].copy_from_slice(&s.shift);
    }
    w.add_f32(&Int8Tensor::NormSmooth.to_string(), &[2, d as u32], &smooth)
        .map_err(pack)?;
    let bytes = w.finish().map_err(pack)?;
    Ok((bytes, energies))
}
