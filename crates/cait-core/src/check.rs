//! Seeded, allocation-free checks that run the same way on a host and on a device: the case
//! generators and comparisons that the host's tests and the firmware's `kernel_check` and
//! `fixed_check` binaries share, so a kernel variant that only runs on a device (the Cortex-M DSP
//! one) is held to exactly the cases the host variants are.

use crate::fixed::{self, Multiplier, gelu, layer_norm, softmax};
use crate::int8_kernels::{Rows, matmul_reference};

/// SplitMix64: a tiny, well-mixed seeded generator.
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`; 0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.next_u64().checked_rem(n as u64).unwrap_or(0) as usize
    }

    /// An `i32` whose magnitude is spread over every scale: the full range shifted right by 0–31.
    fn spread_i32(&mut self) -> i32 {
        let v = self.next_u64();
        (v as i32) >> (v >> 59)
    }

    /// A valid [`Multiplier`]: any mantissa sign and size, any shift.
    fn multiplier(&mut self, shifts: core::ops::RangeInclusive<u8>) -> Multiplier {
        let v = self.next_u64();
        let m = ((1u32 << 30) | (v as u32 & ((1 << 30) - 1))) as i32;
        let m = if v >> 63 == 1 { -m } else { m };
        let span = (*shifts.end() - *shifts.start()) as u64 + 1;
        let shift = *shifts.start() + ((v >> 32) % span) as u8;
        Multiplier::new(m, shift).unwrap_or(Multiplier::ZERO)
    }
}

/// FNV-1a over bytes.
#[derive(Clone, Copy, Debug)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    /// Folds `bytes` in.
    pub fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The digest so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// Most rows of `x` in an [`int8_matmul_case`]: every remainder of the kernels' 2×2 and 1×4 tiles.
pub const MATMUL_MAX_ROWS: usize = 11;
/// Most rows of `w` (outputs) in an [`int8_matmul_case`].
pub const MATMUL_MAX_OUTS: usize = 11;
/// Longest row in an [`int8_matmul_case`]: every remainder of the 4- and 16-wide inner loops.
pub const MATMUL_MAX_K: usize = 79;
/// Largest gap between rows beyond `k` (rows `k + pad` apart: a column block of a wider matrix).
pub const MATMUL_MAX_PAD: usize = 8;

/// The shape of one [`int8_matmul_case`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulCase {
    /// Rows of `x`.
    pub rows: usize,
    /// Rows of `w`.
    pub outs: usize,
    /// Values per row.
    pub k: usize,
    /// Distance between rows of `x` (`k` when packed).
    pub x_stride: usize,
    /// Distance between rows of `w`.
    pub w_stride: usize,
    /// Every value -128 or 127: the largest products and sums, where sign extension matters most.
    pub extreme: bool,
}

impl MatmulCase {
    /// Multiply-accumulates of the case.
    pub fn macs(&self) -> usize {
        self.rows * self.outs * self.k
    }
}

/// An int8 matmul kernel under test: `kernel(x, w, emit)` as [`crate::int8_kernels::matmul`].
pub type MatmulKernel<'k> = &'k dyn Fn(Rows<'_>, Rows<'_>, &mut dyn FnMut(usize, usize, i32));

/// One seeded int8 matmul case — shape, strides and values from `seed`: a third of the cases
/// packed rows (linear layers), a third with one common stride (the 2×2 tile on rows a stride
/// apart), a third with different strides (attention heads); one in ten with only the values
/// -128 and 127 — run through `kernel` and through the plain reference. `Ok` when `kernel`
/// emitted every `(t, o)` once, with the reference's sum; `Err` otherwise. Either way, the case.
pub fn int8_matmul_case(seed: u64, kernel: MatmulKernel<'_>) -> Result<MatmulCase, MatmulCase> {
    const STRIDE: usize = MATMUL_MAX_K + MATMUL_MAX_PAD;
    let mut rng = SplitMix(seed);
    let (rows, outs, k) = (
        1 + rng.below(MATMUL_MAX_ROWS),
        1 + rng.below(MATMUL_MAX_OUTS),
        1 + rng.below(MATMUL_MAX_K),
    );
    let (x_pad, w_pad) = match rng.below(3) {
        0 => (0, 0),
        1 => {
            let p = rng.below(MATMUL_MAX_PAD + 1);
            (p, p)
        }
        _ => (rng.below(MATMUL_MAX_PAD + 1), rng.below(MATMUL_MAX_PAD + 1)),
    };
    let extreme = rng.below(10) == 0;
    let case = MatmulCase {
        rows,
        outs,
        k,
        x_stride: k + x_pad,
        w_stride: k + w_pad,
        extreme,
    };
    let mut x = [0i8; MATMUL_MAX_ROWS * STRIDE];
    let mut w = [0i8; MATMUL_MAX_OUTS * STRIDE];
    let x = &mut x[..rows * case.x_stride];
    let w = &mut w[..outs * case.w_stride];
    for v in x.iter_mut().chain(w.iter_mut()) {
        let r = rng.next_u64() as u8;
        *v = match (extreme, r & 1) {
            (true, 0) => -128,
            (true, _) => 127,
            (false, _) => r as i8,
        };
    }
    let x = Rows::strided(x, k, case.x_stride, rows);
    let w = Rows::strided(w, k, case.w_stride, outs);
    let mut want = [[0i32; MATMUL_MAX_OUTS]; MATMUL_MAX_ROWS];
    let mut got = [[0i32; MATMUL_MAX_OUTS]; MATMUL_MAX_ROWS];
    let mut seen = [[0u8; MATMUL_MAX_OUTS]; MATMUL_MAX_ROWS];
    matmul_reference(x, w, &mut |t, o, s| want[t][o] = s);
    let mut stray = false;
    kernel(
        x,
        w,
        &mut |t, o, s| match (got.get_mut(t), seen.get_mut(t)) {
            (Some(g), Some(n)) if o < outs => {
                g[o] = s;
                n[o] = n[o].saturating_add(1);
            }
            _ => stray = true,
        },
    );
    let ok = x.count() == rows
        && w.count() == outs
        && !stray
        && (0..rows)
            .all(|t| seen[t][..outs].iter().all(|&n| n == 1) && got[t][..outs] == want[t][..outs]);
    if ok { Ok(case) } else { Err(case) }
}

/// Longest row the fixed-point check uses (stack buffers on the device).
const ROW: usize = 64;

/// Runs every integer-only kernel of [`fixed`] on `cases` seeded random cases — multipliers of
/// every sign and shift on the full `i32` range, square roots and exponentials over their whole
/// input ranges, softmax and LayerNorm rows of 1 to 64 values at every magnitude, GELU tables —
/// and returns a digest of every output. Integer arithmetic is exact, so every target must
/// print the same digest for the same seed and count.
pub fn fixed_kernels_digest(seed: u64, cases: u32) -> u64 {
    let mut rng = SplitMix(seed);
    let mut d = Digest::default();
    let mut x = [0i32; ROW];
    let mut probs = [0u32; ROW];
    let mut gains = [Multiplier::ZERO; ROW];
    let mut bias = [0i32; ROW];
    let mut out = [0i8; ROW];
    let mut table = [0i8; 256];
    for _ in 0..cases {
        let m = rng.multiplier(1..=62);
        let v = rng.spread_i32();
        d.bytes(&m.apply(v).to_le_bytes());
        let wide = (rng.next_u64() as i64) >> 29;
        d.bytes(&m.apply_wide(wide).to_le_bytes());
        let r = rng.next_u64() >> (rng.next_u64() >> 58);
        d.bytes(&fixed::isqrt(r).to_le_bytes());
        let y = -((rng.next_u64() % (34 << fixed::EXP2_FRAC_BITS)) as i32);
        d.bytes(&fixed::exp2_neg(y).to_le_bytes());

        let n = 1 + rng.below(ROW);
        let shift = (rng.next_u64() >> 59) as u32;
        for v in &mut x[..n] {
            *v = rng.spread_i32() >> shift;
        }
        // Softmax multipliers from scales of about 2^-20 to 2^2 per unit.
        let to_exp2 = rng.multiplier(7..=31);
        softmax::softmax(&x[..n], to_exp2, &mut probs[..n]);
        probs[..n].iter().for_each(|p| d.bytes(&p.to_le_bytes()));

        for (g, b) in gains[..n].iter_mut().zip(&mut bias[..n]) {
            *g = rng.multiplier(20..=40);
            *b = rng.spread_i32() >> 6;
        }
        let eps = rng.next_u64() >> (rng.next_u64() >> 58);
        let affine = layer_norm::Affine {
            gain: &gains[..n],
            bias: &bias[..n],
        };
        layer_norm::layer_norm(&x[..n], eps, affine, &mut out[..n]);
        d.bytes(bytemuck::cast_slice(&out[..n]));

        for t in table.iter_mut() {
            *t = rng.next_u64() as i8;
        }
        gelu::apply(&table, &mut out[..n]);
        d.bytes(bytemuck::cast_slice(&out[..n]));
    }
    d.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_kernel_fails_its_case() {
        let reference: MatmulKernel<'_> =
            &|x, w, e| matmul_reference(x, w, &mut |t, o, s| e(t, o, s));
        let off_by_one: MatmulKernel<'_> = &|x, w, e| {
            matmul_reference(x, w, &mut |t, o, s| e(t, o, s + (t == 1 && o == 0) as i32))
        };
        let twice: MatmulKernel<'_> = &|x, w, e| {
            matmul_reference(x, w, &mut |t, o, s| e(t, o, s));
            e(0, 0, 0);
        };
        let mut failed = 0;
        for seed in 0..200 {
            let case = int8_matmul_case(seed, reference).expect("the reference passes");
            assert_eq!(int8_matmul_case(seed, off_by_one).is_err(), case.rows > 1);
            failed += int8_matmul_case(seed, twice).is_err() as u32;
        }
        assert_eq!(failed, 200, "an output emitted twice always fails");
    }

    #[test]
    fn the_digest_depends_on_every_case() {
        let a = fixed_kernels_digest(1, 50);
        assert_eq!(a, fixed_kernels_digest(1, 50), "deterministic");
        assert_ne!(a, fixed_kernels_digest(2, 50));
        assert_ne!(a, fixed_kernels_digest(1, 49));
    }
}
