//! `cait_import::pickle::unpickle` on arbitrary bytes must return, never panic, and never expand a
//! small input into a huge tree; a value that decodes is walked whole.
#![no_main]

use cait_import::pickle::{Value, unpickle};
use libfuzzer_sys::fuzz_target;

/// Visits every node, as a caller looking for a state dict would.
fn walk(v: &Value) -> usize {
    let _ = std::hint::black_box(v.kind());
    match v {
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            1 + items.iter().map(walk).sum::<usize>()
        }
        Value::Dict(entries) => {
            let _ = v.get("model");
            1 + entries
                .iter()
                .map(|(k, v)| walk(k) + walk(v))
                .sum::<usize>()
        }
        Value::Tensor(t) => {
            let _ = std::hint::black_box(t.storage.dtype.size());
            1
        }
        _ => 1,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = unpickle(data) {
        std::hint::black_box(walk(&v));
    }
});
