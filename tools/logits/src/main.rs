//! Logits of a pack on raw images, as bits: the program the cross-target test
//! (`tools/cait/tests/cross_target.rs`) runs on each host and kernel set (x86-64 AVX2 and portable,
//! AArch64 SDOT and NEON under `qemu-aarch64`) to check that they agree bit for bit.
//!
//! `logits PACK IMAGES` — IMAGES: normalized `[C, H, W]` f32 images back to back, little-endian.
//! Prints `kernels int8=NAME float=NAME`, then `fixed DIGEST` (the integer-only kernels' digest,
//! `cait_core::check::fixed_kernels_digest(1, 500)`), then one `logits HEX HEX …` line (each f32's
//! bits) per image.

use std::process::ExitCode;

use cait_core::{Input, Outputs, Session};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, pack_path, images_path] = &args[..] else {
        return Err("usage: logits PACK IMAGES (raw little-endian f32 images)".into());
    };
    let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
    let (pack, images) = (read(pack_path)?, read(images_path)?);
    // Pack tensors are aligned within the pack: 8-aligned storage keeps them aligned.
    let mut storage = vec![0u64; pack.len().div_ceil(8)];
    let pack_bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut storage)[..pack.len()];
    pack_bytes.copy_from_slice(&pack);
    let size =
        cait_core::try_workspace_bytes_for(pack_bytes).map_err(|e| format!("{pack_path}: {e}"))?;
    let mut ws = vec![0u64; size.div_ceil(8)];
    let mut session = Session::new(pack_bytes, bytemuck::cast_slice_mut(&mut ws))
        .map_err(|e| format!("{pack_path}: {e}"))?;
    let (input_len, logits_len) = (session.model().input_len(), session.model().logits_len());
    if images.len() % (4 * input_len) != 0 {
        return Err(format!(
            "{images_path}: {} bytes is not a whole number of {input_len}-value f32 images",
            images.len()
        ));
    }
    println!(
        "kernels int8={} float={}",
        cait_core::int8_kernels::selected(),
        cait_core::float_kernels_selected()
    );
    println!(
        "fixed {:016x}",
        cait_core::check::fixed_kernels_digest(1, 500)
    );
    let values: Vec<f32> = images
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut logits = vec![0f32; logits_len];
    for image in values.chunks_exact(input_len) {
        session
            .run_with(Input::Normalized(image), Outputs::logits(&mut logits))
            .map_err(|e| format!("{images_path}: {e}"))?;
        let hex: Vec<String> = logits
            .iter()
            .map(|v| format!("{:08x}", v.to_bits()))
            .collect();
        println!("logits {}", hex.join(" "));
    }
    Ok(())
}
