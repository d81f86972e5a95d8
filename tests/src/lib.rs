pub mod docs;
pub mod elf;
pub mod family;
pub mod logits;
pub mod synth;

/// Index of the largest value, the first of equals (how `cait classify` ranks).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
