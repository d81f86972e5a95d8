//! CaiT's stages: patch embedding, the self-attention (talking-heads) blocks, the class-attention
//! blocks and the head, each as a zero-copy view of its weights plus the code that runs it.
//!
//! Field names are timm's (`gamma_1`, `norm1`, `proj_l`, …). A view is built by `resolve`, which
//! checks every tensor's presence, dtype and shape against the config; after that every slice length
//! the forward code relies on is known, so its indexing cannot go out of range.

use cait_pack::{
    BlockParam, ErrorName, GlobalPool, ModelConfig, Pack, PackError, Precision, TensorId,
    TensorView,
};

use crate::Error;
use crate::attention::{
    AttentionSink, HeadMix, RowScratch, TalkingHeads, class_attention, talking_heads,
};
use crate::input::Image;
use crate::kernels::fixed::inv_sqrt_f32;
use crate::kernels::layer_norm::LayerNorm;
use crate::kernels::linear::{Epilogue, Linear, Strides};
use crate::model::{Stages, block};
use crate::probe::{MaybeProbe, Point, Site};
use crate::workspace::{self, ATTENTION_ROWS, floats};

/// Every size the forward pass uses, derived once from a validated config.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    /// Patch tokens `N`.
    pub(crate) n: usize,
    /// Token width `D`.
    pub(crate) d: usize,
    /// Heads `H`.
    pub(crate) heads: usize,
    /// `D / H`.
    pub(crate) head_dim: usize,
    /// `head_dim^-0.5`: timm's f64 value rounded to f32 ([`inv_sqrt_f32`]).
    pub(crate) scale: f32,
    /// Image `[height, width]`.
    pub(crate) img: [usize; 2],
    /// Patch side `p`.
    pub(crate) patch: usize,
    /// Patch grid columns.
    pub(crate) grid_cols: usize,
    /// Input channels `C`.
    pub(crate) in_chans: usize,
    /// `C·p²`, one im2col'd patch.
    pub(crate) patch_len: usize,
    /// SA MLP hidden width.
    pub(crate) hidden: usize,
    /// CA MLP hidden width.
    pub(crate) hidden_token: usize,
    /// Rows per attention pass, `min(ATTENTION_ROWS, N + 1)`.
    pub(crate) rows: usize,
}

impl Dims {
    /// Sizes of a config that passed `validate()` (so every product below fits in `usize`).
    pub(crate) fn new(cfg: &ModelConfig) -> Dims {
        let d = cfg.embed_dim as usize;
        let heads = cfg.num_heads as usize;
        let n = cfg.num_patches().unwrap_or(0);
        let head_dim = cfg.head_dim();
        let patch = cfg.patch_size as usize;
        Dims {
            n,
            d,
            heads,
            head_dim,
            scale: inv_sqrt_f32(head_dim as u32),
            img: [cfg.img_size[0] as usize, cfg.img_size[1] as usize],
            patch,
            grid_cols: cfg.grid()[1] as usize,
            in_chans: cfg.in_chans as usize,
            patch_len: cfg.in_chans as usize * patch * patch,
            hidden: cfg.mlp_hidden_dim as usize,
            hidden_token: cfg.mlp_hidden_dim_token_only as usize,
            rows: ATTENTION_ROWS.min(n + 1),
        }
    }
}

/// Looks tensors up in a pack and checks them against the config.
pub(crate) struct Resolver<'p, 'a> {
    pub(crate) pack: &'p Pack<'a>,
    pub(crate) cfg: &'p ModelConfig,
}

impl<'a> Resolver<'_, 'a> {
    /// Tensor `id`, present and shaped as the config says; `view` gives its typed data, whose
    /// length is checked against the shape again because the forward code indexes by it.
    fn typed<T>(
        &self,
        id: TensorId,
        view: impl FnOnce(&TensorView<'a>) -> Result<&'a [T], PackError>,
    ) -> Result<&'a [T], Error> {
        let tensor = self.pack.tensor(id)?;
        let expected = self.cfg.shape_of(id);
        let mismatch = |found| PackError::ShapeMismatch {
            name: ErrorName::unindexed(tensor.name),
            expected,
            found,
        };
        if tensor.shape != expected {
            return Err(mismatch(tensor.shape).into());
        }
        // Checks the dtype (PackError::WrongDType) and the placement (PackError::Misaligned).
        let data = view(&tensor)?;
        if Some(data.len()) != expected.numel() {
            return Err(mismatch(tensor.shape).into());
        }
        Ok(data)
    }

    /// Tensor `id` as f32 values: present, dtype F32, shape as the config says, 4-byte aligned.
    pub(crate) fn f32(&self, id: TensorId) -> Result<&'a [f32], Error> {
        self.typed(id, TensorView::as_f32)
    }

    /// Tensor `id` as int8 values (int8 packs' weights).
    pub(crate) fn i8(&self, id: TensorId) -> Result<&'a [i8], Error> {
        self.typed(id, TensorView::as_i8)
    }

    /// A linear layer: weight `[out, ...]` (trailing dims flattened into `in`) and a bias if the
    /// config has one. The weight is f32 in f32 packs, f16 otherwise (f16 packs, and the blocks of
    /// an int8 pack kept in f16); the bias is f32.
    pub(crate) fn linear(&self, weight: TensorId, bias: TensorId) -> Result<Linear<'a>, Error> {
        let b = if self.cfg.has_tensor(bias) {
            Some(self.f32(bias)?)
        } else {
            None
        };
        let shape = self.cfg.shape_of(weight);
        let out = shape.dims().first().map_or(0, |&o| o as usize);
        let layer = if self.pack.precision() != Precision::F32 {
            let w = self.typed(weight, TensorView::as_f16)?;
            Linear::f16(w, b, out, w.len().checked_div(out).unwrap_or(0))
        } else {
            let w = self.f32(weight)?;
            Linear::f32(w, b, out, w.len().checked_div(out).unwrap_or(0))
        };
        layer.ok_or_else(|| {
            // Unreachable after the shape checks above (kept so a bad config cannot panic later).
            PackError::ShapeMismatch {
                name: ErrorName::unindexed(""),
                expected: shape,
                found: shape,
            }
            .into()
        })
    }

    fn layer_norm(&self, weight: TensorId, bias: TensorId) -> Result<LayerNorm<'a>, Error> {
        Ok(LayerNorm {
            weight: self.f32(weight)?,
            bias: self.f32(bias)?,
        })
    }
}

/// Stem and head: everything outside the blocks.
#[derive(Clone, Copy)]
pub(crate) struct Stem<'a> {
    /// `cls_token` `[D]`.
    pub(crate) cls_token: &'a [f32],
    /// `pos_embed` `[N·D]`.
    pub(crate) pos_embed: &'a [f32],
    /// `patch_embed.proj` as a Linear `[D, C·p²]` over im2col'd patches.
    pub(crate) patch_embed: Linear<'a>,
    /// Final `norm`.
    pub(crate) norm: LayerNorm<'a>,
    /// `head`, absent when `num_classes == 0`.
    pub(crate) head: Option<Linear<'a>>,
    /// Head pooling.
    pub(crate) global_pool: GlobalPool,
}

impl<'a> Stem<'a> {
    pub(crate) fn resolve(r: &Resolver<'_, 'a>) -> Result<Stem<'a>, Error> {
        Ok(Stem {
            cls_token: r.f32(TensorId::ClsToken)?,
            pos_embed: r.f32(TensorId::PosEmbed)?,
            patch_embed: r.linear(TensorId::PatchEmbedWeight, TensorId::PatchEmbedBias)?,
            norm: r.layer_norm(TensorId::NormWeight, TensorId::NormBias)?,
            head: if r.cfg.num_classes > 0 {
                Some(r.linear(TensorId::HeadWeight, TensorId::HeadBias)?)
            } else {
                None
            },
            global_pool: r.cfg.global_pool,
        })
    }
}

/// The final `norm` and timm's pooling into `pooled` (`D` values): the normalised class token
/// (`token`), or the mean of the normalised patch tokens, summed in token order (`avg`: timm's
/// `x[:, 1:].mean(1)`), `normed` (`D` values) holding each in turn.
pub(crate) fn pool(
    norm: &LayerNorm<'_>,
    global_pool: GlobalPool,
    tokens: &[f32],
    cls: &[f32],
    pooled: &mut [f32],
    normed: &mut [f32],
) {
    match global_pool {
        GlobalPool::Token => norm.apply(cls, pooled),
        GlobalPool::Avg => {
            pooled.fill(0.0);
            let d = pooled.len();
            for x in tokens.chunks_exact(d) {
                norm.apply(x, normed);
                for (s, &v) in pooled.iter_mut().zip(normed.iter()) {
                    *s += v;
                }
            }
            let n = tokens.len().checked_div(d).unwrap_or(0) as f32;
            for s in pooled.iter_mut() {
                *s /= n;
            }
        }
    }
}

/// Token `t` of the class-attention input `[cls; x]`: the class token, then the patch tokens.
#[inline]
pub(crate) fn class_attention_input<'x>(cls: &'x [f32], x: &'x [f32], t: usize) -> &'x [f32] {
    let d = cls.len();
    if t == 0 { cls } else { &x[(t - 1) * d..t * d] }
}

/// The tensors of block `i`: `blocks.{i}.…`, or `blocks_token_only.{i}.…` when `token_only`.
/// (The float engine's resolvers keep one closure per kind of block: each is then inlined into
/// its caller, which on the tiny f32 firmware took 824 bytes less stack than one shared
/// out-of-line instance.)
pub(crate) fn block_param(token_only: bool, i: u32) -> impl Fn(BlockParam) -> TensorId + Copy {
    move |p| match token_only {
        false => TensorId::Block(i, p),
        true => TensorId::TokenBlock(i, p),
    }
}

/// The scratch region as the attention uses it (see [`crate::workspace`]).
pub(crate) struct AttentionScratch<'w> {
    /// `D × T`: feature `c` of every token (keys stored transposed).
    keys: &'w mut [f32],
    /// `T × D`.
    values: &'w mut [f32],
    logits: &'w mut [f32],
    weights: &'w mut [f32],
    /// `norm1` rows, then the attention's output rows.
    tile_in: &'w mut [f32],
    tile_q: &'w mut [f32],
    /// Keys `T`.
    tokens: usize,
    d: usize,
    head_dim: usize,
    /// `head_dim^-0.5`, the queries' scale.
    scale: f32,
}

impl<'w> AttentionScratch<'w> {
    /// Splits `scratch` as [`workspace::f32_attention`] lays it out, for `tokens` keys.
    fn split(scratch: &'w mut [f32], dims: &Dims, tokens: usize) -> AttentionScratch<'w> {
        let (d, h, cap) = (dims.d, dims.heads, dims.n + 1);
        let regions = workspace::f32_attention(cap as u128, d as u128, h as u128);
        let [keys, values, logits, weights, tile_in, tile_q] = regions.map(|r| r.count as usize);
        let (keys, rest) = scratch.split_at_mut(keys);
        let (values, rest) = rest.split_at_mut(values);
        let (logits, rest) = rest.split_at_mut(logits);
        let (weights, rest) = rest.split_at_mut(weights);
        let (tile_in, rest) = rest.split_at_mut(tile_in);
        let tile_q = &mut rest[..tile_q];
        AttentionScratch {
            keys: &mut keys[..tokens * d],
            values: &mut values[..tokens * d],
            logits: &mut logits[..h * tokens],
            weights: &mut weights[..h * tokens],
            tile_in,
            tile_q,
            tokens,
            d,
            head_dim: dims.head_dim,
            scale: dims.scale,
        }
    }
}

/// The attention branch of an f32 or f16 block (`norm1`, `q`/`k`/`v`, `proj`, `gamma_1`).
pub(crate) struct Attention<'a> {
    gamma_1: &'a [f32],
    norm1: LayerNorm<'a>,
    q: Linear<'a>,
    k: Linear<'a>,
    v: Linear<'a>,
    proj: Linear<'a>,
}

impl block::Attention for Attention<'_> {
    type Scratch<'w> = AttentionScratch<'w>;

    fn scratch<'w>(&self, scratch: &'w mut [u8], dims: &Dims, tokens: usize) -> Self::Scratch<'w> {
        AttentionScratch::split(floats(scratch), dims, tokens)
    }

    fn keys_values<'x>(
        &self,
        s: &mut AttentionScratch<'_>,
        rows: impl ExactSizeIterator<Item = &'x [f32]>,
        first: usize,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let d = s.d;
        let tile = &mut s.tile_in[..rows.len() * d];
        for (x, out) in rows.zip(tile.chunks_exact_mut(d)) {
            self.norm1.apply(x, out);
        }
        probe.f32(site, Point::Norm1, d, tile);
        let keys_t = Strides {
            offset: first,
            row: 1,
            col: s.tokens,
        };
        self.k
            .forward_strided(tile, s.keys, keys_t, Epilogue::Store);
        let values = &mut s.values[first * d..first * d + tile.len()];
        self.v.forward(tile, values, Epilogue::Store);
    }

    fn report_keys_values(
        &self,
        s: &mut AttentionScratch<'_>,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        probe.f32(site, Point::K, s.tokens, s.keys);
        probe.f32(site, Point::V, s.d, s.values);
    }

    fn queries(
        &self,
        s: &mut AttentionScratch<'_>,
        x: &[f32],
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let d = s.d;
        let (tile_in, tile_q) = (&mut s.tile_in[..x.len()], &mut s.tile_q[..x.len()]);
        self.norm1.apply_rows(x, tile_in);
        self.q.forward(tile_in, tile_q, Epilogue::Scale(s.scale));
        probe.f32(site, Point::Q, d, tile_q);
    }

    fn talking_heads(
        &self,
        s: &mut AttentionScratch<'_>,
        mix: &TalkingHeads<'_>,
        j: usize,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let d = s.d;
        let q = &s.tile_q[j * d..(j + 1) * d];
        let out = &mut s.tile_in[j * d..(j + 1) * d];
        let mut row = RowScratch {
            logits: s.logits,
            weights: s.weights,
        };
        talking_heads(q, s.keys, s.values, s.head_dim, mix, &mut row, out);
        // talking_heads leaves the weights that multiplied the values in `row.logits`.
        probe.f32(site, Point::Attention, s.tokens, row.logits);
    }

    fn class_attention(
        &self,
        s: &mut AttentionScratch<'_>,
        block: usize,
        sink: Option<&mut dyn AttentionSink>,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let d = s.d;
        let (q, out) = (&s.tile_q[..d], &mut s.tile_in[..d]);
        let (keys, values, weights) = (&*s.keys, &*s.values, &mut *s.weights);
        class_attention(q, keys, values, s.head_dim, weights, out, block, sink);
        probe.f32(site, Point::Attention, s.tokens, s.weights);
    }

    fn project(
        &self,
        s: &mut AttentionScratch<'_>,
        residual: &mut [f32],
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let out = &s.tile_in[..residual.len()];
        probe.f32(site, Point::AttentionOut, s.d, out);
        self.proj
            .forward(out, residual, Epilogue::LayerScaleAdd(self.gamma_1));
    }
}

/// The MLP branch of an f32 or f16 block (`norm2`, `fc1`, `fc2`, `gamma_2`).
pub(crate) struct Mlp<'a> {
    gamma_2: &'a [f32],
    norm2: LayerNorm<'a>,
    fc1: Linear<'a>,
    fc2: Linear<'a>,
}

impl block::Mlp for Mlp<'_> {
    type Act = f32;

    fn norm(&self, x: &[f32], out: &mut [f32]) {
        self.norm2.apply_rows(x, out);
    }

    fn fc1_gelu(&self, x: &[f32], out: &mut [f32]) {
        self.fc1.forward(x, out, Epilogue::Gelu);
    }

    fn fc2_residual(&self, x: &[f32], residual: &mut [f32]) {
        self.fc2
            .forward(x, residual, Epilogue::LayerScaleAdd(self.gamma_2));
    }

    fn report(
        &self,
        probe: &mut MaybeProbe<'_>,
        site: Site,
        point: Point,
        width: usize,
        act: &[f32],
    ) {
        probe.f32(site, point, width, act);
    }
}

/// `blocks.{i}` of an f32 or f16 pack.
pub(crate) type SelfAttentionBlock<'a> = block::SelfAttentionBlock<'a, Attention<'a>, Mlp<'a>>;

/// `blocks_token_only.{i}` of an f32 or f16 pack.
pub(crate) type ClassAttentionBlock<'a> = block::ClassAttentionBlock<Attention<'a>, Mlp<'a>>;

impl<'a> Resolver<'_, 'a> {
    /// The attention branch whose `q`/`k`/`v` are given (timm's fused `qkv` split, or the
    /// class-attention block's three), with `norm1`, `proj` and `gamma_1` of `id`'s block.
    fn attention(
        &self,
        id: impl Fn(BlockParam) -> TensorId,
        [q, k, v]: [Linear<'a>; 3],
    ) -> Result<Attention<'a>, Error> {
        use BlockParam::*;
        Ok(Attention {
            gamma_1: self.f32(id(Gamma1))?,
            norm1: self.layer_norm(id(Norm1Weight), id(Norm1Bias))?,
            q,
            k,
            v,
            proj: self.linear(id(ProjWeight), id(ProjBias))?,
        })
    }

    fn mlp(&self, id: impl Fn(BlockParam) -> TensorId) -> Result<Mlp<'a>, Error> {
        use BlockParam::*;
        Ok(Mlp {
            gamma_2: self.f32(id(Gamma2))?,
            norm2: self.layer_norm(id(Norm2Weight), id(Norm2Bias))?,
            fc1: self.linear(id(Fc1Weight), id(Fc1Bias))?,
            fc2: self.linear(id(Fc2Weight), id(Fc2Bias))?,
        })
    }

    /// `blocks.{i}.attn.proj_l` and `proj_w` (f32 in every pack).
    pub(crate) fn talking_heads(&self, i: u32) -> Result<TalkingHeads<'a>, Error> {
        use BlockParam::*;
        let mix = |w, b| -> Result<HeadMix<'a>, Error> {
            Ok(HeadMix {
                weight: self.f32(TensorId::Block(i, w))?,
                bias: self.f32(TensorId::Block(i, b))?,
            })
        };
        Ok(TalkingHeads {
            proj_l: mix(ProjLWeight, ProjLBias)?,
            proj_w: mix(ProjWWeight, ProjWBias)?,
        })
    }

    /// `blocks.{i}`.
    pub(crate) fn self_attention_block(&self, i: u32) -> Result<SelfAttentionBlock<'a>, Error> {
        use BlockParam::*;
        let id = |p| TensorId::Block(i, p);
        let d = self.cfg.embed_dim as usize;
        let qkv = self.linear(id(QkvWeight), id(QkvBias))?;
        let split = [0, 1, 2].map(|j| qkv.output_rows(j * d, d));
        Ok(block::SelfAttentionBlock {
            attn: self.attention(id, split)?,
            mix: self.talking_heads(i)?,
            mlp: self.mlp(id)?,
        })
    }

    /// `blocks_token_only.{i}`.
    pub(crate) fn class_attention_block(&self, i: u32) -> Result<ClassAttentionBlock<'a>, Error> {
        use BlockParam::*;
        let id = |p| TensorId::TokenBlock(i, p);
        let qkv = [
            self.linear(id(QWeight), id(QBias))?,
            self.linear(id(KWeight), id(KBias))?,
            self.linear(id(VWeight), id(VBias))?,
        ];
        Ok(block::ClassAttentionBlock {
            attn: self.attention(id, qkv)?,
            mlp: self.mlp(id)?,
        })
    }
}

/// The float engine's stages (f32 and f16 packs), for [`crate::model::drive`].
pub(crate) struct FloatStages<'s, 'r, 'p, 'a> {
    pub(crate) r: &'s Resolver<'r, 'a>,
    pub(crate) stem: &'s Stem<'p>,
    pub(crate) dims: &'s Dims,
}

impl Stages for FloatStages<'_, '_, '_, '_> {
    type Col = f32;

    // Out of line: it would only crowd the register allocation of the block loops it would be
    // inlined beside.
    #[inline(never)]
    fn patch_embed(
        &self,
        image: &Image<'_, '_>,
        first: usize,
        tokens: &mut [f32],
        cols: &mut [u8],
        probe: &mut MaybeProbe<'_>,
    ) {
        let (stem, dims) = (self.stem, self.dims);
        let (d, len) = (dims.d, dims.patch_len);
        let cols = &mut floats(cols)[..tokens.len() / d * len];
        image.im2col(dims, first, cols, |img, c, y, x, dst| img.row(c, y, x, dst));
        probe.f32(Site::PatchEmbed, Point::Input, len, cols);
        stem.patch_embed.forward(cols, tokens, Epilogue::Store);
        let pos = &stem.pos_embed[first * d..first * d + tokens.len()];
        for (x, &e) in tokens.iter_mut().zip(pos) {
            *x += e;
        }
    }

    fn self_attention(
        &self,
        i: u32,
        tokens: &mut [f32],
        scratch: &mut [u8],
        probe: &mut MaybeProbe<'_>,
    ) -> Result<(), Error> {
        let block = self.r.self_attention_block(i)?;
        block.forward(tokens, scratch, self.dims, Site::Block(i), probe);
        Ok(())
    }

    fn cls_token(&self) -> &[f32] {
        self.stem.cls_token
    }

    fn class_attention(
        &self,
        i: u32,
        tokens: &[f32],
        cls: &mut [f32],
        scratch: &mut [u8],
        sink: Option<&mut dyn AttentionSink>,
        probe: &mut MaybeProbe<'_>,
    ) -> Result<(), Error> {
        let block = self.r.class_attention_block(i)?;
        block.forward(tokens, cls, scratch, self.dims, i as usize, sink, probe);
        Ok(())
    }

    fn head(
        &self,
        tokens: &[f32],
        cls: &[f32],
        scratch: &mut [u8],
        features: Option<&mut [f32]>,
        logits: &mut [f32],
        probe: &mut MaybeProbe<'_>,
    ) {
        let (stem, dims, scratch) = (self.stem, self.dims, floats(scratch));
        let d = dims.d;
        let (pooled, rest) = scratch.split_at_mut(d);
        pool(
            &stem.norm,
            stem.global_pool,
            tokens,
            cls,
            pooled,
            &mut rest[..d],
        );
        if let Some(features) = features {
            features.copy_from_slice(pooled);
        }
        probe.f32(Site::Head, Point::Input, d, pooled);
        match &stem.head {
            Some(head) => head.forward(pooled, logits, Epilogue::Store),
            None => logits.copy_from_slice(pooled),
        }
        probe.f32(Site::Head, Point::Output, logits.len(), logits);
    }
}
