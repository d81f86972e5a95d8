//! The CaiT module. Every field is named as in timm's `Cait`, so a timm state dict maps onto it
//! through burn's store with only the PyTorch adapter (Linear weights transposed, LayerNorm
//! `weight`/`bias` ↔ `gamma`/`beta`).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use cait_import::Tensor as HostTensor;
use cait_pack::{GlobalPool, ModelConfig};

use crate::attention::{ClassAttn, TalkingHeadAttn};
use crate::blocks::{LayerScaleBlock, LayerScaleBlockClassAttn, Mlp};
use crate::rng::Rng;

/// timm's LayerNorm epsilon for CaiT.
pub const LAYER_NORM_EPS: f64 = 1e-6;

/// timm `PatchEmbed`: a Conv2d with kernel = stride = patch size.
#[derive(Module, Debug)]
pub struct PatchEmbed {
    /// The patch projection.
    pub proj: Conv2d,
}

/// CaiT (Touvron et al. 2021) as timm builds it.
#[derive(Module, Debug)]
pub struct Cait {
    /// Class token [1, 1, D].
    pub cls_token: Param<Tensor<3>>,
    /// Position embedding of the patch tokens [1, N, D] (no class slot).
    pub pos_embed: Param<Tensor<3>>,
    /// Patch embedding.
    pub patch_embed: PatchEmbed,
    /// Self-attention (talking-heads) blocks.
    pub blocks: Vec<LayerScaleBlock>,
    /// Class-attention blocks.
    pub blocks_token_only: Vec<LayerScaleBlockClassAttn>,
    /// Final LayerNorm over `[cls; x]`.
    pub norm: LayerNorm,
    /// Classifier; `None` when the model has no head (`num_classes = 0`).
    pub head: Option<Linear>,
    /// Average the normed patch tokens instead of taking the class token.
    pub avg_pool: bool,
}

/// What a forward pass gives.
#[derive(Debug, Clone)]
pub struct CaitOutput {
    /// [B, classes] (the features when there is no head).
    pub logits: Tensor<2>,
    /// Pre-logits features [B, D] (timm `forward_head(pre_logits=True)`).
    pub features: Tensor<2>,
    /// One [B, H, N+1] map per class-attention block: the class query's softmax over
    /// `[cls; patches]`.
    pub attention: Vec<Tensor<3>>,
}

/// Where parameter values come from when a [`Cait`] is built.
pub enum ParamSource<'a> {
    /// Lazily zero-filled placeholders, to be overwritten by a burn store.
    Placeholder,
    /// Host tensors keyed by timm name, in timm's layout (Linear weights [out, in]).
    Host(&'a BTreeMap<String, HostTensor>),
}

impl ParamSource<'_> {
    fn param<const R: usize>(
        &self,
        name: &str,
        shape: [usize; R],
        device: &Device,
    ) -> Result<Param<Tensor<R>>, String> {
        match self {
            ParamSource::Placeholder => Ok(Initializer::Zeros.init(shape, device)),
            ParamSource::Host(map) => {
                let t = map
                    .get(name)
                    .ok_or_else(|| format!("tensor {name} is missing"))?;
                if t.shape != shape {
                    return Err(format!(
                        "tensor {name} has shape {:?}, expected {shape:?}",
                        t.shape
                    ));
                }
                Ok(Param::from_data(
                    TensorData::new(t.data.clone(), shape),
                    device,
                ))
            }
        }
    }

    /// A timm Linear (`{prefix}.weight` [out, in], `{prefix}.bias`) as a burn Linear ([in, out]).
    fn linear(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
        device: &Device,
    ) -> Result<Linear, String> {
        let weight = match self {
            ParamSource::Placeholder => Initializer::Zeros.init([d_in, d_out], device),
            ParamSource::Host(map) => {
                let name = format!("{prefix}.weight");
                let t = map
                    .get(&name)
                    .ok_or_else(|| format!("tensor {name} is missing"))?;
                if t.shape != [d_out, d_in] {
                    return Err(format!(
                        "tensor {name} has shape {:?}, expected {:?}",
                        t.shape,
                        [d_out, d_in]
                    ));
                }
                let mut data = vec![0.0f32; d_in * d_out];
                for o in 0..d_out {
                    for i in 0..d_in {
                        data[i * d_out + o] = t.data[o * d_in + i];
                    }
                }
                Param::from_data(TensorData::new(data, [d_in, d_out]), device)
            }
        };
        let bias = if bias {
            Some(self.param(&format!("{prefix}.bias"), [d_out], device)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    fn layer_norm(&self, prefix: &str, d: usize, device: &Device) -> Result<LayerNorm, String> {
        let mut ln = LayerNormConfig::new(d)
            .with_epsilon(LAYER_NORM_EPS)
            .init(device);
        ln.gamma = self.param(&format!("{prefix}.weight"), [d], device)?;
        ln.beta = Some(self.param(&format!("{prefix}.bias"), [d], device)?);
        Ok(ln)
    }
}

impl Cait {
    /// Builds the module for `cfg` with parameters from `source`. Parameter ids are numbered in
    /// timm's state-dict order, so optimizer state saved for one build applies to another.
    pub fn build(cfg: &ModelConfig, source: &ParamSource, device: &Device) -> Result<Cait, String> {
        cfg.validate().map_err(|e| format!("invalid config: {e}"))?;
        let d = cfg.embed_dim as usize;
        let h = cfg.num_heads as usize;
        let n = cfg.num_patches().ok_or("too many patches")?;
        let p = cfg.patch_size as usize;
        let c = cfg.in_chans as usize;
        let hidden = cfg.mlp_hidden_dim as usize;
        let hidden_tok = cfg.mlp_hidden_dim_token_only as usize;

        let mut proj = Conv2dConfig::new([c, d], [p, p])
            .with_stride([p, p])
            .init(device);
        proj.weight = source.param("patch_embed.proj.weight", [d, c, p, p], device)?;
        proj.bias = Some(source.param("patch_embed.proj.bias", [d], device)?);

        let mut blocks = Vec::with_capacity(cfg.depth as usize);
        for i in 0..cfg.depth as usize {
            let b = format!("blocks.{i}");
            blocks.push(LayerScaleBlock {
                norm1: source.layer_norm(&format!("{b}.norm1"), d, device)?,
                attn: TalkingHeadAttn {
                    qkv: source.linear(&format!("{b}.attn.qkv"), d, 3 * d, cfg.qkv_bias, device)?,
                    proj: source.linear(&format!("{b}.attn.proj"), d, d, true, device)?,
                    proj_l: source.linear(&format!("{b}.attn.proj_l"), h, h, true, device)?,
                    proj_w: source.linear(&format!("{b}.attn.proj_w"), h, h, true, device)?,
                    num_heads: h,
                },
                gamma_1: source.param(&format!("{b}.gamma_1"), [d], device)?,
                norm2: source.layer_norm(&format!("{b}.norm2"), d, device)?,
                mlp: Mlp {
                    fc1: source.linear(&format!("{b}.mlp.fc1"), d, hidden, true, device)?,
                    fc2: source.linear(&format!("{b}.mlp.fc2"), hidden, d, true, device)?,
                },
                gamma_2: source.param(&format!("{b}.gamma_2"), [d], device)?,
            });
        }
        let mut blocks_token_only = Vec::with_capacity(cfg.depth_token_only as usize);
        for i in 0..cfg.depth_token_only as usize {
            let b = format!("blocks_token_only.{i}");
            let qkv = |w: &str| source.linear(&format!("{b}.attn.{w}"), d, d, cfg.qkv_bias, device);
            blocks_token_only.push(LayerScaleBlockClassAttn {
                norm1: source.layer_norm(&format!("{b}.norm1"), d, device)?,
                attn: ClassAttn {
                    q: qkv("q")?,
                    k: qkv("k")?,
                    v: qkv("v")?,
                    proj: source.linear(&format!("{b}.attn.proj"), d, d, true, device)?,
                    num_heads: h,
                },
                gamma_1: source.param(&format!("{b}.gamma_1"), [d], device)?,
                norm2: source.layer_norm(&format!("{b}.norm2"), d, device)?,
                mlp: Mlp {
                    fc1: source.linear(&format!("{b}.mlp.fc1"), d, hidden_tok, true, device)?,
                    fc2: source.linear(&format!("{b}.mlp.fc2"), hidden_tok, d, true, device)?,
                },
                gamma_2: source.param(&format!("{b}.gamma_2"), [d], device)?,
            });
        }
        let head = match cfg.num_classes {
            0 => None,
            k => Some(source.linear("head", d, k as usize, true, device)?),
        };
        let model = Cait {
            cls_token: source.param("cls_token", [1, 1, d], device)?,
            pos_embed: source.param("pos_embed", [1, n, d], device)?,
            patch_embed: PatchEmbed { proj },
            blocks,
            blocks_token_only,
            norm: source.layer_norm("norm", d, device)?,
            head,
            avg_pool: cfg.global_pool == GlobalPool::Avg,
        };
        Ok(renumber(model))
    }

    /// Inference: logits, features and the class-attention maps.
    pub fn forward(&self, images: Tensor<4>) -> CaitOutput {
        self.forward_impl(images, None)
    }

    /// Training forward with stochastic depth: `keep` holds two [B, 1, 1] masks per SA block
    /// (attention branch, MLP branch), each 0 or 1/keep_prob.
    /// An empty `keep` means no stochastic depth.
    pub fn forward_train(&self, images: Tensor<4>, keep: &[Tensor<3>]) -> Tensor<2> {
        let keep = (!keep.is_empty()).then_some(keep);
        self.forward_impl(images, keep).logits
    }

    fn forward_impl(&self, images: Tensor<4>, keep: Option<&[Tensor<3>]>) -> CaitOutput {
        let b = images.dims()[0];
        let tokens: Tensor<4> = self.patch_embed.proj.forward(images); // [B, D, gh, gw]
        let [_, d, gh, gw] = tokens.dims();
        let n = gh * gw;
        let mut x = tokens.reshape([b, d, n]).swap_dims(1, 2) + self.pos_embed.val();
        for (i, block) in self.blocks.iter().enumerate() {
            let masks = keep.map(|k| [&k[2 * i], &k[2 * i + 1]]);
            x = block.forward(x, masks);
        }
        let mut cls = self.cls_token.val().repeat_dim(0, b);
        let mut attention = Vec::with_capacity(self.blocks_token_only.len());
        for block in &self.blocks_token_only {
            let (c, a) = block.forward(x.clone(), cls);
            cls = c;
            attention.push(a);
        }
        let f = self.norm.forward(Tensor::cat(vec![cls, x], 1)); // [B, N+1, D]
        let features: Tensor<2> = if self.avg_pool {
            f.narrow(1, 1, n).mean_dim(1).squeeze_dim(1)
        } else {
            f.narrow(1, 0, 1).squeeze_dim(1)
        };
        let logits = match &self.head {
            Some(head) => head.forward(features.clone()),
            None => features.clone(),
        };
        CaitOutput {
            logits,
            features,
            attention,
        }
    }
}

/// Numbers the parameters 1, 2, ... in visiting (= timm state-dict) order.
pub(crate) fn renumber(model: Cait) -> Cait {
    model.map(&mut Renumber { next: 1 })
}

/// Gives parameters consecutive ids in visiting (= timm state-dict) order.
struct Renumber {
    next: u64,
}

impl ModuleMapper for Renumber {
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.id = ParamId::from(self.next);
        self.next += 1;
        param
    }
}

/// timm's initialisation of a fresh CaiT (`Cait.__init__` + `_init_weights`), as host tensors
/// keyed by timm name: `trunc_normal_(std=.02)` for cls_token, pos_embed and every Linear weight,
/// zero Linear biases, LayerNorm 1/0, LayerScale `init_values`, and PyTorch's default Conv2d init
/// for the patch embedding (uniform ±1/√fan_in for weight and bias).
pub fn init_tensors(
    cfg: &ModelConfig,
    init_values: f32,
    seed: u64,
) -> BTreeMap<String, HostTensor> {
    let mut rng = Rng::new(seed);
    let fan_in = (cfg.in_chans * cfg.patch_size * cfg.patch_size) as f64;
    let bound = 1.0 / fan_in.sqrt();
    let mut out = BTreeMap::new();
    for spec in cfg.tensors() {
        let name = spec.id.to_string();
        let shape: Vec<usize> = spec.shape.dims().iter().map(|&d| d as usize).collect();
        let len: usize = shape.iter().product();
        let is_norm =
            name.starts_with("norm.") || name.contains(".norm1.") || name.contains(".norm2.");
        let data: Vec<f32> = if name.starts_with("patch_embed.") {
            (0..len)
                .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                .collect()
        } else if name.ends_with("gamma_1") || name.ends_with("gamma_2") {
            vec![init_values; len]
        } else if is_norm && name.ends_with(".weight") {
            vec![1.0; len]
        } else if name.ends_with(".bias") {
            vec![0.0; len]
        } else {
            // cls_token, pos_embed and Linear weights.
            (0..len).map(|_| rng.trunc_normal(0.02)).collect()
        };
        out.insert(name, HostTensor::new(shape, data));
    }
    out
}
