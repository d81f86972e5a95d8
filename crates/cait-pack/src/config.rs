//! The CaiT model configuration and the canonical list of its tensors.
//!
//! Tensor names are timm's state-dict keys (`blocks.3.attn.proj_l.weight`), so a pack, a timm
//! checkpoint and the engine all speak about the same tensor with the same name. The list of tensors
//! a config implies, with their shapes, lives here once and is used by the pack reader (shape checks),
//! the checkpoint importer (missing / extra / mis-shaped tensors) and the engine (weight lookup).

use core::fmt;

/// Most dimensions a tensor in a CaiT model has (the patch-embedding conv kernel has four).
pub const MAX_RANK: usize = 4;

/// Most blocks a stack (`depth` or `depth_token_only`) may have: far above any published CaiT
/// (48 + 2), low enough that walking every tensor of a config stays cheap.
pub const MAX_DEPTH: u32 = 1024;

/// How the head pools the normalised tokens (timm's `global_pool`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum GlobalPool {
    /// The class token (timm `global_pool='token'`, CaiT's default).
    Token,
    /// The mean of the patch tokens, class token excluded (timm `global_pool='avg'`).
    Avg,
}

impl GlobalPool {
    /// timm's spelling: `"token"` or `"avg"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            GlobalPool::Token => "token",
            GlobalPool::Avg => "avg",
        }
    }
}

/// The architecture of a CaiT model: everything needed to know every tensor's shape and the
/// workspace an inference needs.
///
/// Field names follow timm's `Cait.__init__` arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ModelConfig {
    /// Input image `[height, width]` in pixels.
    pub img_size: [u32; 2],
    /// Side of the square patches (the patch-embedding conv's kernel and stride).
    pub patch_size: u32,
    /// Input channels.
    pub in_chans: u32,
    /// Classes of the head; 0 means no head (timm `num_classes=0`): the logits are the features.
    pub num_classes: u32,
    /// Token width `D`.
    pub embed_dim: u32,
    /// Number of self-attention (talking-heads) blocks.
    pub depth: u32,
    /// Attention heads `H` in every block.
    pub num_heads: u32,
    /// Hidden width of the self-attention blocks' MLP (`int(D * mlp_ratio)` in timm).
    pub mlp_hidden_dim: u32,
    /// Number of class-attention blocks (timm `depth_token_only`, 2 in every published CaiT).
    pub depth_token_only: u32,
    /// Hidden width of the class-attention blocks' MLP (`int(D * mlp_ratio_token_only)`).
    pub mlp_hidden_dim_token_only: u32,
    /// Whether the q/k/v projections carry a bias (timm `qkv_bias`).
    pub qkv_bias: bool,
    /// Head pooling.
    pub global_pool: GlobalPool,
}

/// Why a [`ModelConfig`] cannot describe a model the engine can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// A dimension that must be positive is zero.
    Zero(&'static str),
    /// The image side is not a multiple of the patch size.
    PatchDoesNotDivideImage,
    /// `embed_dim` is not a multiple of `num_heads`.
    HeadsDoNotDivideWidth,
    /// A derived size does not fit in the address space.
    TooLarge(&'static str),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Zero(field) => write!(f, "config field `{field}` must be positive"),
            ConfigError::PatchDoesNotDivideImage => {
                f.write_str("image size is not a multiple of the patch size")
            }
            ConfigError::HeadsDoNotDivideWidth => {
                f.write_str("embed_dim is not a multiple of num_heads")
            }
            ConfigError::TooLarge(what) => write!(f, "{what} overflows the address space"),
        }
    }
}

impl core::error::Error for ConfigError {}

impl ModelConfig {
    /// Checks that the config is self-consistent and that every derived size fits in `usize`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Bounds loops over blocks (the deepest published CaiT has 48 + 2).
        if self.depth > MAX_DEPTH {
            return Err(ConfigError::TooLarge("depth"));
        }
        if self.depth_token_only > MAX_DEPTH {
            return Err(ConfigError::TooLarge("depth_token_only"));
        }
        let positive = [
            (self.img_size[0], "img_size[0]"),
            (self.img_size[1], "img_size[1]"),
            (self.patch_size, "patch_size"),
            (self.in_chans, "in_chans"),
            (self.embed_dim, "embed_dim"),
            (self.num_heads, "num_heads"),
            (self.mlp_hidden_dim, "mlp_hidden_dim"),
            (self.mlp_hidden_dim_token_only, "mlp_hidden_dim_token_only"),
        ];
        for (value, name) in positive {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if !self.img_size[0].is_multiple_of(self.patch_size)
            || !self.img_size[1].is_multiple_of(self.patch_size)
        {
            return Err(ConfigError::PatchDoesNotDivideImage);
        }
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return Err(ConfigError::HeadsDoNotDivideWidth);
        }
        // Every tensor's element count, and the biggest activation products, must fit in usize.
        let n = self
            .num_patches()
            .ok_or(ConfigError::TooLarge("num_patches"))?;
        let d = self.embed_dim as usize;
        let tokens = n.checked_add(1).ok_or(ConfigError::TooLarge("tokens"))?;
        tokens
            .checked_mul(d)
            .and_then(|x| x.checked_mul(4))
            .and_then(|x| x.checked_mul(16))
            .ok_or(ConfigError::TooLarge("activations"))?;
        tokens
            .checked_mul(self.num_heads as usize)
            .and_then(|x| x.checked_mul(16))
            .ok_or(ConfigError::TooLarge("attention row"))?;
        self.input_len().ok_or(ConfigError::TooLarge("input"))?;
        // Dimensions are stored as u32: the largest ones (3D for qkv, N for pos_embed) must fit.
        self.embed_dim
            .checked_mul(3)
            .ok_or(ConfigError::TooLarge("embed_dim"))?;
        u32::try_from(n).map_err(|_| ConfigError::TooLarge("num_patches"))?;
        // Blocks of a stack all have the same shapes, so one of each kind covers every tensor.
        let probe = ModelConfig {
            depth: self.depth.min(1),
            depth_token_only: self.depth_token_only.min(1),
            ..*self
        };
        for id in probe.tensors() {
            id.shape
                .numel()
                .and_then(|x| x.checked_mul(4))
                .ok_or(ConfigError::TooLarge("tensor"))?;
        }
        Ok(())
    }

    /// Patch tokens `N = (H / p) * (W / p)`; `None` on overflow or a zero patch size.
    pub fn num_patches(&self) -> Option<usize> {
        let p = self.patch_size as usize;
        if p == 0 {
            return None;
        }
        (self.img_size[0] as usize / p).checked_mul(self.img_size[1] as usize / p)
    }

    /// The patch grid `[rows, cols]`.
    pub fn grid(&self) -> [u32; 2] {
        let p = self.patch_size.max(1);
        [self.img_size[0] / p, self.img_size[1] / p]
    }

    /// Width of one head, `D / H`.
    pub fn head_dim(&self) -> usize {
        self.embed_dim as usize / (self.num_heads.max(1) as usize)
    }

    /// Elements of one input image, `C * H * W`.
    pub fn input_len(&self) -> Option<usize> {
        (self.in_chans as usize)
            .checked_mul(self.img_size[0] as usize)?
            .checked_mul(self.img_size[1] as usize)
    }

    /// Length of the logits: `num_classes`, or `embed_dim` when there is no head.
    pub const fn logits_len(&self) -> usize {
        if self.num_classes == 0 {
            self.embed_dim as usize
        } else {
            self.num_classes as usize
        }
    }

    /// Total parameters (the sum of every tensor's element count), as timm counts them.
    pub fn num_params(&self) -> u64 {
        self.tensors()
            .map(|t| t.shape.numel().unwrap_or(0) as u64)
            .sum()
    }

    /// Every tensor the model has, with its shape, in timm's state-dict order.
    pub fn tensors(&self) -> Tensors {
        Tensors {
            cfg: *self,
            next: Some(TensorId::ClsToken),
        }
    }

    /// The shape a tensor has under this config.
    pub fn shape_of(&self, id: TensorId) -> Shape {
        let d = self.embed_dim;
        let h = self.num_heads;
        let n = self.num_patches().unwrap_or(0) as u32;
        let p = self.patch_size;
        match id {
            TensorId::ClsToken => Shape::new(&[1, 1, d]),
            TensorId::PosEmbed => Shape::new(&[1, n, d]),
            TensorId::PatchEmbedWeight => Shape::new(&[d, self.in_chans, p, p]),
            TensorId::PatchEmbedBias | TensorId::NormWeight | TensorId::NormBias => {
                Shape::new(&[d])
            }
            TensorId::HeadWeight => Shape::new(&[self.num_classes, d]),
            TensorId::HeadBias => Shape::new(&[self.num_classes]),
            TensorId::Block(_, param) => param.shape(d, h, self.mlp_hidden_dim),
            TensorId::TokenBlock(_, param) => param.shape(d, h, self.mlp_hidden_dim_token_only),
        }
    }

    /// Whether `id` is one of this config's tensors.
    pub fn has_tensor(&self, id: TensorId) -> bool {
        match id {
            TensorId::Block(i, param) => i < self.depth && param.in_self_attention(self.qkv_bias),
            TensorId::TokenBlock(i, param) => {
                i < self.depth_token_only && param.in_class_attention(self.qkv_bias)
            }
            TensorId::HeadWeight | TensorId::HeadBias => self.num_classes > 0,
            _ => true,
        }
    }
}

/// A tensor shape of rank 1 to [`MAX_RANK`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shape {
    dims: [u32; MAX_RANK],
    rank: u8,
}

impl Shape {
    /// A shape from its dimensions; ranks above [`MAX_RANK`] are truncated (callers check first).
    pub const fn new(dims: &[u32]) -> Shape {
        let mut out = [0u32; MAX_RANK];
        let mut i = 0;
        while i < dims.len() && i < MAX_RANK {
            out[i] = dims[i];
            i += 1;
        }
        Shape {
            dims: out,
            rank: i as u8,
        }
    }

    /// The dimensions.
    pub fn dims(&self) -> &[u32] {
        &self.dims[..self.rank as usize]
    }

    /// Number of dimensions.
    pub const fn rank(&self) -> usize {
        self.rank as usize
    }

    /// Element count; `None` on overflow.
    pub fn numel(&self) -> Option<usize> {
        self.dims()
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.dims().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// One parameter inside a self-attention (`blocks.i`) or class-attention (`blocks_token_only.i`) block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[allow(missing_docs)]
pub enum BlockParam {
    Gamma1,
    Gamma2,
    Norm1Weight,
    Norm1Bias,
    /// Self-attention only: the fused q/k/v projection `[3D, D]`.
    QkvWeight,
    QkvBias,
    /// Class-attention only: separate q, k, v projections `[D, D]`.
    QWeight,
    QBias,
    KWeight,
    KBias,
    VWeight,
    VBias,
    /// Self-attention only: talking-heads mix before the softmax `[H, H]`.
    ProjLWeight,
    ProjLBias,
    /// Self-attention only: talking-heads mix after the softmax `[H, H]`.
    ProjWWeight,
    ProjWBias,
    ProjWeight,
    ProjBias,
    Norm2Weight,
    Norm2Bias,
    Fc1Weight,
    Fc1Bias,
    Fc2Weight,
    Fc2Bias,
}

impl BlockParam {
    /// Every parameter, in timm's state-dict order within a block.
    pub const ALL: [BlockParam; 24] = [
        BlockParam::Gamma1,
        BlockParam::Gamma2,
        BlockParam::Norm1Weight,
        BlockParam::Norm1Bias,
        BlockParam::QkvWeight,
        BlockParam::QkvBias,
        BlockParam::QWeight,
        BlockParam::QBias,
        BlockParam::KWeight,
        BlockParam::KBias,
        BlockParam::VWeight,
        BlockParam::VBias,
        BlockParam::ProjWeight,
        BlockParam::ProjBias,
        BlockParam::ProjLWeight,
        BlockParam::ProjLBias,
        BlockParam::ProjWWeight,
        BlockParam::ProjWBias,
        BlockParam::Norm2Weight,
        BlockParam::Norm2Bias,
        BlockParam::Fc1Weight,
        BlockParam::Fc1Bias,
        BlockParam::Fc2Weight,
        BlockParam::Fc2Bias,
    ];

    /// The key suffix after `blocks.i.`.
    pub const fn suffix(self) -> &'static str {
        match self {
            BlockParam::Gamma1 => "gamma_1",
            BlockParam::Gamma2 => "gamma_2",
            BlockParam::Norm1Weight => "norm1.weight",
            BlockParam::Norm1Bias => "norm1.bias",
            BlockParam::QkvWeight => "attn.qkv.weight",
            BlockParam::QkvBias => "attn.qkv.bias",
            BlockParam::QWeight => "attn.q.weight",
            BlockParam::QBias => "attn.q.bias",
            BlockParam::KWeight => "attn.k.weight",
            BlockParam::KBias => "attn.k.bias",
            BlockParam::VWeight => "attn.v.weight",
            BlockParam::VBias => "attn.v.bias",
            BlockParam::ProjLWeight => "attn.proj_l.weight",
            BlockParam::ProjLBias => "attn.proj_l.bias",
            BlockParam::ProjWWeight => "attn.proj_w.weight",
            BlockParam::ProjWBias => "attn.proj_w.bias",
            BlockParam::ProjWeight => "attn.proj.weight",
            BlockParam::ProjBias => "attn.proj.bias",
            BlockParam::Norm2Weight => "norm2.weight",
            BlockParam::Norm2Bias => "norm2.bias",
            BlockParam::Fc1Weight => "mlp.fc1.weight",
            BlockParam::Fc1Bias => "mlp.fc1.bias",
            BlockParam::Fc2Weight => "mlp.fc2.weight",
            BlockParam::Fc2Bias => "mlp.fc2.bias",
        }
    }

    fn in_self_attention(self, qkv_bias: bool) -> bool {
        use BlockParam::*;
        match self {
            QWeight | QBias | KWeight | KBias | VWeight | VBias => false,
            QkvBias => qkv_bias,
            _ => true,
        }
    }

    fn in_class_attention(self, qkv_bias: bool) -> bool {
        use BlockParam::*;
        match self {
            QkvWeight | QkvBias | ProjLWeight | ProjLBias | ProjWWeight | ProjWBias => false,
            QBias | KBias | VBias => qkv_bias,
            _ => true,
        }
    }

    fn shape(self, d: u32, h: u32, hidden: u32) -> Shape {
        use BlockParam::*;
        match self {
            Gamma1 | Gamma2 | Norm1Weight | Norm1Bias | Norm2Weight | Norm2Bias | QBias | KBias
            | VBias | ProjBias | Fc2Bias => Shape::new(&[d]),
            QkvWeight => Shape::new(&[d.saturating_mul(3), d]),
            QkvBias => Shape::new(&[d.saturating_mul(3)]),
            QWeight | KWeight | VWeight | ProjWeight => Shape::new(&[d, d]),
            ProjLWeight | ProjWWeight => Shape::new(&[h, h]),
            ProjLBias | ProjWBias => Shape::new(&[h]),
            Fc1Weight => Shape::new(&[hidden, d]),
            Fc1Bias => Shape::new(&[hidden]),
            Fc2Weight => Shape::new(&[d, hidden]),
        }
    }
}

/// Which tensor of a CaiT model: a typed timm state-dict key. `Display` writes the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TensorId {
    /// `cls_token` `[1, 1, D]`.
    ClsToken,
    /// `pos_embed` `[1, N, D]` (no class slot).
    PosEmbed,
    /// `patch_embed.proj.weight` `[D, C, p, p]`.
    PatchEmbedWeight,
    /// `patch_embed.proj.bias` `[D]`.
    PatchEmbedBias,
    /// `blocks.{i}.{param}`: self-attention block `i`.
    Block(u32, BlockParam),
    /// `blocks_token_only.{i}.{param}`: class-attention block `i`.
    TokenBlock(u32, BlockParam),
    /// `norm.weight` `[D]`.
    NormWeight,
    /// `norm.bias` `[D]`.
    NormBias,
    /// `head.weight` `[classes, D]`.
    HeadWeight,
    /// `head.bias` `[classes]`.
    HeadBias,
}

impl TensorId {
    /// Parses a timm key (without any `module.` prefix); `None` if it is not a CaiT tensor name.
    pub fn parse(name: &str) -> Option<TensorId> {
        Some(match name {
            "cls_token" => TensorId::ClsToken,
            "pos_embed" => TensorId::PosEmbed,
            "patch_embed.proj.weight" => TensorId::PatchEmbedWeight,
            "patch_embed.proj.bias" => TensorId::PatchEmbedBias,
            "norm.weight" => TensorId::NormWeight,
            "norm.bias" => TensorId::NormBias,
            "head.weight" => TensorId::HeadWeight,
            "head.bias" => TensorId::HeadBias,
            _ => {
                let (block, rest) = if let Some(rest) = name.strip_prefix("blocks.") {
                    (true, rest)
                } else if let Some(rest) = name.strip_prefix("blocks_token_only.") {
                    (false, rest)
                } else {
                    return None;
                };
                let (index, suffix) = rest.split_once('.')?;
                if index.is_empty()
                    || index.len() > 9
                    || !index.bytes().all(|b| b.is_ascii_digit())
                    || (index.len() > 1 && index.starts_with('0'))
                {
                    return None;
                }
                let index: u32 = index.parse().ok()?;
                let param = *BlockParam::ALL.iter().find(|p| p.suffix() == suffix)?;
                if block {
                    TensorId::Block(index, param)
                } else {
                    TensorId::TokenBlock(index, param)
                }
            }
        })
    }
}

impl TensorId {
    /// Whether this is the weight of a matmul the engine runs as a linear layer: the patch
    /// embedding, q/k/v (fused or not), `proj`, `fc1`, `fc2` and the head. These are the tensors
    /// f16 and int8 packs store in reduced precision; everything else (norms, LayerScale, biases,
    /// tokens, position embedding, the talking-heads mixes) is small and stays f32.
    pub const fn is_linear_weight(self) -> bool {
        use BlockParam::*;
        match self {
            TensorId::PatchEmbedWeight | TensorId::HeadWeight => true,
            TensorId::Block(_, p) | TensorId::TokenBlock(_, p) => matches!(
                p,
                QkvWeight | QWeight | KWeight | VWeight | ProjWeight | Fc1Weight | Fc2Weight
            ),
            _ => false,
        }
    }
}

impl fmt::Display for TensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorId::ClsToken => f.write_str("cls_token"),
            TensorId::PosEmbed => f.write_str("pos_embed"),
            TensorId::PatchEmbedWeight => f.write_str("patch_embed.proj.weight"),
            TensorId::PatchEmbedBias => f.write_str("patch_embed.proj.bias"),
            TensorId::Block(i, p) => write!(f, "blocks.{i}.{}", p.suffix()),
            TensorId::TokenBlock(i, p) => write!(f, "blocks_token_only.{i}.{}", p.suffix()),
            TensorId::NormWeight => f.write_str("norm.weight"),
            TensorId::NormBias => f.write_str("norm.bias"),
            TensorId::HeadWeight => f.write_str("head.weight"),
            TensorId::HeadBias => f.write_str("head.bias"),
        }
    }
}

/// A tensor of a config, with its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// Which tensor.
    pub id: TensorId,
    /// Its shape under the config.
    pub shape: Shape,
}

/// Iterator over a config's tensors in timm's state-dict order; see [`ModelConfig::tensors`].
#[derive(Clone, Debug)]
pub struct Tensors {
    cfg: ModelConfig,
    next: Option<TensorId>,
}

impl Tensors {
    /// The id after `id` in canonical order, ignoring whether the config has it.
    fn successor(&self, id: TensorId) -> Option<TensorId> {
        let next_param =
            |p: BlockParam| BlockParam::ALL.iter().position(|q| *q == p).map(|i| i + 1);
        Some(match id {
            TensorId::ClsToken => TensorId::PosEmbed,
            TensorId::PosEmbed => TensorId::PatchEmbedWeight,
            TensorId::PatchEmbedWeight => TensorId::PatchEmbedBias,
            TensorId::PatchEmbedBias => {
                if self.cfg.depth > 0 {
                    TensorId::Block(0, BlockParam::ALL[0])
                } else if self.cfg.depth_token_only > 0 {
                    TensorId::TokenBlock(0, BlockParam::ALL[0])
                } else {
                    TensorId::NormWeight
                }
            }
            TensorId::Block(i, p) => match next_param(p) {
                Some(j) if j < BlockParam::ALL.len() => TensorId::Block(i, BlockParam::ALL[j]),
                _ if i + 1 < self.cfg.depth => TensorId::Block(i + 1, BlockParam::ALL[0]),
                _ if self.cfg.depth_token_only > 0 => TensorId::TokenBlock(0, BlockParam::ALL[0]),
                _ => TensorId::NormWeight,
            },
            TensorId::TokenBlock(i, p) => match next_param(p) {
                Some(j) if j < BlockParam::ALL.len() => TensorId::TokenBlock(i, BlockParam::ALL[j]),
                _ if i + 1 < self.cfg.depth_token_only => {
                    TensorId::TokenBlock(i + 1, BlockParam::ALL[0])
                }
                _ => TensorId::NormWeight,
            },
            TensorId::NormWeight => TensorId::NormBias,
            TensorId::NormBias => TensorId::HeadWeight,
            TensorId::HeadWeight => TensorId::HeadBias,
            TensorId::HeadBias => return None,
        })
    }
}

impl Iterator for Tensors {
    type Item = TensorSpec;

    fn next(&mut self) -> Option<TensorSpec> {
        loop {
            let id = self.next?;
            self.next = self.successor(id);
            if self.cfg.has_tensor(id) {
                return Some(TensorSpec {
                    id,
                    shape: self.cfg.shape_of(id),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// timm's `cait_xxs24_224` (its parameter count: `timm::tests`).
    fn xxs24_224() -> ModelConfig {
        crate::timm::VARIANTS[0].config()
    }

    #[test]
    fn names_round_trip() {
        let cfg = xxs24_224();
        let mut count = 0;
        for t in cfg.tensors() {
            let mut buf = [0u8; 64];
            let name = write_name(&mut buf, t.id);
            assert_eq!(TensorId::parse(name), Some(t.id), "{name}");
            count += 1;
        }
        // 4 stem + 24 SA blocks * 18 + 2 CA blocks * 18 + norm 2 + head 2
        assert_eq!(count, 4 + 24 * 18 + 2 * 18 + 4);
    }

    #[test]
    fn linear_weights_are_the_matmuls() {
        let cfg = xxs24_224();
        let linear: u64 = cfg
            .tensors()
            .filter(|t| t.id.is_linear_weight())
            .map(|t| t.shape.numel().unwrap() as u64)
            .sum();
        // patch 192·768, per SA block 576·192 + 192·192 + 2·768·192, per CA block 4·192·192 +
        // 2·768·192, head 1000·192.
        let want = 192 * 768
            + 24 * (576 * 192 + 192 * 192 + 2 * 768 * 192)
            + 2 * (4 * 192 * 192 + 2 * 768 * 192)
            + 1000 * 192;
        assert_eq!(linear, want);
        assert!(!TensorId::Block(0, BlockParam::ProjLWeight).is_linear_weight());
        assert!(!TensorId::Block(0, BlockParam::QkvBias).is_linear_weight());
        assert!(!TensorId::PosEmbed.is_linear_weight());
    }

    #[test]
    fn parse_rejects_non_cait_names() {
        for bad in [
            "blocks.01.gamma_1",
            "blocks..gamma_1",
            "blocks.1.gamma_3",
            "module.cls_token",
            "fc.weight",
            "blocks.99999999999.gamma_1",
        ] {
            assert_eq!(TensorId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn validate_bounds_every_size() {
        let mut c = xxs24_224();
        c.embed_dim = u32::MAX; // 3 * D overflows the u32 dims
        c.num_heads = 1;
        assert_eq!(c.validate(), Err(ConfigError::TooLarge("embed_dim")));
        let mut c = xxs24_224();
        c.depth = u32::MAX;
        assert_eq!(c.validate(), Err(ConfigError::TooLarge("depth")));
        let mut c = xxs24_224();
        c.img_size = [1 << 31, 1 << 31];
        c.patch_size = 1;
        assert!(matches!(c.validate(), Err(ConfigError::TooLarge(_))));
    }

    #[test]
    fn validate_catches_inconsistent_configs() {
        let mut c = xxs24_224();
        c.patch_size = 15;
        assert_eq!(c.validate(), Err(ConfigError::PatchDoesNotDivideImage));
        let mut c = xxs24_224();
        c.num_heads = 5;
        assert_eq!(c.validate(), Err(ConfigError::HeadsDoNotDivideWidth));
        let mut c = xxs24_224();
        c.embed_dim = 0;
        assert_eq!(c.validate(), Err(ConfigError::Zero("embed_dim")));
        assert_eq!(xxs24_224().validate(), Ok(()));
    }

    fn write_name(buf: &mut [u8; 64], id: TensorId) -> &str {
        struct W<'a>(&'a mut [u8], usize);
        impl fmt::Write for W<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let end = self.1 + s.len();
                self.0[self.1..end].copy_from_slice(s.as_bytes());
                self.1 = end;
                Ok(())
            }
        }
        let mut w = W(buf, 0);
        fmt::write(&mut w, format_args!("{id}")).unwrap();
        let n = w.1;
        core::str::from_utf8(&buf[..n]).unwrap()
    }
}
