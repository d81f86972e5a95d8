//! CaiT's two attention layers: talking-heads self-attention (SA blocks) and class attention
//! (CA blocks). Field names are timm's, so a timm state dict applies to them as it is.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

/// timm `TalkingHeadAttn`: `proj_l` mixes the heads' logits before the softmax over keys,
/// `proj_w` mixes the probabilities after it (so the rows no longer sum to 1).
#[derive(Module, Debug)]
pub struct TalkingHeadAttn {
    /// q, k, v projections stacked: output row `which * D + head * hd + j`.
    pub qkv: Linear,
    /// Output projection.
    pub proj: Linear,
    /// Head mixing before the softmax (H × H).
    pub proj_l: Linear,
    /// Head mixing after the softmax (H × H).
    pub proj_w: Linear,
    /// Heads `H`.
    pub num_heads: usize,
}

impl TalkingHeadAttn {
    /// `x`: [B, N, D] → [B, N, D].
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let h = self.num_heads;
        let hd = d / h;
        let scale = (hd as f64).powf(-0.5);
        // [B, N, 3, H, hd] → [3, B, H, N, hd]
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, n, 3, h, hd])
            .permute([2, 0, 3, 1, 4]);
        let q: Tensor<4> = qkv.clone().narrow(0, 0, 1).squeeze_dim(0).mul_scalar(scale);
        let k: Tensor<4> = qkv.clone().narrow(0, 1, 1).squeeze_dim(0);
        let v: Tensor<4> = qkv.narrow(0, 2, 1).squeeze_dim(0);

        let logits = q.matmul(k.swap_dims(2, 3)); // [B, H, N, N]
        let logits = mix_heads(&self.proj_l, logits);
        let probs = softmax(logits, 3);
        let weights = mix_heads(&self.proj_w, probs);

        let out = weights.matmul(v).swap_dims(1, 2).reshape([b, n, d]);
        self.proj.forward(out)
    }
}

/// Applies an H × H linear map across the head axis of [B, H, N, N].
fn mix_heads(linear: &Linear, a: Tensor<4>) -> Tensor<4> {
    linear
        .forward(a.permute([0, 2, 3, 1]))
        .permute([0, 3, 1, 2])
}

/// timm `ClassAttn`: the query comes from the class token only, keys and values from the class
/// token and every patch token; a plain softmax.
#[derive(Module, Debug)]
pub struct ClassAttn {
    /// Query projection (applied to the class token).
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub proj: Linear,
    /// Heads `H`.
    pub num_heads: usize,
}

impl ClassAttn {
    /// `u`: [B, N+1, D] (class token first) → (new class token [B, 1, D], attention [B, H, N+1]).
    pub fn forward(&self, u: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let [b, n1, d] = u.dims();
        let h = self.num_heads;
        let hd = d / h;
        let scale = (hd as f64).powf(-0.5);
        let cls = u.clone().narrow(1, 0, 1);
        let q = self
            .q
            .forward(cls)
            .reshape([b, 1, h, hd])
            .swap_dims(1, 2)
            .mul_scalar(scale); // [B, H, 1, hd]
        let k = self
            .k
            .forward(u.clone())
            .reshape([b, n1, h, hd])
            .swap_dims(1, 2);
        let v = self.v.forward(u).reshape([b, n1, h, hd]).swap_dims(1, 2);

        let attn = softmax(q.matmul(k.swap_dims(2, 3)), 3); // [B, H, 1, N+1]
        let out = attn.clone().matmul(v).swap_dims(1, 2).reshape([b, 1, d]);
        (self.proj.forward(out), attn.squeeze_dim(2))
    }
}
