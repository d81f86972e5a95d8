//! Arbitrary bytes through the whole load path: `Pack::parse`, then `cait_core::Model::from_pack`,
//! then (for small models) one forward pass. None of it may panic.
#![no_main]

use cait_core::Model;
use cait_pack::{HEADER_LEN, Pack, reseal};
use libfuzzer_sys::fuzz_target;

/// Workspaces and inputs past this many bytes are not run: the fuzzer wants many cheap executions.
const MAX_RUN_BYTES: usize = 1 << 20;

fn exercise(bytes: &[u8]) {
    let Ok(pack) = Pack::parse(bytes) else {
        return;
    };
    let Ok(model) = Model::from_pack(&pack) else {
        return;
    };
    let (ws, input, logits) = (
        model.workspace_bytes(),
        model.input_len(),
        model.logits_len(),
    );
    if ws > MAX_RUN_BYTES || input > MAX_RUN_BYTES / 4 || logits > MAX_RUN_BYTES / 4 {
        return;
    }
    let mut workspace = vec![0u32; ws.div_ceil(4)];
    let input: Vec<f32> = (0..input).map(|i| (i % 7) as f32 * 0.25 - 0.5).collect();
    let mut logits = vec![0f32; logits];
    let workspace = &mut bytemuck::cast_slice_mut::<u32, u8>(&mut workspace)[..ws];
    let _ = std::hint::black_box(model.forward(&input, workspace, &mut logits));
}

fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    words
}

fuzz_target!(|data: &[u8]| {
    // Aligned (the engine needs 4-byte aligned f32 views), with length and CRC fixed up so that
    // mutations reach the structural and engine checks instead of stopping at the checksum.
    let mut fixed = data.to_vec();
    if fixed.len() >= HEADER_LEN {
        let n = fixed.len() as u64;
        fixed[0x10..0x18].copy_from_slice(&n.to_le_bytes());
        reseal(&mut fixed);
    }
    let words = aligned(&fixed);
    exercise(&bytemuck::cast_slice::<u64, u8>(&words)[..fixed.len()]);
});
