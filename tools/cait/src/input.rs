//! Inputs: normalized `.npy` batches taken as they are, or image files preprocessed as the model's
//! pretrained cfg says (timm's eval transform: resize the shorter side to `size / crop_pct`,
//! center-crop, scale to [0, 1], normalize with mean/std).

use std::path::Path;

use anyhow::{Context, Result, bail};
use cait_pack::{Interpolation, ModelConfig, Preprocess};
use image::imageops::FilterType;

/// One network input `[C, H, W]` and a name to report it by.
pub struct Input {
    pub name: String,
    pub data: Vec<f32>,
}

/// Reads every input path; `.npy` files may hold several images.
pub fn load_inputs(
    paths: &[impl AsRef<Path>],
    cfg: &ModelConfig,
    pre: &Preprocess,
) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let is_npy = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        if is_npy {
            out.extend(load_npy(path, cfg)?);
        } else {
            let data = load_image(path, cfg, pre)?;
            out.push(Input {
                name: path.display().to_string(),
                data,
            });
        }
    }
    Ok(out)
}

/// A float32 batch `[N, C, H, W]` (or one image `[C, H, W]`), already normalized.
pub fn load_npy(path: &Path, cfg: &ModelConfig) -> Result<Vec<Input>> {
    let (shape, data) = cait_quant::npy::read_f32(path)?;
    let want = [
        cfg.in_chans as usize,
        cfg.img_size[0] as usize,
        cfg.img_size[1] as usize,
    ];
    let batch = match shape.as_slice() {
        [n, c, h, w] if [*c, *h, *w] == want => *n,
        [c, h, w] if [*c, *h, *w] == want => 1,
        _ => bail!(
            "{}: array shape {:?} does not fit the model, which takes [N, {}, {}, {}] (normalized float32, NCHW)",
            path.display(),
            shape,
            want[0],
            want[1],
            want[2]
        ),
    };
    let per = want.iter().product::<usize>();
    Ok((0..batch)
        .map(|i| Input {
            name: format!("{}[{i}]", path.display()),
            data: data[i * per..(i + 1) * per].to_vec(),
        })
        .collect())
}

/// Decodes and preprocesses one image file for the model.
pub fn load_image(path: &Path, cfg: &ModelConfig, pre: &Preprocess) -> Result<Vec<f32>> {
    let img = image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?
        .decode()
        .with_context(|| format!("{}: not a readable PNG or JPEG image", path.display()))?;
    preprocess(&img, cfg, pre).with_context(|| format!("{}: preprocessing", path.display()))
}

/// timm's eval transform on a decoded image, producing `[C, H, W]` for `cfg`.
pub fn preprocess(
    img: &image::DynamicImage,
    cfg: &ModelConfig,
    pre: &Preprocess,
) -> Result<Vec<f32>> {
    let [out_h, out_w] = cfg.img_size;
    let chans = cfg.in_chans as usize;
    if !(1..=4).contains(&chans) {
        bail!("images can feed models with 1 to 4 input channels; this one has {chans}");
    }
    let crop_pct = if pre.crop_pct > 0.0 && pre.crop_pct.is_finite() {
        pre.crop_pct as f64
    } else {
        1.0
    };
    // timm: a square input resizes the shorter side to floor(size / crop_pct) keeping the aspect
    // ratio; a non-square input resizes to exactly (floor(h / crop_pct), floor(w / crop_pct)).
    let (rw, rh) = if out_h == out_w {
        let target = (out_h as f64 / crop_pct).floor() as u32;
        let (w, h) = (img.width().max(1), img.height().max(1));
        if w <= h {
            (target, ((target as u64 * h as u64) / w as u64) as u32)
        } else {
            (((target as u64 * w as u64) / h as u64) as u32, target)
        }
    } else {
        (
            (out_w as f64 / crop_pct).floor() as u32,
            (out_h as f64 / crop_pct).floor() as u32,
        )
    };
    let filter = match pre.interpolation {
        Interpolation::Nearest => FilterType::Nearest,
        Interpolation::Bilinear => FilterType::Triangle,
        Interpolation::Bicubic => FilterType::CatmullRom,
    };
    let resized = img.resize_exact(rw.max(out_w), rh.max(out_h), filter);
    // Center crop, rounding the offset as torchvision does.
    let left = ((resized.width() - out_w) as f64 / 2.0).round() as u32;
    let top = ((resized.height() - out_h) as f64 / 2.0).round() as u32;
    let cropped = resized.crop_imm(left, top, out_w, out_h);

    let pixels: Vec<Vec<f32>> = match chans {
        // PIL's "L" conversion for single-channel models.
        1 => vec![
            cropped
                .to_luma8()
                .pixels()
                .map(|p| p.0[0] as f32 / 255.0)
                .collect(),
        ],
        3 => {
            let rgb = cropped.to_rgb8();
            (0..3)
                .map(|c| rgb.pixels().map(|p| p.0[c] as f32 / 255.0).collect())
                .collect()
        }
        _ => {
            let rgba = cropped.to_rgba8();
            (0..chans)
                .map(|c| rgba.pixels().map(|p| p.0[c] as f32 / 255.0).collect())
                .collect()
        }
    };
    let norm = pre.norm_channels as usize;
    let mut out = Vec::with_capacity(chans * (out_h * out_w) as usize);
    for (c, plane) in pixels.iter().enumerate() {
        let (mean, std) = if norm == chans {
            (pre.mean[c], pre.std[c])
        } else if norm == 1 {
            (pre.mean[0], pre.std[0])
        } else {
            bail!(
                "the pack's preprocessing has {norm} mean/std entries for a {chans}-channel model"
            );
        };
        out.extend(plane.iter().map(|v| (v - mean) / std));
    }
    Ok(out)
}
