//! The validating, zero-copy pack reader.
//!
//! Every read goes through `get()`, every offset sum through `checked_*` (or is done in `u64` from
//! `u32` parts, where it cannot overflow), and every count and length is capped, so no input makes
//! [`Pack::parse`] panic, overflow or loop for long. Once a pack has parsed, the accessors re-read
//! the validated bytes through the same checked paths and simply cannot fail.

use core::{cmp::Ordering, fmt};

use crate::{
    DATA_ALIGN, DType, ErrorName, GlobalPool, HEADER_LEN, Interpolation, MAGIC, MAX_LABEL_LEN,
    MAX_LABELS, MAX_METADATA, MAX_METADATA_VALUE_LEN, MAX_NAME_LEN, MAX_NORM_CHANNELS, MAX_RANK,
    MAX_TENSORS, ModelConfig, PackError, Precision, Preprocess, Quant, SECTION_ALIGN, Shape,
    TENSOR_ENTRY_LEN, TensorId, VERSION, crc32::Crc32,
};

/// Byte offsets of the header fields (see the crate README for the table).
pub(crate) mod offset {
    pub const MAGIC: usize = 0x00;
    pub const VERSION: usize = 0x08;
    pub const HEADER_LEN: usize = 0x0C;
    pub const TOTAL_LEN: usize = 0x10;
    pub const CHECKSUM: usize = 0x18;
    pub const FLAGS: usize = 0x1C;
    pub const CONFIG: usize = 0x20;
    pub const QKV_BIAS: usize = 0x4C;
    pub const GLOBAL_POOL: usize = 0x4D;
    pub const PRECISION: usize = 0x4E;
    pub const RESERVED_4F: usize = 0x4F;
    pub const INPUT_SIZE: usize = 0x50;
    pub const CROP_PCT: usize = 0x5C;
    pub const INTERPOLATION: usize = 0x60;
    pub const NORM_CHANNELS: usize = 0x61;
    pub const RESERVED_62: usize = 0x62;
    pub const MEAN: usize = 0x64;
    pub const STD: usize = 0x84;
    pub const TENSOR_COUNT: usize = 0xA4;
    pub const SECTIONS: usize = 0xA8;
    pub const RESERVED_TAIL: usize = 0xD8;

    // Tensor-table entry fields.
    pub const T_DATA_OFFSET: usize = 0x00;
    pub const T_DATA_LEN: usize = 0x08;
    pub const T_DIMS: usize = 0x10;
    pub const T_DTYPE: usize = 0x20;
    pub const T_RANK: usize = 0x21;
    pub const T_QUANT_KIND: usize = 0x22;
    pub const T_QUANT_AXIS: usize = 0x23;
    pub const T_QUANT_PARAM: usize = 0x24;
    pub const T_ZERO_POINT: usize = 0x28;
    pub const T_FLAGS: usize = 0x2C;
}

/// The sections, in the order of the header's section directory.
pub(crate) const SECTIONS: [&str; 6] = [
    "architecture",
    "labels",
    "metadata",
    "tensor names",
    "name index",
    "tensor table",
];
pub(crate) const S_ARCH: usize = 0;
pub(crate) const S_LABELS: usize = 1;
pub(crate) const S_METADATA: usize = 2;
pub(crate) const S_NAMES: usize = 3;
pub(crate) const S_NAME_INDEX: usize = 4;
pub(crate) const S_TABLE: usize = 5;

const _: () = assert!(offset::SECTIONS + SECTIONS.len() * 8 == offset::RESERVED_TAIL);
const _: () = assert!(offset::RESERVED_TAIL < HEADER_LEN);
const _: () = assert!(offset::T_FLAGS + 4 == TENSOR_ENTRY_LEN);
const _: () = assert!(offset::STD + 4 * MAX_NORM_CHANNELS == offset::TENSOR_COUNT);

fn read<const N: usize>(bytes: &[u8], at: usize, what: &'static str) -> Result<[u8; N], PackError> {
    at.checked_add(N)
        .and_then(|end| bytes.get(at..end))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(PackError::Truncated { what })
}

fn read_u8(bytes: &[u8], at: usize, what: &'static str) -> Result<u8, PackError> {
    bytes.get(at).copied().ok_or(PackError::Truncated { what })
}

fn read_u32(bytes: &[u8], at: usize, what: &'static str) -> Result<u32, PackError> {
    read::<4>(bytes, at, what).map(u32::from_le_bytes)
}

fn read_u64(bytes: &[u8], at: usize, what: &'static str) -> Result<u64, PackError> {
    read::<8>(bytes, at, what).map(u64::from_le_bytes)
}

fn read_f32(bytes: &[u8], at: usize, what: &'static str) -> Result<f32, PackError> {
    read::<4>(bytes, at, what).map(f32::from_le_bytes)
}

/// The CRC-32 of a pack as its header should record it: every byte of `pack` except the four
/// checksum bytes at offset `0x18`. `None` when `pack` is shorter than the header.
pub fn pack_checksum(pack: &[u8]) -> Option<u32> {
    let before = pack.get(..offset::CHECKSUM)?;
    let after = pack.get(offset::CHECKSUM + 4..)?;
    if pack.len() < HEADER_LEN {
        return None;
    }
    let mut crc = Crc32::new();
    crc.update(before);
    crc.update(after);
    Some(crc.finish())
}

/// Recomputes the checksum of a pack and stores it in the header, after editing some bytes in
/// place. Returns the new checksum, or `None` (changing nothing) when `pack` is shorter than the
/// header.
pub fn reseal(pack: &mut [u8]) -> Option<u32> {
    let crc = pack_checksum(pack)?;
    pack.get_mut(offset::CHECKSUM..offset::CHECKSUM + 4)?
        .copy_from_slice(&crc.to_le_bytes());
    Some(crc)
}

/// A validated string table: `u32 count`, `count` cumulative `u32` end offsets, then the bytes.
#[derive(Clone, Copy)]
struct StringTable<'a> {
    count: usize,
    ends: &'a [u8],
    data: &'a [u8],
}

impl<'a> StringTable<'a> {
    const EMPTY: StringTable<'static> = StringTable {
        count: 0,
        ends: &[],
        data: &[],
    };

    /// Parses and validates a table; `max_len(i)` is the cap on string `i`.
    fn parse(
        section: &'a [u8],
        name: &'static str,
        what: &'static str,
        max_count: usize,
        max_len: impl Fn(usize) -> usize,
    ) -> Result<StringTable<'a>, PackError> {
        if section.is_empty() {
            return Ok(StringTable::EMPTY);
        }
        let count = read_u32(section, 0, name).map_err(|_| PackError::SectionLength {
            section: name,
            expected: 4,
            found: section.len() as u64,
        })?;
        if count as usize > max_count {
            return Err(PackError::TooMany {
                what,
                count: count.into(),
                max: max_count as u64,
            });
        }
        let count = count as usize;
        // count <= max_count <= 2^20, so this cannot overflow even on 16-bit usize targets' u64.
        let head = 4 + 4 * count as u64;
        if head > section.len() as u64 {
            return Err(PackError::SectionLength {
                section: name,
                expected: head,
                found: section.len() as u64,
            });
        }
        let head = head as usize;
        let ends = section
            .get(4..head)
            .ok_or(PackError::Truncated { what: name })?;
        let data = section
            .get(head..)
            .ok_or(PackError::Truncated { what: name })?;
        let table = StringTable { count, ends, data };
        let mut start = 0usize;
        for i in 0..count {
            let end = table.end(i).ok_or(PackError::Truncated { what: name })?;
            if end < start || end > data.len() {
                return Err(PackError::BadStringTable { section: name });
            }
            let index = i as u32;
            if end - start > max_len(i) {
                return Err(PackError::StringTooLong {
                    what,
                    index,
                    max: max_len(i) as u32,
                });
            }
            let bytes = data
                .get(start..end)
                .ok_or(PackError::BadStringTable { section: name })?;
            core::str::from_utf8(bytes).map_err(|_| PackError::InvalidUtf8 { what, index })?;
            start = end;
        }
        if start != data.len() {
            return Err(PackError::BadStringTable { section: name });
        }
        Ok(table)
    }

    fn end(&self, i: usize) -> Option<usize> {
        let at = i.checked_mul(4)?;
        let b = self.ends.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    }

    fn bytes(&self, i: usize) -> Option<&'a [u8]> {
        if i >= self.count {
            return None;
        }
        let start = if i == 0 { 0 } else { self.end(i - 1)? };
        self.data.get(start..self.end(i)?)
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        core::str::from_utf8(self.bytes(i)?).ok()
    }
}

/// The class labels of a pack: one per logit, or none.
#[derive(Clone, Copy)]
pub struct Labels<'a> {
    table: StringTable<'a>,
}

impl<'a> Labels<'a> {
    /// Number of labels (0 or `num_classes`).
    pub fn len(&self) -> usize {
        self.table.count
    }

    /// Whether the pack has no labels.
    pub fn is_empty(&self) -> bool {
        self.table.count == 0
    }

    /// The label of class `i`.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        self.table.get(i)
    }

    /// Every label, in class order.
    pub fn iter(&self) -> LabelsIter<'a> {
        LabelsIter {
            table: self.table,
            next: 0,
        }
    }
}

impl fmt::Debug for Labels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for Labels<'a> {
    type Item = &'a str;
    type IntoIter = LabelsIter<'a>;
    fn into_iter(self) -> LabelsIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Labels`].
#[derive(Clone)]
pub struct LabelsIter<'a> {
    table: StringTable<'a>,
    next: usize,
}

impl<'a> Iterator for LabelsIter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let s = self.table.get(self.next)?;
        self.next += 1;
        Some(s)
    }
}

/// The metadata of a pack: UTF-8 key/value pairs, keys unique and in ascending byte order.
#[derive(Clone, Copy)]
pub struct Metadata<'a> {
    table: StringTable<'a>,
}

impl<'a> Metadata<'a> {
    /// Number of key/value pairs.
    pub fn len(&self) -> usize {
        self.table.count / 2
    }

    /// Whether there is no metadata.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `key` (binary search: keys are sorted).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.table.bytes(2 * mid)?.cmp(key.as_bytes()) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return self.table.get(2 * mid + 1),
            }
        }
        None
    }

    /// Every `(key, value)` pair, keys in ascending byte order.
    pub fn iter(&self) -> MetadataIter<'a> {
        MetadataIter {
            table: self.table,
            next: 0,
        }
    }
}

impl fmt::Debug for Metadata<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for Metadata<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = MetadataIter<'a>;
    fn into_iter(self) -> MetadataIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Metadata`] pairs.
#[derive(Clone)]
pub struct MetadataIter<'a> {
    table: StringTable<'a>,
    next: usize,
}

impl<'a> Iterator for MetadataIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let key = self.table.get(2 * self.next)?;
        let value = self.table.get(2 * self.next + 1)?;
        self.next += 1;
        Some((key, value))
    }
}

/// One tensor of a pack, borrowed in place.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    /// The tensor's name (a timm key for model parameters).
    pub name: &'a str,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Shape,
    /// Quantization parameters.
    pub quant: Quant,
    /// The raw little-endian data, `shape.numel() * dtype.size()` bytes.
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// The tensor's id, if its name is a CaiT parameter.
    pub fn id(&self) -> Option<TensorId> {
        TensorId::parse(self.name)
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    fn cast<T: bytemuck::AnyBitPattern>(&self, want: DType) -> Result<&'a [T], PackError> {
        if self.dtype != want {
            return Err(PackError::WrongDType {
                name: ErrorName::unindexed(self.name),
                expected: want,
                found: self.dtype,
            });
        }
        bytemuck::try_cast_slice(self.data).map_err(|e| match e {
            bytemuck::PodCastError::OutputSliceWouldHaveSlop => PackError::DataLengthMismatch {
                name: ErrorName::unindexed(self.name),
                expected: (self.data.len() / want.size() * want.size()) as u64,
                found: self.data.len() as u64,
            },
            _ => PackError::Misaligned {
                name: ErrorName::unindexed(self.name),
            },
        })
    }

    /// The data as `f32`, in place (the pack must sit at a 4-byte aligned address).
    pub fn as_f32(&self) -> Result<&'a [f32], PackError> {
        self.cast(DType::F32)
    }

    /// The data as `f16`, in place (the pack must sit at a 2-byte aligned address).
    pub fn as_f16(&self) -> Result<&'a [half::f16], PackError> {
        self.cast(DType::F16)
    }

    /// The data as `i8`, in place.
    pub fn as_i8(&self) -> Result<&'a [i8], PackError> {
        self.cast(DType::I8)
    }

    /// The data as `i32`, in place (the pack must sit at a 4-byte aligned address).
    pub fn as_i32(&self) -> Result<&'a [i32], PackError> {
        self.cast(DType::I32)
    }
}

/// A parsed and fully validated `.cait` pack, borrowing its bytes.
///
/// Parsing checks everything the format promises (see the crate docs); it does not check that every
/// tensor the model needs is present: the engine does, since int8 packs fold some away.
#[derive(Clone, Copy)]
pub struct Pack<'a> {
    bytes: &'a [u8],
    config: ModelConfig,
    precision: Precision,
    preprocess: Preprocess,
    architecture: &'a str,
    labels: StringTable<'a>,
    metadata: StringTable<'a>,
    names: StringTable<'a>,
    name_index: &'a [u8],
    table: &'a [u8],
    tensor_count: usize,
    tensor_bytes: usize,
}

/// A byte range `[start, end)` of the pack, for bounds and overlap checks.
#[derive(Clone, Copy)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    fn overlaps(&self, other: &Span) -> bool {
        self.start < self.end
            && other.start < other.end
            && self.start < other.end
            && other.start < self.end
    }
}

/// A tensor-table entry decoded and checked on its own (cross-entry checks are in `parse`).
struct Entry<'a> {
    view: TensorView<'a>,
    span: Span,
}

impl<'a> Pack<'a> {
    /// Parses and validates `bytes` as a whole pack (see the crate docs for every check).
    pub fn parse(bytes: &'a [u8]) -> Result<Pack<'a>, PackError> {
        let magic = bytes
            .get(offset::MAGIC..offset::MAGIC + 8)
            .ok_or(PackError::Truncated { what: "magic" })?;
        if magic != MAGIC {
            return Err(PackError::BadMagic);
        }
        let version = read_u32(bytes, offset::VERSION, "version")?;
        if version != VERSION {
            return Err(PackError::UnsupportedVersion(version));
        }
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or(PackError::Truncated { what: "header" })?;
        let header_len = read_u32(header, offset::HEADER_LEN, "header")?;
        if header_len as usize != HEADER_LEN {
            return Err(PackError::BadHeaderLength(header_len));
        }
        let total_len = read_u64(header, offset::TOTAL_LEN, "header")?;
        let found = bytes.len() as u64;
        match total_len.cmp(&found) {
            Ordering::Greater => return Err(PackError::Truncated { what: "pack" }),
            Ordering::Less => {
                return Err(PackError::TrailingBytes {
                    declared: total_len,
                    found,
                });
            }
            Ordering::Equal => {}
        }
        let expected = read_u32(header, offset::CHECKSUM, "header")?;
        let computed = pack_checksum(bytes).ok_or(PackError::Truncated { what: "header" })?;
        if expected != computed {
            return Err(PackError::ChecksumMismatch {
                expected,
                found: computed,
            });
        }
        let flags = read_u32(header, offset::FLAGS, "header")?;
        if flags != 0 {
            return Err(PackError::UnsupportedFlags(flags));
        }
        for (at, len, field) in [
            (offset::RESERVED_4F, 1, "header byte 0x4f"),
            (offset::RESERVED_62, 2, "header bytes 0x62..0x64"),
            (
                offset::RESERVED_TAIL,
                HEADER_LEN - offset::RESERVED_TAIL,
                "header bytes 0xd8..0x100",
            ),
        ] {
            let reserved = header
                .get(at..at + len)
                .ok_or(PackError::Truncated { what: "header" })?;
            if reserved.iter().any(|&b| b != 0) {
                return Err(PackError::ReservedNotZero { field });
            }
        }

        let (config, precision) = read_config(header)?;
        config.validate().map_err(PackError::InvalidConfig)?;
        let preprocess = read_preprocess(header, &config)?;

        let tensor_count = read_u32(header, offset::TENSOR_COUNT, "header")?;
        if tensor_count as usize > MAX_TENSORS {
            return Err(PackError::TooMany {
                what: "tensors",
                count: tensor_count.into(),
                max: MAX_TENSORS as u64,
            });
        }
        let tensor_count = tensor_count as usize;

        // Sections: inside [HEADER_LEN, total_len), 8-aligned, pairwise disjoint.
        let mut spans = [Span { start: 0, end: 0 }; SECTIONS.len()];
        for (i, section) in SECTIONS.iter().enumerate() {
            let at = offset::SECTIONS + 8 * i;
            let start = u64::from(read_u32(header, at, "header")?);
            let len = u64::from(read_u32(header, at + 4, "header")?);
            if len == 0 {
                if start != 0 {
                    return Err(PackError::ReservedNotZero {
                        field: "offset of an empty section",
                    });
                }
                continue;
            }
            let end = start + len; // two u32s: cannot overflow u64
            if start < HEADER_LEN as u64 || end > total_len {
                return Err(PackError::SectionOutOfBounds { section });
            }
            if start % SECTION_ALIGN as u64 != 0 {
                return Err(PackError::MisalignedSection { section });
            }
            spans[i] = Span { start, end };
            for (j, other) in spans.iter().enumerate().take(i) {
                if spans[i].overlaps(other) {
                    return Err(PackError::OverlappingSections {
                        first: SECTIONS[j],
                        second: section,
                    });
                }
            }
        }
        let section = |i: usize| -> Result<&'a [u8], PackError> {
            // In bounds (checked above), so the conversions and the get() succeed.
            let start = usize::try_from(spans[i].start)
                .map_err(|_| PackError::Truncated { what: SECTIONS[i] })?;
            let end = usize::try_from(spans[i].end)
                .map_err(|_| PackError::Truncated { what: SECTIONS[i] })?;
            bytes
                .get(start..end)
                .ok_or(PackError::Truncated { what: SECTIONS[i] })
        };

        let arch_bytes = section(S_ARCH)?;
        if arch_bytes.len() > MAX_NAME_LEN {
            return Err(PackError::StringTooLong {
                what: "architecture",
                index: 0,
                max: MAX_NAME_LEN as u32,
            });
        }
        let architecture =
            core::str::from_utf8(arch_bytes).map_err(|_| PackError::InvalidUtf8 {
                what: "architecture",
                index: 0,
            })?;

        let labels = StringTable::parse(
            section(S_LABELS)?,
            SECTIONS[S_LABELS],
            "class label",
            MAX_LABELS,
            |_| MAX_LABEL_LEN,
        )?;
        let want_labels = config.num_classes as usize;
        if labels.count != 0 && labels.count != want_labels {
            return Err(PackError::LabelCount {
                expected: want_labels as u64,
                found: labels.count as u64,
            });
        }

        let metadata = StringTable::parse(
            section(S_METADATA)?,
            SECTIONS[S_METADATA],
            "metadata string",
            2 * MAX_METADATA,
            |i| {
                if i % 2 == 0 {
                    MAX_NAME_LEN
                } else {
                    MAX_METADATA_VALUE_LEN
                }
            },
        )?;
        if metadata.count % 2 != 0 {
            return Err(PackError::OddMetadataCount {
                count: metadata.count as u32,
            });
        }
        check_sorted_keys(&metadata)?;

        let names = StringTable::parse(
            section(S_NAMES)?,
            SECTIONS[S_NAMES],
            "tensor name",
            MAX_TENSORS,
            |_| MAX_NAME_LEN,
        )?;
        if names.count != tensor_count {
            return Err(PackError::CountMismatch {
                what: SECTIONS[S_NAMES],
                expected: tensor_count as u64,
                found: names.count as u64,
            });
        }
        for i in 0..tensor_count {
            if names.bytes(i).is_none_or(|b| b.is_empty()) {
                return Err(PackError::EmptyName {
                    what: "tensor name",
                    index: i as u32,
                });
            }
        }

        // tensor_count <= 2^16, so these products fit easily.
        let name_index = section(S_NAME_INDEX)?;
        let want = 4 * tensor_count as u64;
        if name_index.len() as u64 != want {
            return Err(PackError::SectionLength {
                section: SECTIONS[S_NAME_INDEX],
                expected: want,
                found: name_index.len() as u64,
            });
        }
        let table = section(S_TABLE)?;
        let want = (TENSOR_ENTRY_LEN * tensor_count) as u64;
        if table.len() as u64 != want {
            return Err(PackError::SectionLength {
                section: SECTIONS[S_TABLE],
                expected: want,
                found: table.len() as u64,
            });
        }

        let pack = Pack {
            bytes,
            config,
            precision,
            preprocess,
            architecture,
            labels,
            metadata,
            names,
            name_index,
            table,
            tensor_count,
            tensor_bytes: 0,
        };
        pack.check_name_index()?;

        // Tensors: each entry on its own, then data order/overlap, sections, config, quant links.
        let mut tensor_bytes = 0u64;
        let mut prev: Option<(usize, Span)> = None; // last tensor with data
        let mut prev_end = HEADER_LEN as u64;
        for i in 0..tensor_count {
            let Entry { view, span } = pack.entry(i)?;
            let name = || ErrorName::new(i as u32, view.name);
            if span.start < prev_end {
                return Err(match prev {
                    Some((j, p)) if span.overlaps(&p) => PackError::OverlappingTensors {
                        first: pack.error_name(j),
                        second: name(),
                    },
                    _ => PackError::TensorsOutOfOrder { name: name() },
                });
            }
            if span.end > span.start {
                prev = Some((i, span));
                prev_end = span.end;
            }
            for (s, section) in spans.iter().zip(SECTIONS) {
                if s.overlaps(&span) {
                    return Err(PackError::SectionOverlapsTensor {
                        section,
                        tensor: name(),
                    });
                }
            }
            if let Some(id) = TensorId::parse(view.name) {
                if !config.has_tensor(id) {
                    return Err(PackError::UnexpectedTensor { name: name() });
                }
                let expected = config.shape_of(id);
                if view.shape != expected {
                    return Err(PackError::ShapeMismatch {
                        name: name(),
                        expected,
                        found: view.shape,
                    });
                }
            }
            if let Quant::PerChannel { axis, scales } = view.quant {
                pack.check_scales(i, &view, axis, scales)?;
            }
            tensor_bytes += span.end - span.start;
        }
        Ok(Pack {
            // <= total_len == bytes.len(), so it fits.
            tensor_bytes: tensor_bytes as usize,
            ..pack
        })
    }

    fn error_name(&self, i: usize) -> ErrorName {
        ErrorName::new(i as u32, self.names.get(i).unwrap_or(""))
    }

    fn name_index_at(&self, position: usize) -> Option<usize> {
        let at = position.checked_mul(4)?;
        let b = self.name_index.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    }

    /// Entries in range and names strictly ascending: so the index is a permutation and names are
    /// unique, checked in one pass without allocating.
    fn check_name_index(&self) -> Result<(), PackError> {
        let mut prev: Option<&[u8]> = None;
        for position in 0..self.tensor_count {
            let value = self.name_index_at(position).ok_or(PackError::Truncated {
                what: SECTIONS[S_NAME_INDEX],
            })?;
            let name = self
                .names
                .bytes(value)
                .filter(|_| value < self.tensor_count)
                .ok_or(PackError::BadNameIndex {
                    position: position as u32,
                    value: value as u32,
                })?;
            if let Some(p) = prev {
                match p.cmp(name) {
                    Ordering::Less => {}
                    Ordering::Equal => {
                        return Err(PackError::DuplicateTensorName {
                            name: self.error_name(value),
                        });
                    }
                    Ordering::Greater => {
                        return Err(PackError::UnsortedNameIndex {
                            name: self.error_name(value),
                        });
                    }
                }
            }
            prev = Some(name);
        }
        Ok(())
    }

    fn check_scales(
        &self,
        i: usize,
        view: &TensorView<'a>,
        axis: u8,
        scales: u32,
    ) -> Result<(), PackError> {
        let name = || ErrorName::new(i as u32, view.name);
        let j = scales as usize;
        if j >= self.tensor_count || j == i {
            return Err(PackError::BadScalesIndex {
                name: name(),
                index: scales,
            });
        }
        let s = self.entry(j)?.view;
        if s.dtype != DType::F32 {
            return Err(PackError::ScalesNotF32 { name: name() });
        }
        // axis < rank was checked when the entry was decoded.
        let expected = view.shape.dims().get(axis as usize).copied().unwrap_or(0);
        let found = s.numel();
        if found as u64 != u64::from(expected) {
            return Err(PackError::ScalesLength {
                name: name(),
                expected: expected.into(),
                found: found as u64,
            });
        }
        let positive = s.data.chunks_exact(4).all(|c| {
            let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            v.is_finite() && v > 0.0
        });
        if !positive {
            return Err(PackError::BadScale {
                name: ErrorName::new(j as u32, s.name),
            });
        }
        Ok(())
    }

    /// Decodes entry `i` and checks everything about it that needs no other entry.
    fn entry(&self, i: usize) -> Result<Entry<'a>, PackError> {
        const WHAT: &str = "tensor table";
        let name_str = self.names.get(i).ok_or(PackError::Truncated {
            what: SECTIONS[S_NAMES],
        })?;
        let name = || ErrorName::new(i as u32, name_str);
        let base = i
            .checked_mul(TENSOR_ENTRY_LEN)
            .ok_or(PackError::Truncated { what: WHAT })?;
        let e = base
            .checked_add(TENSOR_ENTRY_LEN)
            .and_then(|end| self.table.get(base..end))
            .ok_or(PackError::Truncated { what: WHAT })?;
        let data_offset = read_u64(e, offset::T_DATA_OFFSET, WHAT)?;
        let data_len = read_u64(e, offset::T_DATA_LEN, WHAT)?;
        let code = read_u8(e, offset::T_DTYPE, WHAT)?;
        let dtype =
            DType::from_code(code).ok_or_else(|| PackError::BadDType { name: name(), code })?;
        let rank = read_u8(e, offset::T_RANK, WHAT)?;
        if rank == 0 || rank as usize > MAX_RANK {
            return Err(PackError::BadRank { name: name(), rank });
        }
        let mut dims = [0u32; MAX_RANK];
        for (k, d) in dims.iter_mut().enumerate() {
            *d = read_u32(e, offset::T_DIMS + 4 * k, WHAT)?;
            if k >= rank as usize && *d != 0 {
                return Err(PackError::EntryReservedNotZero {
                    name: name(),
                    field: "dims beyond rank",
                });
            }
        }
        let shape = Shape::new(dims.get(..rank as usize).unwrap_or(&[]));
        if read_u32(e, offset::T_FLAGS, WHAT)? != 0 {
            return Err(PackError::EntryReservedNotZero {
                name: name(),
                field: "flags",
            });
        }

        let expected = shape
            .numel()
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(|| PackError::TensorTooLarge { name: name() })?;
        if data_len != expected as u64 {
            return Err(PackError::DataLengthMismatch {
                name: name(),
                expected: expected as u64,
                found: data_len,
            });
        }
        if data_offset % DATA_ALIGN as u64 != 0 {
            return Err(PackError::MisalignedTensor {
                name: name(),
                offset: data_offset,
            });
        }
        let end = data_offset
            .checked_add(data_len)
            .filter(|&end| data_offset >= HEADER_LEN as u64 && end <= self.bytes.len() as u64)
            .ok_or_else(|| PackError::TensorOutOfBounds { name: name() })?;
        // In bounds of a slice, so both fit in usize.
        let data = self
            .bytes
            .get(data_offset as usize..end as usize)
            .ok_or_else(|| PackError::TensorOutOfBounds { name: name() })?;

        let kind = read_u8(e, offset::T_QUANT_KIND, WHAT)?;
        let axis = read_u8(e, offset::T_QUANT_AXIS, WHAT)?;
        let param = read_u32(e, offset::T_QUANT_PARAM, WHAT)?;
        let zero_point = i32::from_le_bytes(read::<4>(e, offset::T_ZERO_POINT, WHAT)?);
        let reserved = |field| PackError::EntryReservedNotZero {
            name: name(),
            field,
        };
        let quant = match kind {
            0 => {
                if axis != 0 || param != 0 || zero_point != 0 {
                    return Err(reserved("quantization parameters of an unquantized tensor"));
                }
                Quant::None
            }
            1 => {
                if axis != 0 {
                    return Err(reserved("axis of a per-tensor quantization"));
                }
                let scale = f32::from_bits(param);
                if !(scale.is_finite() && scale > 0.0) {
                    return Err(PackError::BadScale { name: name() });
                }
                Quant::PerTensor { scale, zero_point }
            }
            2 => {
                if zero_point != 0 {
                    return Err(reserved("zero point of a per-channel quantization"));
                }
                if axis >= rank {
                    return Err(PackError::BadQuantAxis { name: name(), axis });
                }
                Quant::PerChannel {
                    axis,
                    scales: param,
                }
            }
            code => return Err(PackError::BadQuantKind { name: name(), code }),
        };
        if dtype.is_float() && quant != Quant::None {
            return Err(PackError::QuantizedFloat { name: name() });
        }
        Ok(Entry {
            view: TensorView {
                name: name_str,
                dtype,
                shape,
                quant,
                data,
            },
            span: Span {
                start: data_offset,
                end,
            },
        })
    }

    /// The model architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The precision the weights are stored in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The eval preprocessing the model expects.
    pub fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }

    /// The timm architecture name (e.g. `"cait_xxs24_224"`), `""` if unknown.
    pub fn architecture(&self) -> &'a str {
        self.architecture
    }

    /// The class labels (empty if the pack has none).
    pub fn labels(&self) -> Labels<'a> {
        Labels { table: self.labels }
    }

    /// The key/value metadata (quantization choices and the like).
    pub fn metadata(&self) -> Metadata<'a> {
        Metadata {
            table: self.metadata,
        }
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.tensor_count
    }

    /// The tensor at `index` of the table (the index [`Quant::PerChannel`] refers to).
    pub fn tensor_at(&self, index: usize) -> Option<TensorView<'a>> {
        self.entry(index).ok().map(|e| e.view)
    }

    /// Every tensor, in table (and data) order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'a>> + use<'a> {
        let pack = *self;
        (0..self.tensor_count).filter_map(move |i| pack.tensor_at(i))
    }

    /// Table index of the tensor named `name` (binary search over the name index).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.tensor_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let i = self.name_index_at(mid)?;
            match self.names.bytes(i)?.cmp(name.as_bytes()) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Some(i),
            }
        }
        None
    }

    /// The tensor named `name`.
    pub fn tensor_by_name(&self, name: &str) -> Option<TensorView<'a>> {
        self.tensor_at(self.index_of(name)?)
    }

    /// The model parameter `id`; [`PackError::MissingTensor`] if the pack does not store it.
    pub fn tensor(&self, id: TensorId) -> Result<TensorView<'a>, PackError> {
        let mut buf = NameBuf::new();
        fmt::write(&mut buf, format_args!("{id}")).map_err(|_| PackError::MissingTensor(id))?;
        buf.as_str()
            .and_then(|name| self.tensor_by_name(name))
            .ok_or(PackError::MissingTensor(id))
    }

    /// Total bytes of the pack.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always `false`: a valid pack holds at least its header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Sum of the tensors' data lengths.
    pub fn tensor_bytes(&self) -> usize {
        self.tensor_bytes
    }

    /// The whole pack.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The CRC-32 stored in (and verified against) the header.
    pub fn checksum(&self) -> u32 {
        read_u32(self.bytes, offset::CHECKSUM, "header").unwrap_or(0)
    }
}

impl fmt::Debug for Pack<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pack")
            .field("architecture", &self.architecture)
            .field("precision", &self.precision)
            .field("config", &self.config)
            .field("len", &self.bytes.len())
            .field("tensors", &self.tensor_count)
            .finish_non_exhaustive()
    }
}

/// Room for the longest `TensorId` key, formatted without allocating.
struct NameBuf {
    buf: [u8; 64],
    len: usize,
}

impl NameBuf {
    fn new() -> NameBuf {
        NameBuf {
            buf: [0; 64],
            len: 0,
        }
    }

    fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.buf.get(..self.len)?).ok()
    }
}

impl fmt::Write for NameBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn check_sorted_keys(metadata: &StringTable<'_>) -> Result<(), PackError> {
    let mut prev: Option<&[u8]> = None;
    for pair in 0..metadata.count / 2 {
        let key = metadata.bytes(2 * pair).ok_or(PackError::Truncated {
            what: SECTIONS[S_METADATA],
        })?;
        let key_name = || ErrorName::new(pair as u32, metadata.get(2 * pair).unwrap_or(""));
        if key.is_empty() {
            return Err(PackError::EmptyName {
                what: "metadata key",
                index: pair as u32,
            });
        }
        if let Some(p) = prev {
            match p.cmp(key) {
                Ordering::Less => {}
                Ordering::Equal => return Err(PackError::DuplicateMetadataKey { key: key_name() }),
                Ordering::Greater => return Err(PackError::UnsortedMetadata { key: key_name() }),
            }
        }
        prev = Some(key);
    }
    Ok(())
}

fn enum_byte(header: &[u8], at: usize, field: &'static str) -> Result<u8, PackError> {
    read_u8(header, at, field)
}

fn read_config(header: &[u8]) -> Result<(ModelConfig, Precision), PackError> {
    header_config(header)
}

/// `bytes[at..at + 4]` as a little-endian `u32`, in a const context.
const fn const_u32(bytes: &[u8], at: usize) -> Result<u32, PackError> {
    if at + 4 > bytes.len() {
        return Err(PackError::Truncated { what: "header" });
    }
    Ok(u32::from_le_bytes([
        bytes[at],
        bytes[at + 1],
        bytes[at + 2],
        bytes[at + 3],
    ]))
}

/// `bytes[at]`, in a const context.
const fn const_u8(bytes: &[u8], at: usize) -> Result<u8, PackError> {
    if at >= bytes.len() {
        return Err(PackError::Truncated { what: "header" });
    }
    Ok(bytes[at])
}

/// The config and precision fields of a header (the one reading of them: [`Pack::parse`] and
/// [`PackHeader::read`] both use it).
const fn header_config(header: &[u8]) -> Result<(ModelConfig, Precision), PackError> {
    let mut words = [0u32; 11];
    let mut k = 0;
    while k < words.len() {
        words[k] = match const_u32(header, offset::CONFIG + 4 * k) {
            Ok(w) => w,
            Err(e) => return Err(e),
        };
        k += 1;
    }
    let [
        img_h,
        img_w,
        patch_size,
        in_chans,
        num_classes,
        embed_dim,
        depth,
        num_heads,
        mlp_hidden_dim,
        depth_token_only,
        mlp_hidden_dim_token_only,
    ] = words;
    let qkv_bias = match const_u8(header, offset::QKV_BIAS) {
        Ok(0) => false,
        Ok(1) => true,
        Ok(value) => {
            return Err(PackError::BadEnum {
                field: "qkv_bias",
                value,
            });
        }
        Err(e) => return Err(e),
    };
    let global_pool = match const_u8(header, offset::GLOBAL_POOL) {
        Ok(0) => GlobalPool::Token,
        Ok(1) => GlobalPool::Avg,
        Ok(value) => {
            return Err(PackError::BadEnum {
                field: "global_pool",
                value,
            });
        }
        Err(e) => return Err(e),
    };
    let precision = match const_u8(header, offset::PRECISION) {
        Ok(value) => match Precision::from_code(value) {
            Some(p) => p,
            None => {
                return Err(PackError::BadEnum {
                    field: "precision",
                    value,
                });
            }
        },
        Err(e) => return Err(e),
    };
    Ok((
        ModelConfig {
            img_size: [img_h, img_w],
            patch_size,
            in_chans,
            num_classes,
            embed_dim,
            depth,
            num_heads,
            mlp_hidden_dim,
            depth_token_only,
            mlp_hidden_dim_token_only,
            qkv_bias,
            global_pool,
        },
        precision,
    ))
}

/// What a pack's header says about the model, read in a const context — so firmware can size its
/// workspace with a `const` from the linked pack's bytes (see `cait_core::workspace_bytes_for`).
///
/// It reads only the header and the tensor table's dtypes; it checks the magic, version, header
/// length and flags but not the checksum or the tensors: [`Pack::parse`] does, at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackHeader {
    /// The architecture.
    pub config: ModelConfig,
    /// The precision.
    pub precision: Precision,
    /// An int8 pack that keeps some blocks in f16 (a mixed pack; see [`crate::int8::f16_blocks`]):
    /// it holds f16 tensors, which an all-int8 pack never does.
    pub mixed: bool,
}

impl PackHeader {
    /// Reads the header of `pack` (its first bytes; the whole pack for `mixed`).
    pub const fn read(pack: &[u8]) -> Result<PackHeader, PackError> {
        if pack.len() < HEADER_LEN {
            return Err(PackError::Truncated { what: "header" });
        }
        let mut i = 0;
        while i < MAGIC.len() {
            if pack[offset::MAGIC + i] != MAGIC[i] {
                return Err(PackError::BadMagic);
            }
            i += 1;
        }
        match const_u32(pack, offset::VERSION) {
            Ok(VERSION) => {}
            Ok(v) => return Err(PackError::UnsupportedVersion(v)),
            Err(e) => return Err(e),
        }
        match const_u32(pack, offset::HEADER_LEN) {
            Ok(len) if len as usize == HEADER_LEN => {}
            Ok(len) => return Err(PackError::BadHeaderLength(len)),
            Err(e) => return Err(e),
        }
        match const_u32(pack, offset::FLAGS) {
            Ok(0) => {}
            Ok(flags) => return Err(PackError::UnsupportedFlags(flags)),
            Err(e) => return Err(e),
        }
        let (config, precision) = match header_config(pack) {
            Ok(c) => c,
            Err(e) => return Err(e),
        };
        let mut mixed = false;
        if let Precision::Int8 = precision {
            let count = match const_u32(pack, offset::TENSOR_COUNT) {
                Ok(n) => n as usize,
                Err(e) => return Err(e),
            };
            let table = match const_u32(pack, offset::SECTIONS + 8 * S_TABLE) {
                Ok(at) => at as usize,
                Err(e) => return Err(e),
            };
            let mut t = 0;
            while t < count {
                let at = table + t * TENSOR_ENTRY_LEN + offset::T_DTYPE;
                if at >= pack.len() {
                    return Err(PackError::Truncated {
                        what: "tensor table",
                    });
                }
                if pack[at] == DType::F16.code() {
                    mixed = true;
                }
                t += 1;
            }
        }
        Ok(PackHeader {
            config,
            precision,
            mixed,
        })
    }
}

fn read_preprocess(header: &[u8], config: &ModelConfig) -> Result<Preprocess, PackError> {
    let invalid = |field| PackError::InvalidPreprocess { field };
    let mut input_size = [0u32; 3];
    for (k, v) in input_size.iter_mut().enumerate() {
        *v = read_u32(header, offset::INPUT_SIZE + 4 * k, "header")?;
    }
    if input_size != [config.in_chans, config.img_size[0], config.img_size[1]] {
        return Err(invalid("input_size"));
    }
    let value = enum_byte(header, offset::INTERPOLATION, "header")?;
    let interpolation = Interpolation::from_code(value).ok_or(PackError::BadEnum {
        field: "interpolation",
        value,
    })?;
    let crop_pct = read_f32(header, offset::CROP_PCT, "header")?;
    if !(crop_pct.is_finite() && crop_pct > 0.0) {
        return Err(invalid("crop_pct"));
    }
    let norm_channels = read_u8(header, offset::NORM_CHANNELS, "header")?;
    if norm_channels as usize > MAX_NORM_CHANNELS
        || (norm_channels != 0 && u32::from(norm_channels) != config.in_chans)
    {
        return Err(invalid("norm_channels"));
    }
    let mut mean = [0f32; MAX_NORM_CHANNELS];
    let mut std = [0f32; MAX_NORM_CHANNELS];
    for k in 0..MAX_NORM_CHANNELS {
        mean[k] = read_f32(header, offset::MEAN + 4 * k, "header")?;
        std[k] = read_f32(header, offset::STD + 4 * k, "header")?;
        if k < norm_channels as usize {
            if !mean[k].is_finite() {
                return Err(invalid("mean"));
            }
            // Preprocessing divides by it.
            if !(std[k].is_finite() && std[k] > 0.0) {
                return Err(invalid("std"));
            }
        } else if mean[k].to_bits() != 0 || std[k].to_bits() != 0 {
            return Err(PackError::ReservedNotZero {
                field: "mean/std beyond norm_channels",
            });
        }
    }
    Ok(Preprocess {
        input_size,
        interpolation,
        crop_pct,
        norm_channels,
        mean,
        std,
    })
}

#[cfg(test)]
pub(crate) mod tests;
