//! `cait attention`: where the class token looks. For each class-attention block, the per-head
//! CLS→patch maps (upsampled bicubically to the input size) and a saliency overlay, as PNGs and
//! `.npy`; for a quantized pack, how far its maps are from a float model's.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cait_pack::{ModelConfig, Preprocess};
use image::imageops::{self, FilterType};
use image::{ImageBuffer, Luma, Rgb, RgbImage};
use serde_json::json;

use crate::input::{Input, load_inputs};
use crate::model::{AlignedBytes, LoadedModel, load_path, parse_pool};
use crate::{Backend, ModelArgs};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    cait attention --model models/fashion-cait/fashion-cait-int8.cait models/fashion-cait/images/*.png -o attention/\n  \
    cait attention --model model.cait --compare model.safetensors cat.jpg -o attention/ --block 1")]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Image files (PNG/JPEG, preprocessed as the model's pretrained cfg says) or normalized
    /// `.npy` batches [N, C, H, W].
    #[arg(required = true, value_name = "IMAGE")]
    inputs: Vec<PathBuf>,
    /// Output folder (created if needed).
    #[arg(long, short = 'o', value_name = "DIR")]
    output: PathBuf,
    /// Only this class-attention block (0-based; default: all).
    #[arg(long, value_name = "N")]
    block: Option<usize>,
    /// A float model (timm checkpoint or f32 pack) to compare the maps with: prints the cosine
    /// similarity of every head's map to the float one.
    #[arg(long, value_name = "FLOAT_MODEL")]
    compare: Option<PathBuf>,
    /// Where to run (packs run on core; the burn backends take a checkpoint).
    #[arg(long, value_enum, default_value_t = Backend::Core)]
    backend: Backend,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// The class token's attention of one image: `maps[block][head]` over the `N + 1` tokens.
pub type Maps = Vec<Vec<Vec<f32>>>;

struct Collect<'a>(&'a mut Maps);

impl cait_core::AttentionSink for Collect<'_> {
    fn class_attention(&mut self, block: usize, head: usize, weights: &[f32]) {
        self.0[block][head] = weights.to_vec();
    }
}

/// Class-attention maps of every input on `backend`.
pub fn maps_of(loaded: &LoadedModel, inputs: &[Input], backend: Backend) -> Result<Vec<Maps>> {
    let pack = loaded.pack()?;
    let cfg = *pack.config();
    let (blocks, heads) = (cfg.depth_token_only as usize, cfg.num_heads as usize);
    let tokens = cfg.num_patches().unwrap_or(0) + 1;
    match backend {
        Backend::Core => {
            let model = cait_core::Model::from_pack(&pack).context("building the model")?;
            let mut ws = AlignedBytes::zeroed(model.workspace_bytes());
            let mut logits = vec![0.0f32; cfg.logits_len()];
            inputs
                .iter()
                .map(|input| {
                    let mut maps = vec![vec![vec![0.0f32; tokens]; heads]; blocks];
                    let mut sink = Collect(&mut maps);
                    model
                        .forward_with(
                            &input.data,
                            ws.bytes_mut(),
                            cait_core::Outputs::logits(&mut logits).attention(&mut sink),
                        )
                        .with_context(|| format!("{}: inference failed", input.name))?;
                    Ok(maps)
                })
                .collect()
        }
        Backend::BurnCpu | Backend::BurnWgpu => {
            let mut runner = crate::model::Runner::new(loaded, &pack, backend)?;
            let crate::model::Runner::Burn(reference) = &mut runner else {
                unreachable!("a burn backend gives a burn runner")
            };
            inputs
                .iter()
                .map(|input| {
                    let out = reference.forward(&input.data, 1)?;
                    Ok(out
                        .attention
                        .iter()
                        .map(|a| a.chunks_exact(tokens).map(<[f32]>::to_vec).collect())
                        .collect())
                })
                .collect()
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let loaded = LoadedModel::load(&args.model)?;
    let pack = loaded.pack()?;
    let cfg = *pack.config();
    let pre = *pack.preprocess();
    let blocks = cfg.depth_token_only as usize;
    if blocks == 0 {
        bail!("the model has no class-attention blocks: there is no class-token attention to show");
    }
    if let Some(b) = args.block
        && b >= blocks
    {
        bail!(
            "--block {b} is out of range: the model has {blocks} class-attention blocks (0 to {})",
            blocks.saturating_sub(1)
        );
    }
    let inputs = load_inputs(&args.inputs, &cfg, &pre)?;
    let maps = maps_of(&loaded, &inputs, args.backend)?;

    // The float model to compare with, on the core (an f32 pack or an imported checkpoint).
    let float_maps = match &args.compare {
        Some(path) => {
            let pool = parse_pool(args.model.global_pool.as_deref())?;
            let float = load_path(path, pool, &args.model.preprocess)?;
            let fcfg = *float.pack()?.config();
            if fcfg != cfg {
                bail!(
                    "{}: --compare needs the same architecture as the model",
                    path.display()
                );
            }
            if float.pack()?.precision() != cait_pack::Precision::F32 {
                bail!("{}: --compare needs a float (f32) model", path.display());
            }
            Some(maps_of(&float, &inputs, Backend::Core)?)
        }
        None => None,
    };

    let selected: Vec<usize> = match args.block {
        Some(b) => vec![b],
        None => (0..blocks).collect(),
    };
    let report = write_maps(
        &Written {
            cfg: &cfg,
            pre: &pre,
            inputs: &inputs,
            maps: &maps,
            float_maps: float_maps.as_deref(),
        },
        &selected,
        &args.output,
    )?;

    if args.json {
        println!("{}", serde_json::to_string(&json!({"results": report}))?);
        return Ok(());
    }
    for r in &report {
        println!("{}", r["input"].as_str().unwrap_or_default());
        for b in r["blocks"].as_array().into_iter().flatten() {
            print!(
                "  block {}: {}",
                b["block"],
                b["overlay"].as_str().unwrap_or_default()
            );
            if let Some(cos) = b["cosine_to_float"].as_array() {
                let cos: Vec<String> = cos
                    .iter()
                    .map(|c| format!("{:.4}", c.as_f64().unwrap_or(f64::NAN)))
                    .collect();
                print!("  cosine to float per head [{}]", cos.join(", "));
            }
            println!();
        }
    }
    if float_maps.is_none() && pack.precision() != cait_pack::Precision::F32 {
        eprintln!(
            "note: this is a {} pack; --compare FLOAT_MODEL reports how far its maps are from the float model's",
            pack.precision().as_str()
        );
    }
    Ok(())
}

/// What [`write_maps`] draws from.
pub struct Written<'a> {
    pub cfg: &'a ModelConfig,
    pub pre: &'a Preprocess,
    pub inputs: &'a [Input],
    pub maps: &'a [Maps],
    pub float_maps: Option<&'a [Maps]>,
}

/// Writes the maps, saliency and PNGs of the `selected` blocks of every input into `output`;
/// returns one JSON report per input.
pub fn write_maps(
    src: &Written<'_>,
    selected: &[usize],
    output: &Path,
) -> Result<Vec<serde_json::Value>> {
    let (cfg, pre) = (src.cfg, src.pre);
    let grid = cfg.grid().map(|g| g as usize);
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let mut report = Vec::new();
    for (i, (input, image_maps)) in src.inputs.iter().zip(src.maps).enumerate() {
        let stem = stem_of(&input.name, i);
        let picture = denormalize(&input.data, cfg, pre);
        let mut blocks_json = Vec::new();
        for &b in selected {
            let heads = &image_maps[b];
            let up: Vec<Vec<f32>> = heads
                .iter()
                .map(|m| upsample(&m[1..], grid, cfg.img_size))
                .collect();
            let saliency = saliency(&up);
            let base = output.join(format!("{stem}_block{b}"));
            write_npy(
                &base,
                "_maps.npy",
                &[heads.len(), grid[0], grid[1]],
                &patch_rows(heads),
            )?;
            let [h, w] = [cfg.img_size[0] as usize, cfg.img_size[1] as usize];
            write_npy(&base, "_saliency.npy", &[h, w], &saliency)?;
            save(&heads_grid(&up, cfg.img_size), &base, "_heads.png")?;
            save(&overlay(&picture, &saliency), &base, "_overlay.png")?;
            let cls_share: Vec<f32> = heads.iter().map(|m| m[0]).collect();
            let cosine = src.float_maps.map(|f| {
                heads
                    .iter()
                    .zip(&f[i][b])
                    .map(|(q, f)| cosine(&q[1..], &f[1..]))
                    .collect::<Vec<f64>>()
            });
            blocks_json.push(json!({
                "block": b,
                "overlay": format!("{}_overlay.png", base.display()),
                "heads_png": format!("{}_heads.png", base.display()),
                "cls_self_attention": cls_share,
                "cosine_to_float": cosine,
            }));
        }
        report.push(json!({"input": input.name, "blocks": blocks_json}));
    }

    Ok(report)
}

/// A file-name stem for input `i`: the image's file stem, or `batch_i` for `.npy` entries.
fn stem_of(name: &str, i: usize) -> String {
    let path = Path::new(name.split('[').next().unwrap_or(name));
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into());
    if name.ends_with(']') {
        format!("{stem}_{i}")
    } else {
        stem
    }
}

/// The patch part of each head's row, `[H, rows·cols]`, flattened.
fn patch_rows(heads: &[Vec<f32>]) -> Vec<f32> {
    heads.iter().flat_map(|m| m[1..].iter().copied()).collect()
}

/// A `grid` map bicubically upsampled to `size` (Catmull-Rom), `[H·W]`.
pub fn upsample(map: &[f32], grid: [usize; 2], size: [u32; 2]) -> Vec<f32> {
    let small: ImageBuffer<Luma<f32>, Vec<f32>> =
        ImageBuffer::from_raw(grid[1] as u32, grid[0] as u32, map.to_vec())
            .expect("a map has rows × cols values");
    imageops::resize(&small, size[1], size[0], FilterType::CatmullRom).into_raw()
}

/// Mean over heads, min-max normalised to [0, 1].
pub fn saliency(heads: &[Vec<f32>]) -> Vec<f32> {
    let n = heads.first().map_or(0, Vec::len);
    let mut mean = vec![0.0f32; n];
    for h in heads {
        for (m, v) in mean.iter_mut().zip(h) {
            *m += v / heads.len() as f32;
        }
    }
    let (lo, hi) = mean
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = hi - lo;
    mean.iter()
        .map(|v| if span > 0.0 { (v - lo) / span } else { 0.0 })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}

/// The input as the model saw it, back in [0, 255] RGB (grayscale models replicated).
fn denormalize(data: &[f32], cfg: &ModelConfig, pre: &Preprocess) -> RgbImage {
    let [h, w] = [cfg.img_size[0], cfg.img_size[1]];
    let plane = (h * w) as usize;
    let chans = cfg.in_chans as usize;
    let norm = pre.norm_channels.max(1) as usize;
    let value = |c: usize, i: usize| {
        let k = c.min(norm - 1);
        let v = data[c * plane + i] * pre.std[k] + pre.mean[k];
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    };
    RgbImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        if chans >= 3 {
            Rgb([value(0, i), value(1, i), value(2, i)])
        } else {
            let g = value(0, i);
            Rgb([g, g, g])
        }
    })
}

/// A perceptual "inferno"-like colour for `t` in [0, 1] (black → purple → orange → yellow).
fn colour(t: f32) -> [f32; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [0.0, 0.0, 4.0],
        [87.0, 16.0, 110.0],
        [188.0, 55.0, 84.0],
        [249.0, 142.0, 9.0],
        [252.0, 255.0, 164.0],
    ];
    let x = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    [
        a[0] + (b[0] - a[0]) * f,
        a[1] + (b[1] - a[1]) * f,
        a[2] + (b[2] - a[2]) * f,
    ]
}

/// Scale for small inputs (28×28 becomes 224×224) so the PNGs can be looked at.
fn zoom(size: [u32; 2]) -> u32 {
    (224 / size[0].min(size[1]).max(1)).max(1)
}

/// The saliency over the picture: 50% blend of the image and the colour map.
fn overlay(picture: &RgbImage, saliency: &[f32]) -> RgbImage {
    let blended = RgbImage::from_fn(picture.width(), picture.height(), |x, y| {
        let p = picture.get_pixel(x, y).0;
        let c = colour(saliency[(y * picture.width() + x) as usize]);
        Rgb([0, 1, 2].map(|k| (0.5 * p[k] as f32 + 0.5 * c[k]).round() as u8))
    });
    let z = zoom([picture.height(), picture.width()]);
    imageops::resize(
        &blended,
        picture.width() * z,
        picture.height() * z,
        FilterType::Nearest,
    )
}

/// Every head's upsampled map side by side, each min-max normalised and coloured, 4 px apart.
fn heads_grid(heads: &[Vec<f32>], size: [u32; 2]) -> RgbImage {
    let z = zoom(size);
    let (h, w) = (size[0] * z, size[1] * z);
    let gap = 4;
    let n = heads.len() as u32;
    let mut out = RgbImage::from_pixel(n * w + (n.saturating_sub(1)) * gap, h, Rgb([255; 3]));
    for (k, map) in heads.iter().enumerate() {
        let norm = saliency(std::slice::from_ref(map));
        let x0 = k as u32 * (w + gap);
        for y in 0..h {
            for x in 0..w {
                let v = norm[((y / z) * size[1] + x / z) as usize];
                out.put_pixel(x0 + x, y, Rgb(colour(v).map(|c| c.round() as u8)));
            }
        }
    }
    out
}

fn save(img: &RgbImage, base: &Path, suffix: &str) -> Result<()> {
    let path = with_suffix(base, suffix);
    img.save(&path)
        .with_context(|| format!("writing {}", path.display()))
}

fn write_npy(base: &Path, suffix: &str, shape: &[usize], data: &[f32]) -> Result<()> {
    let path = with_suffix(base, suffix);
    cait_data::npy::write_f32(&path, shape, data)
        .with_context(|| format!("writing {}", path.display()))
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saliency_is_min_max_normalised_mean() {
        let s = saliency(&[vec![0.0, 1.0, 2.0], vec![2.0, 1.0, 4.0]]);
        assert_eq!(s, vec![0.0, 0.0, 1.0]);
        assert_eq!(saliency(&[vec![3.0, 3.0]]), vec![0.0, 0.0]);
    }

    #[test]
    fn upsampling_a_constant_map_stays_constant() {
        let up = upsample(&[0.25; 16], [4, 4], [28, 28]);
        assert_eq!(up.len(), 28 * 28);
        assert!(up.iter().all(|v| (v - 0.25).abs() < 1e-6), "{up:?}");
    }

    #[test]
    fn stems_name_files_and_batch_entries() {
        assert_eq!(stem_of("a/b/shoe.png", 0), "shoe");
        assert_eq!(stem_of("x/batch.npy[3]", 7), "batch_7");
    }
}
