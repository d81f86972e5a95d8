//! The linked pack, the linked input images and the workspace, all fixed at build time.
//!
//! The pack's header is read at compile time (`cait_pack::PackHeader::read`, a const fn): it gives
//! [`CONFIG`], [`PRECISION`] and [`WORKSPACE_BYTES`] (`cait_core::workspace_bytes_for`), so the
//! workspace is a `static` of exactly that size. `build.rs` checks the pack and decides where it
//! goes: a 64-byte aligned section, `.rodata` (the code memory) when it fits, else
//! `.psram_rodata` (PSRAM).

#[cfg(not(cait_no_pack))]
use core::sync::atomic::{AtomicBool, Ordering};

#[cfg(not(cait_no_pack))]
use cait_core::{Workspace, frame_workspace_bytes_for, workspace_bytes_for};
#[cfg(not(cait_no_pack))]
use cait_pack::{ModelConfig, PackHeader, Precision};

include!(concat!(env!("OUT_DIR"), "/model.rs"));

/// 64-byte alignment for linked blobs: the pack's tensors are 64-aligned from its start
/// (`cait_pack::DATA_ALIGN`), so the pack itself must be too.
#[repr(C, align(64))]
pub struct Aligned<T: ?Sized>(pub T);

#[cfg(not(cait_no_pack))]
const _: () = assert!(core::mem::align_of::<Aligned<[u8; 1]>>() == cait_pack::DATA_ALIGN);

#[cfg(not(cait_no_pack))]
#[cfg_attr(cait_pack_psram, unsafe(link_section = ".psram_rodata.cait_pack"))]
#[cfg_attr(not(cait_pack_psram), unsafe(link_section = ".rodata.cait_pack"))]
static PACK: Aligned<[u8; PACK_LEN]> = Aligned(*include_bytes!(env!("CAIT_PACK_FILE")));

#[cfg(not(cait_no_pack))]
#[cfg_attr(cait_input_psram, unsafe(link_section = ".psram_rodata.cait_input"))]
#[cfg_attr(not(cait_input_psram), unsafe(link_section = ".rodata.cait_input"))]
static INPUT: Aligned<[u8; IMAGES * IMAGE_LEN * INPUT_VALUE_BYTES]> =
    Aligned(*include_bytes!(env!("CAIT_INPUT_FILE")));

/// The linked pack's header, read at compile time (build.rs has checked the whole pack).
#[cfg(not(cait_no_pack))]
const HEADER: PackHeader = match PackHeader::read(&PACK.0) {
    Ok(header) => header,
    Err(_) => panic!("the linked pack's header cannot be read"),
};

/// The linked pack's architecture.
#[cfg(not(cait_no_pack))]
pub const CONFIG: ModelConfig = HEADER.config;

/// The linked pack's precision.
#[cfg(not(cait_no_pack))]
pub const PRECISION: Precision = HEADER.precision;

/// Logits of one image (`num_classes`, or `embed_dim` without a head).
#[cfg(not(cait_no_pack))]
pub const LOGITS: usize = CONFIG.logits_len();

/// Bytes of the workspace a forward pass of the linked pack needs (the mixed layout for a mixed
/// int8 pack); with 8-bit frames linked, room for the frame inside it too.
#[cfg(not(cait_no_pack))]
pub const WORKSPACE_BYTES: usize = if cfg!(cait_input_frames) {
    frame_workspace_bytes_for(&PACK.0)
} else {
    workspace_bytes_for(&PACK.0)
};

/// The linked pack's bytes (not yet validated: `cait_pack::Pack::parse` checks them).
#[cfg(not(cait_no_pack))]
pub fn pack_bytes() -> &'static [u8] {
    &PACK.0
}

/// The linked input images: `IMAGES × IMAGE_LEN` f32 values (`[N, C, H, W]`, normalised), or as
/// many 8-bit HWC frames.
#[cfg(not(cait_no_pack))]
pub fn images() -> crate::app::Images<'static> {
    if cfg!(cait_input_frames) {
        crate::app::Images::Frames(&INPUT.0)
    } else {
        // Cannot fail: the blob is 64-aligned and a whole number of f32s.
        crate::app::Images::Normalized(bytemuck::cast_slice(&INPUT.0))
    }
}

/// The workspace, handed out once (`None` afterwards).
#[cfg(not(cait_no_pack))]
pub fn take_workspace() -> Option<&'static mut [u8]> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    static mut WORKSPACE: Workspace<WORKSPACE_BYTES> = Workspace::new();
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY: TAKEN makes this the only reference ever created to WORKSPACE, and nothing else
    // names it.
    let ws = unsafe { (&raw mut WORKSPACE).as_mut() }?;
    Some(ws.as_bytes_mut())
}
