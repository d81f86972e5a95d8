//! Reading checkpoint files: safetensors and torch zip archives, as state dicts of named tensors.
//!
//! Reading is two-phase: [`RawCheckpoint::open`] lists every tensor's key and shape (cheap: headers
//! and the pickle only), so the config can be inferred and checked before [`RawCheckpoint::read`]
//! converts the data of just the tensors the model needs to f32.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use zip::ZipArchive;

use crate::error::ImportError;
use crate::pickle::{self, StorageDtype, TensorRef, Value};
use crate::{CheckpointFormat, Tensor};

/// Wrapper keys a training checkpoint keeps its state dict under, in order of preference: DeiT and
/// CaiT's release files use `model`; EMA weights are used only when nothing else is there.
const WRAPPERS: [&str; 5] = [
    "model",
    "state_dict",
    "model_ema",
    "state_dict_ema",
    "module",
];

/// Key prefixes left by wrappers: `module.` from DistributedDataParallel (timm's
/// `checkpoint_filter_fn` removes it), `_orig_mod.` from `torch.compile`.
const PREFIXES: [&str; 2] = ["module.", "_orig_mod."];

/// Checkpoint file names a directory may hold, in order of preference (timm's hub names first).
const PREFERRED_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];
const CHECKPOINT_EXTENSIONS: [&str; 4] = ["safetensors", "pth", "pt", "bin"];

/// The checkpoint file and the `config.json` beside it, for a file or a hub directory.
pub(crate) fn resolve(path: &Path) -> Result<(PathBuf, Option<PathBuf>), ImportError> {
    let meta = std::fs::metadata(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (file, dir) = if meta.is_dir() {
        (find_in_dir(path)?, path.to_path_buf())
    } else {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        (path.to_path_buf(), dir)
    };
    let config = dir.join("config.json");
    Ok((file, config.is_file().then_some(config)))
}

fn find_in_dir(dir: &Path) -> Result<PathBuf, ImportError> {
    for name in PREFERRED_FILES {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    let entries = std::fs::read_dir(dir).map_err(|source| ImportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| CHECKPOINT_EXTENSIONS.contains(&e))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(ImportError::NoCheckpoint {
            dir: dir.to_path_buf(),
            reason:
                "expected model.safetensors, pytorch_model.bin, or one *.safetensors / *.pth / \
                     *.pt / *.bin file"
                    .into(),
        }),
        _ => Err(ImportError::NoCheckpoint {
            dir: dir.to_path_buf(),
            reason: format!(
                "several candidates ({}); name the file",
                found
                    .iter()
                    .filter_map(|p| p.file_name()?.to_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// One state-dict entry before its data is read.
#[derive(Clone, Debug)]
pub(crate) struct RawEntry {
    /// The key as stored (with any `module.` prefix).
    pub raw_key: String,
    /// Shape, for tensors.
    pub shape: Vec<usize>,
    /// Where the data is; `None` for a value that is not a tensor (described).
    source: Result<Source, String>,
}

impl RawEntry {
    pub fn is_tensor(&self) -> bool {
        self.source.is_ok()
    }
}

#[derive(Clone, Debug)]
enum Source {
    Safetensors,
    Torch(TensorRef),
}

/// An opened checkpoint: its entries (keys with prefixes stripped) and what reads their data.
pub(crate) struct RawCheckpoint {
    pub path: PathBuf,
    pub format: CheckpointFormat,
    pub entries: BTreeMap<String, RawEntry>,
    reader: Reader,
}

enum Reader {
    Safetensors(Vec<u8>),
    Torch(TorchArchive),
}

/// What a torch archive is read from: the file, or bytes in memory.
trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

impl RawCheckpoint {
    pub fn open(path: &Path) -> Result<RawCheckpoint, ImportError> {
        let file = File::open(path).map_err(|source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_reader(path, BufReader::new(file))
    }

    /// [`open`](Self::open) on a checkpoint file's bytes; `path` only names it in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<RawCheckpoint, ImportError> {
        Self::from_reader(path, Cursor::new(bytes))
    }

    /// Tells the format from the first bytes and opens the container: a torch zip is read where
    /// it is (only `data.pkl` now, storages when [`read`](Self::read) asks), safetensors whole.
    fn from_reader(
        path: &Path,
        mut reader: impl ReadSeek + 'static,
    ) -> Result<RawCheckpoint, ImportError> {
        let io = |source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut head = [0u8; 16];
        let n = read_up_to(&mut reader, &mut head).map_err(io)?;
        reader.seek(SeekFrom::Start(0)).map_err(io)?;
        let head = &head[..n];
        if head.starts_with(b"PK\x03\x04") {
            open_torch(path, Box::new(reader))
        } else if head.len() > 8 && head[8] == b'{' {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).map_err(io)?;
            open_safetensors(path, bytes)
        } else {
            let reason = if head.starts_with(&[0x80, 0x02, 0x8a, 0x0a]) {
                "a legacy (torch < 1.6) pickle checkpoint; re-save it with a current torch.save"
            } else if head.starts_with(&[0x80]) {
                "a bare pickle; only torch.save's zip archives are read"
            } else if head.starts_with(b"\x93NUMPY") {
                "a NumPy .npy file"
            } else if head.len() < 9 {
                "file is too short"
            } else {
                "unrecognised header"
            };
            Err(ImportError::UnknownFormat {
                path: path.to_path_buf(),
                reason: reason.into(),
            })
        }
    }

    /// Converts the named entries (stripped keys) to f32 tensors.
    pub fn read(&mut self, keys: &[String]) -> Result<BTreeMap<String, Tensor>, ImportError> {
        let path = self.path.clone();
        let bad = |tensor: &str, reason: String| ImportError::BadTensor {
            path: path.clone(),
            tensor: tensor.to_string(),
            reason,
        };
        let mut out = BTreeMap::new();
        match &mut self.reader {
            Reader::Safetensors(bytes) => {
                let st = SafeTensors::deserialize(bytes).map_err(|e| ImportError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                for key in keys {
                    let entry = lookup(&self.entries, key, &bad)?;
                    let view = st
                        .tensor(&entry.raw_key)
                        .map_err(|e| bad(key, e.to_string()))?;
                    let elem = match view.dtype() {
                        Dtype::F32 => Elem::F32,
                        Dtype::F16 => Elem::F16,
                        Dtype::BF16 => Elem::BF16,
                        Dtype::F64 => Elem::F64,
                        other => {
                            return Err(bad(
                                key,
                                format!("dtype {other} is not a float type (F32, F16, BF16)"),
                            ));
                        }
                    };
                    let data = convert(view.data(), elem, false);
                    out.insert(key.clone(), Tensor::new(entry.shape.clone(), data));
                }
            }
            Reader::Torch(archive) => {
                for key in keys {
                    let entry = lookup(&self.entries, key, &bad)?;
                    let Ok(Source::Torch(t)) = &entry.source else {
                        return Err(bad(key, "not a tensor".into()));
                    };
                    let data = archive.read_tensor(t).map_err(|reason| bad(key, reason))?;
                    out.insert(key.clone(), Tensor::new(entry.shape.clone(), data));
                }
            }
        }
        Ok(out)
    }
}

fn lookup<'e>(
    entries: &'e BTreeMap<String, RawEntry>,
    key: &str,
    bad: &impl Fn(&str, String) -> ImportError,
) -> Result<&'e RawEntry, ImportError> {
    let entry = entries
        .get(key)
        .ok_or_else(|| bad(key, "not in the checkpoint".into()))?;
    if let Err(what) = &entry.source {
        return Err(bad(key, format!("is a {what}, not a tensor")));
    }
    Ok(entry)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn strip_prefixes(mut key: &str) -> &str {
    loop {
        match PREFIXES.iter().find_map(|p| key.strip_prefix(p)) {
            Some(rest) => key = rest,
            None => return key,
        }
    }
}

/// Adds an entry under its stripped key; two raw keys naming the same tensor is an error.
fn insert(
    path: &Path,
    entries: &mut BTreeMap<String, RawEntry>,
    entry: RawEntry,
) -> Result<(), ImportError> {
    let key = strip_prefixes(&entry.raw_key).to_string();
    if let Some(previous) = entries.get(&key) {
        return Err(ImportError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "keys {} and {} both name {key} once the module. prefix is removed",
                previous.raw_key, entry.raw_key
            ),
        });
    }
    entries.insert(key, entry);
    Ok(())
}

fn open_safetensors(path: &Path, bytes: Vec<u8>) -> Result<RawCheckpoint, ImportError> {
    let mut entries = BTreeMap::new();
    {
        let st = SafeTensors::deserialize(&bytes).map_err(|e| ImportError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        for (name, view) in st.iter() {
            let entry = RawEntry {
                raw_key: name.to_string(),
                shape: view.shape().to_vec(),
                source: Ok(Source::Safetensors),
            };
            insert(path, &mut entries, entry)?;
        }
    }
    Ok(RawCheckpoint {
        path: path.to_path_buf(),
        format: CheckpointFormat::Safetensors,
        entries,
        reader: Reader::Safetensors(bytes),
    })
}

fn open_torch(path: &Path, reader: Box<dyn ReadSeek>) -> Result<RawCheckpoint, ImportError> {
    let (archive, root) = TorchArchive::open(path, reader)?;
    let state = find_state_dict(&root).map_err(|reason| ImportError::NoStateDict {
        path: path.to_path_buf(),
        reason,
    })?;
    let mut entries = BTreeMap::new();
    for (k, v) in state {
        let Some(key) = k.as_str() else { continue };
        let (shape, source) = match v {
            Value::Tensor(t) => {
                let shape = t
                    .size
                    .iter()
                    .map(|&d| usize::try_from(d))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| ImportError::Corrupt {
                        path: path.to_path_buf(),
                        reason: format!("tensor {key} has a dimension that overflows"),
                    })?;
                (shape, Ok(Source::Torch(t.clone())))
            }
            other => (Vec::new(), Err(other.kind())),
        };
        let entry = RawEntry {
            raw_key: key.to_string(),
            shape,
            source,
        };
        insert(path, &mut entries, entry)?;
    }
    Ok(RawCheckpoint {
        path: path.to_path_buf(),
        format: CheckpointFormat::TorchZip,
        entries,
        reader: Reader::Torch(archive),
    })
}

/// The state dict inside a decoded `data.pkl`: the root if it maps names to tensors, else the first
/// wrapper key (see [`WRAPPERS`]) that does.
fn find_state_dict(root: &Value) -> Result<&[(Value, Value)], String> {
    let has_tensors =
        |entries: &[(Value, Value)]| entries.iter().any(|(_, v)| matches!(v, Value::Tensor(_)));
    let Some(entries) = root.as_dict() else {
        return Err(format!(
            "the pickled object is a {}, not a dict (a whole pickled model or TorchScript archive? \
             save model.state_dict())",
            root.kind()
        ));
    };
    if has_tensors(entries) {
        return Ok(entries);
    }
    for wrapper in WRAPPERS {
        if let Some(inner) = root.get(wrapper).and_then(Value::as_dict)
            && has_tensors(inner)
        {
            return Ok(inner);
        }
    }
    let keys: Vec<String> = entries
        .iter()
        .take(8)
        .map(|(k, v)| match k.as_str() {
            Some(s) => format!("{s}: {}", v.kind()),
            None => k.kind(),
        })
        .collect();
    Err(format!(
        "no tensors at the top level or under {}; top-level entries: {{{}}}",
        WRAPPERS.join("/"),
        keys.join(", ")
    ))
}

/// Most bytes `data.pkl` may inflate to (a CaiT's is a few KB): a small compressed record that
/// claims more is refused instead of exhausting memory.
const MAX_PICKLE_BYTES: usize = 1 << 30;

/// A `torch.save` zip archive: `<name>/data.pkl` plus one `<name>/data/<key>` record per storage.
struct TorchArchive {
    zip: ZipArchive<Box<dyn ReadSeek>>,
    /// The archive's size in bytes: no record can be larger stored, so no more is reserved for one.
    len: u64,
    /// `<name>/`, the folder every record sits in.
    prefix: String,
    big_endian: bool,
    /// The last storage read: tensors often share one (tied or sliced weights).
    cache: Option<(String, Vec<u8>)>,
}

impl TorchArchive {
    fn open(
        path: &Path,
        mut reader: Box<dyn ReadSeek>,
    ) -> Result<(TorchArchive, Value), ImportError> {
        let corrupt = |reason: String| ImportError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let len = reader
            .seek(SeekFrom::End(0))
            .and_then(|len| reader.seek(SeekFrom::Start(0)).map(|_| len))
            .map_err(|source| ImportError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let mut zip = ZipArchive::new(reader).map_err(|e| corrupt(format!("zip archive: {e}")))?;
        let pkl: Vec<&str> = zip
            .file_names()
            .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
            .collect();
        let pkl = match pkl.as_slice() {
            [one] => one.to_string(),
            [] => {
                return Err(ImportError::UnknownFormat {
                    path: path.to_path_buf(),
                    reason: "a zip archive without data.pkl, so not a torch.save checkpoint".into(),
                });
            }
            _ => return Err(corrupt("several data.pkl records".into())),
        };
        let prefix = pkl[..pkl.len() - "data.pkl".len()].to_string();
        let bytes = read_record(&mut zip, len, &pkl, MAX_PICKLE_BYTES + 1).map_err(corrupt)?;
        if bytes.len() > MAX_PICKLE_BYTES {
            return Err(corrupt(format!(
                "{pkl} inflates to more than {MAX_PICKLE_BYTES} bytes"
            )));
        }
        // torch >= 1.13 records the byte order of the storages; older archives are little-endian.
        let byteorder_name = format!("{prefix}byteorder");
        let big_endian = if zip.index_for_name(&byteorder_name).is_some() {
            let order = read_record(&mut zip, len, &byteorder_name, 16).map_err(corrupt)?;
            match order.as_slice() {
                b"little" => false,
                b"big" => true,
                other => {
                    return Err(corrupt(format!(
                        "byteorder record is {:?}",
                        String::from_utf8_lossy(other)
                    )));
                }
            }
        } else {
            false
        };
        let root = pickle::unpickle(&bytes).map_err(|source| ImportError::Pickle {
            path: path.to_path_buf(),
            source,
        })?;
        Ok((
            TorchArchive {
                zip,
                len,
                prefix,
                big_endian,
                cache: None,
            },
            root,
        ))
    }

    fn read_tensor(&mut self, t: &TensorRef) -> Result<Vec<f32>, String> {
        let elem = match t.storage.dtype {
            StorageDtype::F32 => Elem::F32,
            StorageDtype::F16 => Elem::F16,
            StorageDtype::BF16 => Elem::BF16,
            StorageDtype::F64 => Elem::F64,
            ref other => {
                return Err(format!(
                    "dtype {other} is not a float type (float32, float16, bfloat16)"
                ));
            }
        };
        let esize = elem.size();
        let storage_bytes = usize::try_from(t.storage.numel)
            .ok()
            .and_then(|n| n.checked_mul(esize))
            .ok_or("storage size overflows")?;
        let key = &t.storage.key;
        // Tensors of one storage all give its size; a file where a later one gives more must not
        // read past what was cached for an earlier one, so the record is read again and checked.
        let cached = self
            .cache
            .as_ref()
            .is_some_and(|(k, data)| k == key && data.len() >= storage_bytes);
        if !cached {
            let name = format!("{}data/{key}", self.prefix);
            let data = read_record(&mut self.zip, self.len, &name, storage_bytes)?;
            if data.len() < storage_bytes {
                return Err(format!(
                    "storage record {name} has {} bytes, {} needed",
                    data.len(),
                    storage_bytes
                ));
            }
            self.cache = Some((key.clone(), data));
        }
        let storage = match &self.cache {
            Some((_, data)) => &data[..storage_bytes],
            None => return Err("storage not read".into()),
        };
        let bytes = gather(storage, esize, t)?;
        Ok(convert(&bytes, elem, self.big_endian))
    }
}

/// Reads a zip record of an archive of `archive_len` bytes, refusing more than `limit` bytes (a
/// bound from the pickle, not the zip).
fn read_record(
    zip: &mut ZipArchive<Box<dyn ReadSeek>>,
    archive_len: u64,
    name: &str,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let file = zip
        .by_name(name)
        .map_err(|e| format!("record {name}: {e}"))?;
    // The sizes in a zip's directory are claims: reserve no more than the archive holds (what a
    // stored record, as torch writes them, can have); a compressed one grows as it inflates.
    let hint = usize::try_from(file.size().min(archive_len))
        .unwrap_or(0)
        .min(limit)
        .min(1 << 28);
    let mut data = Vec::with_capacity(hint);
    file.take(limit as u64)
        .read_to_end(&mut data)
        .map_err(|e| format!("record {name}: {e}"))?;
    Ok(data)
}

/// The bytes of a (possibly strided) view, in C order.
fn gather(storage: &[u8], esize: usize, t: &TensorRef) -> Result<Vec<u8>, String> {
    let numel = t
        .size
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or("element count overflows")?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    let storage_numel = (storage.len() / esize) as u64;
    // Only a zero or overlapping stride gives a view more elements than its storage, and no saved
    // weight has one: refusing it bounds the copy by the storage record, so by the file.
    if numel > storage_numel {
        return Err(format!(
            "view of {numel} elements (size {:?}, stride {:?}) is larger than its storage of \
             {storage_numel} elements",
            t.size, t.stride
        ));
    }
    // The furthest element the view touches must lie inside the storage.
    let last = t
        .size
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |a, (&d, &s)| {
            a.checked_add((d - 1).checked_mul(s)?)
        })
        .ok_or("view extent overflows")?;
    if last >= storage_numel {
        return Err(format!(
            "view (offset {}, size {:?}, stride {:?}) runs past its storage of {storage_numel} elements",
            t.offset, t.size, t.stride
        ));
    }
    let contiguous = {
        let mut expect = 1u64;
        let mut ok = true;
        for (&d, &s) in t.size.iter().zip(&t.stride).rev() {
            if d != 1 && s != expect {
                ok = false;
            }
            expect *= d;
        }
        ok
    };
    let start = t.offset as usize * esize;
    if contiguous {
        return Ok(storage[start..start + numel as usize * esize].to_vec());
    }
    let mut out = Vec::with_capacity(numel as usize * esize);
    let rank = t.size.len();
    let mut index = vec![0u64; rank];
    for _ in 0..numel {
        let at = t.offset
            + index
                .iter()
                .zip(&t.stride)
                .map(|(&i, &s)| i * s)
                .sum::<u64>();
        let at = at as usize * esize;
        out.extend_from_slice(&storage[at..at + esize]);
        for k in (0..rank).rev() {
            index[k] += 1;
            if index[k] < t.size[k] {
                break;
            }
            index[k] = 0;
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    F32,
    F16,
    BF16,
    F64,
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F16 | Elem::BF16 => 2,
            Elem::F64 => 8,
        }
    }
}

fn convert(bytes: &[u8], elem: Elem, big_endian: bool) -> Vec<f32> {
    let u16_of = |c: &[u8]| {
        let b = [c[0], c[1]];
        if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    match elem {
        Elem::F32 => bytes
            .chunks_exact(4)
            .map(|c| {
                let b = [c[0], c[1], c[2], c[3]];
                if big_endian {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            })
            .collect(),
        Elem::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_bits(u16_of(c)).to_f32())
            .collect(),
        Elem::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_bits(u16_of(c)).to_f32())
            .collect(),
        Elem::F64 => bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                (if big_endian {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                }) as f32
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle::StorageRef;

    fn view(offset: u64, size: &[u64], stride: &[u64]) -> TensorRef {
        TensorRef {
            storage: StorageRef {
                key: "0".into(),
                dtype: StorageDtype::F32,
                numel: 12,
                location: "cpu".into(),
            },
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        }
    }

    fn storage() -> Vec<u8> {
        (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect()
    }

    fn floats(b: &[u8]) -> Vec<f32> {
        convert(b, Elem::F32, false)
    }

    #[test]
    fn gather_handles_offsets_transposes_and_bounds() {
        let s = storage();
        // A contiguous [2, 3] view from element 2.
        let v = gather(&s, 4, &view(2, &[2, 3], &[3, 1])).unwrap();
        assert_eq!(floats(&v), vec![2., 3., 4., 5., 6., 7.]);
        // The transpose of a [3, 4] matrix: size [4, 3], stride [1, 4].
        let v = gather(&s, 4, &view(0, &[4, 3], &[1, 4])).unwrap();
        assert_eq!(
            floats(&v),
            vec![0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]
        );
        // A broadcast (stride 0) row.
        let v = gather(&s, 4, &view(1, &[2, 2], &[0, 1])).unwrap();
        assert_eq!(floats(&v), vec![1., 2., 1., 2.]);
        // One element past the end.
        assert!(gather(&s, 4, &view(1, &[12], &[1])).is_err());
        assert!(gather(&s, 4, &view(0, &[2, 2], &[u64::MAX, 1])).is_err());
    }

    /// A zero stride repeats elements: a tiny storage could stand for a view of any size, whose
    /// copy would be allocated whole (here 4 TiB) before this check.
    #[test]
    fn a_view_cannot_outgrow_its_storage() {
        let s = storage();
        let e = gather(&s, 4, &view(0, &[1 << 40], &[0])).unwrap_err();
        assert!(e.contains("larger than its storage of 12 elements"), "{e}");
        assert!(gather(&s, 4, &view(0, &[13], &[0])).is_err());
        // As many elements as the storage, even repeated, is still read.
        let v = gather(&s, 4, &view(0, &[3, 4], &[0, 1])).unwrap();
        assert_eq!(floats(&v)[8..], [0., 1., 2., 3.]);
    }

    #[test]
    fn half_types_convert_exactly() {
        let h: Vec<u8> = [1.5f32, -0.25]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        assert_eq!(convert(&h, Elem::F16, false), vec![1.5, -0.25]);
        let b: Vec<u8> = [3.0f32, -1e30]
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_be_bytes())
            .collect();
        assert_eq!(
            convert(&b, Elem::BF16, true),
            vec![3.0, half::bf16::from_f32(-1e30).to_f32()]
        );
    }

    #[test]
    fn prefixes_strip_repeatedly() {
        assert_eq!(
            strip_prefixes("module.blocks.0.gamma_1"),
            "blocks.0.gamma_1"
        );
        assert_eq!(
            strip_prefixes("_orig_mod.module.norm.weight"),
            "norm.weight"
        );
        assert_eq!(strip_prefixes("head.weight"), "head.weight");
    }
}
