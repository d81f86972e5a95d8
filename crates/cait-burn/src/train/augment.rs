//! Training augmentation on normalized CHW images: random horizontal flip and a random crop from
//! the image padded on every side (padding is the normalized value of a black pixel, as when
//! torchvision pads before normalizing).

use crate::rng::Rng;

/// Augmentation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Augment {
    /// Probability of a horizontal flip.
    pub hflip: f64,
    /// Pixels of padding on each side before the random crop back to the input size (0: no crop).
    pub crop_padding: usize,
    /// The padding value per channel (normalized black: `-mean / std`).
    pub fill: Vec<f32>,
}

impl Augment {
    /// Writes an augmented copy of `src` ([C, H, W]) into `dst`, drawing from `rng`.
    pub fn apply(&self, src: &[f32], dst: &mut [f32], shape: [usize; 3], rng: &mut Rng) {
        let [c, h, w] = shape;
        let flip = self.hflip > 0.0 && rng.uniform() < self.hflip;
        let p = self.crop_padding as isize;
        let (dy, dx) = if p > 0 {
            let span = 2 * self.crop_padding + 1;
            (rng.below(span) as isize - p, rng.below(span) as isize - p)
        } else {
            (0, 0)
        };
        for ch in 0..c {
            let fill = self.fill.get(ch).copied().unwrap_or(0.0);
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            let out = &mut dst[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                let sy = y as isize + dy;
                for x in 0..w {
                    // Crop offset first, then flip the crop.
                    let xx = if flip { w - 1 - x } else { x };
                    let sx = xx as isize + dx;
                    out[y * w + x] =
                        if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                            plane[sy as usize * w + sx as usize]
                        } else {
                            fill
                        };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_without_flip_or_crop() {
        let a = Augment {
            hflip: 0.0,
            crop_padding: 0,
            fill: vec![0.0],
        };
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut dst = vec![0.0; 12];
        a.apply(&src, &mut dst, [1, 3, 4], &mut Rng::new(1));
        assert_eq!(src, dst);
    }

    #[test]
    fn flip_mirrors_rows() {
        let a = Augment {
            hflip: 1.0,
            crop_padding: 0,
            fill: vec![0.0],
        };
        let src: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let mut dst = vec![0.0; 6];
        a.apply(&src, &mut dst, [1, 2, 3], &mut Rng::new(1));
        assert_eq!(dst, [2.0, 1.0, 0.0, 5.0, 4.0, 3.0]);
    }

    #[test]
    fn crop_shifts_and_fills() {
        let a = Augment {
            hflip: 0.0,
            crop_padding: 2,
            fill: vec![-9.0],
        };
        let src: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let mut rng = Rng::new(3);
        for _ in 0..20 {
            let mut dst = vec![0.0; 16];
            a.apply(&src, &mut dst, [1, 4, 4], &mut rng);
            // Every output is a source pixel or the fill, and the source pixels keep their order.
            let kept: Vec<f32> = dst.iter().copied().filter(|&v| v != -9.0).collect();
            assert!(kept.windows(2).all(|w| w[0] < w[1]));
            assert!(
                kept.len() >= 4,
                "a shift of at most 2 keeps at least a 2×2 block"
            );
        }
    }
}
