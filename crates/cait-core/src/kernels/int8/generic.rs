//! The plain reference kernels: the specification every optimised variant is tested against.

use super::Rows;

/// `emit(t, o, Σ_j x_t[j] · w_o[j])` for every row `t` of `x` and `o` of `w` (the same width),
/// row by row, output by output, `j` ascending.
pub(crate) fn matmul(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    if x.k() != w.k() {
        return;
    }
    for t in 0..x.count() {
        let xr = x.row(t);
        for o in 0..w.count() {
            let mut acc = 0i32;
            for (&a, &b) in xr.iter().zip(w.row(o)) {
                acc += i32::from(a) * i32::from(b);
            }
            emit(t, o, acc);
        }
    }
}
