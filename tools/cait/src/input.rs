//! Inputs: normalized `.npy` batches taken as they are, 8-bit `.npy` frames normalized with the
//! pack's mean and std, or image files preprocessed as the model's pretrained cfg says
//! (`cait_data::load_image`: timm's eval transform).

use std::path::Path;

use anyhow::{Result, bail};
use cait_data::npy::Elements;
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
            let found = cait_data::image_files(path)?;
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
    let decoded = cait_data::load_images(&images, cfg, pre, &crate::progress::Bars::default())?;
    let per = (cfg.in_chans * cfg.img_size[0] * cfg.img_size[1]) as usize;
    let mut decoded = decoded.chunks_exact(per);
    let mut out = Vec::new();
    for path in &files {
        if is_npy(path) {
            out.extend(load_npy(path, cfg, pre)?);
        } else if let Some(data) = decoded.next() {
            out.push(Input {
                name: path.display().to_string(),
                data: data.to_vec(),
            });
        }
    }
    Ok(out)
}

/// A `.npy` batch of images at the model's size, as given.
pub enum NpyBatch {
    /// float32 `[N, C, H, W]` (or one image `[C, H, W]`), already normalized.
    Normalized(Vec<f32>),
    /// uint8 `[N, H, W, C]` (or one frame `[H, W, C]`): 8-bit pixels, interleaved (HWC), as a
    /// camera delivers them; the pack's mean and std are still to be applied.
    Frames(Vec<u8>),
}

/// Reads a `.npy` batch and checks it against the model: its image count and its elements.
pub fn read_npy(path: &Path, cfg: &ModelConfig) -> Result<(usize, NpyBatch)> {
    let (shape, elements) = cait_data::npy::read_images(path)?;
    let [c, h, w] = [
        cfg.in_chans as usize,
        cfg.img_size[0] as usize,
        cfg.img_size[1] as usize,
    ];
    let (batch, data) = match (shape.as_slice(), elements) {
        ([n, sc, sh, sw], Elements::F32(data)) if [*sc, *sh, *sw] == [c, h, w] => {
            (*n, NpyBatch::Normalized(data))
        }
        ([sc, sh, sw], Elements::F32(data)) if [*sc, *sh, *sw] == [c, h, w] => {
            (1, NpyBatch::Normalized(data))
        }
        ([n, sh, sw, sc], Elements::U8(data)) if [*sh, *sw, *sc] == [h, w, c] => {
            (*n, NpyBatch::Frames(data))
        }
        ([sh, sw, sc], Elements::U8(data)) if [*sh, *sw, *sc] == [h, w, c] => {
            (1, NpyBatch::Frames(data))
        }
        (_, Elements::F32(_)) => bail!(
            "{}: array shape {shape:?} does not fit the model, which takes [N, {c}, {h}, {w}] (normalized float32, NCHW) or [N, {h}, {w}, {c}] (uint8 pixels, HWC)",
            path.display(),
        ),
        (_, Elements::U8(_)) => bail!(
            "{}: array shape {shape:?} does not fit the model, which takes 8-bit frames [N, {h}, {w}, {c}] (uint8, HWC) or normalized float32 [N, {c}, {h}, {w}]",
            path.display(),
        ),
    };
    if batch == 0 {
        bail!(
            "{}: the batch holds no images (shape {shape:?})",
            path.display()
        );
    }
    if let NpyBatch::Normalized(data) = &data {
        cait_data::check_finite(path, data, [c, h, w])?;
    }
    Ok((batch, data))
}

/// A `.npy` batch as normalized `[C, H, W]` inputs: float32 as it is, 8-bit HWC frames normalized
/// with `pre` (`Preprocess::normalize`: the values the engine computes from the same pixels).
pub fn load_npy(path: &Path, cfg: &ModelConfig, pre: &Preprocess) -> Result<Vec<Input>> {
    let (batch, data) = read_npy(path, cfg)?;
    let (c, hw) = (
        cfg.in_chans as usize,
        (cfg.img_size[0] * cfg.img_size[1]) as usize,
    );
    let per = c * hw;
    Ok((0..batch)
        .map(|i| Input {
            name: format!("{}[{i}]", path.display()),
            data: match &data {
                NpyBatch::Normalized(data) => data[i * per..(i + 1) * per].to_vec(),
                NpyBatch::Frames(frames) => {
                    let frame = &frames[i * per..(i + 1) * per];
                    (0..per)
                        .map(|j| {
                            let (ch, pixel) = (j / hw, j % hw);
                            pre.normalize(ch, frame[pixel * c + ch])
                        })
                        .collect()
                }
            },
        })
        .collect())
}
