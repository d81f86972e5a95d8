//! cait-core for C: a static library (and, on a host, a shared one) over [`cait_core::Session`],
//! with `include/cait.h` generated from this file by cbindgen.
//!
//! The surface is small and stable: check a pack in place, ask the workspace it needs, bind a
//! session to caller-owned memory, run one image from 8-bit pixels (HWC or CHW, or a camera frame
//! held inside the workspace itself) or a normalized float buffer, read the logits and the top
//! class. Nothing allocates; every call returns a
//! status (`CAIT_OK` or the reason, [`cait_status_name`] names it) and no call panics on bad
//! input — the core refuses it with a typed error, mapped here to a status.
//!
//! A session lives in a [`cait_session`] the caller provides (a `static` in firmware): it
//! borrows the pack and the workspace, which must stay valid and untouched while it is used.
#![no_std]
// Every entry point takes raw pointers from C; each dereference is checked for NULL first and
// documented with what the caller promises.
#![allow(non_camel_case_types, clippy::missing_safety_doc)]

// On a host the library links std (its panic handler; an unwind cannot cross `extern "C"`).
#[cfg(not(target_os = "none"))]
extern crate std;

use core::ffi::c_char;
use core::mem::{align_of, size_of};

use cait_core::{AttentionSink, Error, Input, Model, Outputs, PixelLayout, Session, top_k};

/// Success.
pub const CAIT_OK: i32 = 0;
/// A pointer argument was NULL.
pub const CAIT_NULL_POINTER: i32 = 1;
/// The pack is corrupted, truncated, misaligned or not a `.cait` pack.
pub const CAIT_BAD_PACK: i32 = 2;
/// The pack is well-formed but this engine cannot run it (a tensor or setting it needs is missing
/// or wrong).
pub const CAIT_UNSUPPORTED_PACK: i32 = 3;
/// The pack's precision needs an engine this library was built without.
pub const CAIT_NOT_BUILT_IN: i32 = 4;
/// The workspace is smaller than `cait_pack_check` says it needs.
pub const CAIT_WORKSPACE_TOO_SMALL: i32 = 5;
/// The workspace does not start on a 4-byte boundary.
pub const CAIT_WORKSPACE_MISALIGNED: i32 = 6;
/// The input does not hold `cait_input_len` values.
pub const CAIT_INPUT_LENGTH: i32 = 7;
/// The logits buffer does not hold `cait_logits_len` values.
pub const CAIT_LOGITS_LENGTH: i32 = 8;
/// The session was not initialised by `cait_session_init` (or its initialisation failed).
pub const CAIT_NOT_INITIALIZED: i32 = 9;
/// An argument is out of range (an unknown pixel layout, `k` above `CAIT_TOP_K_MAX`).
pub const CAIT_BAD_ARGUMENT: i32 = 10;
/// The class-attention buffer does not hold `cait_attention_len` values.
pub const CAIT_ATTENTION_LENGTH: i32 = 11;

/// The most classes `cait_top_k` ranks.
pub const CAIT_TOP_K_MAX: usize = 16;

/// Pixels planar, `[C, H, W]`.
pub const CAIT_LAYOUT_CHW: u32 = 0;
/// Pixels interleaved, `[H, W, C]` (RGBRGB…), as most cameras deliver them.
pub const CAIT_LAYOUT_HWC: u32 = 1;

/// Bytes of a `cait_session`.
pub const CAIT_SESSION_BYTES: usize = 1024;

/// Storage for one session, owned by the caller (a `static` in firmware), 8-byte aligned. Opaque:
/// initialise it with `cait_session_init` and do not touch its bytes.
#[repr(C)]
pub struct cait_session {
    pub _opaque: [u64; 128],
}

/// What a `cait_session` holds.
struct Slot {
    /// [`MAGIC`] once initialised.
    magic: u64,
    /// The pack and workspace are the caller's, valid while the session is used (its promise).
    session: Session<'static>,
    /// Where runs write the class attention (`cait_set_attention_buffer`): pointer and length.
    attention: Option<(*mut f32, usize)>,
}

const MAGIC: u64 = 0x6361_6974_2d73_6573; // "cait-ses"

const _: () = assert!(size_of::<Slot>() <= CAIT_SESSION_BYTES);
const _: () = assert!(size_of::<cait_session>() == CAIT_SESSION_BYTES);
const _: () = assert!(align_of::<Slot>() <= align_of::<cait_session>());

/// The status of `e`.
fn status(e: &Error) -> i32 {
    match e {
        Error::Pack(_) => CAIT_BAD_PACK,
        Error::NotBuiltIn { .. } => CAIT_NOT_BUILT_IN,
        Error::WorkspaceTooSmall { .. } => CAIT_WORKSPACE_TOO_SMALL,
        Error::WorkspaceMisaligned { .. } => CAIT_WORKSPACE_MISALIGNED,
        Error::InputLength { .. } => CAIT_INPUT_LENGTH,
        Error::LogitsLength { .. } => CAIT_LOGITS_LENGTH,
        _ => CAIT_UNSUPPORTED_PACK,
    }
}

/// `len` bytes at `ptr` (NULL only with `len` 0).
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        return (len == 0).then_some(&[]);
    }
    // SAFETY: the caller promises `len` readable bytes at a non-NULL `ptr`.
    Some(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// The constant name of a status (`"CAIT_OK"`, …), `"CAIT_UNKNOWN_STATUS"` for any other value.
/// A static, NUL-terminated string.
#[unsafe(no_mangle)]
pub extern "C" fn cait_status_name(status: i32) -> *const c_char {
    let name: &'static core::ffi::CStr = match status {
        CAIT_OK => c"CAIT_OK",
        CAIT_NULL_POINTER => c"CAIT_NULL_POINTER",
        CAIT_BAD_PACK => c"CAIT_BAD_PACK",
        CAIT_UNSUPPORTED_PACK => c"CAIT_UNSUPPORTED_PACK",
        CAIT_NOT_BUILT_IN => c"CAIT_NOT_BUILT_IN",
        CAIT_WORKSPACE_TOO_SMALL => c"CAIT_WORKSPACE_TOO_SMALL",
        CAIT_WORKSPACE_MISALIGNED => c"CAIT_WORKSPACE_MISALIGNED",
        CAIT_INPUT_LENGTH => c"CAIT_INPUT_LENGTH",
        CAIT_LOGITS_LENGTH => c"CAIT_LOGITS_LENGTH",
        CAIT_NOT_INITIALIZED => c"CAIT_NOT_INITIALIZED",
        CAIT_BAD_ARGUMENT => c"CAIT_BAD_ARGUMENT",
        CAIT_ATTENTION_LENGTH => c"CAIT_ATTENTION_LENGTH",
        _ => c"CAIT_UNKNOWN_STATUS",
    };
    name.as_ptr()
}

/// Checks the `len`-byte pack at `pack` in place — checksum, header, config, every tensor the
/// engine will read — and writes the workspace bytes it needs to `*workspace_bytes` (may be
/// NULL). The pack must start on a 64-byte boundary.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cait_pack_check(
    pack: *const u8,
    len: usize,
    workspace_bytes: *mut usize,
) -> i32 {
    // SAFETY: the caller's promises, passed on.
    unsafe { check_pack(pack, len, workspace_bytes, |m| m.workspace_bytes()) }
}

/// `cait_pack_check`, writing instead the workspace bytes a session needs to also hold a camera
/// frame inside its workspace (`cait_frame`, `cait_run_frame`) to `*frame_workspace_bytes` (may
/// be NULL): at least `cait_pack_check`'s, more when the frame ends beyond the layout.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cait_pack_check_frame(
    pack: *const u8,
    len: usize,
    frame_workspace_bytes: *mut usize,
) -> i32 {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        check_pack(pack, len, frame_workspace_bytes, |m| {
            m.frame_workspace_bytes()
        })
    }
}

/// Checks the pack and writes `needs(model)` to `*out` (may be NULL).
unsafe fn check_pack(
    pack: *const u8,
    len: usize,
    out: *mut usize,
    needs: fn(&Model<'_>) -> usize,
) -> i32 {
    // SAFETY: the caller promises `len` bytes at `pack`.
    let Some(pack) = (unsafe { bytes(pack, len) }) else {
        return CAIT_NULL_POINTER;
    };
    let parsed = match cait_pack::Pack::parse(pack) {
        Ok(p) => p,
        Err(e) => return status(&Error::Pack(e)),
    };
    match Model::from_pack(&parsed) {
        Ok(model) => {
            if !out.is_null() {
                // SAFETY: non-NULL, and the caller promises it points to a writable size_t.
                unsafe { *out = needs(&model) };
            }
            CAIT_OK
        }
        Err(e) => status(&e),
    }
}

/// Binds `session` to the pack (`pack_len` bytes, 64-byte aligned) and a workspace of
/// `workspace_len` bytes (4-byte aligned, at least what `cait_pack_check` reported), after
/// checking both. Both must stay valid, and the workspace unused by anything else, while the
/// session is. On failure the session stays uninitialised.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cait_session_init(
    session: *mut cait_session,
    pack: *const u8,
    pack_len: usize,
    workspace: *mut u8,
    workspace_len: usize,
) -> i32 {
    if session.is_null() || workspace.is_null() {
        return CAIT_NULL_POINTER;
    }
    let slot = session.cast::<Slot>();
    // SAFETY: `session` is non-NULL and points to caller storage of the right size and alignment
    // (the asserts above); marking it uninitialised first means a failed init is never used.
    unsafe { core::ptr::addr_of_mut!((*slot).magic).write(0) };
    // SAFETY: the caller promises `pack_len` bytes at `pack`, valid while the session is.
    let Some(pack) = (unsafe { bytes(pack, pack_len) }) else {
        return CAIT_NULL_POINTER;
    };
    // SAFETY: the caller promises `workspace_len` writable bytes, used by nothing else while
    // the session is.
    let workspace = unsafe { core::slice::from_raw_parts_mut(workspace, workspace_len) };
    match Session::new(pack, workspace) {
        Ok(s) => {
            // SAFETY: as above; the slot is written whole.
            unsafe {
                slot.write(Slot {
                    magic: MAGIC,
                    session: s,
                    attention: None,
                })
            };
            CAIT_OK
        }
        Err(e) => status(&e),
    }
}

/// The session in `session`, if initialised.
unsafe fn slot<'a>(session: *mut cait_session) -> Result<&'a mut Slot, i32> {
    if session.is_null() {
        return Err(CAIT_NULL_POINTER);
    }
    let slot = session.cast::<Slot>();
    // SAFETY: non-NULL caller storage of a cait_session; the magic is read before anything else.
    let magic = unsafe { core::ptr::addr_of!((*slot).magic).read() };
    if magic != MAGIC {
        return Err(CAIT_NOT_INITIALIZED);
    }
    // SAFETY: initialised by cait_session_init (the magic says so).
    Ok(unsafe { &mut *slot })
}

/// Writes the input values one image needs (`C·H·W`: bytes of pixels, or floats) to `*len`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cait_input_len(session: *mut cait_session, len: *mut usize) -> i32 {
    // SAFETY: see `slot`.
    let s = match unsafe { slot(session) } {
        Ok(s) => s,
        Err(e) => return e,
    };
    if len.is_null() {
        return CAIT_NULL_POINTER;
    }
    // SAFETY: non-NULL, the caller's writable size_t.
    unsafe { *len = s.session.model().input_len() };
    CAIT_OK
}

/// Writes the number of logits (classes) to `*len`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cait_logits_len(session: *mut cait_session, len: *mut usize) -> i32 {
    // SAFETY: see `slot`.
    let s = match unsafe { slot(session) } {
        Ok(s) => s,
        Err(e) => return e,
    };
    if len.is_null() {
        return CAIT_NULL_POINTER;
    }
    // SAFETY: non-NULL, the caller's writable size_t.
    unsafe { *len = s.session.model().logits_len() };
    CAIT_OK
}

/// Writes the class-attention map's length to `*len`: `depth_token_only · num_heads · (N + 1)`
/// floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cait_attention_len(session: *mut cait_session, len: *mut usize) -> i32 {
    // SAFETY: see `slot`.
    let s = match unsafe { slot(session) } {
        Ok(s) => s,
        Err(e) => return e,
    };
    if len.is_null() {
        return CAIT_NULL_POINTER;
    }
    // SAFETY: non-NULL, the caller's writable size_t.
    unsafe { *len = s.session.model().attention_len() };
    CAIT_OK
}

/// From the next run on, also writes the class token's attention weights into `buffer`
/// (`len` = `cait_attention_len` floats): for class-attention block `b` and head `h`, the softmax
/// row over the `N + 1` tokens at `buffer[(b · heads + h) · (N + 1)]`, index 0 the class token,
/// `1 + r · cols + c` the patch at grid row `r`, column `c`. The buffer must stay valid while the
/// session runs; NULL (with `len` 0) stops it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cait_set_attention_buffer(
    session: *mut cait_session,
    buffer: *mut f32,
    len: usize,
) -> i32 {
    // SAFETY: see `slot`.
    let s = match unsafe { slot(session) } {
        Ok(s) => s,
        Err(e) => return e,
    };
    if buffer.is_null() {
        s.attention = None;
        return if len == 0 { CAIT_OK } else { CAIT_NULL_POINTER };
    }
    if len != s.session.model().attention_len() {
        return CAIT_ATTENTION_LENGTH;
    }
    s.attention = Some((buffer, len));
    CAIT_OK
}

/// Copies each class-attention row to its place in the caller's buffer.
struct Fill<'a> {
    buffer: &'a mut [f32],
    heads: usize,
}

impl AttentionSink for Fill<'_> {
    fn class_attention(&mut self, block: usize, head: usize, weights: &[f32]) {
        let at = (block * self.heads + head) * weights.len();
        if let Some(dst) = self.buffer.get_mut(at..at + weights.len()) {
            dst.copy_from_slice(weights);
        }
    }
}

/// Runs `input` (`None`: the frame inside the workspace) into the `logits_len` floats at
/// `logits` (and the attention buffer, if set); the top class into `*top1` (may be NULL).
unsafe fn run(
    session: *mut cait_session,
    input: Option<Input<'_>>,
    logits: *mut f32,
    logits_len: usize,
    top1: *mut usize,
) -> i32 {
    // SAFETY: see `slot`.
    let s = match unsafe { slot(session) } {
        Ok(s) => s,
        Err(e) => return e,
    };
    if logits.is_null() {
        return CAIT_NULL_POINTER;
    }
    // SAFETY: the caller promises `logits_len` writable floats at `logits`.
    let logits = unsafe { core::slice::from_raw_parts_mut(logits, logits_len) };
    let heads = s.session.model().config().num_heads as usize;
    let mut fill = s.attention.map(|(ptr, len)| Fill {
        // SAFETY: `cait_set_attention_buffer` took `len` floats at `ptr`, valid while the session
        // runs (the caller's promise), and the logits are the caller's other buffer.
        buffer: unsafe { core::slice::from_raw_parts_mut(ptr, len) },
        heads,
    });
    let outputs = Outputs::logits(&mut *logits);
    let outputs = match &mut fill {
        Some(fill) => outputs.attention(fill),
        None => outputs,
    };
    let done = match input {
        Some(input) => s.session.run_with(input, outputs),
        None => s.session.run_frame_with(outputs),
    };
    if let Err(e) = done {
        return status(&e);
    }
    if !top1.is_null() {
        // The session's own ranking (a model has at least one logit).
        let class = top_k::<1>(logits).first().map_or(0, |&(c, _)| c);
        // SAFETY: non-NULL, the caller's writable size_t.
        unsafe { *top1 = class };
    }
    CAIT_OK
}

/// Classifies one image of 8-bit pixels (`len` = `cait_input_len` bytes, `layout`
/// `CAIT_LAYOUT_HWC` or `CAIT_LAYOUT_CHW`, at the model's size; the pack's mean and std are
/// applied inside): the logits into `logits` (`logits_len` = `cait_logits_len` floats), the top
/// class into `*top1` (may be NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cait_run_pixels(
    session: *mut cait_session,
    pixels: *const u8,
    len: usize,
    layout: u32,
    logits: *mut f32,
    logits_len: usize,
    top1: *mut usize,
) -> i32 {
    let layout = match layout {
        CAIT_LAYOUT_CHW => PixelLayout::Chw,
        CAIT_LAYOUT_HWC => PixelLayout::Hwc,
        _ => return CAIT_BAD_ARGUMENT,
    };
    if pixels.is_null() {
        return CAIT_NULL_POINTER;
    }
    // SAFETY: the caller promises `len` bytes at `pixels`.
    let data = unsafe { core::slice::from_raw_parts(pixels, len) };
    // SAFETY: see `run`.
    unsafe {
        run(
            session,
            Some(Input::Pixels { data, layout }),
            logits,
            logits_len,
            top1,
        )
    }
}

/// `cait_run_pixels` for an image already normalized as the model expects (`len` =
/// `cait_input_len` floats, `[C, H, W]`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cait_run_normalized(
    session: *mut cait_session,
    image: *const f32,
    len: usize,
    logits: *mut f32,
    logits_len: usize,
    top1: *mut usize,
) -> i32 {
    if image.is_null() {
        return CAIT_NULL_POINTER;
    }
    // SAFETY: the caller promises `len` floats at `image`.
    let image = unsafe { core::slice::from_raw_parts(image, len) };
    // SAFETY: see `run`.
    unsafe {
        run(
            session,
            Some(Input::Normalized(image)),
            logits,
            logits_len,
            top1,
        )
    }
}

/// The frame buffer inside the session's workspace: its address into `*frame` and its length,
/// `cait_input_len` bytes, into `*len`. The camera (its DMA) writes an 8-bit HWC frame there
/// (interleaved, RGBRGB…; for one channel the same as CHW) and `cait_run_frame` classifies it in
/// place, so RAM holds no frame buffer beside the workspace. The workspace must have the bytes
/// `cait_pack_check_frame` reports, else `CAIT_WORKSPACE_TOO_SMALL`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cait_frame(
    session: *mut cait_session,
    frame: *mut *mut u8,
    len: *mut usize,
) -> i32 {
    // SAFETY: see `slot`.
    let s = match unsafe { slot(session) } {
        Ok(s) => s,
        Err(e) => return e,
    };
    if frame.is_null() || len.is_null() {
        return CAIT_NULL_POINTER;
    }
    match s.session.frame_mut() {
        Ok(buffer) => {
            // SAFETY: both non-NULL, the caller's writable pointer and size_t.
            unsafe {
                *frame = buffer.as_mut_ptr();
                *len = buffer.len();
            }
            CAIT_OK
        }
        Err(e) => status(&e),
    }
}

/// Classifies the frame in the workspace (`cait_frame`) as `cait_run_pixels` would the same
/// pixels in `CAIT_LAYOUT_HWC`, bit for bit; the frame is consumed (write the next one before the
/// next run).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cait_run_frame(
    session: *mut cait_session,
    logits: *mut f32,
    logits_len: usize,
    top1: *mut usize,
) -> i32 {
    // SAFETY: see `run`.
    unsafe { run(session, None, logits, logits_len, top1) }
}

/// Ranks the `len` logits at `logits` and writes the `k` best classes to `classes`, best first
/// (`k` ≤ `CAIT_TOP_K_MAX` and ≤ `len`). The order is the host tool's: equal logits keep the lower
/// class first.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cait_top_k(
    logits: *const f32,
    len: usize,
    k: usize,
    classes: *mut usize,
) -> i32 {
    if logits.is_null() || (classes.is_null() && k > 0) {
        return CAIT_NULL_POINTER;
    }
    if k > CAIT_TOP_K_MAX || k > len {
        return CAIT_BAD_ARGUMENT;
    }
    // SAFETY: the caller promises `len` floats at `logits` and `k` writable size_t at `classes`.
    let logits = unsafe { core::slice::from_raw_parts(logits, len) };
    let top = top_k::<CAIT_TOP_K_MAX>(logits);
    for (i, &(class, _)) in top.iter().take(k).enumerate() {
        // SAFETY: as above, i < k.
        unsafe { classes.add(i).write(class) };
    }
    CAIT_OK
}

/// A bare-metal staticlib needs a panic handler. The core does not panic on bad input (its
/// errors are statuses); should anything else, the core stops here rather than unwinding into C.
#[cfg(all(target_os = "none", feature = "panic-handler", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
