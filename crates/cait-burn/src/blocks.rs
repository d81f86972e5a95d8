//! The two CaiT blocks with LayerScale (`gamma_1`, `gamma_2`) and the MLP they share.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::activation::gelu;

use crate::attention::{ClassAttn, TalkingHeadAttn};

/// timm `Mlp`: fc1 → exact (erf) GELU → fc2.
#[derive(Module, Debug)]
pub struct Mlp {
    /// D → hidden.
    pub fc1: Linear,
    /// hidden → D.
    pub fc2: Linear,
}

impl Mlp {
    /// [.., D] → [.., D].
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        self.fc2.forward(gelu(self.fc1.forward(x)))
    }
}

/// Multiplies `[B, N, D]` by a LayerScale vector `[D]`.
fn layer_scale(gamma: &Param<Tensor<1>>, x: Tensor<3>) -> Tensor<3> {
    let d = x.dims()[2];
    x * gamma.val().reshape([1, 1, d])
}

/// Applies a stochastic-depth keep mask (`[B, 1, 1]`, already divided by the keep probability)
/// to a residual branch; `None` at inference.
fn drop_path(x: Tensor<3>, keep: Option<&Tensor<3>>) -> Tensor<3> {
    match keep {
        Some(mask) => x * mask.clone(),
        None => x,
    }
}

/// timm `LayerScaleBlock` (self-attention block):
/// `x += γ1 · TalkingHeadAttn(LN1(x)); x += γ2 · MLP(LN2(x))`.
#[derive(Module, Debug)]
pub struct LayerScaleBlock {
    /// Pre-attention LayerNorm.
    pub norm1: LayerNorm,
    /// Talking-heads self-attention.
    pub attn: TalkingHeadAttn,
    /// LayerScale of the attention branch.
    pub gamma_1: Param<Tensor<1>>,
    /// Pre-MLP LayerNorm.
    pub norm2: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
    /// LayerScale of the MLP branch.
    pub gamma_2: Param<Tensor<1>>,
}

impl LayerScaleBlock {
    /// `x`: [B, N, D]. `keep`: stochastic-depth masks for the attention and MLP branches
    /// (training only; timm draws a fresh mask for each branch).
    pub fn forward(&self, x: Tensor<3>, keep: Option<[&Tensor<3>; 2]>) -> Tensor<3> {
        let a = layer_scale(
            &self.gamma_1,
            self.attn.forward(self.norm1.forward(x.clone())),
        );
        let x = x + drop_path(a, keep.map(|k| k[0]));
        let m = layer_scale(
            &self.gamma_2,
            self.mlp.forward(self.norm2.forward(x.clone())),
        );
        x + drop_path(m, keep.map(|k| k[1]))
    }
}

/// timm `LayerScaleBlockClassAttn` (class-attention block): updates the class token only.
/// timm builds these with `drop_path=0`, so they take no masks.
#[derive(Module, Debug)]
pub struct LayerScaleBlockClassAttn {
    /// LayerNorm over `[cls; x]`.
    pub norm1: LayerNorm,
    /// Class attention.
    pub attn: ClassAttn,
    /// LayerScale of the attention branch.
    pub gamma_1: Param<Tensor<1>>,
    /// LayerNorm over the class token.
    pub norm2: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
    /// LayerScale of the MLP branch.
    pub gamma_2: Param<Tensor<1>>,
}

impl LayerScaleBlockClassAttn {
    /// `x`: patch tokens [B, N, D]; `cls`: [B, 1, D]. Returns the new class token and the
    /// attention of the class query over `[cls; x]`, [B, H, N+1].
    pub fn forward(&self, x: Tensor<3>, cls: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let u = Tensor::cat(vec![cls.clone(), x], 1);
        let (a, attn) = self.attn.forward(self.norm1.forward(u));
        let cls = cls + layer_scale(&self.gamma_1, a);
        let m = layer_scale(
            &self.gamma_2,
            self.mlp.forward(self.norm2.forward(cls.clone())),
        );
        (cls + m, attn)
    }
}
