//! Image decoding and timm's eval preprocessing (`image_from_bytes_limited`: what `load_image`
//! runs on a file's bytes, here with smaller decoder limits) on arbitrary bytes, for a 1x28x28 and
//! a 3x32x32 model: a normalized `[C, H, W]` input of the model's size, or a typed error.
//!
//! An input starting with `RAW` skips the decoders: `w: u16 le, h: u16 le, kind: u8, crop_pct: f32
//! le`, then pixel bytes (repeated to fill the image), go straight to `preprocess`, so the
//! resize and crop see sizes, aspect ratios and crops (a pack's `crop_pct` is any positive f32)
//! that would otherwise need valid PNG/JPEG files.
#![no_main]

use std::path::Path;

use cait_data::{image_from_bytes_limited, preprocess};
use cait_pack::{GlobalPool, Interpolation, ModelConfig, Preprocess};
use image::DynamicImage;
use libfuzzer_sys::fuzz_target;

/// Most pixels a `RAW` image may have, so that one execution stays cheap.
const MAX_RAW_PIXELS: usize = 1 << 12;

/// The decoders' limits here: files declaring more are refused before decoding (as the default
/// 512 MiB limit refuses larger ones in `cait`), which keeps an execution to about a millisecond.
fn limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(1 << 12);
    limits.max_image_height = Some(1 << 12);
    limits.max_alloc = Some(1 << 22);
    limits
}

/// The model and preprocessing for choice `k` (from the input's length, so an input always gets
/// the same one): gray 28x28 or RGB 32x32, each interpolation, crops below, at and above 1.
fn model(k: usize) -> (ModelConfig, Preprocess) {
    let (chans, size) = if k & 1 == 0 { (1, 28) } else { (3, 32) };
    let cfg = ModelConfig {
        img_size: [size, size],
        patch_size: 4,
        in_chans: chans,
        num_classes: 10,
        embed_dim: 16,
        depth: 1,
        num_heads: 2,
        mlp_hidden_dim: 32,
        depth_token_only: 1,
        mlp_hidden_dim_token_only: 32,
        qkv_bias: true,
        global_pool: GlobalPool::Token,
    };
    let mut pre = Preprocess::imagenet([chans, size, size]);
    pre.interpolation = [
        Interpolation::Bicubic,
        Interpolation::Bilinear,
        Interpolation::Nearest,
    ][(k >> 1) % 3];
    pre.crop_pct = [0.875, 1.0, 0.9, 1.15][(k >> 3) % 4];
    (cfg, pre)
}

/// A `RAW` input as a decoded image of one of the decoders' pixel types, and its `crop_pct`.
fn raw_image(data: &[u8]) -> Option<(DynamicImage, f32)> {
    let w = u16::from_le_bytes([*data.first()?, *data.get(1)?]) as u32;
    let h = u16::from_le_bytes([*data.get(2)?, *data.get(3)?]) as u32;
    let kind = *data.get(4)?;
    let crop_pct = f32::from_le_bytes(data.get(5..9)?.try_into().ok()?);
    let pixels = &data[9..];
    if w == 0 || h == 0 || (w * h) as usize > MAX_RAW_PIXELS || pixels.is_empty() {
        return None;
    }
    let bands = [1, 2, 3, 4][kind as usize % 4];
    let buf: Vec<u8> = pixels
        .iter()
        .copied()
        .cycle()
        .take((w * h) as usize * bands)
        .collect();
    let img = match bands {
        1 => DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, buf)?),
        2 => DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_raw(w, h, buf)?),
        3 => DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, buf)?),
        _ => DynamicImage::ImageRgba8(image::RgbaImage::from_raw(w, h, buf)?),
    };
    Some((img, crop_pct))
}

/// libFuzzer's panic hook aborts on every panic. A third-party decoder's panic inside
/// `image_from_bytes` is caught there and becomes the file's error (`decoding`), as in
/// `cait`; every other panic still aborts. Installed over libFuzzer's hook at the first input.
fn tolerate_caught_decoder_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let libfuzzer = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !cait_data::decoding() {
                libfuzzer(info)
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    tolerate_caught_decoder_panics();
    let (cfg, mut pre) = model(data.len());
    let want = (cfg.in_chans * cfg.img_size[0] * cfg.img_size[1]) as usize;
    let out = match data.strip_prefix(b"RAW") {
        Some(raw) => match raw_image(raw) {
            Some((img, crop_pct)) => {
                pre.crop_pct = crop_pct;
                preprocess(&img, &cfg, &pre).map_err(|_| ())
            }
            None => return,
        },
        None => {
            let name = if data.len() & 16 == 0 {
                "in.png"
            } else {
                "in.jpg"
            };
            image_from_bytes_limited(data, Path::new(name), &cfg, &pre, limits()).map_err(|_| ())
        }
    };
    if let Ok(v) = out {
        assert_eq!(v.len(), want);
        assert!(v.iter().all(|x| x.is_finite()));
    }
});
