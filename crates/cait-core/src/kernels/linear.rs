//! Linear layers, `Y = X·Wᵀ + b`, over a block of tokens.
//!
//! The linear layers are nearly all of CaiT's arithmetic, so this is the kernel that is tiled: a
//! register tile of [`TILE_ROWS`] tokens × [`TILE_COLS`] weight rows is accumulated together, so each
//! loaded weight chunk is used [`TILE_ROWS`] times and each token chunk [`TILE_COLS`] times. Each
//! output is still one dot product in the blocked order of [`super::sum`], so tiling changes speed only,
//! never a bit of the result.

use half::f16;

use super::gelu::gelu;
use super::sum::{LANES, reduce, tail};

// Register tile: TILE_ROWS tokens × TILE_COLS weight rows, each dot holding LANES partial sums, so
// TILE_ROWS·TILE_COLS·LANES accumulators must fit in registers. Chosen per target (measured on x86-64;
// the others sized by register count); the results are the same bits whatever the shape.

/// Tokens per register tile.
#[cfg(any(
    target_arch = "aarch64",
    all(target_arch = "x86_64", target_feature = "avx")
))]
const TILE_ROWS: usize = 4;
/// Weight rows (output features) per register tile.
#[cfg(any(
    target_arch = "aarch64",
    all(target_arch = "x86_64", target_feature = "avx")
))]
const TILE_COLS: usize = 2;
/// Tokens per register tile (SSE2: 16 registers of 4 lanes hold a 2 × 2 tile of 8-lane sums).
#[cfg(all(target_arch = "x86_64", not(target_feature = "avx")))]
const TILE_ROWS: usize = 2;
/// Weight rows (output features) per register tile.
#[cfg(all(target_arch = "x86_64", not(target_feature = "avx")))]
const TILE_COLS: usize = 2;
/// Tokens per register tile (scalar FPUs such as Cortex-M4F: 32 registers, 16 accumulators).
#[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
const TILE_ROWS: usize = 2;
/// Weight rows (output features) per register tile.
#[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
const TILE_COLS: usize = 1;

/// A linear layer's float weights as stored in the pack, borrowed zero-copy: f32 (f32 packs) or
/// f16 (f16 packs), `[out_features, in_features]` row-major, with an optional f32 bias. Compute is
/// f32 either way: an f16 weight widens to f32 exactly, so an f16 layer gives the bits an f32 layer
/// holding the same (f16-representable) weights gives. int8 layers are `crate::int8::QLinear`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Linear<'a> {
    weight: Weights<'a>,
    /// `out_features` values, if the layer has a bias.
    bias: Option<&'a [f32]>,
    /// Input width `K`.
    in_features: usize,
    /// Output width `M`.
    out_features: usize,
}

/// The weight matrix of a [`Linear`], `out_features * in_features` values.
#[derive(Clone, Copy, Debug)]
enum Weights<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

/// A stored weight element, widened to f32 in chunks of [`LANES`] (exactly: every f16 is an f32).
pub(crate) trait Widen: Copy {
    /// How the x86-64 AVX2 build reads this element type (f16: through F16C).
    #[cfg(all(feature = "std", target_arch = "x86_64", not(target_feature = "avx2")))]
    type Avx2: Widen;
    /// The weights as the AVX2 build reads them (the same values, reinterpreted).
    #[cfg(all(feature = "std", target_arch = "x86_64", not(target_feature = "avx2")))]
    fn for_avx2(w: &[Self]) -> &[Self::Avx2];
    /// The chunk as f32.
    fn widen(chunk: &[Self; LANES]) -> [f32; LANES];
    /// One element as f32.
    fn to_f32(self) -> f32;
}

impl Widen for f32 {
    #[cfg(all(feature = "std", target_arch = "x86_64", not(target_feature = "avx2")))]
    type Avx2 = f32;
    #[cfg(all(feature = "std", target_arch = "x86_64", not(target_feature = "avx2")))]
    fn for_avx2(w: &[f32]) -> &[f32] {
        w
    }
    #[inline(always)]
    fn widen(chunk: &[f32; LANES]) -> [f32; LANES] {
        *chunk
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Widen for f16 {
    #[cfg(all(feature = "std", target_arch = "x86_64", not(target_feature = "avx2")))]
    type Avx2 = f16c::F16c;
    #[cfg(all(feature = "std", target_arch = "x86_64", not(target_feature = "avx2")))]
    fn for_avx2(w: &[f16]) -> &[f16c::F16c] {
        f16c::F16c::cast(w)
    }
    #[inline(always)]
    fn widen(chunk: &[f16; LANES]) -> [f32; LANES] {
        chunk.map(|h| f16_to_f32(h.to_bits()))
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16_to_f32(self.to_bits())
    }
}

/// f16 weights in the x86-64 AVX2 build: a chunk of 8 widened by one F16C `vcvtph2ps` (exact, as
/// [`f16_to_f32`]; a signalling NaN comes back quiet, which no product can tell apart). Timings:
/// [`linear_float_avx2`].
#[cfg(all(feature = "std", target_arch = "x86_64", not(target_feature = "avx2")))]
mod f16c {
    // The cast of the weights, and F16C's load and conversion.
    #![allow(unsafe_code)]

    use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm256_cvtph_ps};

    use half::f16;

    use super::{LANES, Widen, f16_to_f32};

    const _: () = assert!(LANES == 8, "one vcvtph2ps widens 8 values");

    /// An f16 that the AVX2 build widens with F16C.
    #[derive(Clone, Copy)]
    #[repr(transparent)]
    pub(crate) struct F16c(f16);

    impl F16c {
        /// The same values, as this type.
        pub(super) fn cast(w: &[f16]) -> &[F16c] {
            // SAFETY: `F16c` is a `repr(transparent)` `f16`: same size, alignment and validity.
            unsafe { core::slice::from_raw_parts(w.as_ptr().cast::<F16c>(), w.len()) }
        }
    }

    impl Widen for F16c {
        type Avx2 = F16c;
        fn for_avx2(w: &[F16c]) -> &[F16c] {
            w
        }
        #[inline(always)]
        fn widen(chunk: &[F16c; LANES]) -> [f32; LANES] {
            // SAFETY: `F16c` weights reach only `linear_float_avx2`, which runs only when the CPU
            // has AVX2 and F16C (`kernels::x86::avx2`); the load reads the chunk's 16 bytes,
            // unaligned; `__m256` and `[f32; 8]` have the same size and every bit pattern is valid.
            unsafe {
                let h = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
                core::mem::transmute::<_, [f32; LANES]>(_mm256_cvtph_ps(h))
            }
        }
        #[inline(always)]
        fn to_f32(self) -> f32 {
            f16_to_f32(self.0.to_bits())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// F16C widens every f16 to the f32 the portable conversion gives (NaNs: a NaN).
        #[test]
        fn f16c_widening_is_exact_for_every_value() {
            if !crate::kernels::x86::avx2() {
                return;
            }
            let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
            for chunk in F16c::cast(&all).as_chunks::<LANES>().0 {
                let got = F16c::widen(chunk);
                for (h, g) in chunk.iter().zip(got) {
                    let want = f16_to_f32(h.0.to_bits());
                    if want.is_nan() {
                        assert!(g.is_nan(), "{:#06x}", h.0.to_bits());
                    } else {
                        assert_eq!(g.to_bits(), want.to_bits(), "{:#06x}", h.0.to_bits());
                    }
                }
            }
        }
    }
}

/// IEEE binary16 → binary32, exactly (every f16 is an f32), branch-free so that a chunk
/// vectorises; integer bit operations only, except one exact `int → f32` conversion and a
/// power-of-two scaling for subnormals, so no target's subnormal or rounding mode can change it.
/// (`half`'s portable conversion branches per element: measured 10x slower in the f16 linear.)
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let em = h & 0x7fff;
    // Normal: rebias the exponent (15 → 127) and widen the mantissa (10 → 23 bits).
    let normal = (em << 13) + ((127 - 15) << 23);
    // Subnormal (and zero): m · 2^-24, exact.
    let subnormal = (em as f32 * (1.0 / 16_777_216.0)).to_bits();
    // Infinity and NaN (payload kept).
    let special = (em << 13) | 0x7f80_0000;
    let bits = if em < 0x0400 {
        subnormal
    } else if em >= 0x7c00 {
        special
    } else {
        normal
    };
    f32::from_bits(bits | sign)
}

/// What is done with each output `y = x·w + b` as it is written to its slot of `out`.
#[derive(Clone, Copy)]
pub(crate) enum Epilogue<'e> {
    /// `out = y`.
    Store,
    /// `out = y * s` (attention's query scaling, applied after the bias as timm does).
    Scale(f32),
    /// `out = gelu(y)` (the MLP's hidden layer).
    Gelu,
    /// `out += gamma[o] * y`: LayerScale and the residual connection, fused (`x = x + gamma * f(x)`).
    LayerScaleAdd(&'e [f32]),
}

impl<'a> Linear<'a> {
    /// An f32 layer; `None` unless `weight` is `out × in` and `bias` (if any) has `out` values.
    pub(crate) fn f32(
        weight: &'a [f32],
        bias: Option<&'a [f32]>,
        out_features: usize,
        in_features: usize,
    ) -> Option<Linear<'a>> {
        Self::new(
            Weights::F32(weight),
            weight.len(),
            bias,
            out_features,
            in_features,
        )
    }

    /// An f16 layer (f32 bias); `None` unless the shapes agree as for [`Linear::f32`].
    pub(crate) fn f16(
        weight: &'a [f16],
        bias: Option<&'a [f32]>,
        out_features: usize,
        in_features: usize,
    ) -> Option<Linear<'a>> {
        Self::new(
            Weights::F16(weight),
            weight.len(),
            bias,
            out_features,
            in_features,
        )
    }

    fn new(
        weight: Weights<'a>,
        len: usize,
        bias: Option<&'a [f32]>,
        out_features: usize,
        in_features: usize,
    ) -> Option<Linear<'a>> {
        let ok = in_features > 0
            && out_features.checked_mul(in_features) == Some(len)
            && bias.is_none_or(|b| b.len() == out_features);
        ok.then_some(Linear {
            weight,
            bias,
            in_features,
            out_features,
        })
    }

    /// The layer restricted to output features `start..start + len` (splits timm's fused qkv).
    /// The caller guarantees `start + len <= out_features`.
    pub(crate) fn output_rows(&self, start: usize, len: usize) -> Linear<'a> {
        let k = self.in_features;
        let rows = start * k..(start + len) * k;
        Linear {
            weight: match self.weight {
                Weights::F32(w) => Weights::F32(&w[rows]),
                Weights::F16(w) => Weights::F16(&w[rows]),
            },
            bias: self.bias.map(|b| &b[start..start + len]),
            in_features: k,
            out_features: len,
        }
    }

    /// Applies the layer to each `in_features`-wide row of `x`, writing the matching
    /// `out_features`-wide row of `out` through `epilogue`. `x` and `out` hold the same number of rows.
    pub(crate) fn forward(&self, x: &[f32], out: &mut [f32], epilogue: Epilogue<'_>) {
        let m = self.out_features();
        self.forward_strided(
            x,
            out,
            Strides {
                offset: 0,
                row: m,
                col: 1,
            },
            epilogue,
        );
    }

    /// [`forward`](Self::forward), writing output `(row t, feature o)` of this call to
    /// `out[strides.offset + t * strides.row + o * strides.col]` (e.g. keys stored transposed).
    pub(crate) fn forward_strided(
        &self,
        x: &[f32],
        out: &mut [f32],
        strides: Strides,
        epilogue: Epilogue<'_>,
    ) {
        let (bias, k) = (self.bias, self.in_features);
        match self.weight {
            Weights::F32(w) => linear_float(w, bias, k, x, out, strides, epilogue),
            Weights::F16(w) => linear_float(w, bias, k, x, out, strides, epilogue),
        }
    }

    fn out_features(&self) -> usize {
        self.out_features
    }
}

/// Output placement of [`Linear::forward_strided`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Strides {
    /// Index of output (0, 0).
    pub(crate) offset: usize,
    /// Distance between consecutive rows (tokens).
    pub(crate) row: usize,
    /// Distance between consecutive output features.
    pub(crate) col: usize,
}

/// The layer over every row of `x`: on an x86-64 host with AVX2 (`std`), [`linear_float_tiled`]
/// compiled for AVX2 with the AVX register tile; elsewhere the target's own build and tile.
// The call into the AVX2 build, after run-time detection.
#[cfg_attr(all(feature = "std", target_arch = "x86_64"), allow(unsafe_code))]
fn linear_float<W: Widen>(
    w: &[W],
    bias: Option<&[f32]>,
    k: usize,
    x: &[f32],
    out: &mut [f32],
    strides: Strides,
    ep: Epilogue<'_>,
) {
    #[cfg(all(feature = "std", target_arch = "x86_64", not(target_feature = "avx2")))]
    if crate::kernels::x86::avx2() {
        // SAFETY: the CPU has AVX2 and F16C (detected at run time by `avx2`).
        unsafe { linear_float_avx2(W::for_avx2(w), bias, k, x, out, strides, ep) };
        return;
    }
    linear_float_tiled::<W, TILE_ROWS, TILE_COLS>(w, bias, k, x, out, strides, ep)
}

/// [`linear_float_tiled`] with the AVX tile (4 tokens × 2 weight rows), compiled for AVX2 and F16C.
/// The same operations in the same order as every other build: the same bits. cait_xxs24_224
/// forward on a 2-core Xeon (criterion, one thread): f32 185 against 243 ms portable; f16 173 and
/// 196 ms in two runs beside f32's 188 and 182 (382 ms widening without F16C, 866 ms portable).
#[cfg(all(feature = "std", target_arch = "x86_64", not(target_feature = "avx2")))]
#[target_feature(enable = "avx2,f16c")]
fn linear_float_avx2<W: Widen>(
    w: &[W],
    bias: Option<&[f32]>,
    k: usize,
    x: &[f32],
    out: &mut [f32],
    strides: Strides,
    ep: Epilogue<'_>,
) {
    linear_float_tiled::<W, 4, 2>(w, bias, k, x, out, strides, ep)
}

/// [`linear_float`] with register tiles of `TR` tokens × `TC` weight rows.
#[inline(always)]
fn linear_float_tiled<W: Widen, const TR: usize, const TC: usize>(
    w: &[W],
    bias: Option<&[f32]>,
    k: usize,
    x: &[f32],
    out: &mut [f32],
    strides: Strides,
    ep: Epilogue<'_>,
) {
    let mut xs = x.chunks_exact(TR * k);
    let mut base = strides.offset;
    for xb in &mut xs {
        rows_float::<TR, TC, W>(
            w,
            bias,
            k,
            xb,
            out,
            Strides {
                offset: base,
                ..strides
            },
            ep,
        );
        base += TR * strides.row;
    }
    for xb in xs.remainder().chunks_exact(k) {
        rows_float::<1, TC, W>(
            w,
            bias,
            k,
            xb,
            out,
            Strides {
                offset: base,
                ..strides
            },
            ep,
        );
        base += strides.row;
    }
}

/// `R` tokens (`x`: `R × k`) against every weight row; output `(r, o)` goes to
/// `out[s.offset + r * s.row + o * s.col]`.
#[inline(always)]
fn rows_float<const R: usize, const TC: usize, W: Widen>(
    w: &[W],
    bias: Option<&[f32]>,
    k: usize,
    x: &[f32],
    out: &mut [f32],
    s: Strides,
    ep: Epilogue<'_>,
) {
    let xr: [&[f32]; R] = core::array::from_fn(|r| &x[r * k..(r + 1) * k]);
    let mut o = 0;
    let mut wc = w.chunks_exact(TC * k);
    for wb in &mut wc {
        let wr: [&[W]; TC] = core::array::from_fn(|c| &wb[c * k..(c + 1) * k]);
        let t = tile::<R, TC, W>(&xr, &wr, k);
        for (r, tr) in t.iter().enumerate() {
            for (c, &acc) in tr.iter().enumerate() {
                let slot = &mut out[s.offset + r * s.row + (o + c) * s.col];
                write(slot, acc, bias, o + c, ep);
            }
        }
        o += TC;
    }
    for wrow in wc.remainder().chunks_exact(k) {
        let t = tile::<R, 1, W>(&xr, &[wrow], k);
        for (r, tr) in t.iter().enumerate() {
            write(
                &mut out[s.offset + r * s.row + o * s.col],
                tr[0],
                bias,
                o,
                ep,
            );
        }
        o += 1;
    }
}

#[inline(always)]
fn write(slot: &mut f32, acc: f32, bias: Option<&[f32]>, o: usize, ep: Epilogue<'_>) {
    let y = match bias {
        Some(b) => acc + b[o],
        None => acc,
    };
    *slot = match ep {
        Epilogue::Store => y,
        Epilogue::Scale(s) => y * s,
        Epilogue::Gelu => gelu(y),
        Epilogue::LayerScaleAdd(gamma) => *slot + gamma[o] * y,
    };
}

/// `acc + x * w` lane by lane (two roundings: Rust never contracts this into an FMA).
#[inline(always)]
fn multiply_add(acc: [f32; LANES], x: &[f32; LANES], w: &[f32; LANES]) -> [f32; LANES] {
    let mut out = acc;
    for l in 0..LANES {
        out[l] += x[l] * w[l];
    }
    out
}

/// The `R × C` dot products of `x[r]` and `w[c]` (all of length `k`), each in the blocked order of
/// [`super::sum`].
#[inline(always)]
pub(crate) fn tile<const R: usize, const C: usize, W: Widen>(
    x: &[&[f32]; R],
    w: &[&[W]; C],
    k: usize,
) -> [[f32; C]; R] {
    let n = k / LANES;
    let xc: [&[[f32; LANES]]; R] = core::array::from_fn(|r| &x[r].as_chunks::<LANES>().0[..n]);
    let wc: [&[[W; LANES]]; C] = core::array::from_fn(|c| &w[c].as_chunks::<LANES>().0[..n]);
    let mut acc = [[[0.0f32; LANES]; C]; R];
    for i in 0..n {
        // Load the chunks once, then one lane-wise multiply-add per (token, weight row): written this
        // way LLVM vectorises along the lanes for every tile shape (indexing acc[r][c][l] directly
        // made it vectorise across tokens instead for some shapes, 2-4x slower).
        let xv: [[f32; LANES]; R] = core::array::from_fn(|r| xc[r][i]);
        let wv: [[f32; LANES]; C] = core::array::from_fn(|c| W::widen(&wc[c][i]));
        for r in 0..R {
            for c in 0..C {
                acc[r][c] = multiply_add(acc[r][c], &xv[r], &wv[c]);
            }
        }
    }
    if n * LANES < k {
        // The tail, zero-padded to a whole chunk (see `sum::tail`).
        let xv: [[f32; LANES]; R] = core::array::from_fn(|r| tail(&x[r][n * LANES..]));
        let wv: [[f32; LANES]; C] = core::array::from_fn(|c| {
            let mut t = [0.0f32; LANES];
            for (t, &v) in t.iter_mut().zip(&w[c][n * LANES..]) {
                *t = v.to_f32();
            }
            t
        });
        for r in 0..R {
            for c in 0..C {
                acc[r][c] = multiply_add(acc[r][c], &xv[r], &wv[c]);
            }
        }
    }
    acc.map(|row| row.map(reduce))
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // index loops mirror the math in the expectations
mod tests {
    use super::super::sum::dot;
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    proptest::proptest! {
        /// Every tile shape, remainder path and epilogue equals the plain per-output dot bit for bit.
        #[test]
        fn equals_the_plain_dot_bit_for_bit(rows in 1usize..11, k in 1usize..40, m in 1usize..9, seed in 0u32..1000, bias in proptest::bool::ANY) {
            let x = data(rows * k, seed);
            let w = data(m * k, seed + 1);
            let b = data(m, seed + 2);
            let gamma = data(m, seed + 3);
            let lin = Linear::f32(&w, bias.then_some(&b[..]), m, k).unwrap();
            let y = |t: usize, o: usize| {
                let d = dot(&x[t * k..(t + 1) * k], &w[o * k..(o + 1) * k]);
                if bias { d + b[o] } else { d }
            };
            let mut out = vec![0.0; rows * m];
            lin.forward(&x, &mut out, Epilogue::Store);
            let mut gelu_out = vec![0.0; rows * m];
            lin.forward(&x, &mut gelu_out, Epilogue::Gelu);
            let mut scaled = vec![0.0; rows * m];
            lin.forward(&x, &mut scaled, Epilogue::Scale(0.125));
            let resid = data(rows * m, seed + 4);
            let mut added = resid.clone();
            lin.forward(&x, &mut added, Epilogue::LayerScaleAdd(&gamma));
            for t in 0..rows {
                for o in 0..m {
                    let i = t * m + o;
                    proptest::prop_assert_eq!(out[i].to_bits(), y(t, o).to_bits());
                    proptest::prop_assert_eq!(gelu_out[i].to_bits(), gelu(y(t, o)).to_bits());
                    proptest::prop_assert_eq!(scaled[i].to_bits(), (y(t, o) * 0.125).to_bits());
                    proptest::prop_assert_eq!(added[i].to_bits(), (resid[i] + gamma[o] * y(t, o)).to_bits());
                }
            }
        }
    }

    /// Every register-tile shape (whichever this target uses) gives the plain dot's bits.
    #[test]
    fn every_tile_shape_equals_the_plain_dot() {
        fn check<const R: usize, const C: usize>(k: usize) {
            let x = data(R * k, k as u32);
            let w = data(C * k, k as u32 + 50);
            let xr: [&[f32]; R] = core::array::from_fn(|r| &x[r * k..(r + 1) * k]);
            let wr: [&[f32]; C] = core::array::from_fn(|c| &w[c * k..(c + 1) * k]);
            let t = tile::<R, C, f32>(&xr, &wr, k);
            for r in 0..R {
                for c in 0..C {
                    assert_eq!(
                        t[r][c].to_bits(),
                        dot(xr[r], wr[c]).to_bits(),
                        "{R}x{C}, k {k}"
                    );
                }
            }
        }
        for k in [1, 7, 8, 9, 48, 61] {
            check::<1, 1>(k);
            check::<2, 1>(k);
            check::<2, 2>(k);
            check::<4, 2>(k);
            check::<1, 4>(k);
        }
    }

    #[test]
    fn f16_conversion_is_exact_for_every_value() {
        for bits in 0..=u16::MAX {
            let want = f16::from_bits(bits).to_f32();
            let got = f16_to_f32(bits);
            if want.is_nan() {
                assert!(got.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{bits:#06x}");
            }
        }
    }

    proptest::proptest! {
        /// An f16 layer computes exactly what an f32 layer holding the widened weights computes.
        #[test]
        fn f16_equals_f32_on_the_widened_weights(rows in 1usize..9, k in 1usize..40, m in 1usize..9, seed in 0u32..1000) {
            let x = data(rows * k, seed);
            let w16: Vec<f16> = data(m * k, seed + 1).iter().map(|&v| f16::from_f32(v)).collect();
            let w32: Vec<f32> = w16.iter().map(|v| v.to_f32()).collect();
            let b = data(m, seed + 2);
            let mut want = vec![0.0; rows * m];
            Linear::f32(&w32, Some(&b), m, k).unwrap().forward(&x, &mut want, Epilogue::Gelu);
            let mut got = vec![0.0; rows * m];
            let half = Linear::f16(&w16, Some(&b), m, k).unwrap();
            half.forward(&x, &mut got, Epilogue::Gelu);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            proptest::prop_assert_eq!(bits(&got), bits(&want));
            // And its qkv-style row split too.
            let mut part = vec![0.0; rows];
            half.output_rows(m - 1, 1).forward(&x, &mut part, Epilogue::Gelu);
            for t in 0..rows {
                proptest::prop_assert_eq!(part[t].to_bits(), want[t * m + m - 1].to_bits());
            }
        }
    }

    #[test]
    fn output_rows_selects_a_slice_of_the_layer() {
        let (k, m) = (5, 6);
        let w = data(m * k, 7);
        let b = data(m, 8);
        let x = data(3 * k, 9);
        let full = Linear::f32(&w, Some(&b), m, k).unwrap();
        let mut all = vec![0.0; 3 * m];
        full.forward(&x, &mut all, Epilogue::Store);
        let part = full.output_rows(2, 3);
        let mut some = vec![0.0; 3 * 3];
        part.forward(&x, &mut some, Epilogue::Store);
        for t in 0..3 {
            assert_eq!(some[t * 3..t * 3 + 3], all[t * m + 2..t * m + 5]);
        }
    }

    #[test]
    fn strided_output_is_the_transpose() {
        let (rows, k, m) = (7, 10, 5);
        let (w, b, x) = (data(m * k, 1), data(m, 2), data(rows * k, 3));
        let lin = Linear::f32(&w, Some(&b), m, k).unwrap();
        let mut plain = vec![0.0; rows * m];
        lin.forward(&x, &mut plain, Epilogue::Store);
        // Rows 2.. of a [m, 1 + rows] transposed buffer, starting at column 1.
        let stride = 1 + rows;
        let mut t = vec![f32::NAN; m * stride];
        let strides = Strides {
            offset: 1,
            row: 1,
            col: stride,
        };
        lin.forward_strided(&x, &mut t, strides, Epilogue::Store);
        for r in 0..rows {
            for o in 0..m {
                assert_eq!(t[o * stride + 1 + r].to_bits(), plain[r * m + o].to_bits());
            }
        }
        assert!((0..m).all(|o| t[o * stride].is_nan()));
    }

    #[test]
    fn rejects_inconsistent_shapes() {
        let w = [0.0f32; 6];
        assert!(Linear::f32(&w, None, 2, 3).is_some());
        assert!(Linear::f32(&w, None, 3, 3).is_none());
        assert!(Linear::f32(&w, Some(&[0.0; 3]), 2, 3).is_none());
        assert!(Linear::f32(&[], None, 0, 0).is_none());
    }
}
