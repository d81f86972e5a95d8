//! The plain reference kernels: the specification every optimised variant is tested against.

/// `emit(t, o, Σ_j x[t·k + j] · w[o·k + j])` for every `k`-wide row `t` of `x` and `o` of `w`,
/// row by row, output by output, `j` ascending.
pub(crate) fn linear(x: &[i8], w: &[i8], k: usize, emit: &mut impl FnMut(usize, usize, i32)) {
    if k == 0 {
        return;
    }
    for (t, xr) in x.chunks_exact(k).enumerate() {
        for (o, wr) in w.chunks_exact(k).enumerate() {
            let mut acc = 0i32;
            for (&a, &b) in xr.iter().zip(wr) {
                acc += i32::from(a) * i32::from(b);
            }
            emit(t, o, acc);
        }
    }
}
