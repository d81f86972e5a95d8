//! What a forward pass reads: a normalized f32 image, or 8-bit pixels as a camera delivers them.

use cait_pack::Preprocess;

use crate::blocks::Dims;
use crate::kernels::int8::ActQuant;

/// How the channels of an 8-bit frame are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PixelLayout {
    /// Planar: every pixel of channel 0, then channel 1, … (`[C, H, W]`).
    Chw,
    /// Interleaved, as most cameras and image decoders deliver it (`[H, W, C]`: RGBRGB…).
    Hwc,
}

/// One input image at the model's size (`[C, H, W]` = the pack's `in_chans` and `img_size`).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Input<'i> {
    /// `C·H·W` values, `[C, H, W]` row-major, already normalized (what timm's transform gives).
    Normalized(&'i [f32]),
    /// `C·H·W` 8-bit pixels in `layout`, not normalized: the engine applies the pack's mean and
    /// std itself ([`Preprocess::normalize`], the formula host preprocessing uses, so the logits
    /// equal those of the normalized image bit for bit) while the patch embedding reads them; no
    /// f32 copy of the image is made. Resizing and cropping are the caller's (the camera's).
    Pixels {
        /// The pixels.
        data: &'i [u8],
        /// Their order.
        layout: PixelLayout,
    },
}

impl<'i> Input<'i> {
    /// Values in the input (bytes for [`Input::Pixels`]).
    pub fn len(&self) -> usize {
        match self {
            Input::Normalized(x) => x.len(),
            Input::Pixels { data, .. } => data.len(),
        }
    }

    /// Whether the input holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An [`Input`] of checked length, read a patch row at a time by the patch embeddings.
pub(crate) struct Image<'i, 'p> {
    input: Input<'i>,
    pre: &'p Preprocess,
    /// `[C, H, W]`.
    shape: [usize; 3],
    /// The image row the input starts at (HWC pixels only; 0 otherwise).
    first_row: usize,
}

impl<'i, 'p> Image<'i, 'p> {
    /// `input` must hold `C·H·W` values (checked by the caller).
    pub(crate) fn new(input: Input<'i>, pre: &'p Preprocess, shape: [usize; 3]) -> Self {
        Image {
            input,
            pre,
            shape,
            first_row: 0,
        }
    }

    /// An image whose HWC pixels `input` start at image row `first_row` (rows above it are gone:
    /// the patch embedding of a frame in the workspace, see `model::embed_frame`).
    pub(crate) fn rows_from(
        input: Input<'i>,
        pre: &'p Preprocess,
        shape: [usize; 3],
        first_row: usize,
    ) -> Self {
        Image {
            input,
            pre,
            shape,
            first_row,
        }
    }

    /// Index of `(c, y, x)` in the input's own layout.
    #[inline]
    fn index(&self, layout: PixelLayout, c: usize, y: usize, x: usize) -> usize {
        let [chans, h, w] = self.shape;
        match layout {
            PixelLayout::Chw => (c * h + y) * w + x,
            PixelLayout::Hwc => ((y - self.first_row) * w + x) * chans + c,
        }
    }

    /// Patches `first..` of the image into `cols`, one `C·p²` column each in conv weight order
    /// (channel, kernel row, kernel column): as many as `cols` holds whole. `row(image, c, y, x,
    /// dst)` reads one kernel row ([`row`](Self::row), or [`row_quantized`](Self::row_quantized)).
    #[inline]
    pub(crate) fn im2col<T>(
        &self,
        dims: &Dims,
        first: usize,
        cols: &mut [T],
        row: impl Fn(&Self, usize, usize, usize, &mut [T]),
    ) {
        let p = dims.patch;
        for (j, col) in cols.chunks_exact_mut(dims.patch_len).enumerate() {
            let idx = first + j;
            let (gy, gx) = (idx / dims.grid_cols, idx % dims.grid_cols);
            for (r, dst) in col.chunks_exact_mut(p).enumerate() {
                let (c, ky) = (r / p, r % p);
                row(self, c, gy * p + ky, gx * p, dst);
            }
        }
    }

    /// The normalized values of channel `c`, row `y`, columns `x..x + out.len()`.
    #[inline]
    pub(crate) fn row(&self, c: usize, y: usize, x: usize, out: &mut [f32]) {
        match self.input {
            Input::Normalized(img) => {
                let start = self.index(PixelLayout::Chw, c, y, x);
                out.copy_from_slice(&img[start..start + out.len()]);
            }
            Input::Pixels { data, layout } => self.pixels(data, layout, [c, y, x], out),
        }
    }

    /// [`row`](Self::row), quantized with `q`.
    #[inline]
    pub(crate) fn row_quantized(&self, c: usize, y: usize, x: usize, q: &ActQuant, out: &mut [i8]) {
        match self.input {
            Input::Normalized(img) => {
                let start = self.index(PixelLayout::Chw, c, y, x);
                q.quantize_slice(&img[start..start + out.len()], out);
            }
            Input::Pixels { data, layout } => {
                self.pixels_quantized(data, layout, [c, y, x], q, out)
            }
        }
    }

    // The 8-bit paths stay out of line: inlined beside the normalized path, their code changed how
    // LLVM compiled the int8 engine around it (+0.12% instructions on the bundled model).
    #[inline(never)]
    fn pixels(&self, data: &[u8], layout: PixelLayout, [c, y, x]: [usize; 3], out: &mut [f32]) {
        for (k, o) in out.iter_mut().enumerate() {
            *o = self.pre.normalize(c, data[self.index(layout, c, y, x + k)]);
        }
    }

    #[inline(never)]
    fn pixels_quantized(
        &self,
        data: &[u8],
        layout: PixelLayout,
        [c, y, x]: [usize; 3],
        q: &ActQuant,
        out: &mut [i8],
    ) {
        for (k, o) in out.iter_mut().enumerate() {
            *o = q.quantize(self.pre.normalize(c, data[self.index(layout, c, y, x + k)]));
        }
    }
}
