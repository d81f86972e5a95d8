//! `load_checkpoint` end to end on checkpoints written here: safetensors through the `safetensors`
//! crate, torch zips with hand-built pickles laid out exactly as `torch.save` lays them out.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use cait_pack::{GlobalPool, Interpolation, ModelConfig, Pack};
use safetensors::Dtype;

use crate::pickle::tests::Writer;
use crate::*;

fn tiny() -> ModelConfig {
    ModelConfig {
        img_size: [32, 32],
        patch_size: 8,
        in_chans: 3,
        num_classes: 5,
        embed_dim: 16,
        depth: 2,
        num_heads: 2,
        mlp_hidden_dim: 64,
        depth_token_only: 2,
        mlp_hidden_dim_token_only: 64,
        qkv_bias: true,
        global_pool: GlobalPool::Token,
    }
}

type Entries = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Every tensor of `cfg`, with values that differ per tensor and per element and are exact in f16
/// and bf16 (multiples of 1/64 below 2), so every format loads them identically.
fn synth(cfg: &ModelConfig) -> Entries {
    cfg.tensors()
        .enumerate()
        .map(|(t, spec)| {
            let shape: Vec<usize> = spec.shape.dims().iter().map(|&d| d as usize).collect();
            let n: usize = shape.iter().product();
            let data = (0..n)
                .map(|i| (((i * 7 + t * 13) % 97) as f32 - 48.0) / 64.0)
                .collect();
            (spec.id.to_string(), shape, data)
        })
        .collect()
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("cait-import-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn encode(data: &[f32], dtype: Dtype) -> Vec<u8> {
    match dtype {
        Dtype::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => data
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        Dtype::BF16 => data
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        Dtype::I64 => data
            .iter()
            .flat_map(|&v| (v as i64).to_le_bytes())
            .collect(),
        _ => unimplemented!(),
    }
}

fn write_safetensors(path: &Path, entries: &Entries, dtype: Dtype) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = entries
        .iter()
        .map(|(k, s, d)| (k.clone(), s.clone(), encode(d, dtype)))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// How a torch checkpoint wraps its state dict.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// `torch.save(model.state_dict())`.
    Flat,
    /// DeiT/CaiT release: `{"model": {"module.<key>": t}, "optimizer": {...}, "epoch": 299,
    /// "args": Namespace(...)}`.
    Release,
}

fn storage_class(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F32 => "FloatStorage",
        Dtype::F16 => "HalfStorage",
        Dtype::BF16 => "BFloat16Storage",
        Dtype::I64 => "LongStorage",
        _ => unimplemented!(),
    }
}

fn contiguous_strides(shape: &[usize]) -> Vec<u64> {
    let mut strides = vec![1u64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1] as u64;
    }
    strides
}

/// Writes a torch.save-style zip (`archive/data.pkl`, `archive/data/<i>`, `archive/version`,
/// `archive/byteorder`). Matrices are stored transposed (a non-contiguous view), as a state dict
/// saved after `weight.t_()` would be, to exercise strided reads.
fn write_torch(path: &Path, entries: &Entries, dtype: Dtype, layout: Layout) {
    let mut storages: Vec<Vec<u8>> = Vec::new();
    let mut w = Writer::new();
    let state_dict = |w: &mut Writer, storages: &mut Vec<Vec<u8>>| {
        w.global("collections", "OrderedDict");
        w.op(b')').op(b'R').put();
        w.op(b'(');
        for (key, shape, data) in entries {
            let key = if layout == Layout::Release {
                format!("module.{key}")
            } else {
                key.clone()
            };
            w.str(&key);
            let sk = storages.len().to_string();
            if shape.len() == 2 && shape[0] > 1 && shape[1] > 1 {
                // Store the transpose contiguously; the view is [r, c] with strides [1, r].
                let (r, c) = (shape[0], shape[1]);
                let mut t = vec![0f32; r * c];
                for i in 0..r {
                    for j in 0..c {
                        t[j * r + i] = data[i * c + j];
                    }
                }
                storages.push(encode(&t, dtype));
                let size = [r as u64, c as u64];
                w.tensor(
                    storage_class(dtype),
                    &sk,
                    (r * c) as u64,
                    0,
                    &size,
                    &[1, r as u64],
                );
            } else {
                // Offset 2 into a storage with two leading pad elements.
                let mut padded = vec![9.0f32, 9.0];
                padded.extend_from_slice(data);
                storages.push(encode(&padded, dtype));
                let size: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
                let stride = contiguous_strides(shape);
                w.tensor(
                    storage_class(dtype),
                    &sk,
                    padded.len() as u64,
                    2,
                    &size,
                    &stride,
                );
            }
        }
        w.op(b'u');
    };
    match layout {
        Layout::Flat => state_dict(&mut w, &mut storages),
        Layout::Release => {
            w.op(b'}').put().op(b'(');
            w.str("model");
            state_dict(&mut w, &mut storages);
            w.str("optimizer");
            w.op(b'}').put();
            w.str("state").op(b'}').put().op(b's');
            w.str("epoch").int(299);
            w.str("args");
            w.global("argparse", "Namespace").op(b')').op(0x81).put();
            w.op(b'}').put().str("lr").op(b'G');
            w.out.extend_from_slice(&5e-4f64.to_be_bytes());
            w.op(b's').op(b'b');
            w.op(b'u');
        }
    }
    let pkl = w.finish();

    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(&pkl).unwrap();
    zip.start_file("archive/byteorder", opts).unwrap();
    zip.write_all(b"little").unwrap();
    for (i, s) in storages.iter().enumerate() {
        zip.start_file(format!("archive/data/{i}"), opts).unwrap();
        zip.write_all(s).unwrap();
    }
    zip.start_file("archive/version", opts).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}

fn load(path: &Path) -> Result<Checkpoint, ImportError> {
    load_checkpoint(path, &ImportOptions::default())
}

fn assert_tensors_eq(ckpt: &Checkpoint, entries: &Entries) {
    assert_eq!(ckpt.tensors.len(), entries.len());
    for (k, s, d) in entries {
        let t = &ckpt.tensors[k];
        assert_eq!(&t.shape, s, "{k}");
        assert_eq!(&t.data, d, "{k}");
    }
}

#[test]
fn safetensors_loads_and_infers_the_config() {
    let dir = tmp_dir("st");
    let entries = synth(&tiny());
    let path = dir.join("model.safetensors");
    write_safetensors(&path, &entries, Dtype::F32);
    let ckpt = load(&path).unwrap();
    assert_eq!(ckpt.config, tiny());
    assert_eq!(ckpt.format, CheckpointFormat::Safetensors);
    assert_eq!(ckpt.config_source, ConfigSource::Inferred);
    assert_eq!(ckpt.architecture, None);
    assert_eq!(ckpt.labels, None);
    assert_eq!(ckpt.preprocess, default_preprocess(&tiny()));
    assert_tensors_eq(&ckpt, &entries);
    // A directory resolves to the same file.
    assert_eq!(load(&dir).unwrap().source, path);
}

#[test]
fn every_format_and_dtype_loads_identical_tensors() {
    let dir = tmp_dir("formats");
    let entries = synth(&tiny());
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let st = dir.join(format!("{dtype}.safetensors"));
        write_safetensors(&st, &entries, dtype);
        let flat = dir.join(format!("{dtype}.pth"));
        write_torch(&flat, &entries, dtype, Layout::Flat);
        let release = dir.join(format!("{dtype}-release.pth"));
        write_torch(&release, &entries, dtype, Layout::Release);
        for path in [st, flat, release] {
            let ckpt = load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ckpt.config, tiny(), "{}", path.display());
            assert_tensors_eq(&ckpt, &entries);
        }
    }
    let ckpt = load(&dir.join("F32-release.pth")).unwrap();
    assert_eq!(ckpt.format, CheckpointFormat::TorchZip);
}

#[test]
fn missing_tensor_is_listed_with_its_shape() {
    let dir = tmp_dir("missing");
    let mut entries = synth(&tiny());
    entries.retain(|(k, _, _)| k != "blocks.1.attn.proj_w.bias" && k != "norm.weight");
    let path = dir.join("model.pth");
    write_torch(&path, &entries, Dtype::F32, Layout::Flat);
    let err = load(&path).unwrap_err();
    let ImportError::TensorMismatch { problems, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        problems,
        &vec![
            TensorProblem::Missing("blocks.1.attn.proj_w.bias".into(), vec![2]),
            TensorProblem::Missing("norm.weight".into(), vec![16]),
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains("model.pth") && text.contains("2 problems"),
        "{text}"
    );
    assert!(text.contains("missing norm.weight [16]"), "{text}");
}

#[test]
fn wrong_shape_and_extra_tensors_come_in_one_error() {
    let dir = tmp_dir("shape");
    let mut entries = synth(&tiny());
    for (k, s, d) in entries.iter_mut() {
        if k == "blocks.0.mlp.fc2.weight" {
            *s = vec![16, 63];
            d.truncate(16 * 63);
        }
    }
    entries.push(("head_dist.weight".into(), vec![5, 16], vec![0.0; 80]));
    entries.push(("dist_token".into(), vec![1, 1, 16], vec![0.0; 16]));
    let path = dir.join("model.safetensors");
    write_safetensors(&path, &entries, Dtype::F32);
    let err = load(&path).unwrap_err();
    let ImportError::TensorMismatch { problems, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        problems,
        &vec![
            TensorProblem::WrongShape("blocks.0.mlp.fc2.weight".into(), vec![16, 64], vec![16, 63]),
            TensorProblem::Unexpected("dist_token".into()),
            TensorProblem::Unexpected("head_dist.weight".into()),
        ]
    );
}

#[test]
fn vit_state_dict_is_not_cait() {
    let dir = tmp_dir("vit");
    let entries: Entries = vec![
        ("cls_token".into(), vec![1, 1, 16], vec![0.0; 16]),
        ("pos_embed".into(), vec![1, 17, 16], vec![0.0; 17 * 16]),
        (
            "blocks.0.attn.qkv.weight".into(),
            vec![48, 16],
            vec![0.0; 48 * 16],
        ),
        ("head.weight".into(), vec![5, 16], vec![0.0; 80]),
    ];
    let path = dir.join("vit.pth");
    write_torch(&path, &entries, Dtype::F32, Layout::Release);
    let err = load(&path).unwrap_err();
    let ImportError::NotCait {
        reason,
        found_keys_sample,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(reason.contains("proj_l"), "{reason}");
    assert!(found_keys_sample.contains(&"pos_embed".to_string()));
    assert!(err.to_string().contains("vit.pth"), "{err}");
}

#[test]
fn nan_weight_names_the_tensor() {
    let dir = tmp_dir("nan");
    let mut entries = synth(&tiny());
    for (k, _, d) in entries.iter_mut() {
        if k == "blocks_token_only.1.gamma_2" {
            d[3] = f32::NAN;
        }
    }
    let path = dir.join("model.safetensors");
    write_safetensors(&path, &entries, Dtype::F32);
    let err = load(&path).unwrap_err();
    let ImportError::NonFinite { tensor, index, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (tensor.as_str(), *index),
        ("blocks_token_only.1.gamma_2", 3)
    );
    // An infinity from f16 overflow is caught too.
    let mut entries = synth(&tiny());
    entries[0].2[0] = f32::INFINITY;
    write_torch(&dir.join("inf.pth"), &entries, Dtype::F16, Layout::Flat);
    assert!(matches!(
        load(&dir.join("inf.pth")),
        Err(ImportError::NonFinite { ref tensor, .. }) if tensor == "cls_token"
    ));
}

#[test]
fn integer_weights_are_a_bad_tensor() {
    let dir = tmp_dir("int");
    let entries = synth(&tiny());
    let path = dir.join("model.safetensors");
    let bytes: Vec<(String, Vec<usize>, Vec<u8>, Dtype)> = entries
        .iter()
        .map(|(k, s, d)| {
            let dt = if k == "norm.bias" {
                Dtype::I64
            } else {
                Dtype::F32
            };
            (k.clone(), s.clone(), encode(d, dt), dt)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(k, s, b, dt)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(*dt, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
    let err = load(&path).unwrap_err();
    assert!(
        matches!(&err, ImportError::BadTensor { tensor, .. } if tensor == "norm.bias"),
        "{err}"
    );
    let torch = dir.join("model.pth");
    write_torch(&torch, &synth(&tiny()), Dtype::I64, Layout::Flat);
    let err = load(&torch).unwrap_err();
    assert!(
        matches!(&err, ImportError::BadTensor { tensor, reason, .. }
            if tensor == "cls_token" && reason.contains("int64")),
        "{err}"
    );
}

const HUB_CONFIG: &str = r#"{
  "architecture": "cait_xxs24_224",
  "num_classes": 5, "num_features": 16, "global_pool": "avg",
  "model_args": {"depth": 2, "img_size": [32, 32], "patch_size": 8, "embed_dim": 16,
                 "num_heads": 2, "num_classes": 5, "in_chans": 3, "global_pool": "avg"},
  "pretrained_cfg": {"input_size": [3, 32, 32], "interpolation": "bilinear", "crop_pct": 0.875,
                     "crop_mode": "center", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                     "num_classes": 5},
  "label_names": ["a", "b", "c", "d", "e"]
}"#;

#[test]
fn hub_directory_config_gives_pool_labels_and_preprocessing() {
    let dir = tmp_dir("hub");
    let entries = synth(&tiny());
    write_safetensors(&dir.join("model.safetensors"), &entries, Dtype::F32);
    write_torch(
        &dir.join("pytorch_model.bin"),
        &entries,
        Dtype::F32,
        Layout::Flat,
    );
    std::fs::write(dir.join("config.json"), HUB_CONFIG).unwrap();
    let ckpt = load(&dir).unwrap();
    assert_eq!(ckpt.source, dir.join("model.safetensors"));
    assert_eq!(
        ckpt.config_source,
        ConfigSource::HubConfig(dir.join("config.json"))
    );
    assert_eq!(ckpt.config.global_pool, GlobalPool::Avg);
    // config.json names the factory; the tiny body is not that published variant.
    assert_eq!(ckpt.architecture, None);
    assert_eq!(ckpt.timm_architecture.as_deref(), Some("cait_xxs24_224"));
    assert_eq!(
        ckpt.labels,
        Some(["a", "b", "c", "d", "e"].map(String::from).to_vec())
    );
    assert_eq!(ckpt.preprocess.interpolation, Interpolation::Bilinear);
    assert_eq!(ckpt.preprocess.crop_pct, 0.875);
    assert_eq!(&ckpt.preprocess.mean[..3], &[0.5; 3]);
    assert_eq!(&ckpt.preprocess.std[..3], &[0.25; 3]);
    assert_eq!(ckpt.preprocess.input_size, [3, 32, 32]);

    // The option overrides config.json.
    let opts = ImportOptions {
        global_pool: Some(GlobalPool::Token),
    };
    let ckpt = load_checkpoint(&dir.join("pytorch_model.bin"), &opts).unwrap();
    assert_eq!(ckpt.config.global_pool, GlobalPool::Token);
    assert_eq!(ckpt.format, CheckpointFormat::TorchZip);
}

#[test]
fn config_that_contradicts_the_tensors_is_an_error_naming_config_json() {
    let dir = tmp_dir("mismatch");
    write_safetensors(&dir.join("model.safetensors"), &synth(&tiny()), Dtype::F32);
    std::fs::write(
        dir.join("config.json"),
        HUB_CONFIG.replace("\"num_heads\": 2", "\"num_heads\": 4"),
    )
    .unwrap();
    let err = load(&dir).unwrap_err();
    assert!(
        matches!(&err, ImportError::ConfigMismatch { field: "num_heads", path, .. }
            if path.ends_with("config.json")),
        "{err}"
    );
    std::fs::write(dir.join("config.json"), HUB_CONFIG.replace("\"e\"]", "]")).unwrap();
    let err = load(&dir).unwrap_err();
    assert!(matches!(err, ImportError::BadConfig { .. }), "{err}");
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    assert!(matches!(load(&dir), Err(ImportError::BadConfig { .. })));
}

/// A `.pth` is a pickle, and Python's pickle runs whatever it names. Ours never does: a checkpoint
/// whose pickle is `os.system("touch …")` — at the top, or as a value beside the weights' dict —
/// loads as a typed error (or with the call ignored), and the command never runs.
#[test]
fn a_pickle_that_calls_os_system_never_runs() {
    let dir = tmp_dir("evil");
    let sentinel = dir.join("pwned");
    let zip_of = |path: &Path, pkl: Vec<u8>| {
        let file = std::fs::File::create(path).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file("archive/data.pkl", opts).unwrap();
        zip.write_all(&pkl).unwrap();
        zip.start_file("archive/version", opts).unwrap();
        zip.write_all(b"3\n").unwrap();
        zip.finish().unwrap();
    };
    let command = format!("touch {}", sentinel.display());
    let mut w = Writer::new();
    w.global("os", "system").str(&command).op(0x85).op(b'R');
    let top = dir.join("top.pth");
    zip_of(&top, w.finish());
    let err = load(&top).unwrap_err();
    assert!(matches!(err, ImportError::NoStateDict { .. }), "{err}");
    let mut w = Writer::new();
    w.op(b'}').put().op(b'(');
    w.str("model");
    w.global("os", "system").str(&command).op(0x85).op(b'R');
    w.op(b'u');
    let nested = dir.join("nested.pth");
    zip_of(&nested, w.finish());
    assert!(load(&nested).is_err());
    assert!(!sentinel.exists(), "the pickle's command ran");
}

#[test]
fn non_checkpoints_are_rejected_with_their_kind() {
    let dir = tmp_dir("junk");
    assert!(matches!(load(&dir), Err(ImportError::NoCheckpoint { .. })));
    std::fs::write(dir.join("a.pth"), b"hello world, not a checkpoint").unwrap();
    let err = load(&dir.join("a.pth")).unwrap_err();
    assert!(matches!(err, ImportError::UnknownFormat { .. }), "{err}");
    // Legacy torch serialization starts with the pickled magic number.
    std::fs::write(dir.join("b.pth"), [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc]).unwrap();
    let err = load(&dir.join("b.pth")).unwrap_err();
    assert!(err.to_string().contains("legacy"), "{err}");
    // Two candidates and no preferred name.
    assert!(matches!(load(&dir), Err(ImportError::NoCheckpoint { .. })));
    assert!(matches!(
        load(&dir.join("absent.pth")),
        Err(ImportError::Io { .. })
    ));
    // A torch zip whose pickle has no tensors.
    let path = dir.join("empty.pt");
    write_torch(&path, &Vec::new(), Dtype::F32, Layout::Flat);
    assert!(matches!(load(&path), Err(ImportError::NoStateDict { .. })));
}

#[test]
fn pack_round_trips_every_tensor_and_the_metadata() {
    let dir = tmp_dir("pack");
    let entries = synth(&tiny());
    write_safetensors(&dir.join("model.safetensors"), &entries, Dtype::F32);
    std::fs::write(dir.join("config.json"), HUB_CONFIG).unwrap();
    let ckpt = load(&dir).unwrap();
    let bytes = write_pack_f32(&ckpt).unwrap();
    let pack = Pack::parse(&bytes).unwrap();
    assert_eq!(*pack.config(), ckpt.config);
    assert_eq!(*pack.preprocess(), ckpt.preprocess);
    assert_eq!(pack.architecture(), "");
    assert_eq!(
        pack.metadata().get("timm_architecture"),
        Some("cait_xxs24_224")
    );
    assert_eq!(pack.labels().get(4), Some("e"));
    assert_eq!(pack.metadata().get("source"), Some("model.safetensors"));
    assert_eq!(pack.metadata().get("source_format"), Some("safetensors"));
    assert_eq!(pack.metadata().get("config"), Some("config.json"));
    assert_eq!(pack.tensor_count(), entries.len());
    for (view, (k, s, d)) in pack.tensors().zip(&entries) {
        assert_eq!(view.name, k);
        let dims: Vec<usize> = view.shape.dims().iter().map(|&x| x as usize).collect();
        assert_eq!(&dims, s);
        // The pack's tensor data may sit misaligned in this Vec; compare bytes.
        let want: Vec<u8> = d.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(view.data, &want[..], "{k}");
    }
    let pack_path = dir.join("m.cait");
    std::fs::write(&pack_path, &bytes).unwrap();
    assert!(is_pack(&pack_path));
    assert!(!is_pack(&dir.join("model.safetensors")));
    assert!(!is_pack(&dir.join("absent")));

    let mut broken = ckpt.clone();
    broken.tensors.remove("head.bias");
    assert!(matches!(
        write_pack_f32(&broken),
        Err(ImportError::TensorMismatch { .. })
    ));
}

#[test]
fn qkv_bias_false_no_head_and_gray_input() {
    let cfg = ModelConfig {
        in_chans: 1,
        num_classes: 0,
        qkv_bias: false,
        ..tiny()
    };
    let dir = tmp_dir("variant");
    let entries = synth(&cfg);
    let path = dir.join("m.pth");
    write_torch(&path, &entries, Dtype::F32, Layout::Release);
    let ckpt = load(&path).unwrap();
    assert_eq!(ckpt.config, cfg);
    assert_eq!(ckpt.preprocess.norm_channels, 1);
    assert!((ckpt.preprocess.mean[0] - 0.449).abs() < 1e-6);
    assert_tensors_eq(&ckpt, &entries);
    let shapes: BTreeMap<String, Vec<usize>> = entries
        .iter()
        .map(|(k, s, _)| (k.clone(), s.clone()))
        .collect();
    assert!(!shapes.contains_key("blocks.0.attn.qkv.bias"));
}

/// A torch.save-style zip in memory: `archive/data.pkl`, `archive/byteorder`, `archive/data/<i>`.
fn torch_zip_bytes(pkl: &[u8], storages: &[&[u8]]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(pkl).unwrap();
    zip.start_file("archive/byteorder", opts).unwrap();
    zip.write_all(b"little").unwrap();
    for (i, s) in storages.iter().enumerate() {
        zip.start_file(format!("archive/data/{i}"), opts).unwrap();
        zip.write_all(s).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// A state dict `{"w": tensor}` over storage `0`, as `torch.save` pickles it.
fn one_tensor_pickle(numel: u64, size: &[u64], stride: &[u64]) -> Vec<u8> {
    let mut w = Writer::new();
    w.global("collections", "OrderedDict");
    w.op(b')').op(b'R').put();
    w.op(b'(');
    w.str("w");
    w.tensor("FloatStorage", "0", numel, 0, size, stride);
    w.op(b'u');
    w.finish()
}

/// `read_checkpoint_bytes` reads what `load_checkpoint` reads from the file.
#[test]
fn checkpoint_bytes_read_as_the_file_does() {
    let dir = tmp_dir("bytes");
    let entries = synth(&tiny());
    for (name, torch) in [("m.pth", true), ("m.safetensors", false)] {
        let path = dir.join(name);
        if torch {
            write_torch(&path, &entries, Dtype::F16, Layout::Release);
        } else {
            write_safetensors(&path, &entries, Dtype::BF16);
        }
        let ckpt = load(&path).unwrap();
        let (format, tensors) =
            read_checkpoint_bytes(&path, std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(format, ckpt.format);
        assert_eq!(tensors, ckpt.tensors);
    }
}

/// Sizes a checkpoint declares are checked against the bytes there before anything that size is
/// allocated: a safetensors header's length and a tensor's data offsets, a torch storage's element
/// count, a view with more elements than its storage (found by review beside the `checkpoint` fuzz
/// target: a stride-0 view of 2^40 elements over 16 bytes allocated its 4 TiB copy whole).
#[test]
fn checkpoint_declared_sizes_are_checked_against_the_file() {
    let path = Path::new("fuzz.bin");
    let corrupt = |bytes: Vec<u8>| match read_checkpoint_bytes(path, bytes) {
        Err(ImportError::Corrupt { reason, .. }) => reason,
        other => panic!("{other:?}"),
    };
    let mut st = (1u64 << 40).to_le_bytes().to_vec();
    st.extend_from_slice(b"{}      ");
    corrupt(st);
    let header = br#"{"w":{"dtype":"F32","shape":[1073741824],"data_offsets":[0,4294967296]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header);
    st.extend_from_slice(&[0; 8]);
    corrupt(st);

    let floats: Vec<u8> = (0..4).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let bad_tensor =
        |pkl: Vec<u8>| match read_checkpoint_bytes(path, torch_zip_bytes(&pkl, &[&floats])) {
            Err(ImportError::BadTensor { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
    // A storage of 2^40 float32 with a 16-byte record.
    let e = bad_tensor(one_tensor_pickle(1 << 40, &[4], &[1]));
    assert!(e.contains("has 16 bytes, 4398046511104 needed"), "{e}");
    // A broadcast view of 2^40 elements over those 4.
    let e = bad_tensor(one_tensor_pickle(4, &[1 << 40], &[0]));
    assert!(e.contains("larger than its storage"), "{e}");
    let (_, t) = read_checkpoint_bytes(
        path,
        torch_zip_bytes(&one_tensor_pickle(4, &[2, 2], &[1, 2]), &[&floats]),
    )
    .unwrap();
    assert_eq!(t["w"].data, vec![0.0, 2.0, 1.0, 3.0]);
}

/// Found by the `checkpoint` fuzz target: two tensors of one storage record where the second
/// claims the storage is larger than the first did. The record read (and cached) for the first
/// was sliced to the second's size without a check: a panic (`range end index 272 out of range for
/// slice of length 256`). Now it is read again and found too short: a typed error.
#[test]
fn a_storage_shared_with_a_larger_size_is_an_error_not_a_panic() {
    // The minimized input (the target wraps it in a zip with storages 0-3 of 64 float32 each).
    let pkl: &[u8] =
        b"\x80\x02ccollections\nOrderedDict\n)R(X\x09\x00\x00\x00ad.ightq\x0fctorch._utils\n_r\
        ebuild_tensor_v2\nq\x10((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\
        \x001q\x13X\x03\x00\x00\x00uq\x14K@tQK\x00K\x04K\x08\x86K\x01K\x04\x86tRq\x1bX\x09\
        \x00\x00\x00head.biq\x1cctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storag\
        ectorch\nFloatStorage\nq\x1fX\x01\x00\x00\x001X\x03\x00\x00\x00uq!KDtQK<K\x04\x85q#K\
        \x01\x85tq'Rq(u.";
    let floats: Vec<u8> = (0..64).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let bytes = torch_zip_bytes(pkl, &[&floats, &floats, &floats, &floats]);
    match read_checkpoint_bytes(Path::new("fuzz.pth"), bytes) {
        Err(ImportError::BadTensor { tensor, reason, .. }) => {
            assert_eq!(tensor, "head.biq\x1c");
            assert!(reason.contains("has 256 bytes, 272 needed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The same through a state dict written as torch writes one: "a" reads storage 0 as 4
    // floats, "b" as 5; the record holds 4.
    let mut w = Writer::new();
    w.global("collections", "OrderedDict");
    w.op(b')').op(b'R').put();
    w.op(b'(');
    w.str("a");
    w.tensor("FloatStorage", "0", 4, 0, &[4], &[1]);
    w.str("b");
    w.tensor("FloatStorage", "0", 5, 0, &[5], &[1]);
    w.op(b'u');
    let bytes = torch_zip_bytes(&w.finish(), &[&floats[..16]]);
    let e = read_checkpoint_bytes(Path::new("shared.pth"), bytes).unwrap_err();
    assert!(e.to_string().contains("has 16 bytes, 20 needed"), "{e}");
}
