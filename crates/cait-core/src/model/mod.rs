//! The model: a validated, zero-copy view of a pack's weights, and its forward pass.

pub(crate) mod block;

use core::fmt;

use cait_pack::{ModelConfig, Pack, Precision};

use crate::Error;
use crate::attention::AttentionSink;
use crate::blocks::{Dims, FloatStages, Resolver, Stem};
use crate::input::{Image, Input};
use crate::int8::{self, Int8Resolver, Modes};
use crate::kernels::int8::MAX_REDUCTION;
use crate::probe::{MaybeProbe, Probe};
use crate::workspace::{as_aligned_bytes, checked_workspace_bytes, take};

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
    engine: Engine<'a>,
    workspace_bytes: usize,
}

/// The stages outside the blocks, per kind of pack.
#[derive(Clone, Copy)]
enum Engine<'a> {
    /// f32 and f16 packs (f32 compute).
    #[cfg(feature = "float")]
    Float(Stem<'a>),
    /// int8 packs.
    #[cfg(feature = "int8")]
    Int8(int8::Stem<'a>),
    /// A build with no engine: never constructed (`Model::from_pack` refuses every pack).
    #[cfg(not(any(feature = "float", feature = "int8")))]
    Unbuilt(core::convert::Infallible, core::marker::PhantomData<&'a ()>),
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
    /// f32 and f16 packs run in f32; int8 packs run the int8 engine (see the crate docs), except
    /// the blocks a mixed int8 pack keeps in f16, which run as in an f16 pack.
    ///
    /// Errors: [`Error::Pack`] naming the tensor when one is missing
    /// ([`PackError::MissingTensor`](cait_pack::PackError)), of the wrong dtype for the pack's
    /// precision, mis-shaped, or misaligned in memory (place the pack at a 4-byte aligned address);
    /// for int8 packs also [`Error::MissingInt8Tensor`], [`Error::NotPerChannel`],
    /// [`Error::BadActivationQuant`], [`Error::BadMetadata`] and [`Error::ReductionTooLong`];
    /// [`Error::Config`] when the config is inconsistent or its workspace overflows `usize`.
    pub fn from_pack(pack: &Pack<'a>) -> Result<Model<'a>, Error> {
        let config = *pack.config();
        config.validate()?;
        let precision = pack.precision();
        let mixed = cait_pack::int8::f16_blocks(pack).next().is_some();
        let workspace_bytes = checked_workspace_bytes(&config, precision, mixed)
            .ok_or(Error::Config(cait_pack::ConfigError::TooLarge("workspace")))?;
        let dims = Dims::new(&config);
        let r = Resolver { pack, cfg: &config };
        // Every block is checked now so that a forward pass cannot fail on the weights.
        let engine = match precision {
            #[cfg(feature = "float")]
            Precision::F32 | Precision::F16 => {
                let stem = Stem::resolve(&r)?;
                for i in 0..config.depth {
                    r.self_attention_block(i)?;
                }
                for i in 0..config.depth_token_only {
                    r.class_attention_block(i)?;
                }
                Engine::Float(stem)
            }
            #[cfg(feature = "int8")]
            Precision::Int8 => {
                // Every int8 reduction: linear inputs, q·kᵀ over a head, attention·v over tokens.
                let longest = [
                    dims.d,
                    dims.hidden,
                    dims.hidden_token,
                    dims.patch_len,
                    dims.n + 1,
                ]
                .into_iter()
                .fold(0, usize::max);
                if longest > MAX_REDUCTION {
                    return Err(Error::ReductionTooLong { length: longest });
                }
                let r8 = Int8Resolver { r: &r };
                let modes = Modes::from_pack(pack)?;
                let stem = int8::Stem::resolve(&r8, modes)?;
                for i in 0..config.depth {
                    int8::check_block(&r8, false, i, modes)?;
                }
                for i in 0..config.depth_token_only {
                    int8::check_block(&r8, true, i, modes)?;
                }
                Engine::Int8(stem)
            }
            #[allow(unreachable_patterns)]
            precision => {
                let feature = match precision {
                    Precision::Int8 => "int8",
                    _ => "float",
                };
                return Err(Error::NotBuiltIn { precision, feature });
            }
        };
        Ok(Model {
            pack: *pack,
            config,
            dims,
            engine,
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

    /// Exact workspace bytes a forward pass needs: [`workspace_bytes`](crate::workspace_bytes), or
    /// [`mixed_workspace_bytes`](crate::mixed_workspace_bytes) for an int8 pack with blocks kept in
    /// f16.
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

    /// Values of every class-attention row one image reports to an
    /// [`AttentionSink`](crate::AttentionSink): `depth_token_only · num_heads · (N + 1)`.
    pub fn attention_len(&self) -> usize {
        self.config.depth_token_only as usize * self.dims.heads * (self.dims.n + 1)
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
        self.run(Input::Normalized(input), workspace, outputs, None)
    }

    /// Classifies one [`Input`]: a normalized f32 image, or 8-bit pixels (CHW or HWC) that the
    /// engine normalizes with the pack's mean and std as it reads them — bit for bit the logits
    /// of the normalized image, with no f32 copy of it in RAM.
    ///
    /// Every argument is checked before any work; on error no output has been written.
    pub fn forward_input(
        &self,
        input: Input<'_>,
        workspace: &mut [u8],
        outputs: Outputs<'_>,
    ) -> Result<(), Error> {
        self.run(input, workspace, outputs, None)
    }

    /// [`forward_with`](Self::forward_with), showing `probe` the activations at every point an int8
    /// pack quantizes (see [`Probe`]): how the quantizer calibrates and measures per-layer error.
    pub fn forward_with_probe(
        &self,
        input: &[f32],
        workspace: &mut [u8],
        outputs: Outputs<'_>,
        probe: &mut dyn Probe,
    ) -> Result<(), Error> {
        self.run(Input::Normalized(input), workspace, outputs, Some(probe))
    }

    fn run(
        &self,
        input: Input<'_>,
        workspace: &mut [u8],
        outputs: Outputs<'_>,
        probe: Option<&mut dyn Probe>,
    ) -> Result<(), Error> {
        let dims = &self.dims;
        if input.len() != self.input_len() {
            return Err(Error::InputLength {
                expected: self.input_len(),
                got: input.len(),
            });
        }
        if outputs.logits.len() != self.logits_len() {
            return Err(Error::LogitsLength {
                expected: self.logits_len(),
                got: outputs.logits.len(),
            });
        }
        if let Some(f) = outputs.features.as_deref()
            && f.len() != dims.d
        {
            return Err(Error::FeaturesLength {
                expected: dims.d,
                got: f.len(),
            });
        }
        let image = Image::new(
            input,
            self.pack.preprocess(),
            [dims.in_chans, dims.img[0], dims.img[1]],
        );
        let r = Resolver {
            pack: &self.pack,
            cfg: &self.config,
        };
        let ws = as_aligned_bytes(workspace, self.workspace_bytes)?;
        let cfg = &self.config;
        match &self.engine {
            #[cfg(feature = "int8")]
            Engine::Int8(stem) => {
                let r = Int8Resolver { r: &r };
                let stages = int8::Stages { r: &r, stem, dims };
                drive(&stages, cfg, dims, &image, ws, outputs, probe)
            }
            #[cfg(feature = "float")]
            Engine::Float(stem) => {
                let stages = FloatStages { r: &r, stem, dims };
                drive(&stages, cfg, dims, &image, ws, outputs, probe)
            }
            #[cfg(not(any(feature = "float", feature = "int8")))]
            Engine::Unbuilt(never, _) => match *never {},
        }
    }
}

/// One precision's CaiT stages, which [`drive`] runs in timm's order: the float engine's
/// (`blocks::FloatStages`) and the int8 engine's (`int8::Stages`). The driver — the split of the
/// workspace into residual stream, class token and scratch, the block loops, the hand-over of the
/// attention sink — is written once, here.
pub(crate) trait Stages {
    /// `tokens = PatchEmbed(image) + pos_embed`.
    fn patch_embed(
        &self,
        image: &Image<'_, '_>,
        tokens: &mut [f32],
        scratch: &mut [u8],
        probe: &mut MaybeProbe<'_>,
    );

    /// `blocks.{i}` on the patch tokens.
    fn self_attention(
        &self,
        i: u32,
        tokens: &mut [f32],
        scratch: &mut [u8],
        probe: &mut MaybeProbe<'_>,
    ) -> Result<(), Error>;

    /// The class token's initial value, `D` values.
    fn cls_token(&self) -> &[f32];

    /// `blocks_token_only.{i}`: updates `cls` from `[cls; tokens]`.
    fn class_attention(
        &self,
        i: u32,
        tokens: &[f32],
        cls: &mut [f32],
        scratch: &mut [u8],
        sink: Option<&mut dyn AttentionSink>,
        probe: &mut MaybeProbe<'_>,
    ) -> Result<(), Error>;

    /// Final norm, pooling and head into `logits` (and the pooled `features`).
    #[allow(clippy::too_many_arguments)]
    fn head(
        &self,
        tokens: &[f32],
        cls: &[f32],
        scratch: &mut [u8],
        features: Option<&mut [f32]>,
        logits: &mut [f32],
        probe: &mut MaybeProbe<'_>,
    );
}

/// A forward pass: `workspace` is exactly the layout's bytes, 4-byte aligned (`tokens` `N·D` f32,
/// `cls` `D` f32, then the scratch; see [`crate::workspace`]).
pub(crate) fn drive(
    stages: &impl Stages,
    cfg: &ModelConfig,
    dims: &Dims,
    image: &Image<'_, '_>,
    workspace: &mut [u8],
    outputs: Outputs<'_>,
    probe: Option<&mut dyn Probe>,
) -> Result<(), Error> {
    let Outputs {
        logits,
        features,
        mut attention,
    } = outputs;
    let mut probe = MaybeProbe(probe);
    let (tokens, rest) = take::<f32>(workspace, dims.n * dims.d);
    let (cls, scratch) = take::<f32>(rest, dims.d);
    stages.patch_embed(image, tokens, scratch, &mut probe);
    for i in 0..cfg.depth {
        stages.self_attention(i, tokens, scratch, &mut probe)?;
    }
    cls.copy_from_slice(stages.cls_token());
    for i in 0..cfg.depth_token_only {
        // Reborrow the sink for this block (`as_deref_mut` cannot shorten a trait object's lifetime).
        let sink = attention
            .as_mut()
            .map(|s| &mut **s as &mut dyn AttentionSink);
        stages.class_attention(i, tokens, cls, scratch, sink, &mut probe)?;
    }
    stages.head(tokens, cls, scratch, features, logits, &mut probe);
    Ok(())
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
