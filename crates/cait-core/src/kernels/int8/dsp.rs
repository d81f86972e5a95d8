//! The Armv7E-M DSP-extension matmul kernel (Cortex-M4/M7/M33 with DSP), behind the `arm-dsp`
//! feature: four int8 values are loaded as one word, `SXTB16` unpacks them into two pairs of
//! sign-extended halfwords (bytes 0, 2 and, rotated, 1, 3), and `SMLAD` multiplies both halfword
//! pairs and adds them to the accumulator in one instruction — two MACs per `SMLAD`, as CMSIS-NN's
//! s8 kernels do.
//!
//! The inner loops are two small assembly routines, because they need all fourteen general
//! registers and the compiler, short of registers, reloaded pointers from the stack (28
//! instructions per 16 MACs where 22 suffice):
//! - [`tile_2x2`]: two rows of `x` against two rows of `w`, each loaded word unpacked once and used
//!   twice: 4 loads, 8 `SXTB16`, 8 `SMLAD` and the loop's 2 per 16 MACs (1.375 instructions/MAC);
//! - [`tile_1x4`]: one row against four (a single query row, the class token): 5 loads, 10
//!   `SXTB16`, 8 `SMLAD`, 2 per 16 MACs (1.56/MAC).
//!
//! Rust handles the rest — the `k mod 4` tail, odd rows and columns — with the same instructions
//! as register-only `asm!`. The sums are the exact `i32` sums of [`super::generic`] (integer
//! addition is associative and no sum can overflow, see [`super::MAX_REDUCTION`]), so the logits
//! stay bit-identical to every other target; the firmware's `kernel_check` binary checks this
//! kernel against the reference on the device itself.
//!
//! This file is the crate's only `unsafe`.
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

use super::Rows;

// Both routines: AAPCS, r0 = first row of x, r1 = first row of w, r2 = words (k / 4, at least 1),
// r3 = row stride in bytes (x and w alike for 2×2; w's for 1×4), [sp] = out (4 × i32). They read
// exactly the rows' first 4·words bytes (unaligned word loads, which Armv7-M allows), write `out`
// and nothing else.
core::arch::global_asm!(
    ".syntax unified",
    ".thumb",
    ".section .text.cait_smlad_2x2,\"ax\",%progbits",
    ".global cait_smlad_2x2",
    ".type cait_smlad_2x2,%function",
    ".thumb_func",
    ".p2align 2",
    "cait_smlad_2x2:",
    "    push    {{r4-r11, lr}}",
    "    ldr     r12, [sp, #36]",
    "    push    {{r12}}",
    "    subs    r3, r3, #4", // rows 1 are read after the post-increment
    "    movs    r4, #0",
    "    movs    r5, #0",
    "    movs    r6, #0",
    "    movs    r7, #0",
    "1:",
    "    ldr     r11, [r1], #4", // w0
    "    ldr     r12, [r1, r3]", // w1
    "    ldr     lr, [r0], #4",  // x0
    "    sxtb16  r8, r11",
    "    sxtb16  r11, r11, ror #8",
    "    sxtb16  r9, r12",
    "    sxtb16  r12, r12, ror #8",
    "    sxtb16  r10, lr",
    "    sxtb16  lr, lr, ror #8",
    "    smlad   r4, r10, r8, r4", // x0·w0
    "    smlad   r4, lr, r11, r4",
    "    smlad   r5, r10, r9, r5", // x0·w1
    "    smlad   r5, lr, r12, r5",
    "    ldr     lr, [r0, r3]", // x1
    "    sxtb16  r10, lr",
    "    sxtb16  lr, lr, ror #8",
    "    smlad   r6, r10, r8, r6", // x1·w0
    "    smlad   r6, lr, r11, r6",
    "    smlad   r7, r10, r9, r7", // x1·w1
    "    smlad   r7, lr, r12, r7",
    "    subs    r2, r2, #1",
    "    bne     1b",
    "    pop     {{r12}}",
    "    stm     r12, {{r4-r7}}",
    "    pop     {{r4-r11, pc}}",
    ".size cait_smlad_2x2, . - cait_smlad_2x2",
    "",
    ".section .text.cait_smlad_1x4,\"ax\",%progbits",
    ".global cait_smlad_1x4",
    ".type cait_smlad_1x4,%function",
    ".thumb_func",
    ".p2align 2",
    "cait_smlad_1x4:",
    "    push    {{r4-r11, lr}}",
    "    ldr     r12, [sp, #36]",
    "    push    {{r12}}",
    "    add     r8, r1, r3, lsl #1", // w2
    "    subs    r3, r3, #4",
    "    movs    r4, #0",
    "    movs    r5, #0",
    "    movs    r6, #0",
    "    movs    r7, #0",
    "1:",
    "    ldr     r10, [r0], #4", // x
    "    sxtb16  r9, r10",
    "    sxtb16  r10, r10, ror #8",
    "    ldr     r11, [r1], #4", // w0
    "    sxtb16  r12, r11",
    "    sxtb16  r11, r11, ror #8",
    "    smlad   r4, r9, r12, r4",
    "    smlad   r4, r10, r11, r4",
    "    ldr     r11, [r1, r3]", // w1
    "    sxtb16  r12, r11",
    "    sxtb16  r11, r11, ror #8",
    "    smlad   r5, r9, r12, r5",
    "    smlad   r5, r10, r11, r5",
    "    ldr     r11, [r8], #4", // w2
    "    sxtb16  r12, r11",
    "    sxtb16  r11, r11, ror #8",
    "    smlad   r6, r9, r12, r6",
    "    smlad   r6, r10, r11, r6",
    "    ldr     r11, [r8, r3]", // w3
    "    sxtb16  r12, r11",
    "    sxtb16  r11, r11, ror #8",
    "    smlad   r7, r9, r12, r7",
    "    smlad   r7, r10, r11, r7",
    "    subs    r2, r2, #1",
    "    bne     1b",
    "    pop     {{r12}}",
    "    stm     r12, {{r4-r7}}",
    "    pop     {{r4-r11, pc}}",
    ".size cait_smlad_1x4, . - cait_smlad_1x4",
);

unsafe extern "C" {
    fn cait_smlad_2x2(x: *const i8, w: *const i8, words: usize, stride: usize, out: *mut i32);
    fn cait_smlad_1x4(x: *const i8, w: *const i8, words: usize, stride: usize, out: *mut i32);
}

/// The sums of the first `4·words` values of rows `x0, x1` (`stride` apart) with rows `w0, w1`
/// (`stride` apart): `[x0·w0, x0·w1, x1·w0, x1·w1]`.
#[inline(always)]
fn tile_2x2(x: Rows<'_>, t: usize, w: Rows<'_>, o: usize, words: usize) -> [i32; 4] {
    let mut out = [0i32; 4];
    // Rows t + 1 and o + 1 exist and are whole (Rows only holds whole rows), `stride` after rows
    // t and o, and every row is at least 4·words long: the routine's reads are in bounds.
    let (x0, x1, w0, w1) = (x.row(t), x.row(t + 1), w.row(o), w.row(o + 1));
    debug_assert!(x.stride() == w.stride() && 4 * words <= x0.len() && words > 0);
    debug_assert!(x1.as_ptr() == x0.as_ptr().wrapping_add(x.stride()));
    debug_assert!(w1.as_ptr() == w0.as_ptr().wrapping_add(w.stride()));
    // SAFETY: see above; the routine writes the 4 words of `out` and saves what AAPCS requires.
    unsafe {
        cait_smlad_2x2(
            x0.as_ptr(),
            w0.as_ptr(),
            words,
            x.stride(),
            out.as_mut_ptr(),
        )
    };
    let _ = (x1, w1);
    out
}

/// The sums of the first `4·words` values of row `x0` with rows `w0..w3` (`w.stride()` apart).
#[inline(always)]
fn tile_1x4(x0: &[i8], w: Rows<'_>, o: usize, words: usize) -> [i32; 4] {
    let mut out = [0i32; 4];
    // Rows o..o + 4 exist and are whole, `stride` apart; x0 and each row hold ≥ 4·words values.
    let (w0, w3) = (w.row(o), w.row(o + 3));
    debug_assert!(4 * words <= x0.len() && words > 0);
    debug_assert!(w3.as_ptr() == w0.as_ptr().wrapping_add(3 * w.stride()));
    // SAFETY: see above.
    unsafe {
        cait_smlad_1x4(
            x0.as_ptr(),
            w0.as_ptr(),
            words,
            w.stride(),
            out.as_mut_ptr(),
        )
    };
    let _ = w3;
    out
}

/// `Σ_{j ≥ from} a[j] · b[j]` over the tail the word loops leave.
#[inline(always)]
fn tail(a: &[i8], b: &[i8], from: usize) -> i32 {
    let mut acc = 0i32;
    for (&p, &q) in a[from..].iter().zip(&b[from..]) {
        acc += i32::from(p) * i32::from(q);
    }
    acc
}

/// See [`super::matmul`].
pub(crate) fn matmul(x: Rows<'_>, w: Rows<'_>, emit: &mut impl FnMut(usize, usize, i32)) {
    let k = x.k();
    if k == 0 || w.k() != k {
        return;
    }
    let words = k / 4;
    let n = 4 * words;
    let (rows, outs) = (x.count(), w.count());
    let mut t = 0;
    // Row pairs against column pairs where both operands have the same row stride (linear layers).
    if words > 0 && x.stride() == w.stride() {
        while t + 2 <= rows {
            let (x0, x1) = (x.row(t), x.row(t + 1));
            let mut o = 0;
            while o + 2 <= outs {
                let [mut a00, mut a01, mut a10, mut a11] = tile_2x2(x, t, w, o, words);
                if n < k {
                    let (w0, w1) = (w.row(o), w.row(o + 1));
                    a00 += tail(x0, w0, n);
                    a01 += tail(x0, w1, n);
                    a10 += tail(x1, w0, n);
                    a11 += tail(x1, w1, n);
                }
                emit(t, o, a00);
                emit(t, o + 1, a01);
                emit(t + 1, o, a10);
                emit(t + 1, o + 1, a11);
                o += 2;
            }
            if o < outs {
                let w0 = w.row(o);
                emit(t, o, dot(x0, w0));
                emit(t + 1, o, dot(x1, w0));
            }
            t += 2;
        }
    }
    // Single rows: four columns at a time.
    while t < rows {
        let x0 = x.row(t);
        let mut o = 0;
        if words > 0 {
            while o + 4 <= outs {
                let mut acc = tile_1x4(x0, w, o, words);
                if n < k {
                    for (c, a) in acc.iter_mut().enumerate() {
                        *a += tail(x0, w.row(o + c), n);
                    }
                }
                for (c, a) in acc.into_iter().enumerate() {
                    emit(t, o + c, a);
                }
                o += 4;
            }
        }
        while o < outs {
            emit(t, o, dot(x0, w.row(o)));
            o += 1;
        }
        t += 1;
    }
}

/// One dot product of two rows of the same length.
#[inline(always)]
fn dot(x: &[i8], w: &[i8]) -> i32 {
    let (x, w): (&[u8], &[u8]) = (bytemuck::cast_slice(x), bytemuck::cast_slice(w));
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
