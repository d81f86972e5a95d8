//! The caller-supplied workspace: its exact size and how the engine lays it out.
//!
//! The engine never allocates; every activation lives in one `&mut [u8]` the caller owns (a `static`
//! on a device). All regions hold `f32`, so the buffer must be 4-byte aligned. With `N` patch tokens,
//! `T = N + 1` tokens, width `D`, `H` heads, `R = min(ATTENTION_ROWS, T)`, patch `p`, `C` channels:
//!
//! | region    | f32 elements | holds |
//! | --------- | ------------ | ----- |
//! | `tokens`  | `N·D`        | the residual stream of the patch tokens (updated in place) |
//! | `cls`     | `D`          | the class token (class-attention stage) |
//! | `scratch` | max of below | reused by one phase at a time |
//!
//! `scratch`, by phase:
//!
//! | phase | uses |
//! | ----- | ---- |
//! | patch embedding | im2col'd patches, `C·p²` each: as many patches per pass as fit (at least 1) |
//! | attention (SA and CA) | keys `D·T` (transposed), values `T·D`, logits `H·T`, weights `H·T`, input tile `R·D`, query tile `R·D` |
//! | SA MLP | per token `D` (LN2 output) + `hidden` (fc1 output): as many tokens per pass as fit (at least 1) |
//! | CA MLP | `D + hidden_token_only` (class token only) |
//! | head | `2·D`: pooled features and one normalised token (avg pooling) |
//!
//! so `scratch = max(2·T·D + 2·H·T + 2·R·D, D + max(hidden, hidden_token_only), C·p², 2·D)`.
//! The attention term dominates every CaiT: activation memory is `O(N·D)`. Attention is computed one
//! query row at a time for all heads (`H·T` logits, `H·T` weights), never as an `[H, N, N]` tensor.
//! The MLP runs on as many tokens as fit in the attention's (by then free) keys/values space, so its
//! matmuls see large token blocks without needing any memory of their own.
//!
//! Only the first [`workspace_bytes`] bytes are used, so a larger buffer gives identical results.
//!
//! ## int8 packs
//!
//! The int8 engine keeps the residual stream in f32 and every activation that feeds a matmul in
//! int8, so its regions are byte counts; each is rounded up to a multiple of 4 bytes so that the
//! f32/i32 regions stay aligned (`⌈x⌉₄` below). `tokens` (`4·N·D`) and `cls` (`4·D`) are as above;
//! `scratch`, by phase:
//!
//! | phase | uses (bytes) |
//! | ----- | ------------ |
//! | patch embedding | int8 im2col'd patches, `⌈C·p²⌉₄` each: as many per pass as fit (at least 1) |
//! | attention | int8 keys `⌈T·D⌉₄` and values `⌈D·T⌉₄` (transposed); f32 logits and weights `2·4·H·T`; int8 weights `⌈H·T⌉₄`; int8 input tile `⌈R·D⌉₄`; query tile `4·R·D` (f32 or int8 queries); f32 output row `4·D`; int8 output tile `⌈R·D⌉₄`; f32 scales of each key and each value `2·4·T` and i32 sums of each value channel `4·D` (used when the rows are quantized at run time, `quant.activation_scales` `dynamic`) |
//! | SA MLP | int8 `D` (norm2 output) + int8 `hidden` (GELU output) per token: as many tokens per pass as fit (at least 1); with the rows quantized at run time (`quant.activation_scales` `dynamic`) also f32 `max(D, hidden)` per token (fc1, then fc2 output) and one f32 norm2 row, at most `R` tokens per pass |
//! | CA MLP | `⌈D⌉₄ + ⌈hidden_token_only⌉₄`, and with the rows quantized at run time (`quant.class_path` or `quant.activation_scales` `dynamic`) f32 copies of both rows, `4·(D + hidden_token_only)` more; sized for that either way, with the wider of the two hidden widths (and `D`, if wider), so that one row of either kind of block fits |
//! | head | `2·4·D + ⌈D⌉₄`: pooled and unsmoothed features (f32), the int8 head input |
//!
//! The attention term dominates: cait_xxs24_224 needs 246,364 bytes (240 KiB) in all, 52% of the
//! f32 layout's 472,480, of which the f32 residual stream is 150,528.
//!
//! A mixed int8 pack (blocks kept in f16) runs those blocks on the f32 layout's `scratch` and the
//! rest on the int8 one: [`mixed_workspace_bytes`], the larger of the two (for cait_xxs24_224 the
//! f32 layout's 472,480 bytes).
//!
//! ## A camera frame inside the workspace
//!
//! [`Model::forward_frame`](crate::Model::forward_frame) reads an 8-bit HWC frame held in the
//! workspace itself, at byte [`frame_offset`], over whatever the layout above puts there: its
//! patch embedding runs one row of patches per pass, writing that row's tokens (from byte 0, as
//! `tokens` above) and its im2col'd columns right after them, always below the frame's unread
//! rows. The frame is dead once the patch embedding is done. [`frame_workspace_bytes`] is the
//! layout's size or the frame's end, whichever is larger.

use cait_pack::{ModelConfig, Precision};

use crate::Error;

/// Query rows (and key/value rows) the attention projects per pass: weight reuse for q/k/v/proj
/// against `2·R·D` floats of tile.
pub(crate) const ATTENTION_ROWS: usize = 8;

/// Required alignment of the workspace, in bytes (`align_of::<f32>()`).
pub const WORKSPACE_ALIGN: usize = 4;

const fn max(a: u128, b: u128) -> u128 {
    if a > b { a } else { b }
}

/// f32 elements of the `scratch` region (see the module docs); u128 cannot overflow for u32 fields.
/// Patch tokens `N` (0 for a zero patch size, which validation rejects).
const fn patches(cfg: &ModelConfig) -> u128 {
    let p = cfg.patch_size as u128;
    match (
        (cfg.img_size[0] as u128).checked_div(p),
        (cfg.img_size[1] as u128).checked_div(p),
    ) {
        (Some(rows), Some(cols)) => rows * cols,
        _ => 0,
    }
}

/// A region of a phase's scratch: `count` elements of `elem` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region {
    pub(crate) count: u128,
    pub(crate) elem: u128,
}

const fn region(count: u128, elem: u128) -> Region {
    Region { count, elem }
}

/// `min(ATTENTION_ROWS, t)`.
const fn attention_rows(t: u128) -> u128 {
    if t < ATTENTION_ROWS as u128 {
        t
    } else {
        ATTENTION_ROWS as u128
    }
}

/// The f32 attention's scratch, in order, for `t` tokens of width `d` and `h` heads: keys `T·D`
/// (transposed), values `T·D`, logits `H·T`, weights `H·T`, input tile `R·D`, query tile `R·D`.
/// The one description both [`workspace_bytes`] and the block code (`blocks::AttentionScratch`)
/// use, so the two cannot drift.
pub(crate) const fn f32_attention(t: u128, d: u128, h: u128) -> [Region; 6] {
    let r = attention_rows(t);
    [
        region(t * d, 4),
        region(t * d, 4),
        region(h * t, 4),
        region(h * t, 4),
        region(r * d, 4),
        region(r * d, 4),
    ]
}

/// The int8 attention's scratch, in order (see the module docs): int8 keys `T·D` and values `D·T`,
/// f32 logits and weights `H·T`, int8 weights `H·T`, int8 input tile `R·D`, query tile `R·D` f32
/// (or int8 in its first bytes), f32 output row `D`, int8 output tile `R·D`, f32 key and value
/// scales `T` each and i32 value channel sums `D` (rows quantized at run time). Each region starts
/// 4-byte aligned ([`take`] rounds up). Shared by [`workspace_bytes`] and `int8::blocks`.
pub(crate) const fn int8_attention(t: u128, d: u128, h: u128) -> [Region; 12] {
    let r = attention_rows(t);
    [
        region(t * d, 1),
        region(d * t, 1),
        region(h * t, 4),
        region(h * t, 4),
        region(h * t, 1),
        region(r * d, 1),
        region(r * d, 4),
        region(d, 4),
        region(r * d, 1),
        region(t, 4),
        region(t, 4),
        region(d, 4),
    ]
}

/// Bytes of `regions` laid out one after the other, each rounded up to 4 bytes.
pub(crate) const fn region_bytes(regions: &[Region]) -> u128 {
    let mut total = 0;
    let mut i = 0;
    while i < regions.len() {
        total += round4(regions[i].count * regions[i].elem);
        i += 1;
    }
    total
}

const fn scratch_floats(cfg: &ModelConfig) -> u128 {
    let p = cfg.patch_size as u128;
    let n = patches(cfg);
    let t = n + 1;
    let d = cfg.embed_dim as u128;
    let h = cfg.num_heads as u128;
    let attention = region_bytes(&f32_attention(t, d, h)) / 4;
    let mlp = d + max(
        cfg.mlp_hidden_dim as u128,
        cfg.mlp_hidden_dim_token_only as u128,
    );
    let patches = cfg.in_chans as u128 * p * p;
    let head = 2 * d;
    max(max(attention, mlp), max(patches, head))
}

/// `x` rounded up to a multiple of 4.
const fn round4(x: u128) -> u128 {
    x.div_ceil(4) * 4
}

/// Bytes of the int8 `scratch` region (see the module docs).
const fn int8_scratch_bytes(cfg: &ModelConfig) -> u128 {
    let p = cfg.patch_size as u128;
    let n = patches(cfg);
    let t = n + 1;
    let d = cfg.embed_dim as u128;
    let h = cfg.num_heads as u128;
    let attention = region_bytes(&int8_attention(t, d, h));
    let hidden = max(
        cfg.mlp_hidden_dim as u128,
        cfg.mlp_hidden_dim_token_only as u128,
    );
    let mlp = round4(d) + round4(hidden);
    // Rows quantized at run time keep f32 copies of a norm2 row and of their fc1/fc2 outputs: one
    // row per pass at least, of either kind of block.
    let run_time_mlp = round4(d) + round4(hidden) + 4 * (d + max(d, hidden));
    let patches = round4(cfg.in_chans as u128 * p * p);
    let head = 2 * 4 * d + round4(d);
    max(max(attention, max(mlp, run_time_mlp)), max(patches, head))
}

/// Exact workspace bytes as a u128 (no overflow possible).
const fn bytes_u128(cfg: &ModelConfig, precision: Precision) -> u128 {
    let n = patches(cfg);
    let d = cfg.embed_dim as u128;
    match precision {
        // f16 packs compute in f32 with the same buffers.
        Precision::F32 | Precision::F16 => (n * d + d + scratch_floats(cfg)) * 4,
        Precision::Int8 => 4 * n * d + 4 * d + int8_scratch_bytes(cfg),
        // A precision this engine does not run (Model::from_pack refuses it): nothing fits.
        _ => u128::MAX,
    }
}

/// Exact bytes of a mixed int8 pack (some blocks kept in f16) as a u128: the `tokens` and `cls`
/// regions are the same in both layouts, and `scratch` serves int8 and f32 blocks in turn.
const fn mixed_bytes_u128(cfg: &ModelConfig) -> u128 {
    let n = patches(cfg);
    let d = cfg.embed_dim as u128;
    4 * n * d + 4 * d + max(int8_scratch_bytes(cfg), 4 * scratch_floats(cfg))
}

/// The exact number of workspace bytes a forward pass of `cfg` needs at `precision`.
///
/// A `const fn`, so a firmware can size a `static` [`Workspace`] at compile time. A forward pass
/// succeeds with exactly this many bytes and fails with [`Error::WorkspaceTooSmall`] with one fewer.
/// Saturates at `usize::MAX` for a config too large for the address space (which
/// [`Model::from_pack`](crate::Model::from_pack) rejects). The layout is in the [module
/// docs](crate::workspace).
pub const fn workspace_bytes(cfg: &ModelConfig, precision: Precision) -> usize {
    saturate(bytes_u128(cfg, precision))
}

/// The exact number of workspace bytes a forward pass of a *mixed* int8 pack of `cfg` needs: one
/// whose blocks are partly kept in f16 ([`cait_pack::int8::f16_blocks`] not empty). The int8 and
/// f32 layouts share `tokens` and `cls`; `scratch` is the larger of the two (see the module docs),
/// so at least [`workspace_bytes`] at int8. Saturates as [`workspace_bytes`] does.
pub const fn mixed_workspace_bytes(cfg: &ModelConfig) -> usize {
    saturate(mixed_bytes_u128(cfg))
}

/// The workspace bytes a forward pass of `pack` needs: [`mixed_workspace_bytes`] for an int8 pack
/// with blocks kept in f16, else [`workspace_bytes`] at its precision. What
/// [`Model::workspace_bytes`](crate::Model::workspace_bytes) returns once the pack is accepted.
pub fn pack_workspace_bytes(pack: &cait_pack::Pack<'_>) -> usize {
    if cait_pack::int8::f16_blocks(pack).next().is_some() {
        mixed_workspace_bytes(pack.config())
    } else {
        workspace_bytes(pack.config(), pack.precision())
    }
}

/// [`pack_workspace_bytes`] from a pack's bytes in a const context ([`PackHeader::read`]: the
/// header and the tensor table's dtypes), so firmware sizes a `static` [`Workspace`] from the pack
/// it links:
///
/// ```
/// cait_pack::include_pack!(PACK = "../../../models/fashion-cait/fashion-cait-int8.cait");
/// const BYTES: usize = cait_core::workspace_bytes_for(PACK.bytes());
/// static mut WORKSPACE: cait_core::Workspace<BYTES> = cait_core::Workspace::new();
/// # const _: () = assert!(BYTES == 15_916);
/// ```
///
/// Panics when the header cannot be read — in a `const`, a compile error naming no more than
/// that; [`try_workspace_bytes_for`] returns the reason instead.
///
/// [`PackHeader::read`]: cait_pack::PackHeader::read
pub const fn workspace_bytes_for(pack: &[u8]) -> usize {
    match try_workspace_bytes_for(pack) {
        Ok(bytes) => bytes,
        Err(_) => panic!("not a readable .cait pack (bad magic, version, header or tensor table)"),
    }
}

/// [`workspace_bytes_for`], or why the header cannot be read.
pub const fn try_workspace_bytes_for(pack: &[u8]) -> Result<usize, cait_pack::PackError> {
    match cait_pack::PackHeader::read(pack) {
        Ok(h) if h.mixed => Ok(mixed_workspace_bytes(&h.config)),
        Ok(h) => Ok(workspace_bytes(&h.config, h.precision)),
        Err(e) => Err(e),
    }
}

/// Byte offset of the in-workspace frame (see [`frame_offset`]) as a u128.
const fn frame_offset_u128(cfg: &ModelConfig, precision: Precision) -> u128 {
    let p = cfg.patch_size as u128;
    let (cols, rows) = match (
        (cfg.img_size[1] as u128).checked_div(p),
        (cfg.img_size[0] as u128).checked_div(p),
    ) {
        (Some(c), Some(r)) => (c, r),
        _ => (0, 0),
    };
    let c = cfg.in_chans as u128;
    // The patch embedding's columns: int8 in every int8 pack (mixed ones too), else f32.
    let value = match precision {
        Precision::Int8 => 1,
        _ => 4,
    };
    let row_tokens = cols * cfg.embed_dim as u128 * 4;
    let row_pixels = p * cfg.img_size[1] as u128 * c;
    let row_cols = cols * c * p * p * value;
    // Pass r writes tokens up to (r+1)·row_tokens and columns after them, and must stay below
    // frame row r at F + r·row_pixels: the bound is tightest at the first or the last pass.
    let grow = if row_tokens > row_pixels && rows > 0 {
        (rows - 1) * (row_tokens - row_pixels)
    } else {
        0
    };
    row_tokens + row_cols + grow
}

const fn saturate(bytes: u128) -> usize {
    if bytes > usize::MAX as u128 {
        usize::MAX
    } else {
        bytes as usize
    }
}

/// Where an 8-bit camera frame can live inside the workspace itself, so that RAM holds the
/// workspace alone: the byte offset of a `C·H·W`-byte HWC frame that
/// [`Model::forward_frame`](crate::Model::forward_frame) reads in place.
///
/// Its patch embedding runs one row of patches per pass; pass `r` writes the tokens of patch
/// row `r` (`grid_cols·D` f32 from the workspace's start) and that row's im2col'd patches right
/// after them, while the frame from image row `r·p` on is still to be read. The offset is the
/// least that keeps both below the unread frame at every pass:
/// `row_tokens + row_cols + max(0, (rows − 1)·(row_tokens − row_pixels))` bytes, with
/// `row_tokens = grid_cols·D·4`, `row_cols = grid_cols·C·p²` (·4 for f32 and f16 packs) and
/// `row_pixels = p·W·C`. Saturates as [`workspace_bytes`] does.
pub const fn frame_offset(cfg: &ModelConfig, precision: Precision) -> usize {
    saturate(frame_offset_u128(cfg, precision))
}

/// The workspace bytes for [`Model::forward_frame`](crate::Model::forward_frame): the larger of
/// the layout's ([`workspace_bytes`], or [`mixed_workspace_bytes`] when `mixed`) and the
/// frame's end, [`frame_offset`] `+ C·H·W`. For cait_xxs24_224 at int8 the frame (150,528
/// bytes) ends at 172,032, inside the 246,364-byte layout: a frame costs no RAM.
pub const fn frame_workspace_bytes(cfg: &ModelConfig, precision: Precision, mixed: bool) -> usize {
    saturate(frame_bytes_u128(cfg, precision, mixed))
}

/// [`frame_workspace_bytes`] as a u128.
const fn frame_bytes_u128(cfg: &ModelConfig, precision: Precision, mixed: bool) -> u128 {
    max(
        layout_u128(cfg, precision, mixed),
        frame_end_u128(cfg, precision),
    )
}

/// Where the in-workspace frame ends: [`frame_offset`] `+ C·H·W`.
const fn frame_end_u128(cfg: &ModelConfig, precision: Precision) -> u128 {
    let frame = cfg.in_chans as u128 * cfg.img_size[0] as u128 * cfg.img_size[1] as u128;
    frame_offset_u128(cfg, precision) + frame
}
/// [`frame_workspace_bytes`] from a pack's bytes in a const context, as
/// [`workspace_bytes_for`] (and panicking as it does when the header cannot be read):
///
/// ```
/// cait_pack::include_pack!(PACK = "../../../models/fashion-cait/fashion-cait-int8.cait");
/// const BYTES: usize = cait_core::frame_workspace_bytes_for(PACK.bytes());
/// // The 28×28 gray frame fits in the layout's own bytes.
/// const _: () = assert!(BYTES == cait_core::workspace_bytes_for(PACK.bytes()));
/// ```
pub const fn frame_workspace_bytes_for(pack: &[u8]) -> usize {
    match cait_pack::PackHeader::read(pack) {
        Ok(h) => frame_workspace_bytes(&h.config, h.precision, h.mixed),
        Err(_) => panic!("not a readable .cait pack (bad magic, version, header or tensor table)"),
    }
}

/// [`frame_offset`] and [`frame_workspace_bytes`] for a layout of `layout` bytes (the
/// [`checked_workspace_bytes`] already computed), or `None` when they do not fit in `usize`.
pub(crate) fn checked_frame(
    cfg: &ModelConfig,
    precision: Precision,
    layout: usize,
) -> Option<(usize, usize)> {
    let offset = usize::try_from(frame_offset_u128(cfg, precision)).ok()?;
    Some((offset, offset.checked_add(cfg.input_len()?)?.max(layout)))
}
/// [`workspace_bytes`] (or [`mixed_workspace_bytes`] when `mixed`), or `None` when it does not fit
/// in `usize`.
pub(crate) fn checked_workspace_bytes(
    cfg: &ModelConfig,
    precision: Precision,
    mixed: bool,
) -> Option<usize> {
    usize::try_from(layout_u128(cfg, precision, mixed)).ok()
}

/// The layout's bytes as a u128: [`mixed_bytes_u128`] when `mixed`, else [`bytes_u128`].
const fn layout_u128(cfg: &ModelConfig, precision: Precision, mixed: bool) -> u128 {
    if mixed {
        mixed_bytes_u128(cfg)
    } else {
        bytes_u128(cfg, precision)
    }
}
/// The first `needed` bytes of `bytes` (a multiple of 4), checked to start 4-byte aligned.
pub(crate) fn as_aligned_bytes(bytes: &mut [u8], needed: usize) -> Result<&mut [u8], Error> {
    let got = bytes.len();
    let bytes = bytes
        .get_mut(..needed)
        .ok_or(Error::WorkspaceTooSmall { needed, got })?;
    if bytemuck::try_cast_slice_mut::<u8, f32>(bytes).is_err() {
        return Err(Error::WorkspaceMisaligned {
            align: WORKSPACE_ALIGN,
        });
    }
    Ok(bytes)
}

/// `scratch` (which starts 4-byte aligned: it follows the f32 `tokens` and `cls`) as f32s, its
/// whole-f32 prefix: the float engine's view of the scratch, and the f16 blocks' of a mixed pack.
pub(crate) fn floats(scratch: &mut [u8]) -> &mut [f32] {
    let whole = scratch.len() / 4 * 4;
    bytemuck::cast_slice_mut(&mut scratch[..whole])
}

/// How many rows fit in `bytes` of scratch when each row takes `widths[k]` values of `T` in region
/// `k`, every region split off with [`take`] (which rounds it up to 4 bytes, hence 3 spare bytes
/// per region for narrower types): at least 1, at most `max` (at least 1).
pub(crate) fn rows_that_fit<T>(bytes: usize, widths: &[usize], max: usize) -> usize {
    let per_row = widths.iter().sum::<usize>() * size_of::<T>();
    let spare = if size_of::<T>().is_multiple_of(4) {
        0
    } else {
        3 * widths.len()
    };
    (bytes.saturating_sub(spare) / per_row.max(1)).clamp(1, max.max(1))
}

/// Splits `count` values of `T` off the front of `buf`, which starts 4-byte aligned; the bytes
/// taken are rounded up to a multiple of 4 so that the rest stays aligned. Callers size `buf` by
/// the layout above, so the split always fits.
pub(crate) fn take<T: bytemuck::Pod>(buf: &mut [u8], count: usize) -> (&mut [T], &mut [u8]) {
    let bytes = count * core::mem::size_of::<T>();
    let (head, rest) = buf.split_at_mut(bytes.next_multiple_of(4));
    (bytemuck::cast_slice_mut(&mut head[..bytes]), rest)
}

/// A 16-byte-aligned byte buffer for a workspace, sized at compile time by [`workspace_bytes`]
/// (on a device, put it in a `static`, e.g. behind a `StaticCell` or a critical-section mutex):
///
/// ```
/// use cait_core::{Workspace, workspace_bytes};
/// use cait_pack::{GlobalPool, ModelConfig, Precision};
///
/// const CONFIG: ModelConfig = ModelConfig {
///     img_size: [32, 32], patch_size: 8, in_chans: 3, num_classes: 10, embed_dim: 64, depth: 4,
///     num_heads: 4, mlp_hidden_dim: 256, depth_token_only: 2, mlp_hidden_dim_token_only: 256,
///     qkv_bias: true, global_pool: GlobalPool::Token,
/// };
/// const BYTES: usize = workspace_bytes(&CONFIG, Precision::F32);
/// // N = 16 patches, T = 17 tokens: tokens N·D + cls D + scratch (2·T·D + 2·H·T + 2·8·D), in f32.
/// const _: () = assert!(BYTES == 4 * (16 * 64 + 64 + 2 * 17 * 64 + 2 * 4 * 17 + 2 * 8 * 64));
/// let mut workspace = Workspace::<BYTES>::new();
/// let bytes: &mut [u8] = workspace.as_bytes_mut();   // pass to Model::forward
/// # assert_eq!(bytes.len(), BYTES);
/// ```
#[repr(C, align(16))]
pub struct Workspace<const N: usize> {
    bytes: [u8; N],
}

impl<const N: usize> Workspace<N> {
    /// A zeroed workspace (usable in `static` initialisers).
    pub const fn new() -> Self {
        Workspace { bytes: [0; N] }
    }

    /// The bytes, to pass to [`Model::forward`](crate::Model::forward).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl<const N: usize> Default for Workspace<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> core::fmt::Debug for Workspace<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Workspace<{N}>")
    }
}

const _: () = assert!(core::mem::align_of::<Workspace<1>>() == 16);
const _: () = assert!(core::mem::align_of::<f32>() <= WORKSPACE_ALIGN);
