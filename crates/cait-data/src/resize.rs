//! Pillow-identical resampling of 8-bit images: `Image.resize(size, NEAREST | BILINEAR | BICUBIC)`.
//!
//! timm's eval transform resizes with torchvision `Resize`, which on a PIL image is Pillow's
//! `Image.resize`. This module reproduces Pillow's `src/libImaging/Resample.c` (BILINEAR, BICUBIC)
//! and `ImagingScaleAffine` in `Geometry.c` (NEAREST) bit for bit on 8-bit images ("L", "RGB"):
//!
//! - convolution filters are antialiased: when downscaling by `s > 1` the filter support is scaled
//!   by `s` (`precompute_coeffs`); bicubic is the Keys kernel with `a = -0.5`, support 2; bilinear the
//!   triangle, support 1;
//! - per output sample the window is `xmin = (int)(center - support + 0.5)` clamped to 0 and
//!   `xmax = (int)(center + support + 0.5)` clamped to the size, `center = (i + 0.5) * scale`; the
//!   f64 weights are normalized to sum 1 and then turned into fixed point with 22 fractional bits
//!   (rounded half away from zero);
//! - separable, horizontal pass first, then vertical; each pass accumulates in `i32` starting from
//!   `1 << 21` (rounding) and writes 8 bits (`>> 22`, clipped to 0..=255). A pass is skipped where
//!   that dimension is unchanged (`ImagingResampleInner`'s `need_horizontal` / `need_vertical`);
//!   an unchanged size is a copy;
//! - nearest maps output `i` to source `(int)x` with `x` starting at `scale / 2` and stepping by
//!   `scale = in / out` in f64, accumulated as Pillow does.
//!
//! RGBA / LA images are premultiplied by Pillow before a convolution resize; that is not done here
//! (every band is resampled on its own).

/// Resampling filter, as Pillow names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// `Image.NEAREST`.
    Nearest,
    /// `Image.BILINEAR` (triangle filter, antialiased).
    Bilinear,
    /// `Image.BICUBIC` (Keys cubic, `a = -0.5`, antialiased).
    Bicubic,
}

/// Fractional bits of Pillow's 8-bit fixed-point coefficients (`PRECISION_BITS = 32 - 8 - 2`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bilinear_filter(x: f64) -> f64 {
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 {
        // C: ((a + 2.0) * x - (a + 3.0)) * x * x + 1, evaluated left to right.
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Pillow's per-output-sample windows and fixed-point weights along one axis.
struct Coeffs {
    /// Maximum taps per output sample (row stride of `k`).
    ksize: usize,
    /// `(first source index, tap count)` per output sample.
    bounds: Vec<(usize, usize)>,
    /// Fixed-point weights, `ksize` per output sample.
    k: Vec<i32>,
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` for the whole axis (box `0..in_size`).
fn precompute_coeffs(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
    let (kernel, base_support): (fn(f64) -> f64, f64) = match filter {
        Filter::Bilinear => (bilinear_filter, 1.0),
        Filter::Bicubic => (bicubic_filter, 2.0),
        Filter::Nearest => unreachable!("nearest is not a convolution"),
    };
    // C: (double)(in1 - in0) / outSize with float box coordinates in0 = 0, in1 = in_size.
    let in0 = 0.0f32;
    let in1 = in_size as f32;
    let scale = (in1 - in0) as f64 / out_size as f64;
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = base_support * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 as f64 + (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero, as Rust's `as` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let count = (xmax - xmin).max(0) as usize;
        let mut ww = 0.0f64;
        for (x, wx) in w.iter_mut().enumerate().take(count) {
            let v = kernel((((x as i64 + xmin) as f64) - center + 0.5) * inv_filterscale);
            *wx = v;
            ww += v;
        }
        let row = &mut k[xx * ksize..(xx + 1) * ksize];
        for x in 0..count {
            let v = if ww != 0.0 { w[x] / ww } else { w[x] };
            let scaled = v * (1u32 << PRECISION_BITS) as f64;
            row[x] = if v < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        bounds.push((xmin as usize, count));
    }
    Coeffs { ksize, bounds, k }
}

#[inline]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal pass over source rows `rows`, giving `rows.len()` rows of `out_w` pixels.
fn horizontal(
    src: &[u8],
    width: usize,
    channels: usize,
    rows: std::ops::Range<usize>,
    out_w: usize,
    c: &Coeffs,
) -> Vec<u8> {
    let mut out = vec![0u8; rows.len() * out_w * channels];
    for (oy, y) in rows.enumerate() {
        let line = &src[y * width * channels..(y + 1) * width * channels];
        let dst = &mut out[oy * out_w * channels..(oy + 1) * out_w * channels];
        for xx in 0..out_w {
            let (xmin, count) = c.bounds[xx];
            let k = &c.k[xx * c.ksize..xx * c.ksize + count];
            for ch in 0..channels {
                let mut ss: i32 = 1 << (PRECISION_BITS - 1);
                for (x, &kx) in k.iter().enumerate() {
                    ss += line[(xmin + x) * channels + ch] as i32 * kx;
                }
                dst[xx * channels + ch] = clip8(ss);
            }
        }
    }
    out
}

/// Vertical pass; `row_offset` is the first source row held in `src` (Pillow's shifted bounds).
fn vertical(
    src: &[u8],
    width: usize,
    channels: usize,
    row_offset: usize,
    out_h: usize,
    c: &Coeffs,
) -> Vec<u8> {
    let stride = width * channels;
    let mut out = vec![0u8; out_h * stride];
    for yy in 0..out_h {
        let (ymin, count) = c.bounds[yy];
        let ymin = ymin - row_offset;
        let k = &c.k[yy * c.ksize..yy * c.ksize + count];
        let dst = &mut out[yy * stride..(yy + 1) * stride];
        for (i, d) in dst.iter_mut().enumerate() {
            let mut ss: i32 = 1 << (PRECISION_BITS - 1);
            for (y, &ky) in k.iter().enumerate() {
                ss += src[(ymin + y) * stride + i] as i32 * ky;
            }
            *d = clip8(ss);
        }
    }
    out
}

/// Pillow's NEAREST resize (`ImagingScaleAffine` with `a = [in_w / out_w, 0, 0, 0, in_h / out_h, 0]`).
fn nearest(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    let a0 = (width as f32) as f64 / out_w as f64;
    let a4 = (height as f32) as f64 / out_h as f64;
    // COORD(v) = v < 0 ? -1 : (int)v; positions accumulate (xo += a[0]) as in Pillow.
    let coord = |v: f64| if v < 0.0 { -1 } else { v as i64 };
    let mut xin = Vec::with_capacity(out_w);
    let mut xo = 0.0 + a0 * 0.5;
    for _ in 0..out_w {
        xin.push(coord(xo).clamp(0, width as i64 - 1) as usize);
        xo += a0;
    }
    let mut out = vec![0u8; out_w * out_h * channels];
    let mut yo = 0.0 + a4 * 0.5;
    for y in 0..out_h {
        let yi = coord(yo).clamp(0, height as i64 - 1) as usize;
        let line = &src[yi * width * channels..(yi + 1) * width * channels];
        let dst = &mut out[y * out_w * channels..(y + 1) * out_w * channels];
        for (x, &xi) in xin.iter().enumerate() {
            dst[x * channels..(x + 1) * channels]
                .copy_from_slice(&line[xi * channels..(xi + 1) * channels]);
        }
        yo += a4;
    }
    out
}

/// Resizes an interleaved 8-bit image (`channels` bands per pixel, rows top to bottom) from
/// `width x height` to `out_w x out_h` exactly as Pillow's `Image.resize((out_w, out_h), filter)`.
///
/// # Panics
/// If `src.len() != width * height * channels` or any size is 0.
pub fn resize(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Vec<u8> {
    assert_eq!(
        src.len(),
        width * height * channels,
        "buffer does not match its size"
    );
    assert!(
        width > 0 && height > 0 && channels > 0 && out_w > 0 && out_h > 0,
        "empty image"
    );
    if (out_w, out_h) == (width, height) {
        return src.to_vec();
    }
    if filter == Filter::Nearest {
        return nearest(src, width, height, channels, out_w, out_h);
    }
    let need_horizontal = out_w != width;
    let need_vertical = out_h != height;
    let vert = precompute_coeffs(height, out_h, filter);
    // Rows the vertical pass reads: only those go through the horizontal pass.
    let first = vert.bounds[0].0;
    let last = vert.bounds[out_h - 1].0 + vert.bounds[out_h - 1].1;
    let (tmp, tmp_w, offset) = if need_horizontal {
        let horiz = precompute_coeffs(width, out_w, filter);
        (
            horizontal(src, width, channels, first..last, out_w, &horiz),
            out_w,
            first,
        )
    } else {
        (src.to_vec(), width, 0)
    };
    if need_vertical {
        vertical(&tmp, tmp_w, channels, offset, out_h, &vert)
    } else {
        tmp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_kernel_values() {
        // Keys cubic with a = -0.5: 1 at 0, 0 at integers, -0.0625 at 1.5, 0.5625 at 0.5.
        assert_eq!(bicubic_filter(0.0), 1.0);
        assert_eq!(bicubic_filter(1.0), 0.0);
        assert_eq!(bicubic_filter(2.0), 0.0);
        assert_eq!(bicubic_filter(0.5), 0.5625);
        assert_eq!(bicubic_filter(-1.5), -0.0625);
    }

    /// Hand-checked: 4 -> 2 bilinear on one row. scale 2, support 2, ksize 5.
    /// Output 0: center 1.0, window xmin = (int)(1 - 2 + .5) = (int)(-0.5) = 0, xmax = (int)3.5 = 3;
    /// taps at x = 0, 1, 2: triangle((x - 1 + .5) / 2) = 0.75, 0.75, 0.25 -> / 1.75 = 3/7, 3/7, 1/7.
    /// Pixels [0, 70, 140, 210]: 0*3/7 + 70*3/7 + 140/7 = 50 exactly; fixed point:
    /// k = round(3/7 * 2^22) = 1797559, 1797559, round(1/7 * 2^22) = 599186;
    /// (2^21 + 70*1797559 + 140*599186) >> 22 = 50.
    /// Output 1: center 3.0, window 1..4 (clamped), taps 0.25, 0.75, 0.75 -> 1/7, 3/7, 3/7:
    /// 70/7 + 140*3/7 + 210*3/7 = 160.
    #[test]
    fn bilinear_downscale_by_two_hand_checked() {
        let c = precompute_coeffs(4, 2, Filter::Bilinear);
        assert_eq!(c.ksize, 5);
        assert_eq!(c.bounds, vec![(0, 3), (1, 3)]);
        assert_eq!(&c.k[..3], &[1797559, 1797559, 599186]);
        let out = resize(&[0, 70, 140, 210], 4, 1, 1, 2, 1, Filter::Bilinear);
        assert_eq!(out, vec![50, 160]);
    }

    /// Hand-checked bicubic upscale 2 -> 4 of [0, 255] (scale 0.5, support 2, no antialias):
    /// output 0 has center 0.25, window (int)(-1.25) = -1 -> 0 .. (int)2.75 = 2: taps at 0, 1 with
    /// distances 0.25, 1.25 -> 0.8671875, -0.0703125 (sum 0.796875); 255 * -0.0703125 / 0.796875 =
    /// -22.5 clips to 0. Output 1 (center 0.75): distances 0.25, 0.75 -> 0.8671875, 0.2265625
    /// (sum 1.09375) -> 255 * 0.2265625 / 1.09375 = 52.82 -> 53. Symmetric for outputs 2, 3
    /// (202, 255). Pillow 13: `Image.fromarray(np.uint8([[0, 255]])).resize((4, 1), BICUBIC)`.
    #[test]
    fn bicubic_upscale_hand_checked() {
        let out = resize(&[0, 255], 2, 1, 1, 4, 1, Filter::Bicubic);
        assert_eq!(out, vec![0, 53, 202, 255]);
    }

    #[test]
    fn unchanged_axis_is_not_filtered_and_same_size_copies() {
        // Width unchanged: only the vertical pass runs, so every column is resampled on its own.
        let src: Vec<u8> = (0..3 * 4).map(|i| (i * 20) as u8).collect();
        let out = resize(&src, 3, 4, 1, 3, 2, Filter::Bilinear);
        let col: Vec<u8> = (0..4).map(|y| src[y * 3 + 1]).collect();
        let col_out = resize(&col, 1, 4, 1, 1, 2, Filter::Bilinear);
        assert_eq!(vec![out[1], out[4]], col_out);
        assert_eq!(resize(&src, 3, 4, 1, 3, 4, Filter::Bicubic), src);
    }

    #[test]
    fn nearest_picks_pillow_centers() {
        // 5 -> 2: scale 2.5, positions 1.25, 3.75 -> source 1, 3.
        let out = resize(&[10, 11, 12, 13, 14], 5, 1, 1, 2, 1, Filter::Nearest);
        assert_eq!(out, vec![11, 13]);
        // RGB interleaving kept.
        let out = resize(&[1, 2, 3, 4, 5, 6], 2, 1, 3, 1, 1, Filter::Nearest);
        assert_eq!(out, vec![4, 5, 6]);
    }
}
