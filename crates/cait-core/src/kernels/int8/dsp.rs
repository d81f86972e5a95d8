//! The Armv7E-M DSP-extension linear kernel (Cortex-M4/M7/M33 with DSP), behind the `arm-dsp`
//! feature: four int8 values are loaded as one word, `SXTB16` unpacks them into two pairs of
//! sign-extended halfwords (bytes 0, 2 and, rotated, 1, 3), and `SMLAD` multiplies both halfword
//! pairs and adds them to the accumulator in one instruction — two MACs per `SMLAD`, as CMSIS-NN's
//! s8 kernels do. A 2 × 2 register tile reuses each unpacked word twice.
//!
//! The sums are the exact `i32` sums of [`super::generic`] (integer addition is associative and
//! no sum can overflow, see [`super::MAX_REDUCTION`]), so the logits stay bit-identical to every
//! other target; the firmware's `kernel_check` binary checks this kernel against the reference on
//! the device itself.
//!
//! This is the crate's only `unsafe`: three register-only instructions wrapped in safe functions.
#![allow(unsafe_code)]

use core::arch::asm;

/// Bytes 0 and 2 of `x`, each sign-extended to a halfword: `[x0 as i16, x2 as i16]`.
#[inline(always)]
fn sxtb16(x: u32) -> u32 {
    let r: u32;
    // SAFETY: a register-to-register instruction of Armv7E-M; no memory, no stack, no flags.
    unsafe {
        asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x,
             options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// Bytes 1 and 3 of `x`, each sign-extended to a halfword: `[x1 as i16, x3 as i16]`.
#[inline(always)]
fn sxtb16_ror8(x: u32) -> u32 {
    let r: u32;
    // SAFETY: as `sxtb16`.
    unsafe {
        asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x,
             options(pure, nomem, nostack, preserves_flags));
    }
    r
}

/// `acc + a.lo·b.lo + a.hi·b.hi` over signed halfwords (SMLAD).
#[inline(always)]
fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    let r: i32;
    // SAFETY: register-only; SMLAD may set the sticky Q flag on overflow, which nothing here (or
    // compiled code) reads, and our sums never overflow.
    unsafe {
        asm!("smlad {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b,
             acc = in(reg) acc, options(pure, nomem, nostack));
    }
    r
}

#[inline(always)]
fn word(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// See [`super::linear`].
pub(crate) fn linear(x: &[i8], w: &[i8], k: usize, emit: &mut impl FnMut(usize, usize, i32)) {
    if k == 0 {
        return;
    }
    let x: &[u8] = bytemuck::cast_slice(x);
    let w: &[u8] = bytemuck::cast_slice(w);
    let (rows, outs) = (x.len() / k, w.len() / k);
    let mut t = 0;
    while t + 2 <= rows {
        let (x0, x1) = (row(x, k, t), row(x, k, t + 1));
        let mut o = 0;
        while o + 2 <= outs {
            let [a00, a01, a10, a11] = tile(x0, x1, row(w, k, o), row(w, k, o + 1));
            emit(t, o, a00);
            emit(t, o + 1, a01);
            emit(t + 1, o, a10);
            emit(t + 1, o + 1, a11);
            o += 2;
        }
        if o < outs {
            emit(t, o, dot(x0, row(w, k, o)));
            emit(t + 1, o, dot(x1, row(w, k, o)));
        }
        t += 2;
    }
    if t < rows {
        let x0 = row(x, k, t);
        for o in 0..outs {
            emit(t, o, dot(x0, row(w, k, o)));
        }
    }
}

/// Row `i` of a `k`-wide matrix.
#[inline(always)]
fn row(m: &[u8], k: usize, i: usize) -> &[u8] {
    &m[i * k..(i + 1) * k]
}

/// The four dot products of rows `x0, x1` with rows `w0, w1` (all the same length).
#[inline(always)]
fn tile(x0: &[u8], x1: &[u8], w0: &[u8], w1: &[u8]) -> [i32; 4] {
    let n = x0.len() / 4 * 4;
    let (mut a00, mut a01, mut a10, mut a11) = (0i32, 0i32, 0i32, 0i32);
    let words = x0[..n]
        .chunks_exact(4)
        .zip(x1[..n].chunks_exact(4))
        .zip(w0[..n].chunks_exact(4).zip(w1[..n].chunks_exact(4)));
    for ((c0, c1), (d0, d1)) in words {
        let (p0, p1, q0, q1) = (word(c0), word(c1), word(d0), word(d1));
        let (p0e, p0o) = (sxtb16(p0), sxtb16_ror8(p0));
        let (p1e, p1o) = (sxtb16(p1), sxtb16_ror8(p1));
        let (q0e, q0o) = (sxtb16(q0), sxtb16_ror8(q0));
        let (q1e, q1o) = (sxtb16(q1), sxtb16_ror8(q1));
        a00 = smlad(p0o, q0o, smlad(p0e, q0e, a00));
        a01 = smlad(p0o, q1o, smlad(p0e, q1e, a01));
        a10 = smlad(p1o, q0o, smlad(p1e, q0e, a10));
        a11 = smlad(p1o, q1o, smlad(p1e, q1e, a11));
    }
    for j in n..x0.len() {
        let (p0, p1) = (i32::from(x0[j] as i8), i32::from(x1[j] as i8));
        let (q0, q1) = (i32::from(w0[j] as i8), i32::from(w1[j] as i8));
        a00 += p0 * q0;
        a01 += p0 * q1;
        a10 += p1 * q0;
        a11 += p1 * q1;
    }
    [a00, a01, a10, a11]
}

/// One dot product of two rows of the same length.
#[inline(always)]
fn dot(x: &[u8], w: &[u8]) -> i32 {
    let n = x.len() / 4 * 4;
    let mut acc = 0i32;
    for (c, d) in x[..n].chunks_exact(4).zip(w[..n].chunks_exact(4)) {
        let (p, q) = (word(c), word(d));
        acc = smlad(
            sxtb16_ror8(p),
            sxtb16_ror8(q),
            smlad(sxtb16(p), sxtb16(q), acc),
        );
    }
    for j in n..x.len() {
        acc += i32::from(x[j] as i8) * i32::from(w[j] as i8);
    }
    acc
}
