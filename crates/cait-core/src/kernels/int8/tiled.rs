//! The portable optimised linear kernel: register tiles of `ROWS` tokens × `COLS` weight rows,
//! every pair's dot product summed in its own `i32` along `k`. Each loaded int8 value is used
//! `COLS` (activations) or `ROWS` (weights) times, and the loop over `k` is one plain reduction per
//! accumulator, the shape LLVM vectorises (SSE2 `pmullw`, AVX2 / AVX-512 `vpmaddwd` / VNNI) from
//! plain Rust — no `unsafe`, no intrinsics. (Lane-array formulations, which suit the f32 kernel,
//! stayed scalar here: measured 4x slower.)

/// Tokens per register tile.
const ROWS: usize = 4;
/// Weight rows per register tile.
const COLS: usize = 2;

/// See [`super::linear`].
pub(crate) fn linear(x: &[i8], w: &[i8], k: usize, emit: &mut impl FnMut(usize, usize, i32)) {
    if k == 0 {
        return;
    }
    let mut xs = x.chunks_exact(ROWS * k);
    let mut t = 0;
    for xb in &mut xs {
        rows::<ROWS>(xb, w, k, t, emit);
        t += ROWS;
    }
    for xb in xs.remainder().chunks_exact(k) {
        rows::<1>(xb, w, k, t, emit);
        t += 1;
    }
}

#[inline(always)]
fn rows<const R: usize>(
    x: &[i8],
    w: &[i8],
    k: usize,
    t: usize,
    emit: &mut impl FnMut(usize, usize, i32),
) {
    let xr: [&[i8]; R] = core::array::from_fn(|r| &x[r * k..(r + 1) * k]);
    let mut wc = w.chunks_exact(COLS * k);
    let mut o = 0;
    for wb in &mut wc {
        let wr: [&[i8]; COLS] = core::array::from_fn(|c| &wb[c * k..(c + 1) * k]);
        let acc = tile::<R, COLS>(&xr, &wr, k);
        for (r, row) in acc.iter().enumerate() {
            for (c, &a) in row.iter().enumerate() {
                emit(t + r, o + c, a);
            }
        }
        o += COLS;
    }
    for wrow in wc.remainder().chunks_exact(k) {
        let acc = tile::<R, 1>(&xr, &[wrow], k);
        for (r, row) in acc.iter().enumerate() {
            emit(t + r, o, row[0]);
        }
        o += 1;
    }
}

#[inline(always)]
fn tile<const R: usize, const C: usize>(x: &[&[i8]; R], w: &[&[i8]; C], k: usize) -> [[i32; C]; R] {
    let x: [&[i8]; R] = core::array::from_fn(|r| &x[r][..k]);
    let w: [&[i8]; C] = core::array::from_fn(|c| &w[c][..k]);
    let mut acc = [[0i32; C]; R];
    for j in 0..k {
        let xv: [i32; R] = core::array::from_fn(|r| i32::from(x[r][j]));
        let wv: [i32; C] = core::array::from_fn(|c| i32::from(w[c][j]));
        for r in 0..R {
            for c in 0..C {
                acc[r][c] += xv[r] * wv[c];
            }
        }
    }
    acc
}
