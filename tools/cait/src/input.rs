//! Inputs: normalized `.npy` batches taken as they are, or image files preprocessed as the model's
//! pretrained cfg says (`cait_quant::data::load_image`: timm's eval transform).

use std::path::Path;

use anyhow::{Result, bail};
use cait_pack::{ModelConfig, Preprocess};

/// One network input `[C, H, W]` and a name to report it by.
pub struct Input {
    pub name: String,
    pub data: Vec<f32>,
}

/// Reads every input path; `.npy` files may hold several images, and a folder stands for every
/// image file (PNG, JPEG) under it, in sorted path order, as timm's inference script reads one.
pub fn load_inputs(
    paths: &[impl AsRef<Path>],
    cfg: &ModelConfig,
    pre: &Preprocess,
) -> Result<Vec<Input>> {
    let mut files = Vec::new();
    for path in paths {
        let path = path.as_ref();
        if path.is_dir() {
            let found = cait_quant::data::image_files(path)?;
            if found.is_empty() {
                bail!("{}: the folder holds no PNG or JPEG image", path.display());
            }
            files.extend(found);
        } else {
            files.push(path.to_path_buf());
        }
    }
    let is_npy = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    // The image files decode on every core at once (a bar shows on a terminal); the .npy batches
    // are read as they come, and the inputs keep the order given.
    let images: Vec<_> = files.iter().filter(|p| !is_npy(p)).cloned().collect();
    let decoded =
        cait_quant::data::load_images(&images, cfg, pre, &crate::progress::Bars::default())?;
    let per = (cfg.in_chans * cfg.img_size[0] * cfg.img_size[1]) as usize;
    let mut decoded = decoded.chunks_exact(per);
    let mut out = Vec::new();
    for path in &files {
        if is_npy(path) {
            out.extend(load_npy(path, cfg)?);
        } else if let Some(data) = decoded.next() {
            out.push(Input {
                name: path.display().to_string(),
                data: data.to_vec(),
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
    if batch == 0 {
        bail!(
            "{}: the batch holds no images (shape {shape:?})",
            path.display()
        );
    }
    let per = want.iter().product::<usize>();
    cait_quant::data::check_finite(path, &data, want)?;
    Ok((0..batch)
        .map(|i| Input {
            name: format!("{}[{i}]", path.display()),
            data: data[i * per..(i + 1) * per].to_vec(),
        })
        .collect())
}
