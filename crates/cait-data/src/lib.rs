#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod npy;
pub mod progress;
pub mod resize;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use cait_pack::{Interpolation, ModelConfig, Preprocess};

use npy::NpyError;
use progress::{Progress, Silent, parallel, threads};
use resize::Filter;

/// Fashion-MNIST's class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Which half of a dataset that has both (IDX folders); ignored by the other sources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Split {
    /// The training images.
    Train,
    /// The held-out test images.
    #[default]
    Test,
}

/// How to read a dataset.
#[derive(Clone, Debug, Default)]
pub struct DataOptions {
    /// Train or test split (IDX folders).
    pub split: Split,
    /// Labels of a `.npy` batch: a 1-D integer `.npy` of length N.
    pub labels: Option<PathBuf>,
    /// Keep only the first `limit` samples.
    pub limit: Option<usize>,
}

/// Normalized images ready for a model, with labels when the source has them.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `n` images of `sample_shape`, row-major, normalized.
    pub images: Vec<f32>,
    /// One label per image.
    pub labels: Option<Vec<u32>>,
    /// Number of images.
    pub n: usize,
    /// `[C, H, W]` of one image.
    pub sample_shape: [usize; 3],
    /// Class names when the source names its classes (IDX: Fashion-MNIST's; folders: sub-folder names).
    pub class_names: Option<Vec<String>>,
}

impl Dataset {
    /// Elements of one image.
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// Image `i`, `[C, H, W]`.
    pub fn image(&self, i: usize) -> &[f32] {
        let len = self.sample_len();
        &self.images[i * len..(i + 1) * len]
    }
}

/// Why a dataset could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum DataError {
    /// The path could not be read.
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path is none of the supported dataset layouts.
    NotADataset {
        /// The path.
        path: PathBuf,
    },
    /// An IDX file is malformed.
    BadIdx {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The images do not have the model's input shape.
    ShapeMismatch {
        /// The file or folder.
        path: PathBuf,
        /// `[C, H, W]` found.
        found: Vec<usize>,
        /// `[C, H, W]` the model takes.
        expected: [usize; 3],
    },
    /// Labels do not fit the images or the model.
    BadLabels {
        /// The labels file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An image could not be decoded or preprocessed.
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `.npy` file could not be read.
    Npy(NpyError),
    /// The dataset holds no images.
    Empty {
        /// The path.
        path: PathBuf,
    },
    /// A `.npy` batch holds a NaN or infinite value.
    NotFinite {
        /// The file.
        path: PathBuf,
        /// Image index in the batch.
        image: usize,
        /// `[c, y, x]` within the image.
        element: [usize; 3],
        /// The value.
        value: f32,
    },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            DataError::NotADataset { path } => write!(
                f,
                "{}: not a dataset (expected a .npy batch, a Fashion-MNIST IDX folder, or a folder with one sub-folder of images per class)",
                path.display()
            ),
            DataError::BadIdx { path, reason } => {
                write!(f, "{}: bad IDX file: {reason}", path.display())
            }
            DataError::ShapeMismatch {
                path,
                found,
                expected,
            } => write!(
                f,
                "{}: images are {found:?} (C, H, W) but the model takes {expected:?}",
                path.display()
            ),
            DataError::BadLabels { path, reason } => {
                write!(f, "{}: bad labels: {reason}", path.display())
            }
            DataError::Image { path, reason } => write!(f, "{}: {reason}", path.display()),
            DataError::Npy(e) => write!(f, "{e}"),
            DataError::Empty { path } => {
                write!(f, "{}: the dataset holds no images", path.display())
            }
            DataError::NotFinite {
                path,
                image,
                element: [c, y, x],
                value,
            } => write!(
                f,
                "{}[{image}]: element [{c}, {y}, {x}] is {value}; inputs must be finite, normalized values",
                path.display()
            ),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } => Some(source),
            DataError::Npy(e) => Some(e),
            _ => None,
        }
    }
}

impl From<NpyError> for DataError {
    fn from(e: NpyError) -> Self {
        DataError::Npy(e)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn model_shape(cfg: &ModelConfig) -> [usize; 3] {
    [
        cfg.in_chans as usize,
        cfg.img_size[0] as usize,
        cfg.img_size[1] as usize,
    ]
}

/// Reads the dataset at `path` for a model with `cfg` and preprocessing `pre`.
pub fn load(
    path: &Path,
    opts: &DataOptions,
    cfg: &ModelConfig,
    pre: &Preprocess,
) -> Result<Dataset, DataError> {
    load_with_progress(path, opts, cfg, pre, &Silent)
}

/// [`load`], reporting the decoding of an image folder to `progress` (phase `"decode"`, one tick
/// per image; `.npy` and IDX files are read at once).
pub fn load_with_progress(
    path: &Path,
    opts: &DataOptions,
    cfg: &ModelConfig,
    pre: &Preprocess,
    progress: &dyn Progress,
) -> Result<Dataset, DataError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    let mut data = if meta.is_file() {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
        {
            load_npy(path, opts.labels.as_deref(), cfg)?
        } else {
            return Err(DataError::NotADataset {
                path: path.to_path_buf(),
            });
        }
    } else if let Some(files) = idx_files(path, opts.split) {
        load_idx(&files.0, &files.1, opts.limit, cfg, pre)?
    } else {
        load_image_folder(path, opts.limit, cfg, pre, progress)?
    };
    if let Some(limit) = opts.limit
        && limit < data.n
    {
        data.n = limit;
        data.images.truncate(limit * data.sample_len());
        if let Some(labels) = &mut data.labels {
            labels.truncate(limit);
        }
    }
    if data.n == 0 {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    if let Some(labels) = &data.labels
        && let Some(&bad) = labels.iter().find(|&&l| l >= cfg.num_classes)
    {
        return Err(DataError::BadLabels {
            path: opts.labels.clone().unwrap_or_else(|| path.to_path_buf()),
            reason: format!(
                "label {bad} is out of range for a {}-class model",
                cfg.num_classes
            ),
        });
    }
    Ok(data)
}

/// Refuses a NaN or infinite value in `images` (`[N, C, H, W]` with `chw` per image), read from
/// `path`, naming the image and the element: the engine would turn it into confident nonsense (int8
/// quantizes NaN to -128).
pub fn check_finite(path: &Path, images: &[f32], chw: [usize; 3]) -> Result<(), DataError> {
    let per = chw.iter().product::<usize>().max(1);
    match images.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(at) => {
            let j = at % per;
            Err(DataError::NotFinite {
                path: path.to_path_buf(),
                image: at / per,
                element: [j / (chw[1] * chw[2]), j / chw[2] % chw[1], j % chw[2]],
                value: images[at],
            })
        }
    }
}

fn load_npy(path: &Path, labels: Option<&Path>, cfg: &ModelConfig) -> Result<Dataset, DataError> {
    let (shape, images) = npy::read_f32(path)?;
    let want = model_shape(cfg);
    let n = match shape.as_slice() {
        [n, c, h, w] if [*c, *h, *w] == want => *n,
        _ => {
            return Err(DataError::ShapeMismatch {
                path: path.to_path_buf(),
                found: shape,
                expected: want,
            });
        }
    };
    check_finite(path, &images, want)?;
    let labels = match labels {
        None => None,
        Some(lp) => {
            let raw = npy::read_labels(lp)?;
            if raw.len() != n {
                return Err(DataError::BadLabels {
                    path: lp.to_path_buf(),
                    reason: format!("{} labels for {n} images", raw.len()),
                });
            }
            let mut out = Vec::with_capacity(n);
            for l in raw {
                out.push(u32::try_from(l).map_err(|_| DataError::BadLabels {
                    path: lp.to_path_buf(),
                    reason: format!("negative or huge label {l}"),
                })?);
            }
            Some(out)
        }
    };
    Ok(Dataset {
        images,
        labels,
        n,
        sample_shape: want,
        class_names: None,
    })
}

/// Whether `dir` is an IDX folder holding `split` (what [`load`] reads as IDX).
pub fn is_idx_folder(dir: &Path, split: Split) -> bool {
    idx_files(dir, split).is_some()
}

/// `(images, labels)` of an IDX folder's split, if `dir` is one.
fn idx_files(dir: &Path, split: Split) -> Option<(PathBuf, PathBuf)> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let find = |stem: &str| {
        [
            format!("{prefix}-{stem}-ubyte"),
            format!("{prefix}-{stem}-ubyte.gz"),
        ]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
    };
    Some((find("images-idx3")?, find("labels-idx1")?))
}

/// Most bytes a gzip'd IDX file may decompress to (Fashion-MNIST's largest is 47 MB): a small file
/// that claims more is refused instead of exhausting memory.
const MAX_IDX_BYTES: u64 = 1 << 30;

/// Parses the bytes of an IDX file of unsigned bytes with `rank` dimensions (3 for images, 1 for
/// labels), gzip'd or not, as [`load`] reads it from an IDX folder: returns its dimensions and data.
/// `path` only names the file in errors. A gzip stream may inflate to at most 1 GiB.
pub fn parse_idx(
    path: &Path,
    bytes: &[u8],
    rank: usize,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    parse_idx_raw(path, &gunzip_capped(path, bytes, MAX_IDX_BYTES)?, rank)
}

/// `bytes` inflated if they are gzip (refused past `cap` bytes), else as they are.
fn gunzip_capped<'b>(
    path: &Path,
    bytes: &'b [u8],
    cap: u64,
) -> Result<std::borrow::Cow<'b, [u8]>, DataError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let bad = |reason: String| DataError::BadIdx {
        path: path.to_path_buf(),
        reason,
    };
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("gzip: {e}")))?;
    if out.len() as u64 > cap {
        return Err(bad(format!("decompresses to more than {cap} bytes")));
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Parses an uncompressed IDX file of unsigned bytes: returns its dimensions and data.
fn parse_idx_raw(
    path: &Path,
    bytes: &[u8],
    rank: usize,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let bad = |reason: String| DataError::BadIdx {
        path: path.to_path_buf(),
        reason,
    };
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(bad(format!(
            "{} bytes is shorter than its header",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] as usize != rank {
        return Err(bad(format!(
            "magic {:02x?} is not unsigned-byte data of rank {rank}",
            &bytes[..4]
        )));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let len = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("dimensions overflow".into()))?;
    if bytes.len() - header != len {
        return Err(bad(format!(
            "dimensions {dims:?} need {len} data bytes, found {}",
            bytes.len() - header
        )));
    }
    Ok((dims, bytes[header..].to_vec()))
}

fn load_idx(
    images: &Path,
    labels: &Path,
    limit: Option<usize>,
    cfg: &ModelConfig,
    pre: &Preprocess,
) -> Result<Dataset, DataError> {
    let (dims, pixels) = parse_idx(images, &std::fs::read(images).map_err(io(images))?, 3)?;
    let (ldims, raw_labels) = parse_idx(labels, &std::fs::read(labels).map_err(io(labels))?, 1)?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if ldims[0] != n {
        return Err(DataError::BadLabels {
            path: labels.to_path_buf(),
            reason: format!("{} labels for {n} images", ldims[0]),
        });
    }
    let want = model_shape(cfg);
    // Grayscale feeds 1-channel models as is and 3-channel models replicated, as PIL's RGB
    // conversion of an "L" image does.
    if (want[0] != 1 && want[0] != 3) || [want[1], want[2]] != [h, w] {
        return Err(DataError::ShapeMismatch {
            path: images.to_path_buf(),
            found: vec![1, h, w],
            expected: want,
        });
    }
    let n = limit.map_or(n, |l| l.min(n));
    let mut out = Vec::with_capacity(n * want.iter().product::<usize>());
    for img in pixels.chunks_exact(h * w).take(n) {
        for c in 0..want[0] {
            out.extend(img.iter().map(|&p| pre.normalize(c, p)));
        }
    }
    Ok(Dataset {
        images: out,
        labels: Some(raw_labels[..n].iter().map(|&l| l as u32).collect()),
        n,
        sample_shape: want,
        class_names: Some(
            FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
    })
}

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn load_image_folder(
    dir: &Path,
    limit: Option<usize>,
    cfg: &ModelConfig,
    pre: &Preprocess,
    progress: &dyn Progress,
) -> Result<Dataset, DataError> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    if classes.is_empty() {
        return Err(DataError::NotADataset {
            path: dir.to_path_buf(),
        });
    }
    let mut files = Vec::new();
    let mut labels = Vec::new();
    let mut names = Vec::new();
    'classes: for (label, class_dir) in classes.iter().enumerate() {
        names.push(
            class_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let mut found: Vec<PathBuf> = std::fs::read_dir(class_dir)
            .map_err(io(class_dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| is_image_file(p))
            .collect();
        found.sort();
        for file in found {
            if limit.is_some_and(|l| labels.len() >= l) {
                break 'classes;
            }
            files.push(file);
            labels.push(label as u32);
        }
    }
    Ok(Dataset {
        n: labels.len(),
        images: load_images(&files, cfg, pre, progress)?,
        labels: Some(labels),
        sample_shape: model_shape(cfg),
        class_names: Some(names),
    })
}

/// Decodes and preprocesses image files ([`load_image`]) on every core, reporting each to
/// `progress` (phase `"decode"`): `[N, C, H, W]` in the order of `files`. A file that fails is the
/// error and stops the work (with several bad files, any one of them may be the one named).
pub fn load_images(
    files: &[PathBuf],
    cfg: &ModelConfig,
    pre: &Preprocess,
    progress: &dyn Progress,
) -> Result<Vec<f32>, DataError> {
    let per = model_shape(cfg).iter().product::<usize>();
    progress.begin("decode", files.len() as u64);
    let decoded = parallel::<_, DataError>(
        files.len(),
        threads(),
        progress,
        || Ok(Vec::new()),
        |done: &mut Vec<(usize, Vec<f32>)>, i| {
            done.push((i, load_image(&files[i], cfg, pre)?));
            Ok(())
        },
    );
    progress.end();
    let mut images = vec![0f32; files.len() * per];
    for (i, image) in decoded?.into_iter().flatten() {
        images[i * per..(i + 1) * per].copy_from_slice(&image);
    }
    Ok(images)
}

/// Every image file (PNG, JPEG) under `dir`, at any depth, in sorted path order.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let path = entry.map_err(io(&d))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if is_image_file(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether `path` has an image extension the loader decodes.
fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// How a dataset's classes were matched to a model's labels ([`map_classes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassMap {
    /// Nothing to match: the dataset names no classes (a `.npy` batch, whose labels are the model's
    /// indices) or the model has no label names.
    Indices,
    /// Every class name is one of the model's labels; the labels now are the model's indices.
    ByName,
    /// Some class names are none of the model's labels (listed): the labels stay the dataset's
    /// own indices (`class i` = the i-th name).
    Unmatched(Vec<String>),
}

/// A class name as timm's `--class-map` users write it: lower case, letters and digits only
/// (`T-shirt/top`, `t_shirt_top` and `TShirt Top` are one class).
fn class_key(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Renumbers `data`'s labels to the model's: an image folder numbers its class sub-folders in
/// sorted order, which is not the model's order; each class name is looked up among
/// `model_labels` (case and punctuation insensitive). When every name matches a distinct label,
/// the labels become the model's indices and `class_names` the model's labels; otherwise nothing
/// changes and the unmatched names are returned for the caller to report.
pub fn map_classes(data: &mut Dataset, model_labels: &[&str]) -> ClassMap {
    let Some(names) = &data.class_names else {
        return ClassMap::Indices;
    };
    if model_labels.is_empty() {
        return ClassMap::Indices;
    }
    let keys: Vec<String> = model_labels.iter().map(|l| class_key(l)).collect();
    let mut to_model = Vec::with_capacity(names.len());
    let mut unmatched = Vec::new();
    for name in names {
        let key = class_key(name);
        let hits: Vec<usize> = (0..keys.len()).filter(|&i| keys[i] == key).collect();
        match hits.as_slice() {
            [one] if !to_model.contains(&(*one as u32)) => to_model.push(*one as u32),
            _ => unmatched.push(name.clone()),
        }
    }
    if !unmatched.is_empty() {
        return ClassMap::Unmatched(unmatched);
    }
    if let Some(labels) = &mut data.labels {
        for l in labels.iter_mut() {
            // Labels index `names` (the loader made them so); an out-of-range one stays as is.
            if let Some(&m) = to_model.get(*l as usize) {
                *l = m;
            }
        }
    }
    data.class_names = Some(model_labels.iter().map(|l| l.to_string()).collect());
    ClassMap::ByName
}

/// Decodes and preprocesses one image file (PNG or JPEG) for the model.
pub fn load_image(path: &Path, cfg: &ModelConfig, pre: &Preprocess) -> Result<Vec<f32>, DataError> {
    image_from_bytes(&std::fs::read(path).map_err(io(path))?, path, cfg, pre)
}

/// [`load_image`] on the bytes of an image file already in memory: the format is told from the
/// contents, else from `path`'s extension; `path` names the image in errors. The decoders run
/// with the `image` crate's default limits (at most 512 MiB allocated for one image).
pub fn image_from_bytes(
    bytes: &[u8],
    path: &Path,
    cfg: &ModelConfig,
    pre: &Preprocess,
) -> Result<Vec<f32>, DataError> {
    image_from_bytes_limited(bytes, path, cfg, pre, image::Limits::default())
}

/// [`image_from_bytes`] with the decoders' limits given: an image whose declared size exceeds them
/// is refused before it is decoded. (The fuzz target uses small ones, so that one execution stays
/// short, on the same code.)
pub fn image_from_bytes_limited(
    bytes: &[u8],
    path: &Path,
    cfg: &ModelConfig,
    pre: &Preprocess,
    limits: image::Limits,
) -> Result<Vec<f32>, DataError> {
    let err = |reason: String| DataError::Image {
        path: path.to_path_buf(),
        reason,
    };
    // As `ImageReader::open` does: the extension's format unless the contents name another.
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    if let Ok(format) = image::ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    reader.limits(limits);
    let reader = reader.with_guessed_format().map_err(io(path))?;
    let img = decode_guarded(reader).map_err(err)?;
    preprocess(&img, cfg, pre).map_err(err)
}

thread_local! {
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is inside an image decoder right now. A decoder that panics on a corrupt
/// file is caught and its panic becomes a [`DataError::Image`]; a panic hook can use this to stay
/// quiet about it (the `cait` tool does).
pub fn decoding() -> bool {
    DECODING.with(std::cell::Cell::get)
}

/// Decodes with the third-party decoders' panics caught: they are a file's defect to the user
/// (zune-jpeg 0.5.15's AVX2 IDCT unwraps a `None` on some corrupt JPEGs; found by the image fuzz
/// target), so they become an error naming the file, not a crash.
fn decode_guarded<R: std::io::BufRead + std::io::Seek>(
    reader: image::ImageReader<R>,
) -> Result<image::DynamicImage, String> {
    DECODING.with(|d| d.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.decode()));
    DECODING.with(|d| d.set(false));
    match result {
        Ok(Ok(img)) => Ok(img),
        Ok(Err(e)) => Err(format!("not a readable image: {e}")),
        Err(_) => Err("not a readable image: the decoder failed on its data (corrupt)".into()),
    }
}

/// timm's eval transform on a decoded image, giving `[C, H, W]` for `cfg`.
///
/// Single-channel models take PIL's "L" conversion; 3-channel models the RGB conversion (a
/// grayscale image is replicated, as timm's `convert('RGB')` does); 2 or 4 channels take RGBA's first
/// channels. See [`preprocess_u8`] for the resize and crop; the result is `(v / 255 - mean) / std`
/// in f32, as torchvision's `ToTensor` + `Normalize` compute it.
pub fn preprocess(
    img: &image::DynamicImage,
    cfg: &ModelConfig,
    pre: &Preprocess,
) -> Result<Vec<f32>, String> {
    let [out_h, out_w] = cfg.img_size;
    let pixels = (out_h * out_w) as usize;
    let planes = preprocess_u8(img, cfg, pre)?;
    let mut out = Vec::with_capacity(planes.len());
    for (c, plane) in planes.chunks_exact(pixels).enumerate() {
        out.extend(plane.iter().map(|&v| pre.normalize(c, v)));
    }
    Ok(out)
}

/// PIL's "L" conversion of 8-bit RGB (`rgb2l` in Pillow's Convert.c: ITU-R 601-2 in 16-bit fixed
/// point, `(r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16`).
pub fn pil_rgb_to_l(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// The image in the mode timm's dataset hands to the transform, as interleaved 8-bit pixels:
/// "L" for 1-channel models, "RGB" for 3, RGBA otherwise. Returns `(pixels, bands)`.
fn to_model_mode(img: &image::DynamicImage, chans: usize) -> (Vec<u8>, usize) {
    use image::DynamicImage as D;
    match chans {
        1 => match img {
            D::ImageLuma8(g) => (g.as_raw().clone(), 1),
            D::ImageLumaA8(g) => (g.pixels().map(|p| p.0[0]).collect(), 1),
            _ => (
                img.to_rgb8()
                    .pixels()
                    .map(|p| pil_rgb_to_l(p.0[0], p.0[1], p.0[2]))
                    .collect(),
                1,
            ),
        },
        3 => (img.to_rgb8().into_raw(), 3),
        _ => (img.to_rgba8().into_raw(), 4),
    }
}

/// Most pixels [`preprocess_u8`] resizes an image to before its center crop (64 MiB of RGBA): room
/// for an aspect ratio of 256:1 at a 224 input with `crop_pct` 0.875.
const MAX_RESIZED_PIXELS: u64 = 1 << 24;

/// Rounds half to even, as Python's `round` does.
fn round_half_even(v: f64) -> f64 {
    v.round_ties_even()
}

/// timm's eval transform up to (not including) `ToTensor`: the uint8 image fed to the network,
/// as `[C, H, W]` planes.
///
/// - mode conversion first (timm's dataset converts the decoded image to "RGB" / "L"), using PIL's
///   formulas;
/// - resize with Pillow's own resampling ([`crate::resize`]), to the size torchvision / timm pick:
///   a square input resizes the shorter side to `floor(size / crop_pct)` and the longer one to
///   `int(short * long / short_in)` (torchvision `Resize(int)`); a non-square input uses timm's
///   `ResizeKeepRatio`: both sides divided by `min(h / th, w / tw)` with `(th, tw) =
///   floor((h, w) / crop_pct)`, rounded half to even;
/// - center crop at `round((resized - crop) / 2)`, Python's round (half to even), as torchvision;
/// - an image whose resize before the crop would exceed 2^24 pixels (an extreme aspect ratio, or
///   a tiny `crop_pct`) is refused.
///
/// `crop_pct` is stored as f32; it is taken as the shortest decimal that round-trips (`0.9f32` is
/// `0.9`), which is the Python float the cfg was written from.
pub fn preprocess_u8(
    img: &image::DynamicImage,
    cfg: &ModelConfig,
    pre: &Preprocess,
) -> Result<Vec<u8>, String> {
    let [out_h, out_w] = cfg.img_size;
    let chans = cfg.in_chans as usize;
    if !(1..=4).contains(&chans) {
        return Err(format!(
            "images can feed models with 1 to 4 input channels; this one has {chans}"
        ));
    }
    if img.width() == 0 || img.height() == 0 {
        return Err("the image is empty".into());
    }
    let crop_pct = if pre.crop_pct > 0.0 && pre.crop_pct.is_finite() {
        pre.crop_pct
            .to_string()
            .parse::<f64>()
            .unwrap_or(pre.crop_pct as f64)
    } else {
        1.0
    };
    let (w, h) = (img.width() as u64, img.height() as u64);
    let (rw, rh) = if out_h == out_w {
        // torchvision Resize(int): new_long = int(new_short * long / short)
        let target = (out_h as f64 / crop_pct).floor() as u64;
        // Saturating: a size that overflows is refused below, with the others too large.
        if w <= h {
            (target, target.saturating_mul(h) / w)
        } else {
            (target.saturating_mul(w) / h, target)
        }
    } else {
        // timm ResizeKeepRatio(scale_size, longest=0)
        let th = (out_h as f64 / crop_pct).floor();
        let tw = (out_w as f64 / crop_pct).floor();
        let ratio = (h as f64 / th).min(w as f64 / tw);
        (
            round_half_even(w as f64 / ratio) as u64,
            round_half_even(h as f64 / ratio) as u64,
        )
    };
    // torchvision would zero-pad an image smaller than the crop (only possible with crop_pct > 1);
    // resizing up to the crop instead keeps every output pixel an image pixel.
    let (rw, rh) = (
        u32::try_from(rw).unwrap_or(u32::MAX).max(out_w) as usize,
        u32::try_from(rh).unwrap_or(u32::MAX).max(out_h) as usize,
    );
    // A very elongated image (or a tiny crop_pct) would be resized to something huge before the
    // crop: refused before any of it is allocated.
    if rw as u64 * rh as u64 > MAX_RESIZED_PIXELS {
        return Err(format!(
            "resizing the {w}x{h} image to {rw}x{rh} for the {out_w}x{out_h} crop would take more \
             than {MAX_RESIZED_PIXELS} pixels (is its aspect ratio, or crop_pct {crop_pct}, right?)"
        ));
    }
    let filter = match pre.interpolation {
        Interpolation::Nearest => Filter::Nearest,
        Interpolation::Bilinear => Filter::Bilinear,
        Interpolation::Bicubic => Filter::Bicubic,
        other => {
            return Err(format!(
                "{} interpolation is not implemented",
                other.as_str()
            ));
        }
    };
    let (pixels, bands) = to_model_mode(img, chans);
    let (w, h) = (w as usize, h as usize);
    let resized = resize::resize(&pixels, w, h, bands, rw, rh, filter);
    // Center crop, rounding the offset as torchvision does (Python round: half to even).
    let (out_w, out_h) = (out_w as usize, out_h as usize);
    let left = round_half_even((rw - out_w) as f64 / 2.0) as usize;
    let top = round_half_even((rh - out_h) as f64 / 2.0) as usize;
    let mut out = Vec::with_capacity(chans * out_h * out_w);
    for c in 0..chans {
        for y in top..top + out_h {
            let row = &resized[(y * rw + left) * bands..(y * rw + left + out_w) * bands];
            out.extend(row.chunks_exact(bands).map(|p| p[c]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cait_pack::GlobalPool;

    fn gray28() -> (ModelConfig, Preprocess) {
        let cfg = ModelConfig {
            img_size: [28, 28],
            patch_size: 4,
            in_chans: 1,
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
        let mut pre = Preprocess::imagenet([1, 28, 28]);
        pre.norm_channels = 1;
        pre.mean[0] = 0.25;
        pre.std[0] = 0.5;
        (cfg, pre)
    }

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(data);
        out
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn idx_folder_normalizes_and_limits() {
        let (cfg, pre) = gray28();
        let dir = tmp();
        let pixels: Vec<u8> = (0..3 * 784).map(|i| (i % 256) as u8).collect();
        std::fs::write(
            dir.path().join("t10k-images-idx3-ubyte"),
            idx(&[3, 28, 28], &pixels),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte"),
            idx(&[3], &[9, 0, 4]),
        )
        .unwrap();
        let opts = DataOptions {
            limit: Some(2),
            ..DataOptions::default()
        };
        let d = load(dir.path(), &opts, &cfg, &pre).unwrap();
        assert_eq!((d.n, d.sample_shape), (2, [1, 28, 28]));
        assert_eq!(d.labels.as_deref(), Some(&[9, 0][..]));
        assert_eq!(d.image(1)[0], (pixels[784] as f32 / 255.0 - 0.25) / 0.5);
        assert_eq!(d.class_names.as_ref().unwrap()[9], "Ankle boot");
        // The train split is absent here.
        let opts = DataOptions {
            split: Split::Train,
            ..DataOptions::default()
        };
        assert!(matches!(
            load(dir.path(), &opts, &cfg, &pre),
            Err(DataError::NotADataset { .. })
        ));
    }

    #[test]
    fn idx_errors_are_typed() {
        let (cfg, pre) = gray28();
        let dir = tmp();
        let img = dir.path().join("t10k-images-idx3-ubyte");
        let lab = dir.path().join("t10k-labels-idx1-ubyte");
        std::fs::write(&lab, idx(&[1], &[3])).unwrap();
        // 32x32 images for a 28x28 model.
        std::fs::write(&img, idx(&[1, 32, 32], &[0; 1024])).unwrap();
        let e = load(dir.path(), &DataOptions::default(), &cfg, &pre).unwrap_err();
        assert!(matches!(e, DataError::ShapeMismatch { .. }), "{e}");
        assert!(e.to_string().contains("[1, 32, 32]"), "{e}");
        // Truncated data.
        std::fs::write(&img, idx(&[1, 28, 28], &[0; 100])).unwrap();
        let e = load(dir.path(), &DataOptions::default(), &cfg, &pre).unwrap_err();
        assert!(matches!(e, DataError::BadIdx { .. }), "{e}");
        // A label beyond the model's classes.
        std::fs::write(&img, idx(&[1, 28, 28], &[0; 784])).unwrap();
        std::fs::write(&lab, idx(&[1], &[10])).unwrap();
        let e = load(dir.path(), &DataOptions::default(), &cfg, &pre).unwrap_err();
        assert!(matches!(e, DataError::BadLabels { .. }), "{e}");
    }

    #[test]
    fn npy_batch_with_labels() {
        let (cfg, pre) = gray28();
        let dir = tmp();
        let x = dir.path().join("x.npy");
        npy::write_f32(&x, &[2, 1, 28, 28], &vec![0.5; 2 * 784]).unwrap();
        let y = dir.path().join("y.npy");
        npy::write_labels(&y, &[3, 7]).unwrap();
        let opts = DataOptions {
            labels: Some(y.clone()),
            ..DataOptions::default()
        };
        let d = load(&x, &opts, &cfg, &pre).unwrap();
        assert_eq!(d.labels.as_deref(), Some(&[3, 7][..]));
        npy::write_labels(&y, &[3]).unwrap();
        assert!(matches!(
            load(&x, &opts, &cfg, &pre),
            Err(DataError::BadLabels { .. })
        ));
        npy::write_f32(&x, &[2, 3, 28, 28], &vec![0.5; 6 * 784]).unwrap();
        assert!(matches!(
            load(&x, &DataOptions::default(), &cfg, &pre),
            Err(DataError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn image_folder_classes_in_name_order() {
        let (cfg, pre) = gray28();
        let dir = tmp();
        for (class, value) in [("b_bag", 200u8), ("a_shirt", 10)] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            image::GrayImage::from_pixel(28, 28, image::Luma([value]))
                .save(dir.path().join(class).join("0.png"))
                .unwrap();
        }
        let d = load(dir.path(), &DataOptions::default(), &cfg, &pre).unwrap();
        assert_eq!(d.class_names.as_deref().unwrap(), ["a_shirt", "b_bag"]);
        assert_eq!(d.labels.as_deref(), Some(&[0, 1][..]));
        // Same size in and out: no resampling, exact normalization.
        assert_eq!(d.image(1)[0], (200.0 / 255.0 - 0.25) / 0.5);
        let empty = tmp();
        assert!(matches!(
            load(empty.path(), &DataOptions::default(), &cfg, &pre),
            Err(DataError::NotADataset { .. })
        ));
    }

    #[test]
    fn preprocess_resizes_shorter_side_and_center_crops() {
        let (cfg, pre) = gray28();
        // 56 x 112 (w x h): the shorter side becomes 28, the long side 56, then a center crop.
        let img = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(56, 112, |_, y| {
            image::Luma([if (20..92).contains(&y) { 255 } else { 0 }])
        }));
        let out = preprocess(&img, &cfg, &pre).unwrap();
        assert_eq!(out.len(), 784);
        let white = (1.0 - 0.25) / 0.5;
        // The crop keeps rows 28..84 of the original; the white band (20..92) covers them and the
        // bicubic kernel's reach, so every output pixel is white. A wrong crop offset or a resize
        // of the long side instead would bring black rows in.
        assert!(
            out.iter().all(|&v| (v - white).abs() < 1e-6),
            "{:?}",
            &out[..28]
        );
    }

    fn named(names: &[&str], labels: &[u32]) -> Dataset {
        Dataset {
            images: vec![0.0; labels.len()],
            labels: Some(labels.to_vec()),
            n: labels.len(),
            sample_shape: [1, 1, 1],
            class_names: Some(names.iter().map(|s| s.to_string()).collect()),
        }
    }

    /// Sub-folders named after the model's classes (sorted: `Bag` < `Sneaker`) are scored as the
    /// model's classes, whatever their case and punctuation.
    #[test]
    fn folder_classes_map_to_the_models_labels_by_name() {
        let model = FASHION_MNIST_CLASSES;
        let mut d = named(&["Bag", "sneaker", "t_shirt_top"], &[0, 1, 2, 2]);
        assert_eq!(map_classes(&mut d, &model), ClassMap::ByName);
        assert_eq!(d.labels.as_deref(), Some(&[8, 7, 0, 0][..]));
        assert_eq!(d.class_names.as_ref().unwrap()[8], "Bag");
        // A name that is none of the model's classes: nothing changes, and it is named.
        let mut d = named(&["Bag", "Boots"], &[0, 1]);
        assert_eq!(
            map_classes(&mut d, &model),
            ClassMap::Unmatched(vec!["Boots".into()])
        );
        assert_eq!(d.labels.as_deref(), Some(&[0, 1][..]));
        // Two folders for one class are not a mapping either.
        let mut d = named(&["Bag", "bag!"], &[0, 1]);
        assert_eq!(
            map_classes(&mut d, &model),
            ClassMap::Unmatched(vec!["bag!".into()])
        );
        // No names on either side.
        let mut d = named(&["a", "b"], &[0, 1]);
        assert_eq!(map_classes(&mut d, &[]), ClassMap::Indices);
        d.class_names = None;
        assert_eq!(map_classes(&mut d, &model), ClassMap::Indices);
    }

    #[test]
    fn non_finite_values_are_named() {
        let mut v = vec![0.0f32; 2 * 3 * 4 * 5];
        assert!(check_finite(Path::new("x.npy"), &v, [3, 4, 5]).is_ok());
        v[60 + 20 + 5 + 2] = f32::NAN;
        let e = check_finite(Path::new("x.npy"), &v, [3, 4, 5]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.npy[1]: element [1, 1, 2] is NaN; inputs must be finite, normalized values"
        );
    }

    /// An IDX header's dimensions are claims: checked against the bytes there (after inflating,
    /// within the cap) before the data is copied.
    #[test]
    fn idx_declared_sizes_are_checked_against_the_file() {
        let path = Path::new("t10k-images-idx3-ubyte");
        let e = parse_idx(path, &idx(&[65535, 65535, 65535], &[0; 16]), 3).unwrap_err();
        assert!(e.to_string().contains("found 16"), "{e}");
        let e = parse_idx(path, &idx(&[u32::MAX; 3], &[]), 3).unwrap_err();
        assert!(matches!(e, DataError::BadIdx { .. }), "{e}");
        let e = parse_idx(path, &[0, 0, 8, 3, 0, 0], 3).unwrap_err();
        assert!(e.to_string().contains("shorter than its header"), "{e}");
        // The gzip'd file parses to the same.
        use std::io::Write;
        let plain = idx(&[2], &[7, 1]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(parse_idx(path, &gz, 1).unwrap(), (vec![2], vec![7, 1]));
        assert_eq!(parse_idx(path, &plain, 1).unwrap(), (vec![2], vec![7, 1]));
        // A gzip stream cut short is an error, not a partial file.
        assert!(parse_idx(path, &gz[..gz.len() - 9], 1).is_err());
    }

    /// A corrupt JPEG on which zune-jpeg 0.5.15's AVX2 IDCT panics (minimized from the image fuzz
    /// target's find, kept in its seed corpus): an error naming the file, or an image, but never a
    /// panic (without AVX2 the decoder takes another path).
    #[test]
    fn decoder_panics_are_errors() {
        let (cfg, pre) = gray28();
        let jpeg = include_bytes!("../fuzz/corpus/image/regression-zune-jpeg-avx2-idct-panic.jpg");
        match image_from_bytes(jpeg, Path::new("bad.jpg"), &cfg, &pre) {
            Ok(v) => assert_eq!(v.len(), 28 * 28),
            Err(e) => {
                assert!(matches!(e, DataError::Image { .. }), "{e}");
                assert!(
                    e.to_string().starts_with("bad.jpg: not a readable image"),
                    "{e}"
                );
            }
        }
        assert!(!decoding());
    }

    /// A PNG's header declares its size; one far larger than its data is refused by the decoder's
    /// allocation limit, not allocated.
    #[test]
    fn image_declared_sizes_are_bounded() {
        let (cfg, pre) = gray28();
        let png = gray_png(0x7fff_ffff, 0x7fff_ffff, &[0; 8]);
        let e = image_from_bytes(&png, Path::new("huge.png"), &cfg, &pre).unwrap_err();
        assert!(matches!(e, DataError::Image { .. }), "{e}");
        assert!(
            e.to_string().starts_with("huge.png: not a readable image"),
            "{e}"
        );
    }

    /// An 8-bit grayscale PNG of `w` x `h` whose rows (filter byte, then pixels) inflate from
    /// `rows`, compressed as well as zlib can.
    fn gray_png(w: u32, h: u32, rows: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
            out.extend((data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend(kind);
            out.extend(data);
            let crc = crc32(&out[start..]);
            out.extend(crc.to_be_bytes());
        };
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 0, 0, 0, 0]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(rows).unwrap();
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &z.finish().unwrap());
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// Found by the `image` fuzz target: a 1x65535 image (fuzz input `RAW`, w 1, h 65535, RGBA) for
    /// a 3x32x32 model resized its shorter side to 36 and so its longer one to 2.4 million rows
    /// (255 MB, 11 s of bicubic) before cropping 32 of them; a 1-pixel-wide PNG of a million rows,
    /// 4 KB of file, asked for 4 GB. A `crop_pct` near zero (a pack may hold any positive one)
    /// overflowed the size. All are refused before resizing.
    #[test]
    fn an_elongated_image_or_tiny_crop_is_refused_before_resizing() {
        let mut cfg = gray28().0;
        (cfg.in_chans, cfg.img_size) = (3, [32, 32]);
        let mut pre = Preprocess::imagenet([3, 32, 32]);
        pre.crop_pct = 0.875;
        let strip = image::DynamicImage::ImageRgba8(image::RgbaImage::new(1, 65535));
        let e = preprocess(&strip, &cfg, &pre).unwrap_err();
        assert!(
            e.contains("resizing the 1x65535 image to 36x2359260"),
            "{e}"
        );
        let png = gray_png(1, 1 << 20, &vec![0; 2 << 20]);
        assert!(png.len() < 4 << 10, "{}", png.len());
        let e = image_from_bytes(&png, Path::new("strip.png"), &cfg, &pre).unwrap_err();
        assert!(e.to_string().contains("would take more than"), "{e}");
        pre.crop_pct = 1e-30;
        let square = image::DynamicImage::ImageRgb8(image::RgbImage::new(40, 40));
        assert!(preprocess(&square, &cfg, &pre).is_err());
        (cfg.img_size, pre.input_size) = ([32, 48], [3, 32, 48]);
        assert!(preprocess(&square, &cfg, &pre).is_err());
        // A long but sane panorama (8:1) still works.
        pre.crop_pct = 0.875;
        cfg.img_size = [32, 32];
        let wide = image::DynamicImage::ImageRgb8(image::RgbImage::new(320, 40));
        assert_eq!(preprocess(&wide, &cfg, &pre).unwrap().len(), 3 * 32 * 32);
    }

    /// A small gzip file that inflates past the cap is refused, not read whole.
    #[test]
    fn a_gzip_bomb_is_refused() {
        use std::io::Write;
        let path = Path::new("bomb-ubyte.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 100_000]).unwrap();
        let bytes = gz.finish().unwrap();
        assert!(bytes.len() < 1_000);
        let e = gunzip_capped(path, &bytes, 50_000).unwrap_err();
        assert!(
            e.to_string()
                .contains("decompresses to more than 50000 bytes"),
            "{e}"
        );
        assert_eq!(gunzip_capped(path, &bytes, 100_000).unwrap().len(), 100_000);
    }
}
