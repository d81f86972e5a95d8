//! The model: a validated, zero-copy view of a pack's weights, and its forward pass.

use core::fmt;

use cait_pack::{ModelConfig, Pack, Precision};

use crate::Error;
use crate::attention::AttentionSink;
use crate::blocks::{ClassAttentionBlock, Dims, Resolver, SelfAttentionBlock, Stem};
use crate::workspace::{as_floats, checked_workspace_bytes};

/// A CaiT model whose weights are borrowed from a [`Pack`].
///
/// Building one checks every tensor the config implies (presence, dtype, shape, alignment) and
/// allocates nothing. The model holds the pack plus views of the stem and head (672 bytes on
/// x86-64, half of them the `Pack` itself); the weights of block `i` are looked up again, through
/// the same checks, when the forward pass reaches it. So the model's size does not grow with depth,
/// no depth limit exists, and a forward pass cannot fail on weights that were accepted here (the
/// pack is immutable). The price is one name lookup in the pack's sorted index per tensor: measured
/// (`benches/forward.rs`, `from_pack/*`) at about 5 µs per block on x86-64, 0.05% of a
/// cait_xxs24_224 forward pass and about 15% of a 2-block, 16-wide toy model's.
#[derive(Clone, Copy)]
pub struct Model<'a> {
    pack: Pack<'a>,
    config: ModelConfig,
    dims: Dims,
    stem: Stem<'a>,
    workspace_bytes: usize,
}

/// Where a forward pass writes its results. Build with [`Outputs::logits`] and chain the options.
pub struct Outputs<'o> {
    /// The logits, `logits_len()` values (the features when the model has no head).
    pub logits: &'o mut [f32],
    /// The pooled, normalised features before the head ("pre-logits"), `embed_dim` values.
    pub features: Option<&'o mut [f32]>,
    /// Receives the class-attention weights of every class-attention block and head.
    pub attention: Option<&'o mut dyn AttentionSink>,
}

impl<'o> Outputs<'o> {
    /// Only the logits.
    pub fn logits(logits: &'o mut [f32]) -> Self {
        Outputs {
            logits,
            features: None,
            attention: None,
        }
    }

    /// Also write the pre-logits features.
    pub fn features(mut self, features: &'o mut [f32]) -> Self {
        self.features = Some(features);
        self
    }

    /// Also report the class-attention weights to `sink`.
    pub fn attention(mut self, sink: &'o mut dyn AttentionSink) -> Self {
        self.attention = Some(sink);
        self
    }
}

impl<'a> Model<'a> {
    /// Checks that `pack` holds a model this engine runs and views its weights in place.
    ///
    /// Errors: [`Error::UnsupportedPrecision`] for f16/int8 packs (for now); [`Error::Pack`] naming
    /// the tensor when one is missing ([`PackError::MissingTensor`](cait_pack::PackError)), not
    /// f32, mis-shaped, or misaligned in memory (place the pack at a 4-byte aligned address);
    /// [`Error::Config`] when the config is inconsistent or its workspace overflows `usize`.
    pub fn from_pack(pack: &Pack<'a>) -> Result<Model<'a>, Error> {
        let config = *pack.config();
        config.validate()?;
        let precision = pack.precision();
        if precision != Precision::F32 {
            return Err(Error::UnsupportedPrecision(precision));
        }
        let workspace_bytes = checked_workspace_bytes(&config, precision)
            .ok_or(Error::Config(cait_pack::ConfigError::TooLarge("workspace")))?;
        let r = Resolver { pack, cfg: &config };
        let stem = Stem::resolve(&r)?;
        // Every block is checked now so that a forward pass cannot fail on the weights.
        for i in 0..config.depth {
            SelfAttentionBlock::resolve(&r, i)?;
        }
        for i in 0..config.depth_token_only {
            ClassAttentionBlock::resolve(&r, i)?;
        }
        Ok(Model {
            pack: *pack,
            config,
            dims: Dims::new(&config),
            stem,
            workspace_bytes,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The precision of the weights.
    pub fn precision(&self) -> Precision {
        self.pack.precision()
    }

    /// The pack the weights are borrowed from (labels, preprocessing, metadata).
    pub fn pack(&self) -> &Pack<'a> {
        &self.pack
    }

    /// Exact workspace bytes a forward pass needs: [`workspace_bytes`](crate::workspace_bytes).
    pub fn workspace_bytes(&self) -> usize {
        self.workspace_bytes
    }

    /// Values of one input image, `C·H·W`.
    pub fn input_len(&self) -> usize {
        self.dims.in_chans * self.dims.img[0] * self.dims.img[1]
    }

    /// Values of the logits: `num_classes`, or `embed_dim` when the model has no head.
    pub fn logits_len(&self) -> usize {
        self.config.logits_len()
    }

    /// Values of the pre-logits features, `embed_dim`.
    pub fn features_len(&self) -> usize {
        self.dims.d
    }

    /// Classifies one image: `input` is `[C, H, W]` row-major, already normalised; `workspace` has at
    /// least [`workspace_bytes`](Self::workspace_bytes) bytes at a 4-byte aligned address; `logits`
    /// has [`logits_len`](Self::logits_len) values.
    pub fn forward(
        &self,
        input: &[f32],
        workspace: &mut [u8],
        logits: &mut [f32],
    ) -> Result<(), Error> {
        self.forward_with(input, workspace, Outputs::logits(logits))
    }

    /// [`forward`](Self::forward) with optional extra outputs (features, class attention).
    ///
    /// Every argument is checked before any work; on error no output has been written.
    pub fn forward_with(
        &self,
        input: &[f32],
        workspace: &mut [u8],
        outputs: Outputs<'_>,
    ) -> Result<(), Error> {
        let Outputs {
            logits,
            features,
            mut attention,
        } = outputs;
        let dims = &self.dims;
        if input.len() != self.input_len() {
            return Err(Error::InputLength {
                expected: self.input_len(),
                got: input.len(),
            });
        }
        if logits.len() != self.logits_len() {
            return Err(Error::LogitsLength {
                expected: self.logits_len(),
                got: logits.len(),
            });
        }
        if let Some(f) = features.as_deref()
            && f.len() != dims.d
        {
            return Err(Error::FeaturesLength {
                expected: dims.d,
                got: f.len(),
            });
        }
        let ws = as_floats(workspace, self.workspace_bytes)?;
        let (tokens, rest) = ws.split_at_mut(dims.n * dims.d);
        let (cls, scratch) = rest.split_at_mut(dims.d);

        let r = Resolver {
            pack: &self.pack,
            cfg: &self.config,
        };
        self.stem.patch_embed(input, tokens, scratch, dims);
        for i in 0..self.config.depth {
            SelfAttentionBlock::resolve(&r, i)?.forward(tokens, scratch, dims);
        }
        cls.copy_from_slice(self.stem.cls_token);
        for i in 0..self.config.depth_token_only {
            let block = ClassAttentionBlock::resolve(&r, i)?;
            // Reborrow the sink for this block (`as_deref_mut` cannot shorten a trait object's lifetime).
            let sink = attention
                .as_mut()
                .map(|s| &mut **s as &mut dyn AttentionSink);
            block.forward(tokens, cls, scratch, dims, i as usize, sink);
        }
        self.stem.head(tokens, cls, scratch, features, logits, dims);
        Ok(())
    }
}

impl fmt::Debug for Model<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field("precision", &self.precision())
            .field("workspace_bytes", &self.workspace_bytes)
            .finish_non_exhaustive()
    }
}
