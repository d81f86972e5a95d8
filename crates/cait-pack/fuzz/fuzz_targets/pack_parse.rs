//! `Pack::parse` on arbitrary bytes must return, never panic; a pack that parses must give every
//! view it promises.
#![no_main]

use cait_pack::{HEADER_LEN, Pack, reseal};
use libfuzzer_sys::fuzz_target;

/// Parses `bytes` and, on success, touches every tensor, label and metadata entry.
fn exercise(bytes: &[u8]) {
    let Ok(pack) = Pack::parse(bytes) else {
        return;
    };
    let mut seen = 0;
    for t in pack.tensors() {
        // Exactly one typed view matches the dtype; the others must refuse, not panic.
        let sum = |it: &mut dyn Iterator<Item = u64>| it.fold(0u64, u64::wrapping_add);
        let sums = (
            t.as_f32()
                .map(|v| sum(&mut v.iter().map(|x| u64::from(x.to_bits())))),
            t.as_f16()
                .map(|v| sum(&mut v.iter().map(|x| u64::from(x.to_bits())))),
            t.as_i8().map(|v| sum(&mut v.iter().map(|&x| x as u64))),
            t.as_i32().map(|v| sum(&mut v.iter().map(|&x| x as u64))),
        );
        let _ = std::hint::black_box(sums);
        assert_eq!(
            Some(t.data.len()),
            t.shape.numel().and_then(|n| n.checked_mul(t.dtype.size()))
        );
        let by_name = pack
            .tensor_by_name(t.name)
            .expect("every name is found by lookup");
        assert_eq!(by_name.data.as_ptr(), t.data.as_ptr());
        if let Some(id) = t.id() {
            assert_eq!(pack.tensor(id).unwrap().data.as_ptr(), t.data.as_ptr());
        }
        seen += 1;
    }
    assert_eq!(seen, pack.tensor_count());
    for spec in pack.config().tensors() {
        let _ = pack.tensor(spec.id);
    }
    std::hint::black_box((
        pack.labels().iter().map(str::len).sum::<usize>(),
        pack.metadata()
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>(),
        pack.architecture(),
        pack.preprocess(),
        pack.tensor_bytes(),
    ));
}

/// An 8-byte aligned copy of `bytes` (libFuzzer's input has no alignment promise), so typed views
/// succeed and their contents get read.
fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    words
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    let words = aligned(data);
    exercise(&bytemuck::cast_slice::<u64, u8>(&words)[..data.len()]);
    // Random mutations almost never keep the CRC (or the declared length) right; fix both on a
    // copy so the structural checks behind them are fuzzed too.
    if data.len() >= HEADER_LEN {
        let mut fixed = data.to_vec();
        let n = fixed.len() as u64;
        fixed[0x10..0x18].copy_from_slice(&n.to_le_bytes());
        reseal(&mut fixed);
        let words = aligned(&fixed);
        exercise(&bytemuck::cast_slice::<u64, u8>(&words)[..fixed.len()]);
    }
});
