//! Reader tests: a round trip, then one test per `PackError` variant from hand-corrupted bytes.
//!
//! Every corruption of a structural field is followed by `reseal` (recomputing the CRC), so the
//! structural check under test is what fires, not the checksum.

use super::*;
use crate::{BlockParam, ConfigError, Interpolation, PackWriter, crc32, writer::string_table};
use std::{vec, vec::Vec};

/// A tiny but complete CaiT: 8x8 image, 4x4 patches (N = 4), D = 8, 2 heads, 1 SA + 1 CA block.
pub(crate) fn tiny_config() -> ModelConfig {
    ModelConfig {
        img_size: [8, 8],
        patch_size: 4,
        in_chans: 3,
        num_classes: 3,
        embed_dim: 8,
        depth: 1,
        num_heads: 2,
        mlp_hidden_dim: 16,
        depth_token_only: 1,
        mlp_hidden_dim_token_only: 16,
        qkv_bias: true,
        global_pool: GlobalPool::Token,
    }
}

fn values(seed: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((seed * 31 + i) % 97) as f32 * 0.01 - 0.3)
        .collect()
}

/// Every tensor of `tiny_config` in f32, with labels and metadata.
pub(crate) fn tiny_writer() -> PackWriter {
    let cfg = tiny_config();
    let mut w = PackWriter::new(cfg, Precision::F32, Preprocess::imagenet([3, 8, 8]));
    w.architecture("cait_tiny_test")
        .labels(&["cat", "dog", "emu"])
        .metadata("quant.scheme", "none")
        .metadata("origin", "unit test");
    for (k, t) in cfg.tensors().enumerate() {
        let n = t.shape.numel().unwrap();
        w.add_f32(&t.id.to_string(), t.shape.dims(), &values(k, n))
            .unwrap();
    }
    w
}

fn valid() -> Vec<u8> {
    tiny_writer().finish().unwrap()
}

/// An int8-style pack: fc1 weight i8 per-channel (scales tensor added after it), fc1 bias i32
/// per-tensor, plus everything else f32.
fn quantized() -> Vec<u8> {
    let cfg = tiny_config();
    let mut w = PackWriter::new(cfg, Precision::Int8, Preprocess::imagenet([3, 8, 8]));
    let fc1 = TensorId::Block(0, BlockParam::Fc1Weight);
    let fc1b = TensorId::Block(0, BlockParam::Fc1Bias);
    for (k, t) in cfg.tensors().enumerate() {
        let n = t.shape.numel().unwrap();
        let name = t.id.to_string();
        if t.id == fc1 {
            let q: Vec<i8> = (0..n).map(|i| (i % 255) as i8).collect();
            // The scales tensor is the next one added.
            let scales = w.tensor_count() as u32 + 1;
            w.add_i8(
                &name,
                t.shape.dims(),
                &q,
                Quant::PerChannel { axis: 0, scales },
            )
            .unwrap();
            w.add_f32("blocks.0.mlp.fc1.weight_scale", &[16], &[0.5; 16])
                .unwrap();
        } else if t.id == fc1b {
            let q: Vec<i32> = (0..n as i32).collect();
            let quant = Quant::PerTensor {
                scale: 0.25,
                zero_point: 0,
            };
            w.add_i32(&name, t.shape.dims(), &q, quant).unwrap();
        } else {
            w.add_f32(&name, t.shape.dims(), &values(k, n)).unwrap();
        }
    }
    w.finish().unwrap()
}

// ---- byte-level helpers, written from the README's layout tables ----

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn set_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// `(offset, length)` of section `i` from the header's directory.
fn section_of(b: &[u8], i: usize) -> (usize, usize) {
    let at = offset::SECTIONS + 8 * i;
    (get_u32(b, at) as usize, get_u32(b, at + 4) as usize)
}

/// Offset of tensor-table entry `i`.
fn entry_at(b: &[u8], i: usize) -> usize {
    section_of(b, S_TABLE).0 + TENSOR_ENTRY_LEN * i
}

/// Table index of the tensor named `name` in a valid pack.
fn index(b: &[u8], name: &str) -> usize {
    Pack::parse(b).unwrap().index_of(name).unwrap()
}

fn sealed(mut b: Vec<u8>) -> Vec<u8> {
    reseal(&mut b).unwrap();
    b
}

/// Applies `edit` to the bytes, then recomputes the CRC.
fn patch(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = valid();
    edit(&mut b);
    sealed(b)
}

/// Replaces section `i` by `content`, appended at the end of the pack (sections may sit anywhere
/// after the header); the old bytes stay behind as an unused gap.
fn with_section(mut b: Vec<u8>, i: usize, content: &[u8]) -> Vec<u8> {
    let at = offset::SECTIONS + 8 * i;
    if content.is_empty() {
        set_u32(&mut b, at, 0);
        set_u32(&mut b, at + 4, 0);
    } else {
        b.resize(b.len().next_multiple_of(8), 0);
        let start = b.len() as u32;
        b.extend_from_slice(content);
        set_u32(&mut b, at, start);
        set_u32(&mut b, at + 4, content.len() as u32);
    }
    let total = b.len() as u64;
    set_u64(&mut b, offset::TOTAL_LEN, total);
    sealed(b)
}

fn names_of(b: &[u8]) -> Vec<String> {
    Pack::parse(b)
        .unwrap()
        .tensors()
        .map(|t| t.name.to_string())
        .collect()
}

/// Rewrites the tensor names table and a correctly sorted name index.
fn with_names(b: Vec<u8>, names: &[String]) -> Vec<u8> {
    let mut order: Vec<u32> = (0..names.len() as u32).collect();
    order.sort_by(|&x, &y| {
        names[x as usize]
            .as_bytes()
            .cmp(names[y as usize].as_bytes())
    });
    let index: Vec<u8> = order.iter().flat_map(|i| i.to_le_bytes()).collect();
    let b = with_section(b, S_NAMES, &string_table(names));
    with_section(b, S_NAME_INDEX, &index)
}

fn rename(b: Vec<u8>, from: &str, to: &str) -> Vec<u8> {
    let names: Vec<String> = names_of(&b)
        .into_iter()
        .map(|n| if n == from { to.to_string() } else { n })
        .collect();
    with_names(b, &names)
}

fn err(b: &[u8]) -> PackError {
    Pack::parse(b).expect_err("corrupted pack parsed")
}

fn name(i: usize, s: &str) -> ErrorName {
    ErrorName::new(i as u32, s)
}

/// An 8-byte aligned copy of a pack, shifted by `shift` bytes (tensor views need 4).
struct Aligned {
    words: Vec<u64>,
    len: usize,
}

impl Aligned {
    fn new(bytes: &[u8], shift: usize) -> Aligned {
        let len = bytes.len() + shift;
        let mut words = vec![0u64; len.div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[shift..len].copy_from_slice(bytes);
        Aligned { words, len }
    }

    fn bytes(&self, shift: usize) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[shift..self.len]
    }
}

// ---- the round trip ----

#[test]
fn round_trip_keeps_everything() {
    let w = tiny_writer();
    let bytes = w.finish().unwrap();
    let buf = Aligned::new(&bytes, 0);
    let pack = Pack::parse(buf.bytes(0)).unwrap();
    let cfg = tiny_config();
    assert_eq!(*pack.config(), cfg);
    assert_eq!(pack.precision(), Precision::F32);
    assert_eq!(*pack.preprocess(), Preprocess::imagenet([3, 8, 8]));
    assert_eq!(pack.architecture(), "cait_tiny_test");
    assert_eq!(pack.labels().len(), 3);
    assert_eq!(pack.labels().get(1), Some("dog"));
    assert_eq!(pack.labels().get(3), None);
    assert_eq!(
        pack.labels().iter().collect::<Vec<_>>(),
        ["cat", "dog", "emu"]
    );
    assert_eq!(pack.metadata().get("quant.scheme"), Some("none"));
    assert_eq!(pack.metadata().get("origin"), Some("unit test"));
    assert_eq!(pack.metadata().get("absent"), None);
    // Keys come back in ascending byte order, whatever order they were set in.
    assert_eq!(
        pack.metadata().iter().collect::<Vec<_>>(),
        [("origin", "unit test"), ("quant.scheme", "none")]
    );
    assert_eq!(pack.len(), bytes.len());
    assert_eq!(pack.checksum(), get_u32(&bytes, offset::CHECKSUM));
    assert_eq!(pack.checksum(), pack_checksum(&bytes).unwrap());

    let specs: Vec<_> = cfg.tensors().collect();
    assert_eq!(pack.tensor_count(), specs.len());
    let mut total = 0;
    for (k, (spec, view)) in specs.iter().zip(pack.tensors()).enumerate() {
        assert_eq!(view.name, spec.id.to_string());
        assert_eq!(view.id(), Some(spec.id));
        assert_eq!(view.shape, spec.shape);
        assert_eq!(view.dtype, DType::F32);
        assert_eq!(view.quant, Quant::None);
        assert_eq!(
            view.as_f32().unwrap(),
            values(k, spec.shape.numel().unwrap())
        );
        let offset = view.data.as_ptr() as usize - buf.bytes(0).as_ptr() as usize;
        assert_eq!(offset % DATA_ALIGN, 0, "{}", view.name);
        assert_eq!(pack.tensor(spec.id).unwrap().data, view.data);
        assert_eq!(pack.tensor_by_name(view.name).unwrap().data, view.data);
        assert_eq!(pack.tensor_at(k).unwrap().name, view.name);
        total += view.data.len();
    }
    assert_eq!(pack.tensor_bytes(), total);
    assert!(pack.tensor_at(specs.len()).is_none());
    assert!(pack.tensor_by_name("nope").is_none());
}

#[test]
fn round_trip_quantized() {
    let bytes = quantized();
    let buf = Aligned::new(&bytes, 0);
    let pack = Pack::parse(buf.bytes(0)).unwrap();
    assert_eq!(pack.precision(), Precision::Int8);
    let w = pack
        .tensor(TensorId::Block(0, BlockParam::Fc1Weight))
        .unwrap();
    assert_eq!(w.dtype, DType::I8);
    let Quant::PerChannel { axis: 0, scales } = w.quant else {
        panic!("{:?}", w.quant)
    };
    let s = pack.tensor_at(scales as usize).unwrap();
    assert_eq!(s.name, "blocks.0.mlp.fc1.weight_scale");
    assert_eq!(s.as_f32().unwrap(), [0.5; 16]);
    assert_eq!(w.as_i8().unwrap()[5], 5);
    let b = pack
        .tensor(TensorId::Block(0, BlockParam::Fc1Bias))
        .unwrap();
    assert_eq!(
        b.quant,
        Quant::PerTensor {
            scale: 0.25,
            zero_point: 0
        }
    );
    assert_eq!(b.as_i32().unwrap(), (0..16).collect::<Vec<i32>>());
}

#[test]
fn f16_round_trip() {
    let cfg = tiny_config();
    let mut w = PackWriter::new(cfg, Precision::F16, Preprocess::imagenet([3, 8, 8]));
    let data: Vec<half::f16> = (0..8)
        .map(|i| half::f16::from_f32(i as f32 * 0.5))
        .collect();
    w.add_f16("norm.weight", &[8], &data).unwrap();
    let bytes = w.finish().unwrap();
    let buf = Aligned::new(&bytes, 0);
    let pack = Pack::parse(buf.bytes(0)).unwrap();
    assert_eq!(
        pack.tensor(TensorId::NormWeight).unwrap().as_f16().unwrap(),
        data
    );
    // Presence is not checked at parse: the engine does.
    assert_eq!(pack.tensor_count(), 1);
    assert!(pack.labels().is_empty() && pack.metadata().is_empty());
    assert_eq!(pack.architecture(), "");
}

#[test]
fn empty_pack_is_just_a_header() {
    let bytes = PackWriter::new(
        tiny_config(),
        Precision::F32,
        Preprocess::imagenet([3, 8, 8]),
    )
    .finish()
    .unwrap();
    assert_eq!(bytes.len(), HEADER_LEN);
    let pack = Pack::parse(&bytes).unwrap();
    assert_eq!(pack.tensor_count(), 0);
    assert_eq!(pack.tensor_bytes(), 0);
}

#[test]
fn the_checksum_is_zlibs_crc32_over_everything_but_its_field() {
    let b = valid();
    let mut zeroed = b.clone();
    // Equivalent formulation for a C reader: CRC of the bytes before and after the field.
    zeroed.drain(offset::CHECKSUM..offset::CHECKSUM + 4);
    assert_eq!(crc32(&zeroed), get_u32(&b, offset::CHECKSUM));
}

/// A pack written by hand from the README's tables alone (literal offsets, zlib's CRC-32), as a
/// C writer would: one f32 tensor `norm.weight`, one label-less, metadata-less model.
#[test]
fn hand_written_pack_from_the_readme_parses() {
    let mut p = vec![0u8; 0x100 + 0x40 + 32];
    p[0..8].copy_from_slice(b"\x89CAIT\r\n\x1a");
    set_u32(&mut p, 0x08, 1);
    set_u32(&mut p, 0x0C, 256);
    let total = p.len() as u64;
    set_u64(&mut p, 0x10, total);
    // Config: img 8x8, patch 4, 3 channels, 3 classes, D 8, depth 1, 2 heads, MLP 16, 1 CA, 16.
    for (k, v) in [8u32, 8, 4, 3, 3, 8, 1, 2, 16, 1, 16]
        .into_iter()
        .enumerate()
    {
        set_u32(&mut p, 0x20 + 4 * k, v);
    }
    p[0x4C] = 1; // qkv_bias
    p[0x4D] = 0; // token pooling
    p[0x4E] = 0; // f32
    for (k, v) in [3u32, 8, 8].into_iter().enumerate() {
        set_u32(&mut p, 0x50 + 4 * k, v);
    }
    set_u32(&mut p, 0x5C, 1.0f32.to_bits());
    p[0x60] = 2; // bicubic
    p[0x61] = 3;
    for k in 0..3 {
        set_u32(&mut p, 0x64 + 4 * k, 0.5f32.to_bits());
        set_u32(&mut p, 0x84 + 4 * k, 0.25f32.to_bits());
    }
    set_u32(&mut p, 0xA4, 1); // one tensor
    // Sections: names table at 0x100 (count 1, end 11, "norm.weight" = 19 bytes), name index at
    // 0x118, tensor table at 0x120 (48 bytes, up to 0x150). Data at 0x180 (a multiple of 64).
    let names = raw_table(&[11], b"norm.weight");
    p.resize(0x180 + 32, 0);
    let total = p.len() as u64;
    set_u64(&mut p, 0x10, total);
    p[0x100..0x100 + names.len()].copy_from_slice(&names);
    for (section, (start, len)) in [
        (3, (0x100u32, names.len() as u32)),
        (4, (0x118, 4)),
        (5, (0x120, 48)),
    ] {
        set_u32(&mut p, 0xA8 + 8 * section, start);
        set_u32(&mut p, 0xA8 + 8 * section + 4, len);
    }
    set_u32(&mut p, 0x118, 0);
    let e = 0x120;
    set_u64(&mut p, e, 0x180);
    set_u64(&mut p, e + 0x08, 32);
    set_u32(&mut p, e + 0x10, 8);
    p[e + 0x20] = 0; // f32
    p[e + 0x21] = 1; // rank
    for k in 0..8 {
        set_u32(&mut p, 0x180 + 4 * k, (k as f32).to_bits());
    }
    // CRC-32 of [0, 0x18) then [0x1C, total), stored at 0x18.
    let mut c = crate::Crc32::new();
    c.update(&p[..0x18]);
    c.update(&p[0x1C..]);
    let crc = c.finish();
    set_u32(&mut p, 0x18, crc);

    let buf = Aligned::new(&p, 0);
    let pack = Pack::parse(buf.bytes(0)).unwrap();
    assert_eq!(*pack.config(), tiny_config());
    assert_eq!(pack.preprocess().mean[..3], [0.5; 3]);
    let t = pack.tensor(TensorId::NormWeight).unwrap();
    assert_eq!(
        t.as_f32().unwrap(),
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    );
}

// ---- one test per error variant ----

#[test]
fn truncated() {
    let b = valid();
    assert_eq!(err(&b[..5]), PackError::Truncated { what: "magic" });
    assert_eq!(err(&b[..10]), PackError::Truncated { what: "version" });
    assert_eq!(err(&b[..200]), PackError::Truncated { what: "header" });
    assert_eq!(
        err(&b[..b.len() - 1]),
        PackError::Truncated { what: "pack" }
    );
}

#[test]
fn bad_magic() {
    let mut b = valid();
    b[1] = b'K';
    assert_eq!(err(&b), PackError::BadMagic);
    assert_eq!(err(b"GIF89a\0\0\0\0\0\0"), PackError::BadMagic);
}

#[test]
fn unsupported_version() {
    let b = patch(|b| set_u32(b, offset::VERSION, 2));
    assert_eq!(err(&b), PackError::UnsupportedVersion(2));
}

#[test]
fn bad_header_length() {
    let b = patch(|b| set_u32(b, offset::HEADER_LEN, 512));
    assert_eq!(err(&b), PackError::BadHeaderLength(512));
}

#[test]
fn trailing_bytes() {
    let mut b = valid();
    let n = b.len() as u64;
    b.push(0);
    assert_eq!(
        err(&b),
        PackError::TrailingBytes {
            declared: n,
            found: n + 1
        }
    );
}

#[test]
fn checksum_mismatch() {
    let mut b = valid();
    let expected = get_u32(&b, offset::CHECKSUM);
    let last = b.len() - 1; // a byte of the last tensor's data
    b[last] ^= 0x40;
    assert_eq!(
        err(&b),
        PackError::ChecksumMismatch {
            expected,
            found: pack_checksum(&b).unwrap()
        }
    );
}

#[test]
fn unsupported_flags() {
    let b = patch(|b| set_u32(b, offset::FLAGS, 1 << 3));
    assert_eq!(err(&b), PackError::UnsupportedFlags(8));
}

#[test]
fn reserved_not_zero() {
    let b = patch(|b| b[0x4F] = 1);
    assert_eq!(
        err(&b),
        PackError::ReservedNotZero {
            field: "header byte 0x4f"
        }
    );
    let b = patch(|b| b[0xF0] = 1);
    assert_eq!(
        err(&b),
        PackError::ReservedNotZero {
            field: "header bytes 0xd8..0x100"
        }
    );
    let b = patch(|b| set_u32(b, offset::MEAN + 4 * 5, 1.0f32.to_bits()));
    assert_eq!(
        err(&b),
        PackError::ReservedNotZero {
            field: "mean/std beyond norm_channels"
        }
    );
    // An empty section records offset 0.
    let b = patch(|b| {
        let at = offset::SECTIONS + 8 * S_ARCH;
        set_u32(b, at + 4, 0);
    });
    assert_eq!(
        err(&b),
        PackError::ReservedNotZero {
            field: "offset of an empty section"
        }
    );
}

#[test]
fn entry_reserved_not_zero() {
    let b = valid();
    let i = index(&b, "norm.weight");
    let at = entry_at(&b, i);
    let b1 = patch(|b| set_u32(b, at + offset::T_DIMS + 4, 7));
    assert_eq!(
        err(&b1),
        PackError::EntryReservedNotZero {
            name: name(i, "norm.weight"),
            field: "dims beyond rank"
        }
    );
    let b2 = patch(|b| b[at + offset::T_FLAGS] = 1);
    assert_eq!(
        err(&b2),
        PackError::EntryReservedNotZero {
            name: name(i, "norm.weight"),
            field: "flags"
        }
    );
    let b3 = patch(|b| set_u32(b, at + offset::T_ZERO_POINT, 3));
    assert!(matches!(
        err(&b3),
        PackError::EntryReservedNotZero { field, .. } if field.contains("unquantized")
    ));
}

#[test]
fn bad_enum() {
    for (at, value, field) in [
        (offset::QKV_BIAS, 2, "qkv_bias"),
        (offset::GLOBAL_POOL, 9, "global_pool"),
        (offset::PRECISION, 3, "precision"),
        (offset::INTERPOLATION, 7, "interpolation"),
    ] {
        let b = patch(|b| b[at] = value);
        assert_eq!(err(&b), PackError::BadEnum { field, value });
    }
}

#[test]
fn invalid_config() {
    let b = patch(|b| set_u32(b, offset::CONFIG + 8, 3)); // patch_size 3 does not divide 8
    assert_eq!(
        err(&b),
        PackError::InvalidConfig(ConfigError::PatchDoesNotDivideImage)
    );
    let b = patch(|b| set_u32(b, offset::CONFIG + 4 * 5, 0)); // embed_dim 0
    assert_eq!(
        err(&b),
        PackError::InvalidConfig(ConfigError::Zero("embed_dim"))
    );
}

#[test]
fn invalid_preprocess() {
    type Edit = fn(&mut Vec<u8>);
    let cases: [(Edit, &str); 5] = [
        (|b| set_u32(b, offset::CROP_PCT, 0f32.to_bits()), "crop_pct"),
        (
            |b| set_u32(b, offset::CROP_PCT, f32::NAN.to_bits()),
            "crop_pct",
        ),
        (|b| set_u32(b, offset::STD + 4, 0f32.to_bits()), "std"),
        (
            |b| set_u32(b, offset::MEAN, f32::INFINITY.to_bits()),
            "mean",
        ),
        (|b| set_u32(b, offset::INPUT_SIZE + 4, 224), "input_size"),
    ];
    for (edit, field) in cases {
        assert_eq!(err(&patch(edit)), PackError::InvalidPreprocess { field });
    }
    let b = patch(|b| b[offset::NORM_CHANNELS] = 9);
    assert_eq!(
        err(&b),
        PackError::InvalidPreprocess {
            field: "norm_channels"
        }
    );
    // Declaring no normalisation is fine once the unused entries are zero.
    let b = patch(|b| {
        b[offset::NORM_CHANNELS] = 0;
        b[offset::MEAN..offset::TENSOR_COUNT].fill(0);
    });
    assert_eq!(Pack::parse(&b).unwrap().preprocess().norm_channels, 0);
    assert_eq!(
        Pack::parse(&b).unwrap().preprocess().interpolation,
        Interpolation::Bicubic
    );
}

#[test]
fn section_out_of_bounds() {
    let b = patch(|b| set_u32(b, offset::SECTIONS + 8 * S_LABELS, 128));
    assert_eq!(err(&b), PackError::SectionOutOfBounds { section: "labels" });
    let b = patch(|b| {
        let n = b.len() as u32;
        set_u32(b, offset::SECTIONS + 8 * S_TABLE, n.next_multiple_of(8));
    });
    assert_eq!(
        err(&b),
        PackError::SectionOutOfBounds {
            section: "tensor table"
        }
    );
    let b = patch(|b| set_u32(b, offset::SECTIONS + 8 * S_METADATA + 4, u32::MAX));
    assert_eq!(
        err(&b),
        PackError::SectionOutOfBounds {
            section: "metadata"
        }
    );
}

#[test]
fn misaligned_section() {
    let b = patch(|b| {
        let at = offset::SECTIONS + 8 * S_ARCH;
        let len = get_u32(b, at + 4);
        let v = get_u32(b, at) + 1;
        set_u32(b, at, v);
        set_u32(b, at + 4, len - 1);
    });
    assert_eq!(
        err(&b),
        PackError::MisalignedSection {
            section: "architecture"
        }
    );
}

#[test]
fn overlapping_sections() {
    let b = patch(|b| {
        let labels = offset::SECTIONS + 8 * S_LABELS;
        let metadata = offset::SECTIONS + 8 * S_METADATA;
        let (start, len) = (get_u32(b, labels), get_u32(b, labels + 4));
        set_u32(b, metadata, start);
        set_u32(b, metadata + 4, len);
    });
    assert_eq!(
        err(&b),
        PackError::OverlappingSections {
            first: "labels",
            second: "metadata"
        }
    );
}

#[test]
fn section_length() {
    let b = patch(|b| {
        let at = offset::SECTIONS + 8 * S_TABLE + 4;
        let v = get_u32(b, at) - TENSOR_ENTRY_LEN as u32;
        set_u32(b, at, v);
    });
    let n = tiny_config().tensors().count() as u64;
    assert_eq!(
        err(&b),
        PackError::SectionLength {
            section: "tensor table",
            expected: 48 * n,
            found: 48 * (n - 1)
        }
    );
    let b = patch(|b| {
        let at = offset::SECTIONS + 8 * S_NAME_INDEX + 4;
        let v = get_u32(b, at) - 4;
        set_u32(b, at, v);
    });
    assert_eq!(
        err(&b),
        PackError::SectionLength {
            section: "name index",
            expected: 4 * n,
            found: 4 * (n - 1)
        }
    );
    // A string table shorter than its count field, and one whose offsets run past its end.
    let b = with_section(valid(), S_LABELS, &[3, 0]);
    assert_eq!(
        err(&b),
        PackError::SectionLength {
            section: "labels",
            expected: 4,
            found: 2
        }
    );
    let b = with_section(valid(), S_LABELS, &3u32.to_le_bytes());
    assert_eq!(
        err(&b),
        PackError::SectionLength {
            section: "labels",
            expected: 16,
            found: 4
        }
    );
}

#[test]
fn too_many() {
    let b = patch(|b| set_u32(b, offset::TENSOR_COUNT, MAX_TENSORS as u32 + 1));
    assert_eq!(
        err(&b),
        PackError::TooMany {
            what: "tensors",
            count: MAX_TENSORS as u64 + 1,
            max: MAX_TENSORS as u64
        }
    );
    let b = with_section(valid(), S_LABELS, &u32::MAX.to_le_bytes());
    assert_eq!(
        err(&b),
        PackError::TooMany {
            what: "class label",
            count: u32::MAX as u64,
            max: MAX_LABELS as u64
        }
    );
}

/// A string table from explicit end offsets and bytes.
fn raw_table(ends: &[u32], data: &[u8]) -> Vec<u8> {
    let mut t = (ends.len() as u32).to_le_bytes().to_vec();
    for e in ends {
        t.extend_from_slice(&e.to_le_bytes());
    }
    t.extend_from_slice(data);
    t
}

#[test]
fn bad_string_table() {
    // Offsets go backwards.
    let b = with_section(valid(), S_LABELS, &raw_table(&[3, 2, 6], b"catdogemu"));
    assert_eq!(err(&b), PackError::BadStringTable { section: "labels" });
    // The last offset stops short of the section end.
    let b = with_section(valid(), S_LABELS, &raw_table(&[3, 6, 8], b"catdogemu"));
    assert_eq!(err(&b), PackError::BadStringTable { section: "labels" });
    // An offset past the end.
    let b = with_section(valid(), S_LABELS, &raw_table(&[3, 6, 99], b"catdogemu"));
    assert_eq!(err(&b), PackError::BadStringTable { section: "labels" });
}

#[test]
fn invalid_utf8() {
    let b = with_section(valid(), S_LABELS, &raw_table(&[3, 6, 9], b"catd\xffgemu"));
    assert_eq!(
        err(&b),
        PackError::InvalidUtf8 {
            what: "class label",
            index: 1
        }
    );
    let b = with_section(valid(), S_ARCH, b"cait_\xc3");
    assert_eq!(
        err(&b),
        PackError::InvalidUtf8 {
            what: "architecture",
            index: 0
        }
    );
}

#[test]
fn string_too_long() {
    let b = with_section(valid(), S_ARCH, &[b'a'; MAX_NAME_LEN + 1]);
    assert_eq!(
        err(&b),
        PackError::StringTooLong {
            what: "architecture",
            index: 0,
            max: MAX_NAME_LEN as u32
        }
    );
    let long = "x".repeat(MAX_NAME_LEN + 1);
    let b = with_section(valid(), S_METADATA, &string_table([long.as_str(), "v"]));
    assert_eq!(
        err(&b),
        PackError::StringTooLong {
            what: "metadata string",
            index: 0,
            max: MAX_NAME_LEN as u32
        }
    );
}

#[test]
fn empty_name() {
    let b = valid();
    let mut names = names_of(&b);
    names[2] = String::new();
    assert_eq!(
        err(&with_names(b, &names)),
        PackError::EmptyName {
            what: "tensor name",
            index: 2
        }
    );
    let b = with_section(valid(), S_METADATA, &string_table(["", "v"]));
    assert_eq!(
        err(&b),
        PackError::EmptyName {
            what: "metadata key",
            index: 0
        }
    );
}

#[test]
fn label_count() {
    let b = with_section(valid(), S_LABELS, &string_table(["cat", "dog"]));
    assert_eq!(
        err(&b),
        PackError::LabelCount {
            expected: 3,
            found: 2
        }
    );
    // No labels at all is fine.
    let b = with_section(valid(), S_LABELS, &[]);
    assert!(Pack::parse(&b).unwrap().labels().is_empty());
}

#[test]
fn odd_metadata_count() {
    let b = with_section(valid(), S_METADATA, &string_table(["a", "1", "b"]));
    assert_eq!(err(&b), PackError::OddMetadataCount { count: 3 });
}

#[test]
fn duplicate_metadata_key() {
    let b = with_section(valid(), S_METADATA, &string_table(["k", "1", "k", "2"]));
    assert_eq!(
        err(&b),
        PackError::DuplicateMetadataKey { key: name(1, "k") }
    );
}

#[test]
fn unsorted_metadata() {
    let b = with_section(valid(), S_METADATA, &string_table(["b", "1", "a", "2"]));
    assert_eq!(err(&b), PackError::UnsortedMetadata { key: name(1, "a") });
}

#[test]
fn count_mismatch() {
    let b = valid();
    let mut names = names_of(&b);
    names.pop();
    let n = names.len() as u64;
    let b = with_section(b, S_NAMES, &string_table(&names));
    assert_eq!(
        err(&b),
        PackError::CountMismatch {
            what: "tensor names",
            expected: n + 1,
            found: n
        }
    );
}

#[test]
fn bad_name_index() {
    let b = valid();
    let n = Pack::parse(&b).unwrap().tensor_count() as u32;
    let at = section_of(&b, S_NAME_INDEX).0 + 8;
    let b = patch(|b| set_u32(b, at, n));
    assert_eq!(
        err(&b),
        PackError::BadNameIndex {
            position: 2,
            value: n
        }
    );
}

#[test]
fn unsorted_name_index() {
    let b = valid();
    let (start, _) = section_of(&b, S_NAME_INDEX);
    let (first, second) = (get_u32(&b, start), get_u32(&b, start + 4));
    let names = names_of(&b);
    let b = patch(|b| {
        set_u32(b, start, second);
        set_u32(b, start + 4, first);
    });
    assert_eq!(
        err(&b),
        PackError::UnsortedNameIndex {
            name: name(first as usize, &names[first as usize])
        }
    );
}

#[test]
fn duplicate_tensor_name() {
    let b = valid();
    let i = index(&b, "norm.bias");
    let b = rename(b, "norm.bias", "norm.weight");
    let e = err(&b);
    let PackError::DuplicateTensorName { name: n } = e else {
        panic!("{e:?}")
    };
    assert_eq!(n.as_str(), "norm.weight");
    // Either of the two may be named, depending on the sort's tie order.
    assert!(
        n.index() == Some(i as u32) || n.index() == Some(index(&valid(), "norm.weight") as u32)
    );
}

#[test]
fn bad_dtype() {
    let b = valid();
    let at = entry_at(&b, 0);
    let b = patch(|b| b[at + offset::T_DTYPE] = 4);
    assert_eq!(
        err(&b),
        PackError::BadDType {
            name: name(0, "cls_token"),
            code: 4
        }
    );
}

#[test]
fn bad_quant_kind() {
    let b = valid();
    let at = entry_at(&b, 0);
    let b = patch(|b| b[at + offset::T_QUANT_KIND] = 3);
    assert_eq!(
        err(&b),
        PackError::BadQuantKind {
            name: name(0, "cls_token"),
            code: 3
        }
    );
}

#[test]
fn bad_rank() {
    let b = valid();
    let at = entry_at(&b, 0);
    for rank in [0, 5] {
        let b = patch(|b| b[at + offset::T_RANK] = rank);
        assert_eq!(
            err(&b),
            PackError::BadRank {
                name: name(0, "cls_token"),
                rank
            }
        );
    }
}

#[test]
fn tensor_too_large() {
    let b = valid();
    let at = entry_at(&b, 0);
    let b = patch(|b| {
        b[at + offset::T_RANK] = 4;
        for k in 0..4 {
            set_u32(b, at + offset::T_DIMS + 4 * k, u32::MAX);
        }
    });
    assert_eq!(
        err(&b),
        PackError::TensorTooLarge {
            name: name(0, "cls_token")
        }
    );
}

#[test]
fn data_length_mismatch() {
    let b = valid();
    let at = entry_at(&b, 0);
    let b = patch(|b| set_u64(b, at + offset::T_DATA_LEN, 36));
    assert_eq!(
        err(&b),
        PackError::DataLengthMismatch {
            name: name(0, "cls_token"),
            expected: 32,
            found: 36
        }
    );
}

#[test]
fn tensor_out_of_bounds() {
    let b = valid();
    let last = Pack::parse(&b).unwrap().tensor_count() - 1;
    let last_name = names_of(&b)[last].clone();
    let at = entry_at(&b, last);
    let beyond = (b.len() as u64).next_multiple_of(64);
    let b1 = patch(|b| set_u64(b, at + offset::T_DATA_OFFSET, beyond));
    assert_eq!(
        err(&b1),
        PackError::TensorOutOfBounds {
            name: name(last, &last_name)
        }
    );
    // Inside the header.
    let at0 = entry_at(&b, 0);
    let b2 = patch(|b| set_u64(b, at0 + offset::T_DATA_OFFSET, 64));
    assert_eq!(
        err(&b2),
        PackError::TensorOutOfBounds {
            name: name(0, "cls_token")
        }
    );
    // An offset whose sum with the length overflows u64.
    let b3 = patch(|b| set_u64(b, at0 + offset::T_DATA_OFFSET, u64::MAX - 63));
    assert_eq!(
        err(&b3),
        PackError::TensorOutOfBounds {
            name: name(0, "cls_token")
        }
    );
}

#[test]
fn misaligned_tensor() {
    let b = valid();
    let at = entry_at(&b, 1);
    let off = get_u64(&b, at + offset::T_DATA_OFFSET);
    let b = patch(|b| set_u64(b, at + offset::T_DATA_OFFSET, off + 4));
    assert_eq!(
        err(&b),
        PackError::MisalignedTensor {
            name: name(1, "pos_embed"),
            offset: off + 4
        }
    );
}

#[test]
fn overlapping_tensors() {
    let b = valid();
    let off0 = get_u64(&b, entry_at(&b, 0) + offset::T_DATA_OFFSET);
    let at1 = entry_at(&b, 1);
    let b = patch(|b| set_u64(b, at1 + offset::T_DATA_OFFSET, off0));
    assert_eq!(
        err(&b),
        PackError::OverlappingTensors {
            first: name(0, "cls_token"),
            second: name(1, "pos_embed")
        }
    );
}

#[test]
fn tensors_out_of_order() {
    // Tensor 3 (32 bytes) moved onto tensor 0's (32 bytes): it does not touch tensor 2 but comes
    // before it.
    let b = valid();
    let off0 = get_u64(&b, entry_at(&b, 0) + offset::T_DATA_OFFSET);
    let at3 = entry_at(&b, 3);
    let b = patch(|b| set_u64(b, at3 + offset::T_DATA_OFFSET, off0));
    assert_eq!(
        err(&b),
        PackError::TensorsOutOfOrder {
            name: name(3, "patch_embed.proj.bias")
        }
    );
}

#[test]
fn section_overlaps_tensor() {
    // The architecture string sits at 256, right after the header.
    let b = valid();
    assert_eq!(section_of(&b, S_ARCH).0, HEADER_LEN);
    let at = entry_at(&b, 0);
    let b = patch(|b| set_u64(b, at + offset::T_DATA_OFFSET, HEADER_LEN as u64));
    assert_eq!(
        err(&b),
        PackError::SectionOverlapsTensor {
            section: "architecture",
            tensor: name(0, "cls_token")
        }
    );
}

#[test]
fn unexpected_tensor() {
    // depth is 1: there is no block 5 (same name length, so nothing else moves).
    let b = valid();
    let i = index(&b, "blocks.0.gamma_1");
    let b = rename(b, "blocks.0.gamma_1", "blocks.5.gamma_1");
    assert_eq!(
        err(&b),
        PackError::UnexpectedTensor {
            name: name(i, "blocks.5.gamma_1")
        }
    );
}

#[test]
fn shape_mismatch() {
    let b = valid();
    let at = entry_at(&b, 0);
    let b = patch(|b| {
        set_u32(b, at + offset::T_DIMS + 4, 8);
        set_u32(b, at + offset::T_DIMS + 8, 1);
    });
    assert_eq!(
        err(&b),
        PackError::ShapeMismatch {
            name: name(0, "cls_token"),
            expected: Shape::new(&[1, 1, 8]),
            found: Shape::new(&[1, 8, 1])
        }
    );
}

#[test]
fn quantized_float() {
    let b = valid();
    let at = entry_at(&b, 0);
    let b = patch(|b| {
        b[at + offset::T_QUANT_KIND] = 1;
        set_u32(b, at + offset::T_QUANT_PARAM, 1.0f32.to_bits());
    });
    assert_eq!(
        err(&b),
        PackError::QuantizedFloat {
            name: name(0, "cls_token")
        }
    );
}

fn quant_entry(b: &[u8], tensor: &str) -> (usize, usize) {
    let i = index(b, tensor);
    (i, entry_at(b, i))
}

#[test]
fn bad_scale() {
    let q = quantized();
    let (i, at) = quant_entry(&q, "blocks.0.mlp.fc1.bias");
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let mut b = q.clone();
        set_u32(&mut b, at + offset::T_QUANT_PARAM, f32::to_bits(bad));
        assert_eq!(
            err(&sealed(b)),
            PackError::BadScale {
                name: name(i, "blocks.0.mlp.fc1.bias")
            }
        );
    }
    // A zero in a per-channel scales tensor names the scales tensor.
    let s = index(&q, "blocks.0.mlp.fc1.weight_scale");
    let data = get_u64(&q, entry_at(&q, s) + offset::T_DATA_OFFSET) as usize;
    let mut b = q.clone();
    set_u32(&mut b, data + 12, 0);
    assert_eq!(
        err(&sealed(b)),
        PackError::BadScale {
            name: name(s, "blocks.0.mlp.fc1.weight_scale")
        }
    );
}

#[test]
fn bad_quant_axis() {
    let q = quantized();
    let (i, at) = quant_entry(&q, "blocks.0.mlp.fc1.weight");
    let mut b = q.clone();
    b[at + offset::T_QUANT_AXIS] = 2;
    assert_eq!(
        err(&sealed(b)),
        PackError::BadQuantAxis {
            name: name(i, "blocks.0.mlp.fc1.weight"),
            axis: 2
        }
    );
}

#[test]
fn bad_scales_index() {
    let q = quantized();
    let (i, at) = quant_entry(&q, "blocks.0.mlp.fc1.weight");
    let n = Pack::parse(&q).unwrap().tensor_count() as u32;
    for bad in [n, i as u32, u32::MAX] {
        let mut b = q.clone();
        set_u32(&mut b, at + offset::T_QUANT_PARAM, bad);
        assert_eq!(
            err(&sealed(b)),
            PackError::BadScalesIndex {
                name: name(i, "blocks.0.mlp.fc1.weight"),
                index: bad
            }
        );
    }
}

#[test]
fn scales_not_f32() {
    let q = quantized();
    let (i, at) = quant_entry(&q, "blocks.0.mlp.fc1.weight");
    let bias = index(&q, "blocks.0.mlp.fc1.bias") as u32; // i32 [16]
    let mut b = q.clone();
    set_u32(&mut b, at + offset::T_QUANT_PARAM, bias);
    assert_eq!(
        err(&sealed(b)),
        PackError::ScalesNotF32 {
            name: name(i, "blocks.0.mlp.fc1.weight")
        }
    );
}

#[test]
fn scales_length() {
    let q = quantized();
    let (i, at) = quant_entry(&q, "blocks.0.mlp.fc1.weight");
    let norm = index(&q, "norm.weight") as u32; // f32 [8], the axis has 16
    let mut b = q.clone();
    set_u32(&mut b, at + offset::T_QUANT_PARAM, norm);
    assert_eq!(
        err(&sealed(b)),
        PackError::ScalesLength {
            name: name(i, "blocks.0.mlp.fc1.weight"),
            expected: 16,
            found: 8
        }
    );
}

#[test]
fn missing_tensor() {
    let mut w = PackWriter::new(
        tiny_config(),
        Precision::F32,
        Preprocess::imagenet([3, 8, 8]),
    );
    w.add_f32("head.weight", &[3, 8], &[0.0; 24]).unwrap();
    let bytes = w.finish().unwrap();
    let pack = Pack::parse(&bytes).unwrap();
    assert!(pack.tensor(TensorId::HeadWeight).is_ok());
    assert_eq!(
        pack.tensor(TensorId::HeadBias).unwrap_err(),
        PackError::MissingTensor(TensorId::HeadBias)
    );
}

#[test]
fn wrong_dtype() {
    let bytes = valid();
    let buf = Aligned::new(&bytes, 0);
    let pack = Pack::parse(buf.bytes(0)).unwrap();
    let t = pack.tensor(TensorId::NormWeight).unwrap();
    assert_eq!(
        t.as_i8().unwrap_err(),
        PackError::WrongDType {
            name: ErrorName::unindexed("norm.weight"),
            expected: DType::I8,
            found: DType::F32
        }
    );
    assert!(t.as_f16().is_err() && t.as_i32().is_err() && t.as_f32().is_ok());
}

#[test]
fn misaligned() {
    // The same valid pack placed one byte past a 64-byte boundary: it parses, but f32 views refuse.
    let bytes = valid();
    let buf = Aligned::new(&bytes, 1);
    let pack = Pack::parse(buf.bytes(1)).unwrap();
    let t = pack.tensor(TensorId::NormWeight).unwrap();
    assert_eq!(
        t.as_f32().unwrap_err(),
        PackError::Misaligned {
            name: ErrorName::unindexed("norm.weight")
        }
    );
}

// ---- error formatting ----

#[test]
fn errors_name_what_failed() {
    use std::string::ToString;
    let e = PackError::ShapeMismatch {
        name: name(3, "blocks.0.attn.qkv.weight"),
        expected: Shape::new(&[24, 8]),
        found: Shape::new(&[8, 24]),
    };
    assert_eq!(
        e.to_string(),
        "tensor `blocks.0.attn.qkv.weight`: shape [8, 24], the config implies [24, 8]"
    );
    let long = "é".repeat(40); // 80 bytes: cut at a char boundary
    let n = ErrorName::new(7, &long);
    assert!(n.is_truncated());
    assert_eq!(n.as_str(), "é".repeat(24));
    assert_eq!(ErrorName::index_only(5).to_string(), "#5");
    assert_eq!(ErrorName::unindexed("x").index(), None);
    // 'static: usable behind `?` into a boxed std error.
    let boxed: std::boxed::Box<dyn std::error::Error + Send + Sync + 'static> =
        std::boxed::Box::new(PackError::BadMagic);
    assert_eq!(boxed.to_string(), "not a .cait pack (bad magic)");
}

// ---- never panic ----

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    /// Parses, and on success touches every view the way an engine would.
    fn exercise(bytes: &[u8]) {
        if let Ok(pack) = Pack::parse(bytes) {
            for t in pack.tensors() {
                let _ = (t.as_f32(), t.as_f16(), t.as_i8(), t.as_i32());
                assert_eq!(t.data.len(), t.shape.numel().unwrap() * t.dtype.size());
                assert!(pack.tensor_by_name(t.name).is_some());
            }
            let _ = pack.labels().iter().count();
            let _ = pack.metadata().iter().count();
            for spec in pack.config().tensors() {
                let _ = pack.tensor(spec.id);
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Mutation {
        Set(usize, u8),
        Xor(usize, u8),
        Word(usize, u32),
        Truncate(usize),
        Insert(usize, u8),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        // Indices are taken modulo the length; words favour small and extreme values.
        let word = prop_oneof![0u32..300, Just(u32::MAX), Just(0x8000_0000), any::<u32>()];
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Xor(i, v)),
            (any::<usize>(), word).prop_map(|(i, v)| Mutation::Word(i, v)),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Insert(i, v)),
        ]
    }

    fn apply(b: &mut Vec<u8>, m: &Mutation) {
        if b.is_empty() {
            return;
        }
        let n = b.len();
        match *m {
            Mutation::Set(i, v) => b[i % n] = v,
            Mutation::Xor(i, v) => b[i % n] ^= v,
            Mutation::Word(i, v) => {
                // Mostly hit the header and tables, where the structure is.
                let i = if i % 4 == 0 { i % n } else { i % n.min(1024) };
                for (k, byte) in v.to_le_bytes().into_iter().enumerate() {
                    if let Some(slot) = b.get_mut(i + k) {
                        *slot = byte;
                    }
                }
            }
            Mutation::Truncate(i) => b.truncate(i % n),
            Mutation::Insert(i, v) => b.insert(i % n, v),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parse_never_panics_on_mutations(
            quantized_base in any::<bool>(),
            fix_len in any::<bool>(),
            mutations in prop::collection::vec(mutation(), 1..6),
        ) {
            let mut b = if quantized_base { quantized() } else { valid() };
            for m in &mutations {
                apply(&mut b, m);
            }
            // As is (almost always a checksum failure), then resealed so the structural checks run.
            exercise(&b);
            if fix_len && b.len() >= HEADER_LEN {
                let n = b.len() as u64;
                b[offset::TOTAL_LEN..offset::TOTAL_LEN + 8].copy_from_slice(&n.to_le_bytes());
            }
            reseal(&mut b);
            exercise(&b);
        }

        #[test]
        fn parse_never_panics_on_noise(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let mut b = bytes;
            if b.len() >= 8 {
                b[..8].copy_from_slice(&MAGIC);
            }
            if b.len() >= 12 {
                b[8..12].copy_from_slice(&VERSION.to_le_bytes());
            }
            exercise(&b);
            reseal(&mut b);
            exercise(&b);
        }
    }
}
