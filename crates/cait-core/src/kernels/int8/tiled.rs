//! The portable optimised linear kernel: register tiles of `ROWS` tokens × `COLS` weight rows,
//! every pair's dot product summed in its own `i32` along `k`. Each loaded int8 value is used
//! `COLS` (activations) or `ROWS` (weights) times, and the loop over `k` is one plain reduction per
//! accumulator, the shape LLVM vectorises (SSE2 `pmullw`, AVX2 / AVX-512 `vpmaddwd` / VNNI) from
//! plain Rust — no `unsafe`, no intrinsics. (Lane-array formulations, which suit the f32 kernel,
//! stayed scalar here: measured 4x slower.)

/// Tokens per register tile.
pub(crate) const ROWS: usize = 4;
/// Weight rows per register tile.
pub(crate) const COLS: usize = 2;

use super::Rows;

/// How a register tile's dot products are computed: [`Portable`] (plain Rust, vectorised by LLVM
/// for the target's baseline) or a target's own (the x86-64 AVX2 tile).
pub(crate) trait Tile {
    /// The `R × C` exact sums `Σ_j x[r][j] · w[c][j]` over the first `k` values of each row.
    fn tile<const R: usize, const C: usize>(
        x: &[&[i8]; R],
        w: &[&[i8]; C],
        k: usize,
    ) -> [[i32; C]; R];
}

/// The portable tile.
pub(crate) struct Portable;

impl Tile for Portable {
    #[inline(always)]
    fn tile<const R: usize, const C: usize>(
        x: &[&[i8]; R],
        w: &[&[i8]; C],
        k: usize,
    ) -> [[i32; C]; R] {
        tile::<R, C>(x, w, k)
    }
}

/// See [`super::matmul`].
pub(crate) fn matmul(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    matmul_with::<Portable, ROWS, COLS>(x, w, emit)
}

/// [`matmul`] over `R × C` tiles of `T`, always inlined (each x86-64 SIMD build instantiates it
/// with its own tile and tile shape inside a function compiled for its features).
#[inline(always)]
pub(crate) fn matmul_with<T: Tile, const R: usize, const C: usize>(
    x: Rows<'_>,
    w: Rows<'_>,
    emit: &mut impl FnMut(usize, usize, i32),
) {
    let k = x.k();
    if k == 0 || w.k() != k {
        return;
    }
    let mut t = 0;
    while t + R <= x.count() {
        rows::<T, R, C>(core::array::from_fn(|r| x.row(t + r)), w, t, emit);
        t += R;
    }
    while t < x.count() {
        rows::<T, 1, C>([x.row(t)], w, t, emit);
        t += 1;
    }
}

#[inline(always)]
fn rows<T: Tile, const R: usize, const C: usize>(
    xr: [&[i8]; R],
    w: Rows<'_>,
    t: usize,
    emit: &mut impl FnMut(usize, usize, i32),
) {
    let k = w.k();
    let mut o = 0;
    while o + C <= w.count() {
        let wr: [&[i8]; C] = core::array::from_fn(|c| w.row(o + c));
        let acc = T::tile::<R, C>(&xr, &wr, k);
        for (r, row) in acc.iter().enumerate() {
            for (c, &a) in row.iter().enumerate() {
                emit(t + r, o + c, a);
            }
        }
        o += C;
    }
    while o < w.count() {
        let acc = T::tile::<R, 1>(&xr, &[w.row(o)], k);
        for (r, row) in acc.iter().enumerate() {
            emit(t + r, o, row[0]);
        }
        o += 1;
    }
}

/// The portable tile: one plain reduction per accumulator.
#[inline(always)]
pub(crate) fn tile<const R: usize, const C: usize>(
    x: &[&[i8]; R],
    w: &[&[i8]; C],
    k: usize,
) -> [[i32; C]; R] {
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
