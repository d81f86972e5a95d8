//! The pack writer (feature `std`).

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    string::{String, ToString},
    vec::Vec,
};

use crate::{
    DATA_ALIGN, DType, HEADER_LEN, MAGIC, MAX_NAME_LEN, MAX_RANK, MAX_TENSORS, ModelConfig, Pack,
    PackError, Precision, Preprocess, Quant, SECTION_ALIGN, Shape, TENSOR_ENTRY_LEN, TensorId,
    VERSION,
    reader::{SECTIONS, offset, reseal},
};

/// Why [`PackWriter`] refused a tensor or could not produce a pack.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum WriteError {
    /// A tensor name is empty or longer than [`MAX_NAME_LEN`] bytes.
    BadName(String),
    /// Two tensors were given the same name.
    DuplicateName(String),
    /// A shape has rank 0 or more than [`MAX_RANK`] dimensions.
    BadRank {
        /// The tensor.
        name: String,
        /// The rank given.
        rank: usize,
    },
    /// The data does not hold the shape's element count.
    DataLength {
        /// The tensor.
        name: String,
        /// Elements the shape implies (`None` on overflow).
        expected: Option<usize>,
        /// Elements given.
        found: usize,
    },
    /// A CaiT parameter name this config does not have.
    UnexpectedTensor(String),
    /// A CaiT parameter with a shape other than the config implies.
    ShapeMismatch {
        /// The tensor.
        name: String,
        /// `config.shape_of(id)`.
        expected: Shape,
        /// The shape given.
        found: Shape,
    },
    /// More than [`MAX_TENSORS`] tensors.
    TooManyTensors,
    /// The sections outgrow the 4 GiB a `u32` section offset reaches.
    TooLarge,
    /// The assembled pack does not validate (labels, metadata, quantization links, config...).
    Invalid(PackError),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::BadName(name) => write!(
                f,
                "tensor name `{name}` is empty or longer than {MAX_NAME_LEN} bytes"
            ),
            WriteError::DuplicateName(name) => write!(f, "tensor `{name}` added twice"),
            WriteError::BadRank { name, rank } => {
                write!(f, "tensor `{name}`: rank {rank} is outside 1..={MAX_RANK}")
            }
            WriteError::DataLength {
                name,
                expected: Some(n),
                found,
            } => write!(f, "tensor `{name}`: {found} elements for a shape of {n}"),
            WriteError::DataLength { name, .. } => {
                write!(f, "tensor `{name}`: element count overflows")
            }
            WriteError::UnexpectedTensor(name) => {
                write!(f, "tensor `{name}` is not a parameter of this model config")
            }
            WriteError::ShapeMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor `{name}`: shape {found}, the config implies {expected}"
            ),
            WriteError::TooManyTensors => write!(f, "more than {MAX_TENSORS} tensors"),
            WriteError::TooLarge => f.write_str("pack sections exceed 4 GiB"),
            WriteError::Invalid(e) => write!(f, "the pack would not validate: {e}"),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Invalid(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PackError> for WriteError {
    fn from(e: PackError) -> Self {
        WriteError::Invalid(e)
    }
}

#[derive(Clone, Debug)]
struct PendingTensor {
    name: String,
    dtype: DType,
    shape: Shape,
    quant: Quant,
    data: Vec<u8>,
}

/// Builds a `.cait` pack in memory.
///
/// Tensors are stored in the order they are added, each at a 64-byte aligned offset. Cheap checks
/// (names, ranks, data lengths, parameter shapes) happen in `add_*`; [`PackWriter::finish`] parses
/// its own output with [`Pack::parse`] and returns any failure as [`WriteError::Invalid`], so what it
/// returns always parses.
#[derive(Clone, Debug)]
pub struct PackWriter {
    config: ModelConfig,
    precision: Precision,
    preprocess: Preprocess,
    architecture: String,
    labels: Vec<String>,
    metadata: BTreeMap<String, String>,
    tensors: Vec<PendingTensor>,
    index: HashMap<String, u32>,
}

impl PackWriter {
    /// A pack for `config`, its weights in `precision`, expecting `preprocess`.
    pub fn new(config: ModelConfig, precision: Precision, preprocess: Preprocess) -> PackWriter {
        PackWriter {
            config,
            precision,
            preprocess,
            architecture: String::new(),
            labels: Vec::new(),
            metadata: BTreeMap::new(),
            tensors: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Sets the timm architecture name (e.g. `"cait_xxs24_224"`).
    pub fn architecture(&mut self, name: &str) -> &mut Self {
        self.architecture = name.to_string();
        self
    }

    /// Sets the class labels: one per class (`num_classes` of them), or none.
    pub fn labels<S: AsRef<str>>(&mut self, labels: &[S]) -> &mut Self {
        self.labels = labels.iter().map(|s| s.as_ref().to_string()).collect();
        self
    }

    /// Sets metadata `key` to `value` (setting a key again replaces its value).
    pub fn metadata(&mut self, key: &str, value: &str) -> &mut Self {
        self.metadata.insert(key.to_string(), value.to_string());
        self
    }

    /// Adds an `f32` tensor; returns its table index.
    pub fn add_f32(&mut self, name: &str, shape: &[u32], data: &[f32]) -> Result<u32, WriteError> {
        self.add(name, shape, DType::F32, Quant::None, data.len(), || {
            bytemuck::cast_slice::<f32, u8>(data).to_vec()
        })
    }

    /// Adds an `f16` tensor; returns its table index.
    pub fn add_f16(
        &mut self,
        name: &str,
        shape: &[u32],
        data: &[half::f16],
    ) -> Result<u32, WriteError> {
        self.add(name, shape, DType::F16, Quant::None, data.len(), || {
            bytemuck::cast_slice::<half::f16, u8>(data).to_vec()
        })
    }

    /// Adds an `i8` tensor with its quantization; returns its table index.
    pub fn add_i8(
        &mut self,
        name: &str,
        shape: &[u32],
        data: &[i8],
        quant: Quant,
    ) -> Result<u32, WriteError> {
        self.add(name, shape, DType::I8, quant, data.len(), || {
            bytemuck::cast_slice::<i8, u8>(data).to_vec()
        })
    }

    /// Adds an `i32` tensor with its quantization; returns its table index.
    pub fn add_i32(
        &mut self,
        name: &str,
        shape: &[u32],
        data: &[i32],
        quant: Quant,
    ) -> Result<u32, WriteError> {
        self.add(name, shape, DType::I32, quant, data.len(), || {
            bytemuck::cast_slice::<i32, u8>(data).to_vec()
        })
    }

    /// Number of tensors added so far.
    pub fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    fn add(
        &mut self,
        name: &str,
        dims: &[u32],
        dtype: DType,
        quant: Quant,
        len: usize,
        // Little-endian bytes: the crate refuses to build on big-endian targets.
        bytes: impl FnOnce() -> Vec<u8>,
    ) -> Result<u32, WriteError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(WriteError::BadName(name.to_string()));
        }
        if self.index.contains_key(name) {
            return Err(WriteError::DuplicateName(name.to_string()));
        }
        if dims.is_empty() || dims.len() > MAX_RANK {
            return Err(WriteError::BadRank {
                name: name.to_string(),
                rank: dims.len(),
            });
        }
        let shape = Shape::new(dims);
        let expected = shape.numel();
        if expected != Some(len) {
            return Err(WriteError::DataLength {
                name: name.to_string(),
                expected,
                found: len,
            });
        }
        if let Some(id) = TensorId::parse(name) {
            if !self.config.has_tensor(id) {
                return Err(WriteError::UnexpectedTensor(name.to_string()));
            }
            let expected = self.config.shape_of(id);
            if expected != shape {
                return Err(WriteError::ShapeMismatch {
                    name: name.to_string(),
                    expected,
                    found: shape,
                });
            }
        }
        if self.tensors.len() >= MAX_TENSORS {
            return Err(WriteError::TooManyTensors);
        }
        let index = self.tensors.len() as u32;
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dtype,
            shape,
            quant,
            data: bytes(),
        });
        self.index.insert(name.to_string(), index);
        Ok(index)
    }

    /// Assembles the pack and validates it with [`Pack::parse`].
    pub fn finish(&self) -> Result<Vec<u8>, WriteError> {
        let bytes = self.encode()?;
        Pack::parse(&bytes)?;
        Ok(bytes)
    }

    /// Serialises without validating (`finish` validates the result).
    fn encode(&self) -> Result<Vec<u8>, WriteError> {
        let mut names: Vec<u32> = (0..self.tensors.len() as u32).collect();
        names.sort_by(|&a, &b| {
            self.tensors[a as usize]
                .name
                .as_bytes()
                .cmp(self.tensors[b as usize].name.as_bytes())
        });
        let metadata: Vec<&str> = self
            .metadata
            .iter()
            .flat_map(|(k, v)| [k.as_str(), v.as_str()])
            .collect();
        let sections: [Vec<u8>; SECTIONS.len()] = [
            self.architecture.as_bytes().to_vec(),
            string_table(&self.labels),
            string_table(&metadata),
            string_table(self.tensors.iter().map(|t| t.name.as_str())),
            names.iter().flat_map(|i| i.to_le_bytes()).collect(),
            vec![0; TENSOR_ENTRY_LEN * self.tensors.len()],
        ];

        let mut out = vec![0u8; HEADER_LEN];
        let mut directory = [(0u32, 0u32); SECTIONS.len()];
        let mut table_at = 0;
        for (i, section) in sections.iter().enumerate() {
            if section.is_empty() {
                continue;
            }
            pad_to(&mut out, SECTION_ALIGN);
            let start = u32::try_from(out.len()).map_err(|_| WriteError::TooLarge)?;
            let len = u32::try_from(section.len()).map_err(|_| WriteError::TooLarge)?;
            start.checked_add(len).ok_or(WriteError::TooLarge)?;
            directory[i] = (start, len);
            if i == crate::reader::S_TABLE {
                table_at = out.len();
            }
            out.extend_from_slice(section);
        }

        for (i, t) in self.tensors.iter().enumerate() {
            pad_to(&mut out, DATA_ALIGN);
            let mut entry = [0u8; TENSOR_ENTRY_LEN];
            put(
                &mut entry,
                offset::T_DATA_OFFSET,
                &(out.len() as u64).to_le_bytes(),
            );
            put(
                &mut entry,
                offset::T_DATA_LEN,
                &(t.data.len() as u64).to_le_bytes(),
            );
            for (k, d) in t.shape.dims().iter().enumerate() {
                put(&mut entry, offset::T_DIMS + 4 * k, &d.to_le_bytes());
            }
            entry[offset::T_DTYPE] = t.dtype.code();
            entry[offset::T_RANK] = t.shape.rank() as u8;
            entry[offset::T_QUANT_KIND] = t.quant.code();
            match t.quant {
                Quant::None => {}
                Quant::PerTensor { scale, zero_point } => {
                    put(
                        &mut entry,
                        offset::T_QUANT_PARAM,
                        &scale.to_bits().to_le_bytes(),
                    );
                    put(&mut entry, offset::T_ZERO_POINT, &zero_point.to_le_bytes());
                }
                Quant::PerChannel { axis, scales } => {
                    entry[offset::T_QUANT_AXIS] = axis;
                    put(&mut entry, offset::T_QUANT_PARAM, &scales.to_le_bytes());
                }
            }
            let at = table_at + i * TENSOR_ENTRY_LEN;
            out[at..at + TENSOR_ENTRY_LEN].copy_from_slice(&entry);
            out.extend_from_slice(&t.data);
        }

        let c = &self.config;
        let p = &self.preprocess;
        let header = &mut out[..HEADER_LEN];
        put(header, offset::MAGIC, &MAGIC);
        put(header, offset::VERSION, &VERSION.to_le_bytes());
        put(
            header,
            offset::HEADER_LEN,
            &(HEADER_LEN as u32).to_le_bytes(),
        );
        let words = [
            c.img_size[0],
            c.img_size[1],
            c.patch_size,
            c.in_chans,
            c.num_classes,
            c.embed_dim,
            c.depth,
            c.num_heads,
            c.mlp_hidden_dim,
            c.depth_token_only,
            c.mlp_hidden_dim_token_only,
        ];
        for (k, w) in words.iter().enumerate() {
            put(header, offset::CONFIG + 4 * k, &w.to_le_bytes());
        }
        header[offset::QKV_BIAS] = c.qkv_bias as u8;
        header[offset::GLOBAL_POOL] = match c.global_pool {
            crate::GlobalPool::Token => 0,
            crate::GlobalPool::Avg => 1,
        };
        header[offset::PRECISION] = self.precision.code();
        for (k, v) in p.input_size.iter().enumerate() {
            put(header, offset::INPUT_SIZE + 4 * k, &v.to_le_bytes());
        }
        put(header, offset::CROP_PCT, &p.crop_pct.to_le_bytes());
        header[offset::INTERPOLATION] = p.interpolation.code();
        header[offset::NORM_CHANNELS] = p.norm_channels;
        for k in 0..crate::MAX_NORM_CHANNELS {
            // Entries past norm_channels are stored as zero, as the format requires.
            let (m, s) = if k < p.norm_channels as usize {
                (p.mean[k], p.std[k])
            } else {
                (0.0, 0.0)
            };
            put(header, offset::MEAN + 4 * k, &m.to_le_bytes());
            put(header, offset::STD + 4 * k, &s.to_le_bytes());
        }
        put(
            header,
            offset::TENSOR_COUNT,
            &(self.tensors.len() as u32).to_le_bytes(),
        );
        for (i, (start, len)) in directory.iter().enumerate() {
            put(header, offset::SECTIONS + 8 * i, &start.to_le_bytes());
            put(header, offset::SECTIONS + 8 * i + 4, &len.to_le_bytes());
        }
        let total = out.len() as u64;
        put(&mut out, offset::TOTAL_LEN, &total.to_le_bytes());
        reseal(&mut out);
        Ok(out)
    }
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn pad_to(out: &mut Vec<u8>, align: usize) {
    out.resize(out.len().next_multiple_of(align), 0);
}

/// Encodes a string table: `u32 count`, `count` cumulative `u32` end offsets, then the bytes.
/// Empty when there are no strings (an empty section).
pub(crate) fn string_table<S: AsRef<str>>(strings: impl IntoIterator<Item = S>) -> Vec<u8> {
    let strings: Vec<S> = strings.into_iter().collect();
    if strings.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
    let mut end = 0u32;
    for s in &strings {
        end = end.wrapping_add(s.as_ref().len() as u32);
        out.extend_from_slice(&end.to_le_bytes());
    }
    for s in &strings {
        out.extend_from_slice(s.as_ref().as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::tests::{tiny_config, tiny_writer};

    fn writer() -> PackWriter {
        PackWriter::new(
            tiny_config(),
            Precision::F32,
            Preprocess::imagenet([3, 8, 8]),
        )
    }

    #[test]
    fn add_checks_names_ranks_lengths_and_shapes() {
        let mut w = writer();
        assert_eq!(w.add_f32("x", &[2], &[1.0, 2.0]), Ok(0));
        assert_eq!(
            w.add_f32("x", &[2], &[1.0, 2.0]),
            Err(WriteError::DuplicateName("x".into()))
        );
        assert_eq!(
            w.add_f32("", &[1], &[1.0]),
            Err(WriteError::BadName("".into()))
        );
        let long = "n".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            w.add_f32(&long, &[1], &[1.0]),
            Err(WriteError::BadName(long.clone()))
        );
        assert_eq!(
            w.add_i8("y", &[1, 1, 1, 1, 1], &[1], Quant::None),
            Err(WriteError::BadRank {
                name: "y".into(),
                rank: 5
            })
        );
        assert_eq!(
            w.add_i32("y", &[3], &[1, 2], Quant::None),
            Err(WriteError::DataLength {
                name: "y".into(),
                expected: Some(3),
                found: 2
            })
        );
        assert_eq!(
            w.add_f32("norm.weight", &[4], &[0.0; 4]),
            Err(WriteError::ShapeMismatch {
                name: "norm.weight".into(),
                expected: Shape::new(&[8]),
                found: Shape::new(&[4])
            })
        );
        assert_eq!(
            w.add_f32("blocks.3.gamma_1", &[8], &[0.0; 8]),
            Err(WriteError::UnexpectedTensor("blocks.3.gamma_1".into()))
        );
        // Refused tensors leave no trace: the next index is 1.
        assert_eq!(w.add_f32("z", &[1], &[0.0]), Ok(1));
    }

    #[test]
    fn finish_validates_what_add_cannot() {
        let mut w = writer();
        w.labels(&["only one"]);
        assert_eq!(
            w.finish(),
            Err(WriteError::Invalid(PackError::LabelCount {
                expected: 3,
                found: 1
            }))
        );

        let mut w = writer();
        w.add_i8(
            "w",
            &[2, 2],
            &[1, 2, 3, 4],
            Quant::PerChannel { axis: 0, scales: 7 },
        )
        .unwrap();
        assert!(matches!(
            w.finish(),
            Err(WriteError::Invalid(PackError::BadScalesIndex {
                index: 7,
                ..
            }))
        ));

        let mut w = writer();
        w.metadata("", "empty key");
        assert!(matches!(
            w.finish(),
            Err(WriteError::Invalid(PackError::EmptyName { .. }))
        ));

        let mut p = Preprocess::imagenet([3, 8, 8]);
        p.std[0] = 0.0;
        let w = PackWriter::new(tiny_config(), Precision::F32, p);
        assert_eq!(
            w.finish(),
            Err(WriteError::Invalid(PackError::InvalidPreprocess {
                field: "std"
            }))
        );
        let e = w.finish().unwrap_err();
        assert_eq!(
            std::string::ToString::to_string(&e),
            "the pack would not validate: invalid preprocessing field `std`"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn metadata_keys_replace_and_sort() {
        let mut w = writer();
        w.metadata("b", "1").metadata("a", "2").metadata("b", "3");
        let bytes = w.finish().unwrap();
        let pack = Pack::parse(&bytes).unwrap();
        assert_eq!(
            pack.metadata().iter().collect::<Vec<_>>(),
            [("a", "2"), ("b", "3")]
        );
    }

    #[test]
    fn output_is_deterministic_and_tensor_data_is_64_aligned() {
        let a = tiny_writer().finish().unwrap();
        assert_eq!(a, tiny_writer().finish().unwrap());
        let pack = Pack::parse(&a).unwrap();
        for t in pack.tensors() {
            let at = t.data.as_ptr() as usize - a.as_ptr() as usize;
            assert_eq!(at % DATA_ALIGN, 0, "{}", t.name);
        }
    }
}
