//! NumPy `.npy` files (format versions 1, 2 and 3): float batches in, logits out, integer labels.
//!
//! Only what `numpy.save` writes for plain C-order arrays is accepted: a `descr` naming a float or
//! integer type, `fortran_order: False` and a shape tuple. Object arrays (pickled) are rejected, never
//! unpickled.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Headers longer than this are not something `numpy.save` writes for an array we can use.
const MAX_HEADER_LEN: usize = 1 << 20;

/// Why a `.npy` file could not be read or written. Every variant names the file.
#[derive(Debug)]
#[non_exhaustive]
pub enum NpyError {
    /// The file could not be opened, read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not start with the `.npy` magic.
    NotNpy {
        /// The file.
        path: PathBuf,
    },
    /// A format version other than 1.0, 2.0 or 3.0.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// The header dictionary is malformed.
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The array is stored in Fortran (column-major) order.
    FortranOrder {
        /// The file.
        path: PathBuf,
    },
    /// The element type is not one this function reads.
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The `descr` from the header, e.g. `"<c8"`.
        dtype: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The data is shorter (or longer) than the header's shape says.
    Truncated {
        /// The file.
        path: PathBuf,
        /// Data bytes the shape and dtype need.
        expected: u64,
        /// Data bytes present.
        found: u64,
    },
    /// The array's shape is not the one asked for (e.g. labels must be one-dimensional).
    BadShape {
        /// The file.
        path: PathBuf,
        /// The shape found.
        shape: Vec<usize>,
        /// What was expected.
        expected: &'static str,
    },
    /// An integer label does not fit in `i64`.
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// Index of the label.
        index: usize,
    },
    /// `write_f32` was given a shape whose element count differs from the data length.
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// Elements the shape implies (`None` on overflow).
        shape_elems: Option<usize>,
        /// Elements given.
        data_elems: usize,
    },
}

impl fmt::Display for NpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NpyError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            NpyError::NotNpy { path } => {
                write!(
                    f,
                    "{}: not a NumPy .npy file (no \\x93NUMPY magic)",
                    path.display()
                )
            }
            NpyError::UnsupportedVersion { path, major, minor } => write!(
                f,
                "{}: unsupported .npy format version {major}.{minor} (1.0, 2.0 and 3.0 are read)",
                path.display()
            ),
            NpyError::BadHeader { path, reason } => {
                write!(f, "{}: malformed .npy header: {reason}", path.display())
            }
            NpyError::FortranOrder { path } => write!(
                f,
                "{}: array is in Fortran order; save it C-contiguous (np.ascontiguousarray)",
                path.display()
            ),
            NpyError::UnsupportedDtype {
                path,
                dtype,
                expected,
            } => write!(
                f,
                "{}: unsupported dtype '{dtype}' (expected {expected})",
                path.display()
            ),
            NpyError::Truncated {
                path,
                expected,
                found,
            } => write!(
                f,
                "{}: data is {found} bytes but the header's shape and dtype need {expected}",
                path.display()
            ),
            NpyError::BadShape {
                path,
                shape,
                expected,
            } => write!(
                f,
                "{}: shape {shape:?}, expected {expected}",
                path.display()
            ),
            NpyError::LabelOutOfRange { path, index } => {
                write!(f, "{}: label {index} does not fit in i64", path.display())
            }
            NpyError::ShapeMismatch {
                path,
                shape_elems,
                data_elems,
            } => match shape_elems {
                Some(n) => write!(
                    f,
                    "{}: shape has {n} elements but {data_elems} values were given",
                    path.display()
                ),
                None => write!(f, "{}: shape's element count overflows", path.display()),
            },
        }
    }
}

impl std::error::Error for NpyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NpyError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Element types a `.npy` file may hold, as this module understands them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Float,
    Int,
    Uint,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Dtype {
    kind: Kind,
    size: usize,
    big_endian: bool,
}

/// A parsed header plus the data bytes that follow it.
struct Array {
    dtype: Dtype,
    descr: String,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// Reads a float array: `<f4` as is, `<f8` and `<f2` (and their big-endian forms) converted to f32.
/// Returns the shape (empty for a 0-d scalar) and the elements in C order.
pub fn read_f32(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    let path = path.as_ref();
    parse_f32(&read_file(path)?, path)
}

/// [`read_f32`] on the bytes of a `.npy` file already in memory; `path` only names it in errors.
pub fn parse_f32(bytes: &[u8], path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    let path = path.as_ref();
    let array = parse(bytes).map_err(|e| e.at(path))?;
    floats(array, path, "float32 '<f4' (or '<f8' / '<f2', converted)")
}

/// The elements of a float `array` as f32; any other dtype is refused, `expected` saying what
/// the caller takes.
fn floats(
    array: Array,
    path: &Path,
    expected: &'static str,
) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    if array.dtype.kind != Kind::Float || !matches!(array.dtype.size, 2 | 4 | 8) {
        return Err(NpyError::UnsupportedDtype {
            path: path.to_path_buf(),
            dtype: array.descr,
            expected,
        });
    }
    let big = array.dtype.big_endian;
    let data = match array.dtype.size {
        2 => array
            .data
            .chunks_exact(2)
            .map(|c| {
                let b = [c[0], c[1]];
                half::f16::from_bits(if big {
                    u16::from_be_bytes(b)
                } else {
                    u16::from_le_bytes(b)
                })
                .to_f32()
            })
            .collect(),
        4 => array
            .data
            .chunks_exact(4)
            .map(|c| {
                let b = [c[0], c[1], c[2], c[3]];
                if big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            })
            .collect(),
        _ => array
            .data
            .chunks_exact(8)
            .map(|c| {
                let b: [u8; 8] = c.try_into().unwrap_or([0; 8]);
                (if big {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                }) as f32
            })
            .collect(),
    };
    Ok((array.shape, data))
}

/// The elements of an image batch: float values, or 8-bit pixels.
#[derive(Clone, Debug, PartialEq)]
pub enum Elements {
    /// Any float dtype, as [`read_f32`] converts it.
    F32(Vec<f32>),
    /// `|u1`: 8-bit pixels.
    U8(Vec<u8>),
}

/// Reads an image batch: 8-bit pixels (`|u1`) as they are, every float dtype as [`read_f32`]
/// does. Returns the shape and the elements in C order.
pub fn read_images(path: impl AsRef<Path>) -> Result<(Vec<usize>, Elements), NpyError> {
    let path = path.as_ref();
    let array = parse(&read_file(path)?).map_err(|e| e.at(path))?;
    if array.dtype.kind == Kind::Uint && array.dtype.size == 1 {
        return Ok((array.shape, Elements::U8(array.data)));
    }
    let expected = "float32 '<f4' (normalized) or uint8 '|u1' (8-bit pixels)";
    let (shape, data) = floats(array, path, expected)?;
    Ok((shape, Elements::F32(data)))
}

/// Writes 8-bit pixels as a `|u1` C-order array (what [`read_images`] reads back).
pub fn write_u8(path: impl AsRef<Path>, shape: &[usize], data: &[u8]) -> Result<(), NpyError> {
    let bytes = encode(shape, "|u1", data.len(), data);
    write_encoded(path.as_ref(), shape, data.len(), bytes)
}

/// Reads a one-dimensional integer array of class labels (`<i8`, `<i4`, `<i2`, `|i1`, `|u1`, `<u2`,
/// `<u4`, `<u8`; also accepted big-endian).
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<i64>, NpyError> {
    let path = path.as_ref();
    parse_labels(&read_file(path)?, path)
}

/// [`read_labels`] on the bytes of a `.npy` file already in memory; `path` only names it in errors.
pub fn parse_labels(bytes: &[u8], path: impl AsRef<Path>) -> Result<Vec<i64>, NpyError> {
    let path = path.as_ref();
    let array = parse(bytes).map_err(|e| e.at(path))?;
    if array.dtype.kind == Kind::Float || !matches!(array.dtype.size, 1 | 2 | 4 | 8) {
        return Err(NpyError::UnsupportedDtype {
            path: path.to_path_buf(),
            dtype: array.descr,
            expected: "an integer type ('<i8', '<i4', '|u1', '|i1', ...)",
        });
    }
    if array.shape.len() != 1 {
        return Err(NpyError::BadShape {
            path: path.to_path_buf(),
            shape: array.shape,
            expected: "one dimension [N]",
        });
    }
    let size = array.dtype.size;
    let signed = array.dtype.kind == Kind::Int;
    let big = array.dtype.big_endian;
    array
        .data
        .chunks_exact(size)
        .enumerate()
        .map(|(index, c)| {
            let mut b = [0u8; 8];
            if big {
                for (i, &x) in c.iter().rev().enumerate() {
                    b[i] = x;
                }
            } else {
                b[..size].copy_from_slice(c);
            }
            // Sign-extend from the element's width.
            let negative = signed && b[size - 1] & 0x80 != 0;
            if negative {
                for x in &mut b[size..] {
                    *x = 0xff;
                }
            }
            let v = u64::from_le_bytes(b);
            if signed {
                Ok(v as i64)
            } else {
                i64::try_from(v).map_err(|_| NpyError::LabelOutOfRange {
                    path: path.to_path_buf(),
                    index,
                })
            }
        })
        .collect()
}

/// Writes a little-endian float32 C-order array (format 1.0, or 2.0 if the header needs it).
pub fn write_f32(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    write_encoded(path.as_ref(), shape, data.len(), encode_f32(shape, data))
}

/// Writes a file [`encode`] made of `elems` values, or says the shape did not fit them (`None`).
fn write_encoded(
    path: &Path,
    shape: &[usize],
    elems: usize,
    bytes: Option<Vec<u8>>,
) -> Result<(), NpyError> {
    let bytes = bytes.ok_or_else(|| NpyError::ShapeMismatch {
        path: path.to_path_buf(),
        shape_elems: shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)),
        data_elems: elems,
    })?;
    std::fs::write(path, bytes).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The bytes of a `.npy` file holding `data` with `shape`; `None` if they disagree.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Option<Vec<u8>> {
    let payload: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    encode(shape, "<f4", data.len(), &payload)
}

/// The bytes of a 1-D int64 `.npy` file (labels, predictions).
pub fn encode_i64(data: &[i64]) -> Vec<u8> {
    let payload: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    encode(&[data.len()], "<i8", data.len(), &payload).expect("a 1-D shape always fits its data")
}

/// Writes `labels` as a 1-D int64 `.npy` (what `read_labels` and `cait eval --labels` read).
pub fn write_labels(path: impl AsRef<Path>, labels: &[i64]) -> Result<(), NpyError> {
    let path = path.as_ref();
    std::fs::write(path, encode_i64(labels)).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A `.npy` v1 (v2 for huge headers) file: header for `descr` and `shape`, then `payload`.
fn encode(shape: &[usize], descr: &str, elems: usize, payload: &[u8]) -> Option<Vec<u8>> {
    if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))? != elems {
        return None;
    }
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // numpy pads magic + version + length + header + '\n' to a multiple of 64 bytes.
    let (version, len_bytes) = if header.len() + 1 + 10 <= u16::MAX as usize {
        (1u8, 2usize)
    } else {
        (2u8, 4usize)
    };
    let prefix = MAGIC.len() + 2 + len_bytes;
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    while prefix + header.len() + 1 < total {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(total + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

fn read_file(path: &Path) -> Result<Vec<u8>, NpyError> {
    std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A parse error before the file name is attached.
#[derive(Debug)]
enum Fault {
    NotNpy,
    Version(u8, u8),
    Header(String),
    Fortran,
    Dtype(String),
    Truncated(u64, u64),
}

impl Fault {
    fn at(self, path: &Path) -> NpyError {
        let path = path.to_path_buf();
        match self {
            Fault::NotNpy => NpyError::NotNpy { path },
            Fault::Version(major, minor) => NpyError::UnsupportedVersion { path, major, minor },
            Fault::Header(reason) => NpyError::BadHeader { path, reason },
            Fault::Fortran => NpyError::FortranOrder { path },
            Fault::Dtype(dtype) => NpyError::UnsupportedDtype {
                path,
                dtype,
                expected: "a float or integer type",
            },
            Fault::Truncated(expected, found) => NpyError::Truncated {
                path,
                expected,
                found,
            },
        }
    }
}

fn parse(bytes: &[u8]) -> Result<Array, Fault> {
    if bytes.len() < 8 || &bytes[..6] != MAGIC {
        return Err(Fault::NotNpy);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start) = match (major, minor) {
        (1, 0) => {
            let b = bytes
                .get(8..10)
                .ok_or(Fault::Truncated(10, bytes.len() as u64))?;
            (u16::from_le_bytes([b[0], b[1]]) as usize, 10)
        }
        (2 | 3, 0) => {
            let b = bytes
                .get(8..12)
                .ok_or(Fault::Truncated(12, bytes.len() as u64))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        _ => return Err(Fault::Version(major, minor)),
    };
    if header_len > MAX_HEADER_LEN {
        return Err(Fault::Header(format!(
            "header length {header_len} is implausible"
        )));
    }
    let end = start + header_len;
    let header = bytes
        .get(start..end)
        .ok_or(Fault::Header("header runs past the end of the file".into()))?;
    // Version 3 allows UTF-8 headers; 1 and 2 are latin-1, whose ASCII subset is all we accept.
    let header =
        std::str::from_utf8(header).map_err(|_| Fault::Header("header is not text".into()))?;
    let dict = parse_header(header).map_err(Fault::Header)?;
    let descr = dict.descr.ok_or(Fault::Header("no 'descr' key".into()))?;
    let fortran = dict
        .fortran_order
        .ok_or(Fault::Header("no 'fortran_order' key".into()))?;
    let shape = dict.shape.ok_or(Fault::Header("no 'shape' key".into()))?;
    if fortran {
        // A 0-d or 1-d array is the same in both orders, but numpy never writes those as Fortran.
        return Err(Fault::Fortran);
    }
    let dtype = parse_descr(&descr).ok_or_else(|| Fault::Dtype(descr.clone()))?;
    let data = &bytes[end..];
    let expected = shape
        .iter()
        .try_fold(dtype.size as u64, |a, &d| a.checked_mul(d as u64))
        .ok_or(Fault::Header("shape's byte size overflows".into()))?;
    if data.len() as u64 != expected {
        return Err(Fault::Truncated(expected, data.len() as u64));
    }
    Ok(Array {
        dtype,
        descr,
        shape,
        data: data.to_vec(),
    })
}

fn parse_descr(descr: &str) -> Option<Dtype> {
    let b = descr.as_bytes();
    if b.len() < 3 {
        return None;
    }
    let big_endian = match b[0] {
        b'<' | b'|' => false,
        b'>' => true,
        b'=' => cfg!(target_endian = "big"),
        _ => return None,
    };
    let kind = match b[1] {
        b'f' => Kind::Float,
        b'i' => Kind::Int,
        b'u' => Kind::Uint,
        _ => return None,
    };
    let size: usize = descr[2..].parse().ok()?;
    Some(Dtype {
        kind,
        size,
        big_endian,
    })
}

#[derive(Default)]
struct HeaderDict {
    descr: Option<String>,
    fortran_order: Option<bool>,
    shape: Option<Vec<usize>>,
}

/// Parses the Python dict literal numpy writes: `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
fn parse_header(text: &str) -> Result<HeaderDict, String> {
    let mut p = Lexer {
        s: text.trim_end_matches(['\n', ' ', '\0']).as_bytes(),
        i: 0,
    };
    let mut dict = HeaderDict::default();
    p.expect(b'{')?;
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        match key.as_str() {
            "descr" => {
                p.skip_ws();
                if p.peek() != Some(b'\'') && p.peek() != Some(b'"') {
                    return Err("'descr' is not a simple type string (structured dtype?)".into());
                }
                dict.descr = Some(p.string()?);
            }
            "fortran_order" => dict.fortran_order = Some(p.boolean()?),
            "shape" => dict.shape = Some(p.tuple()?),
            other => return Err(format!("unexpected key '{other}'")),
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    p.skip_ws();
    if p.i != p.s.len() {
        return Err("text after the closing brace".into());
    }
    Ok(dict)
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }
    fn string(&mut self) -> Result<String, String> {
        self.skip_ws();
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a string at byte {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == quote {
                let s = std::str::from_utf8(&self.s[start..self.i])
                    .map_err(|_| "string is not text".to_string())?;
                self.i += 1;
                return Ok(s.to_string());
            }
            self.i += 1;
        }
        Err("unterminated string".into())
    }
    fn boolean(&mut self) -> Result<bool, String> {
        self.skip_ws();
        let rest = &self.s[self.i..];
        if rest.starts_with(b"True") {
            self.i += 4;
            Ok(true)
        } else if rest.starts_with(b"False") {
            self.i += 5;
            Ok(false)
        } else {
            Err(format!("expected True or False at byte {}", self.i))
        }
    }
    fn tuple(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(dims);
            }
            self.skip_ws();
            let start = self.i;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            // Python 2 era files may write long integers as `3L`.
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
            let d: usize = digits
                .parse()
                .map_err(|_| format!("expected a dimension at byte {start}"))?;
            self.eat(b'L');
            dims.push(d);
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cait-data-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// A file as numpy writes it, with an arbitrary header and raw data.
    fn raw(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn f32_round_trip_and_numpy_layout() {
        let path = tmp("rt.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_f32(&path, &[2, 3, 4], &data).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // numpy aligns the data to 64 bytes and ends the header with a newline.
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(bytes[10 + header_len - 1], b'\n');
        assert_eq!(read_f32(&path).unwrap(), (vec![2, 3, 4], data));
    }

    /// 8-bit pixels round-trip as `|u1`; float batches come back as floats; other dtypes are
    /// refused naming both accepted ones.
    #[test]
    fn image_batches_of_pixels_or_floats() {
        let path = tmp("pixels.npy");
        let data: Vec<u8> = (0..=255).chain(0..32).collect();
        write_u8(&path, &[2, 4, 6, 6], &data).unwrap();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        assert!(text.contains("'descr': '|u1'"), "{text}");
        assert_eq!(
            read_images(&path).unwrap(),
            (vec![2, 4, 6, 6], Elements::U8(data.clone()))
        );
        assert!(write_u8(&path, &[2, 4, 6, 5], &data).is_err());
        write_f32(&path, &[2], &[0.5, -1.0]).unwrap();
        assert_eq!(
            read_images(&path).unwrap(),
            (vec![2], Elements::F32(vec![0.5, -1.0]))
        );
        std::fs::write(&path, encode_i64(&[1, 2])).unwrap();
        let e = read_images(&path).unwrap_err().to_string();
        assert!(e.contains("'<i8'") && e.contains("'|u1'"), "{e}");
    }

    #[test]
    fn one_dim_and_scalar_shapes() {
        let path = tmp("one.npy");
        write_f32(&path, &[3], &[1.0, 2.0, 3.0]).unwrap();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        assert!(text.contains("'shape': (3,)"), "{text}");
        assert_eq!(read_f32(&path).unwrap().0, vec![3]);
        write_f32(&path, &[], &[7.5]).unwrap();
        assert_eq!(read_f32(&path).unwrap(), (vec![], vec![7.5]));
    }

    #[test]
    fn f64_f16_and_big_endian_convert() {
        let path = tmp("conv.npy");
        let f8: Vec<u8> = [1.5f64, -2.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let h = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n";
        std::fs::write(&path, raw(1, h, &f8)).unwrap();
        assert_eq!(read_f32(&path).unwrap(), (vec![2], vec![1.5, -2.25]));

        let f2: Vec<u8> = [half::f16::from_f32(0.5), half::f16::from_f32(-4.0)]
            .iter()
            .flat_map(|v| v.to_bits().to_le_bytes())
            .collect();
        let h = "{'descr': '<f2', 'fortran_order': False, 'shape': (1, 2), }\n";
        std::fs::write(&path, raw(2, h, &f2)).unwrap();
        assert_eq!(read_f32(&path).unwrap(), (vec![1, 2], vec![0.5, -4.0]));

        let be: Vec<u8> = [3.0f32].iter().flat_map(|v| v.to_be_bytes()).collect();
        let h = "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n";
        std::fs::write(&path, raw(3, h, &be)).unwrap();
        assert_eq!(read_f32(&path).unwrap(), (vec![1], vec![3.0]));
    }

    #[test]
    fn labels_of_every_integer_width() {
        let path = tmp("labels.npy");
        let cases: [(&str, Vec<u8>); 4] = [
            (
                "<i8",
                [3i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            (
                "<i4",
                [3i32, -1].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            ("|i1", vec![3u8, 0xff]),
            (
                ">i2",
                [3i16, -1].iter().flat_map(|v| v.to_be_bytes()).collect(),
            ),
        ];
        for (descr, data) in cases {
            let h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}\n");
            std::fs::write(&path, raw(1, &h, &data)).unwrap();
            assert_eq!(read_labels(&path).unwrap(), vec![3, -1], "{descr}");
        }
        let h = "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }\n";
        std::fs::write(&path, raw(1, h, &[0, 9, 255])).unwrap();
        assert_eq!(read_labels(&path).unwrap(), vec![0, 9, 255]);
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let path = tmp("bad.npy");
        std::fs::write(&path, b"PK\x03\x04 not numpy").unwrap();
        let e = read_f32(&path).unwrap_err();
        assert!(matches!(e, NpyError::NotNpy { .. }));
        assert!(e.to_string().contains("bad.npy"), "{e}");

        let h = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n";
        std::fs::write(&path, raw(1, h, &[0; 16])).unwrap();
        assert!(matches!(
            read_f32(&path),
            Err(NpyError::FortranOrder { .. })
        ));

        let h = "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }\n";
        std::fs::write(&path, raw(1, h, &[0; 16])).unwrap();
        assert!(matches!(
            read_f32(&path),
            Err(NpyError::UnsupportedDtype { .. })
        ));

        let h = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }\n";
        std::fs::write(&path, raw(1, h, &[0; 16])).unwrap();
        assert!(matches!(
            read_f32(&path),
            Err(NpyError::UnsupportedDtype { .. })
        ));

        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
        std::fs::write(&path, raw(1, h, &[0; 8])).unwrap();
        assert!(matches!(
            read_labels(&path),
            Err(NpyError::UnsupportedDtype { .. })
        ));

        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n";
        std::fs::write(&path, raw(1, h, &[0; 12])).unwrap();
        let e = read_f32(&path).unwrap_err();
        assert!(
            matches!(
                e,
                NpyError::Truncated {
                    expected: 16,
                    found: 12,
                    ..
                }
            ),
            "{e}"
        );

        let h = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }\n";
        std::fs::write(&path, raw(1, h, &[0; 8])).unwrap();
        assert!(matches!(
            read_f32(&path),
            Err(NpyError::UnsupportedDtype { .. })
        ));

        let h = "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }\n";
        std::fs::write(&path, raw(1, h, &[0; 4])).unwrap();
        assert!(matches!(read_f32(&path), Err(NpyError::BadHeader { .. })));

        let mut v = raw(1, "{}", &[]);
        v[6] = 4;
        std::fs::write(&path, v).unwrap();
        assert!(matches!(
            read_f32(&path),
            Err(NpyError::UnsupportedVersion { major: 4, .. })
        ));

        let h = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 1), }\n";
        std::fs::write(&path, raw(1, h, &[0; 8])).unwrap();
        assert!(matches!(read_labels(&path), Err(NpyError::BadShape { .. })));

        assert!(matches!(
            write_f32(&path, &[2, 2], &[0.0; 3]),
            Err(NpyError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            read_f32(tmp("missing.npy")),
            Err(NpyError::Io { .. })
        ));
    }

    /// The shape is a claim: the data it needs is compared with the bytes present before any of it
    /// is copied, and the byte parsers are what the path readers run.
    #[test]
    fn declared_sizes_are_checked_against_the_file() {
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }\n";
        let e = parse_f32(&raw(1, h, &[0; 8]), "huge.npy").unwrap_err();
        assert!(
            matches!(
                e,
                NpyError::Truncated {
                    expected: 4398046511104,
                    found: 8,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("huge.npy"), "{e}");
        let h = "{'descr': '<i8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n";
        assert!(matches!(
            parse_labels(&raw(1, h, &[]), "x.npy"),
            Err(NpyError::BadHeader { .. })
        ));
        // A header length past the end of the file.
        let mut v = raw(1, "{}", &[]);
        v[8..10].copy_from_slice(&60000u16.to_le_bytes());
        assert!(matches!(
            parse_f32(&v, "x.npy"),
            Err(NpyError::BadHeader { .. })
        ));
        let path = tmp("same.npy");
        write_f32(&path, &[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(parse_f32(&bytes, &path).unwrap(), read_f32(&path).unwrap());
        write_labels(&path, &[4, -2]).unwrap();
        assert_eq!(
            parse_labels(&std::fs::read(&path).unwrap(), &path).unwrap(),
            vec![4, -2]
        );
    }
}
