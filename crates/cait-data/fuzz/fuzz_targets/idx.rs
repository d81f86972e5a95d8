//! The Fashion-MNIST IDX reader (`parse_idx`, gzip'd or not) on arbitrary bytes, as images
//! (rank 3) and as labels (rank 1): a typed error, or dimensions that match the data.
#![no_main]

use std::path::Path;

use cait_data::parse_idx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for rank in [1, 3] {
        if let Ok((dims, bytes)) = parse_idx(Path::new("fuzz-ubyte"), data, rank) {
            assert_eq!(dims.len(), rank);
            assert_eq!(dims.iter().product::<usize>(), bytes.len());
        }
    }
});
