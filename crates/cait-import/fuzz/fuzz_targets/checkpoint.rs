//! The checkpoint reader (`read_checkpoint_bytes`: format sniffing, the safetensors header, the
//! torch zip container, `data.pkl` through the pickle machine, then every tensor's storage record
//! and view) on arbitrary bytes: tensors whose data fills their shape, or a typed error.
//!
//! An input starting with `PKL` is a `data.pkl` for a well-formed torch zip built around it (with
//! storages `0` to `3` of 64 floats each), so mutations reach the tensor views instead of stopping
//! at the zip's CRCs.
#![no_main]

use std::io::{Cursor, Write};
use std::path::Path;

use cait_import::read_checkpoint_bytes;
use libfuzzer_sys::fuzz_target;
use zip::write::{SimpleFileOptions, ZipWriter};

/// A `torch.save` layout: `archive/data.pkl`, `archive/byteorder`, `archive/data/<key>`.
fn torch_zip(pickle: &[u8]) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut record = |name: &str, bytes: &[u8]| {
        zip.start_file(name, stored).expect("in-memory zip");
        zip.write_all(bytes).expect("in-memory zip");
    };
    record("archive/data.pkl", pickle);
    record("archive/byteorder", b"little");
    for key in 0..4u8 {
        let floats: Vec<u8> = (0..64)
            .flat_map(|i| (i as f32 * 0.5 - key as f32).to_le_bytes())
            .collect();
        record(&format!("archive/data/{key}"), &floats);
    }
    zip.finish().expect("in-memory zip").into_inner()
}

fn exercise(bytes: Vec<u8>) {
    let Ok((_, tensors)) = read_checkpoint_bytes(Path::new("fuzz.pth"), bytes) else {
        return;
    };
    for (key, t) in &tensors {
        let n = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        assert_eq!(n, Some(t.data.len()), "{key}: shape {:?}", t.shape);
    }
}

fuzz_target!(|data: &[u8]| {
    match data.strip_prefix(b"PKL") {
        Some(pickle) => exercise(torch_zip(pickle)),
        None => exercise(data.to_vec()),
    }
});
