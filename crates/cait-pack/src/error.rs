//! Why a pack was rejected, or a tensor view refused.

use core::fmt;

use crate::{ConfigError, DType, Shape, TensorId};

/// Bytes of a name an [`ErrorName`] keeps (every timm CaiT key fits).
pub const ERROR_NAME_CAPACITY: usize = 48;

/// A name quoted in a [`PackError`]: the entry's table index (when known) plus a copy of (the start
/// of) its name.
///
/// Errors own their names so that they are `'static` (usable with `?` into `Box<dyn Error>` or
/// `anyhow`) while the reader stays allocation-free. Names longer than [`ERROR_NAME_CAPACITY`] bytes
/// are cut at a character boundary and shown with a trailing `…`; an entry whose name could not be
/// read (not UTF-8, out of bounds) is shown by index alone.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ErrorName {
    /// `u32::MAX` when unknown.
    index: u32,
    len: u8,
    truncated: bool,
    bytes: [u8; ERROR_NAME_CAPACITY],
}

impl ErrorName {
    /// Entry `index`, named `name` (`""` when unknown).
    pub fn new(index: u32, name: &str) -> ErrorName {
        Self::build(index, name)
    }

    /// A name whose table index is unknown (a [`TensorView`](crate::TensorView) does not carry it).
    pub fn unindexed(name: &str) -> ErrorName {
        Self::build(u32::MAX, name)
    }

    fn build(index: u32, name: &str) -> ErrorName {
        let mut end = name.len().min(ERROR_NAME_CAPACITY);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; ERROR_NAME_CAPACITY];
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        ErrorName {
            index,
            len: end as u8,
            truncated: end < name.len(),
            bytes,
        }
    }

    /// Entry `index`, whose name is unknown.
    pub fn index_only(index: u32) -> ErrorName {
        ErrorName::new(index, "")
    }

    /// Index of the entry in its table (the tensor table for tensors), when known.
    pub fn index(&self) -> Option<u32> {
        (self.index != u32::MAX).then_some(self.index)
    }

    /// The name, or its first [`ERROR_NAME_CAPACITY`] bytes; `""` when unknown.
    pub fn as_str(&self) -> &str {
        // Always a char-boundary prefix of a `&str`, so this never fails.
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    /// Whether [`ErrorName::as_str`] is only the start of the name.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl fmt::Display for ErrorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.as_str(), self.truncated) {
            ("", _) if self.index == u32::MAX => f.write_str("?"),
            ("", _) => write!(f, "#{}", self.index),
            (name, false) => write!(f, "`{name}`"),
            (name, true) => write!(f, "`{name}…`"),
        }
    }
}

impl fmt::Debug for ErrorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index() {
            Some(i) => write!(f, "{self} (#{i})"),
            None => write!(f, "{self}"),
        }
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for ErrorName {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "#{=u32} `{=str}`", self.index, self.as_str())
    }
}

/// Why [`Pack::parse`](crate::Pack::parse) rejected some bytes, or a tensor lookup or view failed.
///
/// Every variant names the field, section or tensor at fault. The type is `Copy` and `'static`
/// (names are copied in, see [`ErrorName`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PackError {
    /// The input ends before `what` does.
    Truncated {
        /// The structure that is cut short.
        what: &'static str,
    },
    /// The first eight bytes are not [`MAGIC`](crate::MAGIC): not a `.cait` pack.
    BadMagic,
    /// The format version is not one this reader reads (it reads [`VERSION`](crate::VERSION)).
    UnsupportedVersion(u32),
    /// The header length field is not the one this format version defines.
    BadHeaderLength(u32),
    /// The input is longer than the length the header declares.
    TrailingBytes {
        /// Declared total length.
        declared: u64,
        /// Length of the input.
        found: u64,
    },
    /// The CRC-32 of the pack is not the one stored in its header.
    ChecksumMismatch {
        /// The stored checksum.
        expected: u32,
        /// The checksum of the bytes.
        found: u32,
    },
    /// The header sets flags this reader does not know (all must be zero in version 1).
    UnsupportedFlags(u32),
    /// A reserved field or padding inside the header or a table entry is not zero.
    ReservedNotZero {
        /// Which field.
        field: &'static str,
    },
    /// A reserved field or padding of a tensor-table entry is not zero.
    EntryReservedNotZero {
        /// The tensor.
        name: ErrorName,
        /// Which field.
        field: &'static str,
    },
    /// An enumeration byte holds a value with no meaning.
    BadEnum {
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u8,
    },
    /// The model config is inconsistent.
    InvalidConfig(ConfigError),
    /// A preprocessing field is invalid or disagrees with the config.
    InvalidPreprocess {
        /// Which field.
        field: &'static str,
    },
    /// A section lies outside the pack or inside the header.
    SectionOutOfBounds {
        /// Which section.
        section: &'static str,
    },
    /// A section does not start at a multiple of 8 bytes.
    MisalignedSection {
        /// Which section.
        section: &'static str,
    },
    /// Two sections share bytes.
    OverlappingSections {
        /// One section.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// A section's length disagrees with the entry count it must hold.
    SectionLength {
        /// Which section.
        section: &'static str,
        /// Length implied by the entry count.
        expected: u64,
        /// Length declared.
        found: u64,
    },
    /// A table holds more entries than a pack may have.
    TooMany {
        /// Which table.
        what: &'static str,
        /// Entries declared.
        count: u64,
        /// Most allowed.
        max: u64,
    },
    /// A string table's end offsets go backwards or do not end at the section's end.
    BadStringTable {
        /// Which section.
        section: &'static str,
    },
    /// A string is not valid UTF-8.
    InvalidUtf8 {
        /// Which string table.
        what: &'static str,
        /// Index of the string in it.
        index: u32,
    },
    /// A string is longer than its field allows.
    StringTooLong {
        /// Which string table.
        what: &'static str,
        /// Index of the string in it.
        index: u32,
        /// Most bytes allowed.
        max: u32,
    },
    /// A name (tensor name or metadata key) is empty.
    EmptyName {
        /// Which string table.
        what: &'static str,
        /// Index of the name in it.
        index: u32,
    },
    /// The labels are not one per logit.
    LabelCount {
        /// `config.logits_len()` (0 when the model has no head).
        expected: u64,
        /// Labels stored.
        found: u64,
    },
    /// Two metadata entries have the same key.
    DuplicateMetadataKey {
        /// The key, by entry index.
        key: ErrorName,
    },
    /// Metadata keys are not in ascending byte order.
    UnsortedMetadata {
        /// The first key out of order.
        key: ErrorName,
    },
    /// A name-index entry is not a tensor index.
    BadNameIndex {
        /// Position in the name index.
        position: u32,
        /// The value found.
        value: u32,
    },
    /// The name index does not list tensor names in ascending byte order.
    UnsortedNameIndex {
        /// The first tensor out of order.
        name: ErrorName,
    },
    /// Two tensors have the same name.
    DuplicateTensorName {
        /// The name.
        name: ErrorName,
    },
    /// A table's entry count disagrees with the tensor count in the header.
    CountMismatch {
        /// Which table.
        what: &'static str,
        /// The header's tensor count.
        expected: u64,
        /// Entries in the table.
        found: u64,
    },
    /// The metadata string table does not hold whole key/value pairs.
    OddMetadataCount {
        /// Strings in the table.
        count: u32,
    },
    /// A tensor's dtype byte is not a [`DType`] code.
    BadDType {
        /// The tensor.
        name: ErrorName,
        /// The code found.
        code: u8,
    },
    /// A tensor's quantization kind byte is not a [`Quant`](crate::Quant) code.
    BadQuantKind {
        /// The tensor.
        name: ErrorName,
        /// The code found.
        code: u8,
    },
    /// A tensor's rank is outside `1..=MAX_RANK`.
    BadRank {
        /// The tensor.
        name: ErrorName,
        /// The rank found.
        rank: u8,
    },
    /// A tensor's element or byte count overflows.
    TensorTooLarge {
        /// The tensor.
        name: ErrorName,
    },
    /// A tensor's data lies outside the pack or inside the header.
    TensorOutOfBounds {
        /// The tensor.
        name: ErrorName,
    },
    /// A tensor's data does not start at a multiple of 64 bytes from the start of the pack.
    MisalignedTensor {
        /// The tensor.
        name: ErrorName,
        /// Its data offset.
        offset: u64,
    },
    /// Two tensors' data share bytes.
    OverlappingTensors {
        /// The earlier tensor in the table.
        first: ErrorName,
        /// The later one.
        second: ErrorName,
    },
    /// A tensor's data starts before the data of the tensor before it in the table ends.
    TensorsOutOfOrder {
        /// The tensor out of order.
        name: ErrorName,
    },
    /// A tensor's data overlaps a section.
    SectionOverlapsTensor {
        /// The section.
        section: &'static str,
        /// The tensor.
        tensor: ErrorName,
    },
    /// A tensor's data length is not its element count times its element size.
    DataLengthMismatch {
        /// The tensor.
        name: ErrorName,
        /// Bytes implied by shape and dtype.
        expected: u64,
        /// Bytes declared.
        found: u64,
    },
    /// A tensor named as a CaiT parameter that this config does not have.
    UnexpectedTensor {
        /// The tensor.
        name: ErrorName,
    },
    /// A CaiT parameter's shape is not the one the config implies.
    ShapeMismatch {
        /// The tensor.
        name: ErrorName,
        /// `config.shape_of(id)`.
        expected: Shape,
        /// Shape stored.
        found: Shape,
    },
    /// A float tensor carries quantization parameters (only `i8`/`i32` tensors may).
    QuantizedFloat {
        /// The tensor.
        name: ErrorName,
    },
    /// A quantization scale is not finite and positive.
    BadScale {
        /// The tensor holding the scale (the scales tensor, for per-channel scales).
        name: ErrorName,
    },
    /// A per-channel quantization axis is not below the tensor's rank.
    BadQuantAxis {
        /// The tensor.
        name: ErrorName,
        /// The axis found.
        axis: u8,
    },
    /// A per-channel scales index is not another tensor of the table.
    BadScalesIndex {
        /// The quantized tensor.
        name: ErrorName,
        /// The index found.
        index: u32,
    },
    /// A per-channel scales tensor is not `f32`.
    ScalesNotF32 {
        /// The quantized tensor.
        name: ErrorName,
    },
    /// A per-channel scales tensor's length is not the size of the quantized axis.
    ScalesLength {
        /// The quantized tensor.
        name: ErrorName,
        /// Size of the axis.
        expected: u64,
        /// Elements of the scales tensor.
        found: u64,
    },
    /// The pack has no tensor with this id (a lookup, not a parse failure).
    MissingTensor(TensorId),
    /// A typed view asked for a different element type than the tensor has.
    WrongDType {
        /// The tensor.
        name: ErrorName,
        /// The type asked for.
        expected: DType,
        /// The tensor's type.
        found: DType,
    },
    /// A typed view is not aligned in memory for its element type: place the pack at a 64-byte
    /// aligned address.
    Misaligned {
        /// The tensor.
        name: ErrorName,
    },
}

// Small enough to return by value everywhere (clippy's `result_large_err` bound).
const _: () = assert!(core::mem::size_of::<PackError>() <= 128);

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PackError::*;
        match self {
            Truncated { what } => write!(f, "pack truncated: input ends inside the {what}"),
            BadMagic => f.write_str("not a .cait pack (bad magic)"),
            UnsupportedVersion(v) => write!(
                f,
                "unsupported .cait format version {v} (this reader reads version {})",
                crate::VERSION
            ),
            BadHeaderLength(n) => write!(
                f,
                "header length is {n}, format version {} defines {}",
                crate::VERSION,
                crate::HEADER_LEN
            ),
            TrailingBytes { declared, found } => write!(
                f,
                "{} trailing bytes: the header declares {declared} bytes, the input has {found}",
                found.saturating_sub(*declared)
            ),
            ChecksumMismatch { expected, found } => write!(
                f,
                "checksum mismatch: header says CRC-32 {expected:#010x}, the bytes give {found:#010x}"
            ),
            UnsupportedFlags(flags) => write!(f, "unsupported header flags {flags:#010x}"),
            ReservedNotZero { field } => write!(f, "reserved field `{field}` is not zero"),
            EntryReservedNotZero { name, field } => {
                write!(f, "tensor {name}: reserved field `{field}` is not zero")
            }
            BadEnum { field, value } => write!(f, "invalid value {value} for `{field}`"),
            InvalidConfig(e) => write!(f, "invalid model config: {e}"),
            InvalidPreprocess { field } => write!(f, "invalid preprocessing field `{field}`"),
            SectionOutOfBounds { section } => {
                write!(
                    f,
                    "section `{section}` lies outside the pack or inside the header"
                )
            }
            MisalignedSection { section } => {
                write!(f, "section `{section}` does not start at a multiple of 8")
            }
            OverlappingSections { first, second } => {
                write!(f, "sections `{first}` and `{second}` overlap")
            }
            SectionLength {
                section,
                expected,
                found,
            } => write!(
                f,
                "section `{section}` is {found} bytes, its entry count implies {expected}"
            ),
            TooMany { what, count, max } => {
                write!(f, "{count} {what}, more than the {max} a pack may hold")
            }
            BadStringTable { section } => write!(
                f,
                "string table `{section}`: end offsets decrease or do not end at the section end"
            ),
            InvalidUtf8 { what, index } => write!(f, "{what} #{index} is not valid UTF-8"),
            StringTooLong { what, index, max } => {
                write!(f, "{what} #{index} is longer than {max} bytes")
            }
            EmptyName { what, index } => write!(f, "{what} #{index} is empty"),
            LabelCount { expected, found } => write!(
                f,
                "{found} class labels for {expected} logits (labels are one per logit, or none)"
            ),
            DuplicateMetadataKey { key } => write!(f, "duplicate metadata key {key}"),
            UnsortedMetadata { key } => {
                write!(f, "metadata key {key} is out of ascending byte order")
            }
            BadNameIndex { position, value } => write!(
                f,
                "name index entry {position} is {value}, not a tensor index"
            ),
            UnsortedNameIndex { name } => {
                write!(
                    f,
                    "name index: tensor {name} is out of ascending byte order"
                )
            }
            DuplicateTensorName { name } => write!(f, "duplicate tensor name {name}"),
            CountMismatch {
                what,
                expected,
                found,
            } => write!(
                f,
                "{what} holds {found} entries, the header declares {expected} tensors"
            ),
            OddMetadataCount { count } => write!(
                f,
                "metadata holds {count} strings, not whole key/value pairs"
            ),
            BadDType { name, code } => write!(f, "tensor {name}: invalid dtype code {code}"),
            BadQuantKind { name, code } => {
                write!(f, "tensor {name}: invalid quantization kind {code}")
            }
            BadRank { name, rank } => write!(
                f,
                "tensor {name}: rank {rank} is outside 1..={}",
                crate::MAX_RANK
            ),
            TensorTooLarge { name } => write!(f, "tensor {name}: size overflows"),
            TensorOutOfBounds { name } => {
                write!(
                    f,
                    "tensor {name}: data lies outside the pack or inside the header"
                )
            }
            MisalignedTensor { name, offset } => write!(
                f,
                "tensor {name}: data offset {offset} is not a multiple of {}",
                crate::DATA_ALIGN
            ),
            OverlappingTensors { first, second } => {
                write!(f, "tensors {first} and {second} overlap")
            }
            TensorsOutOfOrder { name } => write!(
                f,
                "tensor {name}: data starts before the previous tensor's data (data must follow table order)"
            ),
            SectionOverlapsTensor { section, tensor } => {
                write!(
                    f,
                    "section `{section}` overlaps the data of tensor {tensor}"
                )
            }
            DataLengthMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor {name}: {found} data bytes, shape and dtype imply {expected}"
            ),
            UnexpectedTensor { name } => {
                write!(f, "tensor {name} is not a parameter of this model config")
            }
            ShapeMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor {name}: shape {found}, the config implies {expected}"
            ),
            QuantizedFloat { name } => write!(
                f,
                "tensor {name}: float tensors cannot carry quantization parameters"
            ),
            BadScale { name } => {
                write!(
                    f,
                    "tensor {name}: quantization scale is not finite and positive"
                )
            }
            BadQuantAxis { name, axis } => {
                write!(
                    f,
                    "tensor {name}: quantization axis {axis} is not below its rank"
                )
            }
            BadScalesIndex { name, index } => write!(
                f,
                "tensor {name}: per-channel scales index {index} is not another tensor"
            ),
            ScalesNotF32 { name } => {
                write!(f, "tensor {name}: per-channel scales tensor is not f32")
            }
            ScalesLength {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor {name}: {found} per-channel scales for an axis of size {expected}"
            ),
            MissingTensor(id) => write!(f, "pack has no tensor `{id}`"),
            WrongDType {
                name,
                expected,
                found,
            } => write!(f, "tensor {name} is {found}, not {expected}"),
            Misaligned { name } => write!(
                f,
                "tensor {name}: data is not aligned in memory for its type (place the pack at a 64-byte aligned address)"
            ),
        }
    }
}

impl core::error::Error for PackError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            PackError::InvalidConfig(e) => Some(e),
            _ => None,
        }
    }
}
