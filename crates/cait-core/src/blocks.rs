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
use crate::attention::{AttentionSink, HeadMix, RowScratch, class_attention, talking_heads};
use crate::input::Image;
use crate::kernels::layer_norm::LayerNorm;
use crate::kernels::linear::{Epilogue, Linear, Strides};
use crate::model::Stages;
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
    /// `head_dim^-0.5`, rounded once from f64 as timm's Python float is.
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
            scale: (1.0 / libm::sqrt(head_dim as f64)) as f32,
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

/// The scratch region as the attention uses it (see [`crate::workspace`]).
struct AttentionScratch<'w> {
    keys: &'w mut [f32],
    values: &'w mut [f32],
    logits: &'w mut [f32],
    weights: &'w mut [f32],
    tile_in: &'w mut [f32],
    tile_q: &'w mut [f32],
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
        }
    }
}

/// `blocks.{i}`: timm `LayerScaleBlock` with `TalkingHeadAttn`.
pub(crate) struct SelfAttentionBlock<'a> {
    gamma_1: &'a [f32],
    gamma_2: &'a [f32],
    norm1: LayerNorm<'a>,
    norm2: LayerNorm<'a>,
    /// Rows `0..D` of `attn.qkv`.
    q: Linear<'a>,
    /// Rows `D..2D` of `attn.qkv`.
    k: Linear<'a>,
    /// Rows `2D..3D` of `attn.qkv`.
    v: Linear<'a>,
    proj_l: HeadMix<'a>,
    proj_w: HeadMix<'a>,
    proj: Linear<'a>,
    fc1: Linear<'a>,
    fc2: Linear<'a>,
}

impl<'a> SelfAttentionBlock<'a> {
    pub(crate) fn resolve(r: &Resolver<'_, 'a>, i: u32) -> Result<Self, Error> {
        use BlockParam::*;
        let id = |p| TensorId::Block(i, p);
        let d = r.cfg.embed_dim as usize;
        let qkv = r.linear(id(QkvWeight), id(QkvBias))?;
        Ok(SelfAttentionBlock {
            gamma_1: r.f32(id(Gamma1))?,
            gamma_2: r.f32(id(Gamma2))?,
            norm1: r.layer_norm(id(Norm1Weight), id(Norm1Bias))?,
            norm2: r.layer_norm(id(Norm2Weight), id(Norm2Bias))?,
            q: qkv.output_rows(0, d),
            k: qkv.output_rows(d, d),
            v: qkv.output_rows(2 * d, d),
            proj_l: HeadMix {
                weight: r.f32(id(ProjLWeight))?,
                bias: r.f32(id(ProjLBias))?,
            },
            proj_w: HeadMix {
                weight: r.f32(id(ProjWWeight))?,
                bias: r.f32(id(ProjWBias))?,
            },
            proj: r.linear(id(ProjWeight), id(ProjBias))?,
            fc1: r.linear(id(Fc1Weight), id(Fc1Bias))?,
            fc2: r.linear(id(Fc2Weight), id(Fc2Bias))?,
        })
    }

    /// `x += gamma_1 * TalkingHeadAttn(norm1(x)); x += gamma_2 * Mlp(norm2(x))` on the `N × D` tokens.
    pub(crate) fn forward(
        &self,
        x: &mut [f32],
        scratch: &mut [f32],
        dims: &Dims,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        self.attention(x, scratch, dims, site, probe);
        self.mlp(x, scratch, dims, site, probe);
        probe.f32(site, Point::Output, dims.d, x);
    }

    fn attention(
        &self,
        x: &mut [f32],
        scratch: &mut [f32],
        dims: &Dims,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let (d, rows, n) = (dims.d, dims.rows, dims.n);
        let a = AttentionScratch::split(scratch, dims, n);
        // Keys (transposed, D × N) and values (N × D) of every token, `rows` tokens per pass.
        for (pass, (xs, values)) in x
            .chunks(rows * d)
            .zip(a.values.chunks_mut(rows * d))
            .enumerate()
        {
            let tile = &mut a.tile_in[..xs.len()];
            self.norm1.apply_rows(xs, tile);
            probe.f32(site, Point::Norm1, d, tile);
            let keys_t = Strides {
                offset: pass * rows,
                row: 1,
                col: n,
            };
            self.k
                .forward_strided(tile, a.keys, keys_t, Epilogue::Store);
            self.v.forward(tile, values, Epilogue::Store);
        }
        let (keys, values) = (&*a.keys, &*a.values);
        probe.f32(site, Point::K, n, keys);
        probe.f32(site, Point::V, d, values);
        let mut row = RowScratch {
            logits: a.logits,
            weights: a.weights,
        };
        // Queries, `rows` per pass. Keys and values are already computed from the un-updated tokens,
        // so each pass may add its result into its own tokens at once.
        for xs in x.chunks_mut(rows * d) {
            let tile_in = &mut a.tile_in[..xs.len()];
            let tile_q = &mut a.tile_q[..xs.len()];
            self.norm1.apply_rows(xs, tile_in);
            self.q.forward(tile_in, tile_q, Epilogue::Scale(dims.scale));
            probe.f32(site, Point::Q, d, tile_q);
            for (q, out) in tile_q.chunks_exact(d).zip(tile_in.chunks_exact_mut(d)) {
                let (l, w) = (&self.proj_l, &self.proj_w);
                talking_heads(q, keys, values, dims.head_dim, l, w, &mut row, out);
                // talking_heads leaves the weights that multiplied the values in `row.logits`.
                probe.f32(site, Point::Attention, n, row.logits);
            }
            probe.f32(site, Point::AttentionOut, d, tile_in);
            self.proj
                .forward(tile_in, xs, Epilogue::LayerScaleAdd(self.gamma_1));
        }
    }

    fn mlp(
        &self,
        x: &mut [f32],
        scratch: &mut [f32],
        dims: &Dims,
        site: Site,
        probe: &mut MaybeProbe<'_>,
    ) {
        let (d, hidden) = (dims.d, dims.hidden);
        let per_pass = (scratch.len() / (d + hidden)).clamp(1, dims.n.max(1));
        let (normed, rest) = scratch.split_at_mut(per_pass * d);
        let hid = &mut rest[..per_pass * hidden];
        for xs in x.chunks_mut(per_pass * d) {
            let count = xs.len() / d;
            let normed = &mut normed[..count * d];
            let hid = &mut hid[..count * hidden];
            self.norm2.apply_rows(xs, normed);
            probe.f32(site, Point::Norm2, d, normed);
            self.fc1.forward(normed, hid, Epilogue::Gelu);
            probe.f32(site, Point::Hidden, hidden, hid);
            self.fc2
                .forward(hid, xs, Epilogue::LayerScaleAdd(self.gamma_2));
        }
    }
}

/// `blocks_token_only.{i}`: timm `LayerScaleBlockClassAttn` with `ClassAttn`.
pub(crate) struct ClassAttentionBlock<'a> {
    gamma_1: &'a [f32],
    gamma_2: &'a [f32],
    norm1: LayerNorm<'a>,
    norm2: LayerNorm<'a>,
    q: Linear<'a>,
    k: Linear<'a>,
    v: Linear<'a>,
    proj: Linear<'a>,
    fc1: Linear<'a>,
    fc2: Linear<'a>,
}

impl<'a> ClassAttentionBlock<'a> {
    pub(crate) fn resolve(r: &Resolver<'_, 'a>, i: u32) -> Result<Self, Error> {
        use BlockParam::*;
        let id = |p| TensorId::TokenBlock(i, p);
        Ok(ClassAttentionBlock {
            gamma_1: r.f32(id(Gamma1))?,
            gamma_2: r.f32(id(Gamma2))?,
            norm1: r.layer_norm(id(Norm1Weight), id(Norm1Bias))?,
            norm2: r.layer_norm(id(Norm2Weight), id(Norm2Bias))?,
            q: r.linear(id(QWeight), id(QBias))?,
            k: r.linear(id(KWeight), id(KBias))?,
            v: r.linear(id(VWeight), id(VBias))?,
            proj: r.linear(id(ProjWeight), id(ProjBias))?,
            fc1: r.linear(id(Fc1Weight), id(Fc1Bias))?,
            fc2: r.linear(id(Fc2Weight), id(Fc2Bias))?,
        })
    }

    /// With `u = [cls; x]`: `cls += gamma_1 * ClassAttn(norm1(u)); cls += gamma_2 * Mlp(norm2(cls))`.
    /// The patch tokens `x` are read, never written.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        x: &[f32],
        cls: &mut [f32],
        scratch: &mut [f32],
        dims: &Dims,
        block: usize,
        sink: Option<&mut dyn AttentionSink>,
        probe: &mut MaybeProbe<'_>,
    ) {
        let site = Site::TokenBlock(block as u32);
        let (d, rows, tokens) = (dims.d, dims.rows, dims.n + 1);
        {
            let a = AttentionScratch::split(scratch, dims, tokens);
            // Keys (transposed, D × T) and values (T × D) of all T = N + 1 tokens of
            // norm1([cls; x]), `rows` tokens per pass.
            for (pass, values) in a.values.chunks_mut(rows * d).enumerate() {
                let tile = &mut a.tile_in[..values.len()];
                for (j, out) in tile.chunks_exact_mut(d).enumerate() {
                    let token = class_attention_input(cls, x, pass * rows + j);
                    self.norm1.apply(token, out);
                }
                probe.f32(site, Point::Norm1, d, tile);
                let keys_t = Strides {
                    offset: pass * rows,
                    row: 1,
                    col: tokens,
                };
                self.k
                    .forward_strided(tile, a.keys, keys_t, Epilogue::Store);
                self.v.forward(tile, values, Epilogue::Store);
            }
            probe.f32(site, Point::K, tokens, a.keys);
            probe.f32(site, Point::V, d, a.values);
            // The query of the class token only.
            let normed = &mut a.tile_in[..d];
            let q = &mut a.tile_q[..d];
            self.norm1.apply(cls, normed);
            self.q.forward(normed, q, Epilogue::Scale(dims.scale));
            probe.f32(site, Point::Q, d, q);
            let out = normed;
            class_attention(
                q,
                a.keys,
                a.values,
                dims.head_dim,
                a.weights,
                out,
                block,
                sink,
            );
            probe.f32(site, Point::Attention, tokens, a.weights);
            probe.f32(site, Point::AttentionOut, d, out);
            self.proj
                .forward(out, cls, Epilogue::LayerScaleAdd(self.gamma_1));
        }
        let (normed, rest) = scratch.split_at_mut(d);
        let hid = &mut rest[..dims.hidden_token];
        self.norm2.apply(cls, normed);
        probe.f32(site, Point::Norm2, d, normed);
        self.fc1.forward(normed, hid, Epilogue::Gelu);
        probe.f32(site, Point::Hidden, dims.hidden_token, hid);
        self.fc2
            .forward(hid, cls, Epilogue::LayerScaleAdd(self.gamma_2));
        probe.f32(site, Point::Output, d, cls);
    }
}

/// The float engine's stages (f32 and f16 packs), for [`crate::model::drive`].
pub(crate) struct FloatStages<'s, 'r, 'p, 'a> {
    pub(crate) r: &'s Resolver<'r, 'a>,
    pub(crate) stem: &'s Stem<'p>,
    pub(crate) dims: &'s Dims,
}

impl Stages for FloatStages<'_, '_, '_, '_> {
    // Out of line: run once per image, it would only crowd the register allocation of the
    // block loops it would be inlined beside.
    #[inline(never)]
    fn patch_embed(
        &self,
        image: &Image<'_, '_>,
        tokens: &mut [f32],
        scratch: &mut [u8],
        probe: &mut MaybeProbe<'_>,
    ) {
        let (stem, dims, scratch) = (self.stem, self.dims, floats(scratch));
        let (d, len) = (dims.d, dims.patch_len);
        let per_pass = (scratch.len() / len).clamp(1, dims.n.max(1));
        let passes = tokens
            .chunks_mut(per_pass * d)
            .zip(stem.pos_embed.chunks(per_pass * d));
        for (pass, (xs, pos)) in passes.enumerate() {
            let count = xs.len() / d;
            let cols = &mut scratch[..count * len];
            image.im2col(dims, pass * per_pass, cols, |img, c, y, x, dst| {
                img.row(c, y, x, dst)
            });
            probe.f32(Site::PatchEmbed, Point::Input, len, cols);
            stem.patch_embed.forward(cols, xs, Epilogue::Store);
            for (x, &e) in xs.iter_mut().zip(pos) {
                *x += e;
            }
        }
        probe.f32(Site::PatchEmbed, Point::Output, d, tokens);
    }

    fn self_attention(
        &self,
        i: u32,
        tokens: &mut [f32],
        scratch: &mut [u8],
        probe: &mut MaybeProbe<'_>,
    ) -> Result<(), Error> {
        let block = SelfAttentionBlock::resolve(self.r, i)?;
        block.forward(tokens, floats(scratch), self.dims, Site::Block(i), probe);
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
        let block = ClassAttentionBlock::resolve(self.r, i)?;
        let scratch = floats(scratch);
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
