//! The `.npy` reader (`npy::parse_f32`, `npy::parse_labels`, what `read_f32` and `read_labels` run
//! on a file's bytes) on arbitrary bytes: a typed error or an array whose size the header promised.
#![no_main]

use cait_data::npy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((shape, values)) = npy::parse_f32(data, "fuzz.npy") {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        assert_eq!(n, Some(values.len()), "shape {shape:?}");
    }
    if let Ok(labels) = npy::parse_labels(data, "fuzz.npy") {
        std::hint::black_box(labels.iter().fold(0i64, |a, &l| a.wrapping_add(l)));
    }
});
