//! The model: a validated, zero-copy view of a pack's weights, and its forward pass.

pub(crate) mod block;

use core::fmt;

use cait_pack::{ModelConfig, Pack, Precision, Preprocess};

use crate::Error;
use crate::attention::AttentionSink;
use crate::blocks::{Dims, FloatStages, Resolver, Stem};
use crate::input::{Image, Input, PixelLayout};
use crate::int8::{self, Int8Resolver, Modes};
use crate::kernels::int8::MAX_REDUCTION;
use crate::probe::{MaybeProbe, Point, Probe, Site};
use crate::workspace::{
    as_aligned_bytes, checked_frame, checked_workspace_bytes, rows_that_fit, take,
};

/// A CaiT model whose weights are borrowed from a [`Pack`].
///
/// Building one checks every tensor the config implies (presence, dtype, shape, alignment) and
/// allocates nothing. The model holds the pack plus views of the stem and head (800 bytes on
/// x86-64, 336 of them the `Pack` itself); the weights of block `i` are looked up again, through
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
    frame_offset: usize,
    frame_workspace_bytes: usize,
}

/// The stages outside the blocks, per kind of pack.
#[derive(Clone, Copy)]
enum Engine<'a> {
    /// f32 and f16 packs (f32 compute).
    #[cfg(feature = "float")]
    Float(Stem<'a>),
    /// int8 packs.
    #[cfg(any(feature = "int8-static", feature = "int8-dynamic"))]
    Int8(int8::Stem<'a>),
    /// A build with no engine: never constructed (`Model::from_pack` refuses every pack).
    #[cfg(not(any(feature = "float", feature = "int8-static", feature = "int8-dynamic")))]
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
            #[cfg(any(feature = "int8-static", feature = "int8-dynamic"))]
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
        let (frame_offset, frame_workspace_bytes) =
            checked_frame(&config, precision, workspace_bytes)
                .ok_or(Error::Config(cait_pack::ConfigError::TooLarge("workspace")))?;
        Ok(Model {
            pack: *pack,
            config,
            dims,
            engine,
            workspace_bytes,
            frame_offset,
            frame_workspace_bytes,
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

    /// Workspace bytes for a forward pass that reads its image from the workspace itself
    /// ([`forward_frame`](Self::forward_frame)): [`workspace_bytes`](Self::workspace_bytes), or
    /// more when the frame ends beyond them ([`crate::frame_workspace_bytes`]).
    pub fn frame_workspace_bytes(&self) -> usize {
        self.frame_workspace_bytes
    }

    /// Where in the workspace [`forward_frame`](Self::forward_frame) reads its frame: bytes
    /// `frame_offset()..frame_offset() + input_len()` ([`crate::frame_offset`]).
    pub fn frame_offset(&self) -> usize {
        self.frame_offset
    }

    /// Classifies the 8-bit frame held in the workspace itself — `input_len()` pixels, HWC
    /// (interleaved, as cameras deliver them; for one channel the same as CHW), at
    /// [`frame_offset`](Self::frame_offset) — normalized with the pack's mean and std as the
    /// patch embedding reads it: the logits of `forward_input(Input::Pixels { .., layout: Hwc })`
    /// bit for bit, with no RAM for the frame beyond the workspace. The frame is overwritten.
    ///
    /// `workspace` needs [`frame_workspace_bytes`](Self::frame_workspace_bytes) bytes at a
    /// 4-byte aligned address. Every argument is checked before any work.
    pub fn forward_frame(&self, workspace: &mut [u8], outputs: Outputs<'_>) -> Result<(), Error> {
        self.check_outputs(&outputs)?;
        let ws = as_aligned_bytes(workspace, self.frame_workspace_bytes())?;
        let source = Source::Frame {
            pre: self.pack.preprocess(),
            at: self.frame_offset,
        };
        self.drive(source, ws, outputs, None)
    }

    fn check_outputs(&self, outputs: &Outputs<'_>) -> Result<(), Error> {
        if outputs.logits.len() != self.logits_len() {
            return Err(Error::LogitsLength {
                expected: self.logits_len(),
                got: outputs.logits.len(),
            });
        }
        if let Some(f) = outputs.features.as_deref()
            && f.len() != self.dims.d
        {
            return Err(Error::FeaturesLength {
                expected: self.dims.d,
                got: f.len(),
            });
        }
        Ok(())
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
        self.check_outputs(&outputs)?;
        let image = Image::new(
            input,
            self.pack.preprocess(),
            [dims.in_chans, dims.img[0], dims.img[1]],
        );
        let ws = as_aligned_bytes(workspace, self.workspace_bytes)?;
        self.drive(Source::Image(image), ws, outputs, probe)
    }

    // Out of line, one copy for every entry point: an application built for size (the profile in
    // firmware/README.md) otherwise inlined it into its own code (the example: 1 KB more).
    #[inline(never)]
    fn drive(
        &self,
        source: Source<'_, '_>,
        ws: &mut [u8],
        outputs: Outputs<'_>,
        probe: Option<&mut dyn Probe>,
    ) -> Result<(), Error> {
        let (cfg, dims, bytes) = (&self.config, &self.dims, self.workspace_bytes);
        let r = Resolver {
            pack: &self.pack,
            cfg: &self.config,
        };
        match &self.engine {
            #[cfg(any(feature = "int8-static", feature = "int8-dynamic"))]
            Engine::Int8(stem) => {
                let r = Int8Resolver { r: &r };
                let stages = int8::Stages { r: &r, stem, dims };
                drive(&stages, cfg, dims, source, ws, bytes, outputs, probe)
            }
            #[cfg(feature = "float")]
            Engine::Float(stem) => {
                let stages = FloatStages { r: &r, stem, dims };
                drive(&stages, cfg, dims, source, ws, bytes, outputs, probe)
            }
            #[cfg(not(any(feature = "float", feature = "int8-static", feature = "int8-dynamic")))]
            Engine::Unbuilt(never, _) => match *never {},
        }
    }
}

/// One precision's CaiT stages, which [`drive`] runs in timm's order: the float engine's
/// (`blocks::FloatStages`) and the int8 engine's (`int8::Stages`). The driver — the split of the
/// workspace into residual stream, class token and scratch, the block loops, the hand-over of the
/// attention sink — is written once, here.
pub(crate) trait Stages {
    /// The values of the patch embedding's im2col'd columns (`f32`, or `i8` in int8 packs).
    type Col: bytemuck::Pod;

    /// `tokens = PatchEmbed(patches) + pos_embed` for the `tokens.len() / D` patches from
    /// `first` (in grid order), im2col'd into `cols` (`C·p²` values each).
    fn patch_embed(
        &self,
        image: &Image<'_, '_>,
        first: usize,
        tokens: &mut [f32],
        cols: &mut [u8],
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

/// Where a forward pass reads its image.
pub(crate) enum Source<'i, 'p> {
    /// An input outside the workspace.
    Image(Image<'i, 'p>),
    /// An 8-bit HWC frame inside the workspace, at byte `at` (see [`crate::workspace::frame_offset`]).
    Frame {
        /// The pack's preprocessing.
        pre: &'p Preprocess,
        /// Its offset.
        at: usize,
    },
}

/// A forward pass: `workspace` is the layout's bytes, 4-byte aligned (`tokens` `N·D` f32, `cls`
/// `D` f32, then the scratch; see [`crate::workspace`]) — and for a [`Source::Frame`] the frame's
/// bytes beyond, as far as [`crate::workspace::frame_workspace_bytes`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn drive<S: Stages>(
    stages: &S,
    cfg: &ModelConfig,
    dims: &Dims,
    source: Source<'_, '_>,
    workspace: &mut [u8],
    layout_bytes: usize,
    outputs: Outputs<'_>,
    probe: Option<&mut dyn Probe>,
) -> Result<(), Error> {
    let Outputs {
        logits,
        features,
        mut attention,
    } = outputs;
    let mut probe = MaybeProbe(probe);
    let d = dims.d;
    if let Source::Frame { pre, at } = source {
        embed_frame(stages, dims, pre, workspace, at, &mut probe);
    }
    let (tokens, rest) = take::<f32>(&mut workspace[..layout_bytes], dims.n * d);
    let (cls, scratch) = take::<f32>(rest, d);
    if let Source::Image(image) = source {
        // As many patches per pass as the scratch holds (at least one).
        let per_pass = rows_that_fit::<S::Col>(scratch.len(), &[dims.patch_len], dims.n);
        for (pass, xs) in tokens.chunks_mut(per_pass * d).enumerate() {
            stages.patch_embed(&image, pass * per_pass, xs, scratch, &mut probe);
        }
    }
    probe.f32(Site::PatchEmbed, Point::Output, d, tokens);
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

/// The patch embedding of the HWC frame at byte `at` of `workspace`, one row of patches per
/// pass: pass `r` writes the tokens of patch row `r` and im2cols that row's patches right after
/// them, both below the part of the frame not read yet, which `frame_offset` guarantees.
fn embed_frame<S: Stages>(
    stages: &S,
    dims: &Dims,
    pre: &Preprocess,
    workspace: &mut [u8],
    at: usize,
    probe: &mut MaybeProbe<'_>,
) {
    let (d, g, p) = (dims.d, dims.grid_cols, dims.patch);
    let ([c, h, w], rows) = ([dims.in_chans, dims.img[0], dims.img[1]], dims.n / g.max(1));
    let (row_tokens, row_pixels) = (g * d, p * w * c);
    let frame_end = at + c * h * w;
    for r in 0..rows {
        let written = (r + 1) * row_tokens * 4;
        let (done, rest) = workspace.split_at_mut(written);
        let tokens = &mut bytemuck::cast_slice_mut::<u8, f32>(done)[r * row_tokens..];
        let (cols, frame) = rest.split_at_mut(at + r * row_pixels - written);
        let frame = &frame[..frame_end - at - r * row_pixels];
        let input = Input::Pixels {
            data: frame,
            layout: PixelLayout::Hwc,
        };
        let image = Image::rows_from(input, pre, [c, h, w], r * p);
        stages.patch_embed(&image, r * g, tokens, cols, probe);
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
