//! The engine against a plain reference implementation of timm's `cait.py`, on random packs.
//!
//! The reference is a direct, `Vec`-based translation of timm's forward pass in f64: it materialises
//! `qkv`, the `[H, N, N]` attention tensors before and after each talking-heads mix, and the whole
//! MLP hidden layer, exactly as PyTorch does. The engine (f32, one query row at a time, tiled, fused
//! epilogues) must agree with it on every output.

use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

use cait_pack::{
    BlockParam, GlobalPool, Interpolation, ModelConfig, Pack, PackError, PackWriter, Precision,
    Preprocess, TensorId,
};

use crate::{AttentionSink, Error, Model, Outputs, Workspace, workspace_bytes};

// ---------------------------------------------------------------------------------------------
// Random models

/// xorshift32 mapped to `[-1, 1)`: deterministic, dependency-free test data.
pub(crate) struct Rng(u32);

impl Rng {
    pub(crate) fn new(seed: u32) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9) | 1)
    }
    pub(crate) fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        (self.0 >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }
    pub(crate) fn vec(&mut self, len: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..len).map(|_| offset + scale * self.uniform()).collect()
    }
}

pub(crate) type Weights = BTreeMap<TensorId, Vec<f32>>;

/// Random weights at scales that keep every stage's activations O(1) and the attention far from
/// uniform, so that a wrong index or a missing term changes the logits by much more than the
/// tolerance. (timm's LayerScale init, 1e-5, would make every block nearly the identity.)
pub(crate) fn random_weights(cfg: &ModelConfig, seed: u32) -> Weights {
    let mut rng = Rng::new(seed);
    let mut w = Weights::new();
    for spec in cfg.tensors() {
        let dims = spec.shape.dims();
        let numel = spec.shape.numel().unwrap();
        let fan_in = if dims.len() >= 2 {
            numel / dims[0] as usize
        } else {
            1
        };
        // uniform(-a, a) has variance a²/3: a = sqrt(3 / fan_in) gives unit-variance outputs.
        let unit = (3.0 / fan_in as f32).sqrt();
        let values = match spec.id {
            TensorId::ClsToken | TensorId::PosEmbed => rng.vec(numel, 1.0, 0.0),
            TensorId::NormWeight => rng.vec(numel, 0.3, 1.0),
            TensorId::NormBias => rng.vec(numel, 0.2, 0.0),
            TensorId::Block(_, p) | TensorId::TokenBlock(_, p) => match p {
                BlockParam::Gamma1 | BlockParam::Gamma2 => rng.vec(numel, 0.5, 0.0),
                BlockParam::Norm1Weight | BlockParam::Norm2Weight => rng.vec(numel, 0.3, 1.0),
                BlockParam::ProjLWeight | BlockParam::ProjWWeight => {
                    rng.vec(numel, 1.5 * unit, 0.0)
                }
                _ if dims.len() == 1 => rng.vec(numel, 0.2, 0.0),
                // q/k a little larger than unit so the softmax is peaked.
                BlockParam::QkvWeight | BlockParam::QWeight | BlockParam::KWeight => {
                    rng.vec(numel, 2.0 * unit, 0.0)
                }
                _ => rng.vec(numel, unit, 0.0),
            },
            _ if dims.len() == 1 => rng.vec(numel, 0.2, 0.0),
            _ => rng.vec(numel, unit, 0.0),
        };
        w.insert(spec.id, values);
    }
    w
}

pub(crate) fn preprocess(cfg: &ModelConfig) -> Preprocess {
    Preprocess {
        input_size: [cfg.in_chans, cfg.img_size[0], cfg.img_size[1]],
        interpolation: Interpolation::Bicubic,
        crop_pct: 1.0,
        norm_channels: cfg.in_chans.min(8) as u8,
        mean: [0.5; 8],
        std: [0.25; 8],
    }
}

/// Pack bytes at a 16-byte aligned address (a `Vec<u8>` promises only 1).
pub(crate) struct AlignedBytes {
    words: Vec<u128>,
    len: usize,
}

impl AlignedBytes {
    pub(crate) fn new(bytes: &[u8]) -> AlignedBytes {
        let mut words = vec![0u128; bytes.len().div_ceil(16)];
        bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        AlignedBytes {
            words,
            len: bytes.len(),
        }
    }
    pub(crate) fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

/// A pack of `weights` (minus `skip`), in `precision`: f32 tensors, except the linear weights of
/// an f16 pack (rounded to f16).
pub(crate) fn pack_bytes(
    cfg: &ModelConfig,
    w: &Weights,
    precision: Precision,
    skip: Option<TensorId>,
) -> AlignedBytes {
    let mut writer = PackWriter::new(*cfg, precision, preprocess(cfg));
    for (id, values) in w {
        let (name, dims) = (id.to_string(), cfg.shape_of(*id));
        if Some(*id) == skip {
        } else if precision == Precision::F16 && id.is_linear_weight() {
            let halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
            writer.add_f16(&name, dims.dims(), &halves).unwrap();
        } else {
            writer.add_f32(&name, dims.dims(), values).unwrap();
        }
    }
    AlignedBytes::new(&writer.finish().unwrap())
}

/// The weights an f16 pack of `w` holds, widened back to f32.
fn through_f16(w: &Weights) -> Weights {
    w.iter()
        .map(|(id, v)| {
            let v = if id.is_linear_weight() {
                v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
            } else {
                v.clone()
            };
            (*id, v)
        })
        .collect()
}

pub(crate) fn config(
    img: [u32; 2],
    patch: u32,
    chans: u32,
    classes: u32,
    dim: u32,
    depth: u32,
    heads: u32,
) -> ModelConfig {
    ModelConfig {
        img_size: img,
        patch_size: patch,
        in_chans: chans,
        num_classes: classes,
        embed_dim: dim,
        depth,
        num_heads: heads,
        mlp_hidden_dim: 4 * dim,
        depth_token_only: 2,
        mlp_hidden_dim_token_only: 4 * dim,
        qkv_bias: true,
        global_pool: GlobalPool::Token,
    }
}

/// A 4-byte aligned, zeroed workspace of at least `bytes` bytes.
pub(crate) fn workspace(bytes: usize) -> Vec<u32> {
    vec![0u32; bytes.div_ceil(4)]
}

// ---------------------------------------------------------------------------------------------
// Reference: timm's cait.py, line by line, in f64.

type Mat = Vec<Vec<f64>>;

struct Reference {
    logits: Vec<f64>,
    features: Vec<f64>,
    /// `[class-attention block][head][N + 1]`.
    class_attention: Vec<Vec<Vec<f64>>>,
}

struct RefModel<'w> {
    cfg: ModelConfig,
    w: &'w Weights,
}

impl RefModel<'_> {
    fn t(&self, id: TensorId) -> Vec<f64> {
        self.w[&id].iter().map(|&v| v as f64).collect()
    }

    /// `nn.Linear`: `x @ W.T + b`.
    fn linear(&self, x: &Mat, weight: TensorId, bias: Option<TensorId>) -> Mat {
        let w = self.t(weight);
        let inp = x[0].len();
        let out = w.len() / inp;
        let b = match bias {
            Some(id) if self.cfg.has_tensor(id) => self.t(id),
            _ => vec![0.0; out],
        };
        x.iter()
            .map(|row| {
                (0..out)
                    .map(|o| (0..inp).map(|i| row[i] * w[o * inp + i]).sum::<f64>() + b[o])
                    .collect()
            })
            .collect()
    }

    /// `nn.LayerNorm(eps=1e-6)`.
    fn layer_norm(&self, x: &Mat, weight: TensorId, bias: TensorId) -> Mat {
        let (w, b) = (self.t(weight), self.t(bias));
        x.iter()
            .map(|row| {
                let n = row.len() as f64;
                let mean = row.iter().sum::<f64>() / n;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                row.iter()
                    .enumerate()
                    .map(|(i, v)| (v - mean) / (var + 1e-6).sqrt() * w[i] + b[i])
                    .collect()
            })
            .collect()
    }

    fn gelu(x: f64) -> f64 {
        0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt()))
    }

    fn softmax(row: &mut [f64]) {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = row.iter().map(|v| (v - max).exp()).sum();
        for v in row.iter_mut() {
            *v = (*v - max).exp() / total;
        }
    }

    /// `Mlp`: fc1 → GELU → fc2.
    fn mlp(&self, x: &Mat, block: impl Fn(BlockParam) -> TensorId) -> Mat {
        use BlockParam::*;
        let h = self.linear(x, block(Fc1Weight), Some(block(Fc1Bias)));
        let h = h
            .iter()
            .map(|r| r.iter().map(|&v| Self::gelu(v)).collect())
            .collect();
        self.linear(&h, block(Fc2Weight), Some(block(Fc2Bias)))
    }

    /// `x + gamma * y`, row by row.
    fn layer_scale_add(x: &mut Mat, gamma: &[f64], y: &Mat) {
        for (xr, yr) in x.iter_mut().zip(y) {
            for ((xv, yv), g) in xr.iter_mut().zip(yr).zip(gamma) {
                *xv += g * yv;
            }
        }
    }

    /// `TalkingHeadAttn.forward`, materialising `[H, N, N]`.
    fn talking_head_attn(&self, x: &Mat, i: u32) -> Mat {
        use BlockParam::*;
        let id = |p| TensorId::Block(i, p);
        let (n, c, heads) = (x.len(), x[0].len(), self.cfg.num_heads as usize);
        let hd = c / heads;
        let scale = (hd as f64).powf(-0.5);
        let qkv = self.linear(x, id(QkvWeight), Some(id(QkvBias)));
        // qkv.reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4)
        let part = |s: usize, h: usize, t: usize, e: usize| qkv[t][s * c + h * hd + e];
        let mut attn = vec![vec![vec![0.0; n]; n]; heads];
        for (h, a) in attn.iter_mut().enumerate() {
            for (t, row) in a.iter_mut().enumerate() {
                for (m, v) in row.iter_mut().enumerate() {
                    *v = (0..hd)
                        .map(|e| part(0, h, t, e) * scale * part(1, h, m, e))
                        .sum();
                }
            }
        }
        // proj_l over the head axis: attn.permute(0, 2, 3, 1) @ W.T + b.
        let mix = |attn: &Vec<Mat>, w: TensorId, b: TensorId| {
            let (w, b) = (self.t(w), self.t(b));
            let mut out = vec![vec![vec![0.0; n]; n]; heads];
            for (g, og) in out.iter_mut().enumerate() {
                for t in 0..n {
                    for m in 0..n {
                        og[t][m] = (0..heads)
                            .map(|h| w[g * heads + h] * attn[h][t][m])
                            .sum::<f64>()
                            + b[g];
                    }
                }
            }
            out
        };
        let mut attn = mix(&attn, id(ProjLWeight), id(ProjLBias));
        for a in attn.iter_mut() {
            for row in a.iter_mut() {
                Self::softmax(row);
            }
        }
        let attn = mix(&attn, id(ProjWWeight), id(ProjWBias));
        // (attn @ v).transpose(1, 2).reshape(B, N, C)
        let mut out = vec![vec![0.0; c]; n];
        for (t, row) in out.iter_mut().enumerate() {
            for h in 0..heads {
                for e in 0..hd {
                    row[h * hd + e] = (0..n).map(|m| attn[h][t][m] * part(2, h, m, e)).sum();
                }
            }
        }
        self.linear(&out, id(ProjWeight), Some(id(ProjBias)))
    }

    /// `ClassAttn.forward` on `u = norm1([cls; x])`; also returns the `[H, N + 1]` attention.
    fn class_attn(&self, u: &Mat, i: u32) -> (Vec<f64>, Vec<Vec<f64>>) {
        use BlockParam::*;
        let id = |p| TensorId::TokenBlock(i, p);
        let (n, c, heads) = (u.len(), u[0].len(), self.cfg.num_heads as usize);
        let hd = c / heads;
        let scale = (hd as f64).powf(-0.5);
        let q = self.linear(&vec![u[0].clone()], id(QWeight), Some(id(QBias)));
        let k = self.linear(u, id(KWeight), Some(id(KBias)));
        let v = self.linear(u, id(VWeight), Some(id(VBias)));
        let mut attn = vec![vec![0.0; n]; heads];
        for (h, row) in attn.iter_mut().enumerate() {
            for (m, a) in row.iter_mut().enumerate() {
                *a = (0..hd)
                    .map(|e| q[0][h * hd + e] * scale * k[m][h * hd + e])
                    .sum();
            }
            Self::softmax(row);
        }
        let mut out = vec![0.0; c];
        for h in 0..heads {
            for e in 0..hd {
                out[h * hd + e] = (0..n).map(|m| attn[h][m] * v[m][h * hd + e]).sum();
            }
        }
        let out = self.linear(&vec![out], id(ProjWeight), Some(id(ProjBias)));
        (out[0].clone(), attn)
    }

    fn forward(&self, image: &[f32]) -> Reference {
        use BlockParam::*;
        let cfg = &self.cfg;
        let (c, p, d) = (
            cfg.in_chans as usize,
            cfg.patch_size as usize,
            cfg.embed_dim as usize,
        );
        let (ih, iw) = (cfg.img_size[0] as usize, cfg.img_size[1] as usize);
        let (gh, gw) = (ih / p, iw / p);
        // patch_embed: Conv2d(k = s = p), flatten(2).transpose(1, 2); + pos_embed.
        let (cw, cb, pos) = (
            self.t(TensorId::PatchEmbedWeight),
            self.t(TensorId::PatchEmbedBias),
            self.t(TensorId::PosEmbed),
        );
        let mut x: Mat = vec![vec![0.0; d]; gh * gw];
        for gy in 0..gh {
            for gx in 0..gw {
                for o in 0..d {
                    let mut s = cb[o];
                    for ci in 0..c {
                        for ky in 0..p {
                            for kx in 0..p {
                                let pixel = image[ci * ih * iw + (gy * p + ky) * iw + gx * p + kx];
                                s += cw[((o * c + ci) * p + ky) * p + kx] * pixel as f64;
                            }
                        }
                    }
                    x[gy * gw + gx][o] = s + pos[(gy * gw + gx) * d + o];
                }
            }
        }
        for i in 0..cfg.depth {
            let id = |p| TensorId::Block(i, p);
            let y = self.talking_head_attn(&self.layer_norm(&x, id(Norm1Weight), id(Norm1Bias)), i);
            Self::layer_scale_add(&mut x, &self.t(id(Gamma1)), &y);
            let y = self.mlp(&self.layer_norm(&x, id(Norm2Weight), id(Norm2Bias)), id);
            Self::layer_scale_add(&mut x, &self.t(id(Gamma2)), &y);
        }
        let mut cls: Mat = vec![self.t(TensorId::ClsToken)];
        let mut class_attention = Vec::new();
        for i in 0..cfg.depth_token_only {
            let id = |p| TensorId::TokenBlock(i, p);
            let u: Mat = cls.iter().chain(x.iter()).cloned().collect();
            let (y, attn) =
                self.class_attn(&self.layer_norm(&u, id(Norm1Weight), id(Norm1Bias)), i);
            class_attention.push(attn);
            Self::layer_scale_add(&mut cls, &self.t(id(Gamma1)), &vec![y]);
            let y = self.mlp(&self.layer_norm(&cls, id(Norm2Weight), id(Norm2Bias)), id);
            Self::layer_scale_add(&mut cls, &self.t(id(Gamma2)), &y);
        }
        let all: Mat = cls.iter().chain(x.iter()).cloned().collect();
        let all = self.layer_norm(&all, TensorId::NormWeight, TensorId::NormBias);
        let features = match cfg.global_pool {
            GlobalPool::Token => all[0].clone(),
            GlobalPool::Avg => (0..d)
                .map(|j| all[1..].iter().map(|r| r[j]).sum::<f64>() / (all.len() - 1) as f64)
                .collect(),
        };
        let logits = if cfg.num_classes > 0 {
            self.linear(
                &vec![features.clone()],
                TensorId::HeadWeight,
                Some(TensorId::HeadBias),
            )[0]
            .clone()
        } else {
            features.clone()
        };
        Reference {
            logits,
            features,
            class_attention,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Engine vs reference

/// Collects the class attention as the engine reports it.
#[derive(Default)]
pub(crate) struct Collect(pub(crate) Vec<(usize, usize, Vec<f32>)>);

impl AttentionSink for Collect {
    fn class_attention(&mut self, block: usize, head: usize, weights: &[f32]) {
        self.0.push((block, head, weights.to_vec()));
    }
}

pub(crate) struct Run {
    pub(crate) logits: Vec<f32>,
    pub(crate) features: Vec<f32>,
    pub(crate) attention: Collect,
}

pub(crate) fn run(model: &Model<'_>, image: &[f32], ws: &mut [u8]) -> Result<Run, Error> {
    let mut logits = vec![0.0; model.logits_len()];
    let mut features = vec![0.0; model.features_len()];
    let mut attention = Collect::default();
    let outputs = Outputs::logits(&mut logits)
        .features(&mut features)
        .attention(&mut attention);
    model.forward_with(image, ws, outputs)?;
    Ok(Run {
        logits,
        features,
        attention,
    })
}

/// Largest `|got - want| / (1 + |want|)`.
fn max_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs() / (1.0 + w.abs()))
        .fold(0.0, f64::max)
}

/// Builds a random pack for `cfg`, runs engine and reference, and checks every output.
fn check_against_reference(cfg: &ModelConfig, seed: u32) {
    let weights = random_weights(cfg, seed);
    let image = Rng::new(seed + 100).vec(cfg.input_len().unwrap(), 1.5, 0.0);
    let want = RefModel {
        cfg: *cfg,
        w: &weights,
    }
    .forward(&image);

    let bytes = pack_bytes(cfg, &weights, Precision::F32, None);
    let pack = Pack::parse(bytes.bytes()).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    assert_eq!(
        model.workspace_bytes(),
        workspace_bytes(cfg, Precision::F32)
    );
    let mut ws = workspace(model.workspace_bytes());
    let got = run(&model, &image, bytemuck::cast_slice_mut(&mut ws)).unwrap();

    // f32 engine against f64 truth: each op rounds at ~6e-8 relative; through a few blocks of O(1)
    // activations (sums of up to a few hundred terms, softmax, LayerNorm's 1/std) the observed error
    // is ~1e-6. 1e-5 (relative to 1 + |value|) leaves a margin yet catches any real mistake: a
    // wrong index, term or order of operations moves the outputs by 1e-2 or more.
    const TOL: f64 = 1e-5;
    let e = max_err(&got.logits, &want.logits);
    assert!(e < TOL, "{cfg:?}: logits differ by {e:e}");
    let e = max_err(&got.features, &want.features);
    assert!(e < TOL, "{cfg:?}: features differ by {e:e}");
    let heads = cfg.num_heads as usize;
    assert_eq!(got.attention.0.len(), cfg.depth_token_only as usize * heads);
    for (block, head, row) in &got.attention.0 {
        let e = max_err(row, &want.class_attention[*block][*head]);
        assert!(
            e < TOL,
            "{cfg:?}: class attention {block}/{head} differs by {e:e}"
        );
    }
    // And the outputs are not trivially close: the logits vary across classes.
    let spread = want
        .logits
        .iter()
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max)
        - want.logits.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(
        spread > 0.1,
        "{cfg:?}: degenerate test model (logit spread {spread})"
    );
}

#[test]
fn matches_reference_token_pool() {
    check_against_reference(&config([32, 32], 8, 3, 10, 32, 3, 4), 1);
}

#[test]
fn matches_reference_avg_pool() {
    let mut cfg = config([32, 32], 8, 3, 10, 32, 2, 4);
    cfg.global_pool = GlobalPool::Avg;
    check_against_reference(&cfg, 2);
}

#[test]
fn matches_reference_without_qkv_bias() {
    let mut cfg = config([32, 32], 8, 3, 7, 32, 2, 2);
    cfg.qkv_bias = false;
    check_against_reference(&cfg, 3);
}

#[test]
fn matches_reference_non_square_image() {
    // 3 × 5 patch grid: row/column mix-ups in the patch embedding or pos_embed show up here.
    check_against_reference(&config([24, 40], 8, 3, 5, 24, 2, 3), 4);
}

#[test]
fn matches_reference_one_channel() {
    check_against_reference(&config([28, 28], 7, 1, 10, 16, 2, 2), 5);
}

#[test]
fn matches_reference_without_head() {
    // num_classes = 0: the logits are the features.
    let mut cfg = config([16, 16], 4, 3, 0, 16, 1, 2);
    cfg.global_pool = GlobalPool::Avg;
    check_against_reference(&cfg, 6);
}

#[test]
fn matches_reference_odd_sizes() {
    // head_dim 12 and D 36 (not multiples of 8: the blocked sums' tails), 11 tokens (not a multiple
    // of the 4-token tile or the 8-row attention pass), odd MLP widths, one CA block, 3 CA heads.
    let mut cfg = config([10, 12], 2, 2, 3, 36, 2, 3);
    cfg.mlp_hidden_dim = 37;
    cfg.mlp_hidden_dim_token_only = 90;
    cfg.depth_token_only = 1;
    check_against_reference(&cfg, 7);
}

#[test]
fn matches_reference_single_patch_and_no_blocks() {
    // One patch (N = 1) and no self-attention blocks: the class token attends over two tokens.
    let cfg = config([8, 8], 8, 3, 4, 16, 0, 4);
    check_against_reference(&cfg, 8);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 12, ..Default::default() })]
    #[test]
    fn matches_reference_on_random_configs(
        grid in (1u32..5, 1u32..5),
        patch in 1u32..5,
        chans in 1u32..4,
        classes in 0u32..6,
        heads in 1u32..4,
        head_dim in 1u32..10,
        depth in 0u32..3,
        depth_token_only in 0u32..3,
        hidden in 1u32..40,
        qkv_bias in proptest::bool::ANY,
        avg in proptest::bool::ANY,
        seed in 0u32..1000,
    ) {
        let cfg = ModelConfig {
            img_size: [grid.0 * patch, grid.1 * patch],
            patch_size: patch,
            in_chans: chans,
            num_classes: classes,
            embed_dim: heads * head_dim,
            depth,
            num_heads: heads,
            mlp_hidden_dim: hidden,
            depth_token_only,
            mlp_hidden_dim_token_only: hidden + 3,
            qkv_bias,
            global_pool: if avg { GlobalPool::Avg } else { GlobalPool::Token },
        };
        // Tiny random models can have degenerate logits; check only the agreement here.
        let weights = random_weights(&cfg, seed);
        let image = Rng::new(seed + 100).vec(cfg.input_len().unwrap(), 1.5, 0.0);
        let want = RefModel { cfg, w: &weights }.forward(&image);
        let bytes = pack_bytes(&cfg, &weights, Precision::F32, None);
        let pack = Pack::parse(bytes.bytes()).unwrap();
        let model = Model::from_pack(&pack).unwrap();
        let mut ws = workspace(model.workspace_bytes());
        let got = run(&model, &image, bytemuck::cast_slice_mut(&mut ws)).unwrap();
        // Same 1e-5 as above (see check_against_reference).
        proptest::prop_assert!(max_err(&got.logits, &want.logits) < 1e-5);
        proptest::prop_assert!(max_err(&got.features, &want.features) < 1e-5);
        for (block, head, row) in &got.attention.0 {
            proptest::prop_assert!(max_err(row, &want.class_attention[*block][*head]) < 1e-5);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Workspace

fn small() -> (ModelConfig, AlignedBytes) {
    let cfg = config([16, 24], 8, 3, 5, 16, 2, 2);
    let bytes = pack_bytes(&cfg, &random_weights(&cfg, 9), Precision::F32, None);
    (cfg, bytes)
}

#[test]
fn workspace_bytes_is_exact() {
    let (cfg, bytes) = small();
    let pack = Pack::parse(bytes.bytes()).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let needed = model.workspace_bytes();
    let image = Rng::new(1).vec(model.input_len(), 1.0, 0.0);
    // N = 6, T = 7, R = 7: tokens 6·16 + cls 16 + scratch (2·7·16 + 2·2·7 + 2·7·16 = 476).
    assert_eq!(needed, 4 * (6 * 16 + 16 + 476));
    assert_eq!(needed, workspace_bytes(&cfg, Precision::F32));

    let mut ws = workspace(needed + 64);
    let all: &mut [u8] = bytemuck::cast_slice_mut(&mut ws);
    let exact = run(&model, &image, &mut all[..needed]).unwrap();
    let err = run(&model, &image, &mut all[..needed - 1]).err();
    assert_eq!(
        err,
        Some(Error::WorkspaceTooSmall {
            needed,
            got: needed - 1
        })
    );
    // A larger (and dirty) workspace changes nothing: only the first `needed` bytes are used, and
    // every buffer is written before it is read.
    all.fill(0xA5);
    let larger = run(&model, &image, all).unwrap();
    assert_eq!(exact.logits, larger.logits);
    assert_eq!(exact.features, larger.features);
}

/// The const reading of a pack's header ([`cait_pack::PackHeader::read`], which
/// `workspace_bytes_for` sizes a static workspace with) agrees with the run-time parse on f32 and
/// f16 packs (int8 and mixed: `int8_workspace_is_exact`, cait-quant's mixed-budget test), and
/// refuses what is not a pack's header with the reason.
#[test]
fn const_header_agrees_with_the_parse() {
    for precision in [Precision::F32, Precision::F16] {
        let cfg = config([16, 24], 8, 3, 5, 16, 2, 2);
        let bytes = pack_bytes(&cfg, &random_weights(&cfg, 2), precision, None);
        let header = cait_pack::PackHeader::read(bytes.bytes()).unwrap();
        let pack = Pack::parse(bytes.bytes()).unwrap();
        assert_eq!(header.config, *pack.config());
        assert_eq!(header.precision, precision);
        assert!(!header.mixed);
        let model = Model::from_pack(&pack).unwrap();
        assert_eq!(
            crate::try_workspace_bytes_for(bytes.bytes()),
            Ok(model.workspace_bytes())
        );
    }
    let (_, bytes) = small();
    let good = bytes.bytes();
    let read = |b: &[u8]| cait_pack::PackHeader::read(b).map(|h| h.config);
    assert_eq!(
        read(&good[..100]),
        Err(cait_pack::PackError::Truncated { what: "header" })
    );
    let mut bad = good.to_vec();
    bad[1] = b'X';
    assert_eq!(read(&bad), Err(cait_pack::PackError::BadMagic));
    let mut bad = good.to_vec();
    bad[8] = 9; // version
    assert_eq!(read(&bad), Err(cait_pack::PackError::UnsupportedVersion(9)));
    let mut bad = good.to_vec();
    bad[0x4E] = 7; // precision
    assert_eq!(
        read(&bad),
        Err(cait_pack::PackError::BadEnum {
            field: "precision",
            value: 7
        })
    );
}

#[test]
fn misaligned_workspace_is_rejected() {
    let (_, bytes) = small();
    let pack = Pack::parse(bytes.bytes()).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let mut ws = workspace(model.workspace_bytes() + 4);
    let all: &mut [u8] = bytemuck::cast_slice_mut(&mut ws);
    let mut logits = vec![0.0; model.logits_len()];
    let image = vec![0.0; model.input_len()];
    assert_eq!(
        model.forward(&image, &mut all[1..], &mut logits),
        Err(Error::WorkspaceMisaligned { align: 4 })
    );
    assert_eq!(model.forward(&image, &mut all[4..], &mut logits), Ok(()));
}

#[test]
fn static_workspace_helper() {
    const CFG: ModelConfig = ModelConfig {
        img_size: [8, 8],
        patch_size: 4,
        in_chans: 1,
        num_classes: 3,
        embed_dim: 8,
        depth: 1,
        num_heads: 2,
        mlp_hidden_dim: 16,
        depth_token_only: 1,
        mlp_hidden_dim_token_only: 16,
        qkv_bias: true,
        global_pool: GlobalPool::Token,
    };
    static WS: std::sync::Mutex<Workspace<{ workspace_bytes(&CFG, Precision::F32) }>> =
        std::sync::Mutex::new(Workspace::new());
    let bytes = pack_bytes(&CFG, &random_weights(&CFG, 3), Precision::F32, None);
    let pack = Pack::parse(bytes.bytes()).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let mut logits = [0.0; 3];
    let mut ws = WS.lock().unwrap();
    model
        .forward(&[0.5; 64], ws.as_bytes_mut(), &mut logits)
        .unwrap();
    assert!(logits.iter().all(|v| v.is_finite()));
}

#[test]
fn cait_xxs24_224_workspace() {
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
    // tokens 196·192 + cls 192 + scratch (2·197·192 + 2·4·197 + 2·8·192) = 118 120 f32.
    assert_eq!(workspace_bytes(&cfg, Precision::F32), 472_480);
    // An 8-bit 224×224 RGB frame in the int8 workspace: a patch row's tokens (14·192·4 = 10,752
    // bytes) and its int8 columns (14·768) below frame row 0; tokens and pixels then advance
    // alike (4·D = C·p² = 768), so the frame's 150,528 bytes end at 172,032, inside the layout's
    // 246,364: the frame costs no RAM.
    assert_eq!(crate::frame_offset(&cfg, Precision::Int8), 21_504);
    assert_eq!(workspace_bytes(&cfg, Precision::Int8), 246_364);
    assert_eq!(
        crate::frame_workspace_bytes(&cfg, Precision::Int8, false),
        246_364
    );
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn wrong_buffer_lengths_are_rejected() {
    let (_, bytes) = small();
    let pack = Pack::parse(bytes.bytes()).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let mut ws = workspace(model.workspace_bytes());
    let ws: &mut [u8] = bytemuck::cast_slice_mut(&mut ws);
    let (input, classes) = (model.input_len(), model.logits_len());
    assert_eq!((input, classes), (3 * 16 * 24, 5));
    let image = vec![0.0; input + 1];
    let mut logits = vec![0.0; classes + 1];
    assert_eq!(
        model.forward(&image[..input - 1], ws, &mut logits[..classes]),
        Err(Error::InputLength {
            expected: input,
            got: input - 1
        })
    );
    assert_eq!(
        model.forward(&image, ws, &mut logits[..classes]),
        Err(Error::InputLength {
            expected: input,
            got: input + 1
        })
    );
    assert_eq!(
        model.forward(&image[..input], ws, &mut logits),
        Err(Error::LogitsLength {
            expected: classes,
            got: classes + 1
        })
    );
    let mut features = vec![0.0; 15];
    let outputs = Outputs::logits(&mut logits[..classes]).features(&mut features);
    assert_eq!(
        model.forward_with(&image[..input], ws, outputs),
        Err(Error::FeaturesLength {
            expected: 16,
            got: 15
        })
    );
    // Errors are found before any work: the logits are untouched.
    assert!(logits.iter().all(|&v| v == 0.0));
}

#[test]
fn missing_tensor_is_named() {
    let cfg = config([16, 16], 8, 3, 5, 16, 2, 2);
    let weights = random_weights(&cfg, 10);
    for missing in [
        TensorId::Block(1, BlockParam::ProjWWeight),
        TensorId::TokenBlock(0, BlockParam::KBias),
        TensorId::HeadWeight,
        TensorId::PosEmbed,
    ] {
        let bytes = pack_bytes(&cfg, &weights, Precision::F32, Some(missing));
        let pack = Pack::parse(bytes.bytes()).unwrap();
        assert_eq!(
            Model::from_pack(&pack).err(),
            Some(Error::Pack(PackError::MissingTensor(missing)))
        );
    }
}

/// An f16 pack computes in f32 on its weights widened (exactly) to f32: the same bits as an f32
/// pack holding the f16-rounded weights, on every output.
#[test]
fn f16_pack_is_f32_compute_on_the_rounded_weights() {
    let mut odd = config([10, 12], 2, 2, 3, 36, 2, 3);
    odd.mlp_hidden_dim = 37;
    odd.global_pool = GlobalPool::Avg;
    for (cfg, seed) in [(config([32, 32], 8, 3, 10, 32, 3, 4), 21), (odd, 22)] {
        let weights = random_weights(&cfg, seed);
        let rounded = through_f16(&weights);
        let image = Rng::new(seed + 100).vec(cfg.input_len().unwrap(), 1.5, 0.0);
        let half = pack_bytes(&cfg, &weights, Precision::F16, None);
        let full = pack_bytes(&cfg, &rounded, Precision::F32, None);
        let runs: Vec<Run> = [&half, &full]
            .iter()
            .map(|bytes| {
                let pack = Pack::parse(bytes.bytes()).unwrap();
                let model = Model::from_pack(&pack).unwrap();
                assert_eq!(
                    model.workspace_bytes(),
                    workspace_bytes(&cfg, Precision::F32)
                );
                let mut ws = workspace(model.workspace_bytes());
                run(&model, &image, bytemuck::cast_slice_mut(&mut ws)).unwrap()
            })
            .collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&runs[0].logits), bits(&runs[1].logits));
        assert_eq!(bits(&runs[0].features), bits(&runs[1].features));
        for (a, b) in runs[0].attention.0.iter().zip(&runs[1].attention.0) {
            assert_eq!(bits(&a.2), bits(&b.2));
        }
        // And against the f64 reference on the rounded weights, with the f32 engine's 1e-5.
        let want = RefModel { cfg, w: &rounded }.forward(&image);
        let e = max_err(&runs[0].logits, &want.logits);
        assert!(e < 1e-5, "{cfg:?}: f16 logits differ by {e:e}");
    }
}

#[test]
fn f16_pack_wants_f16_linear_weights() {
    let cfg = config([16, 16], 8, 3, 5, 16, 1, 2);
    let weights = random_weights(&cfg, 11);
    // An "f16" pack whose weights are all f32.
    let mut writer = PackWriter::new(cfg, Precision::F16, preprocess(&cfg));
    for (id, values) in &weights {
        writer
            .add_f32(&id.to_string(), cfg.shape_of(*id).dims(), values)
            .unwrap();
    }
    let bytes = AlignedBytes::new(&writer.finish().unwrap());
    let pack = Pack::parse(bytes.bytes()).unwrap();
    match Model::from_pack(&pack) {
        Err(Error::Pack(PackError::WrongDType {
            expected, found, ..
        })) => assert_eq!(
            (expected, found),
            (cait_pack::DType::F16, cait_pack::DType::F32)
        ),
        other => panic!("expected WrongDType, got {other:?}"),
    }
}

#[test]
fn wrong_dtype_is_named() {
    let cfg = config([16, 16], 8, 3, 5, 16, 1, 2);
    let weights = random_weights(&cfg, 12);
    let odd = TensorId::Block(0, BlockParam::Fc1Weight);
    let mut writer = PackWriter::new(cfg, Precision::F32, preprocess(&cfg));
    for (id, values) in &weights {
        let (name, shape) = (id.to_string(), cfg.shape_of(*id));
        if *id == odd {
            let halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
            writer.add_f16(&name, shape.dims(), &halves).unwrap();
        } else {
            writer.add_f32(&name, shape.dims(), values).unwrap();
        }
    }
    let bytes = AlignedBytes::new(&writer.finish().unwrap());
    let pack = Pack::parse(bytes.bytes()).unwrap();
    match Model::from_pack(&pack) {
        Err(Error::Pack(PackError::WrongDType {
            name,
            expected,
            found,
        })) => {
            assert_eq!(name.as_str(), "blocks.0.mlp.fc1.weight");
            assert_eq!(
                (expected, found),
                (cait_pack::DType::F32, cait_pack::DType::F16)
            );
        }
        other => panic!("expected WrongDType, got {other:?}"),
    }
}

#[test]
fn misaligned_pack_is_rejected() {
    // The same pack bytes at an odd address: the f32 views cannot be made in place.
    let (_, bytes) = small();
    let mut shifted = vec![0u8; bytes.len + 1];
    shifted[1..].copy_from_slice(bytes.bytes());
    let pack = Pack::parse(&shifted[1..]).unwrap();
    assert!(matches!(
        Model::from_pack(&pack),
        Err(Error::Pack(PackError::Misaligned { .. }))
    ));
}

#[test]
fn errors_display_what_was_expected() {
    let e = Error::WorkspaceTooSmall {
        needed: 100,
        got: 99,
    };
    assert_eq!(
        e.to_string(),
        "workspace too small: the model needs 100 bytes, got 99"
    );
    let e = Error::Pack(PackError::MissingTensor(TensorId::Block(
        3,
        BlockParam::QkvWeight,
    )));
    assert!(e.to_string().contains("blocks.3.attn.qkv.weight"), "{e}");
}

#[test]
fn forward_is_deterministic() {
    let (_, bytes) = small();
    let pack = Pack::parse(bytes.bytes()).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let image = Rng::new(5).vec(model.input_len(), 1.0, 0.0);
    let mut ws = workspace(model.workspace_bytes());
    let a = run(&model, &image, bytemuck::cast_slice_mut(&mut ws)).unwrap();
    let b = run(&model, &image, bytemuck::cast_slice_mut(&mut ws)).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.logits), bits(&b.logits));
}

/// A session refuses, at `new`, a corrupted pack (one flipped byte: the checksum), a workspace
/// one byte short and a misaligned one; once bound, it classifies as the model does.
#[test]
fn session_checks_once_and_classifies() {
    use crate::{Input, Session};
    let (_, bytes) = small();
    let pack = Pack::parse(bytes.bytes()).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let needed = model.workspace_bytes();
    let image = Rng::new(5).vec(model.input_len(), 1.0, 0.0);
    let mut want = vec![0f32; model.logits_len()];
    let mut ws = workspace(needed + 8);
    let all: &mut [u8] = bytemuck::cast_slice_mut(&mut ws);
    model.forward(&image, all, &mut want).unwrap();

    let mut corrupt = bytes.bytes().to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let corrupt = AlignedBytes::new(&corrupt);
    assert!(matches!(
        Session::new(corrupt.bytes(), all).err(),
        Some(Error::Pack(cait_pack::PackError::ChecksumMismatch { .. }))
    ));
    assert_eq!(
        Session::new(bytes.bytes(), &mut all[..needed - 1]).err(),
        Some(Error::WorkspaceTooSmall {
            needed,
            got: needed - 1
        })
    );
    assert_eq!(
        Session::new(bytes.bytes(), &mut all[2..]).err(),
        Some(Error::WorkspaceMisaligned { align: 4 })
    );

    let mut session = Session::new(bytes.bytes(), all).unwrap();
    let mut got = vec![0f32; want.len()];
    let (class, logit) = session
        .classify(Input::Normalized(&image), &mut got)
        .unwrap();
    assert_eq!(got, want);
    assert_eq!((class, logit), crate::top_k::<1>(&want)[0]);
    assert!(matches!(
        session.run(Input::Normalized(&image[1..]), &mut got),
        Err(Error::InputLength { .. })
    ));
}
