//! A complete firmware on cait's public API alone: the bundled model classifies one 28×28 camera
//! frame (8-bit gray pixels, as a sensor delivers them), held inside the workspace itself. RAM is
//! the workspace and the stack.
#![no_std]
#![no_main]

use cait_core::{Session, Workspace, frame_workspace_bytes_for};
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};

// The pack in flash, 64-byte aligned; its header sizes the workspace, frame included, at compile
// time.
cait_pack::include_pack!(PACK = "../../../models/fashion-cait/fashion-cait-int8.cait");
const WORKSPACE_BYTES: usize = frame_workspace_bytes_for(PACK.bytes());
// What the camera delivers (here from flash).
static CAMERA: &[u8; 28 * 28] = include_bytes!("ankle-boot.gray");

#[entry]
fn main() -> ! {
    let workspace = cortex_m::singleton!(: Workspace<WORKSPACE_BYTES> = Workspace::new());
    let workspace = workspace.expect("main runs once").as_bytes_mut();
    // Checks the pack (checksum, every tensor) and the workspace once.
    let result = Session::new(PACK.bytes(), workspace).and_then(|mut session| {
        // The camera writes its frame (HWC) into the workspace: a DMA target on a real board.
        session.frame_mut()?.copy_from_slice(CAMERA);
        let mut logits = [0f32; 10];
        let (class, _) = session.classify_frame(&mut logits)?;
        Ok((class, session.model().pack().labels().get(class)))
    });
    match result {
        Ok((class, label)) => hprintln!("class {} {}", class, label.unwrap_or("?")),
        Err(e) => hprintln!("error: {}", e),
    }
    exit(result.is_ok())
}

/// Ends the program (QEMU exits with the status through semihosting; a board would reset).
fn exit(ok: bool) -> ! {
    debug::exit([debug::EXIT_FAILURE, debug::EXIT_SUCCESS][ok as usize]);
    loop {
        cortex_m::asm::wfi()
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(false)
}
