//! Forward latency, one image, one thread, f32 beside int8 (and f16): a cait_xxs24_224-shaped
//! model and a tiny one, with random weights in packs built in memory (latency does not depend on
//! the values; the int8 pack has valid but arbitrary scales).
//!
//! `cargo bench -p cait-core --features std --bench forward` (std: the host kernels, AVX-512 VNNI
//! or AVX2 where the CPU has it; `CAIT_KERNELS=avx2` or `portable` to compare); `from_pack/*` is
//! the cost of resolving every tensor once, which a forward pass also pays for the blocks (weights
//! are looked up per block, not cached).
//! `tools/bench_onnxruntime.py` measures ONNX Runtime (f32 and dynamic int8) on the same model.

use cait_core::Model;
use cait_pack::int8::{Int8Tensor, META_AV, META_QK, act};
use cait_pack::{
    BlockParam, GlobalPool, Interpolation, ModelConfig, Pack, PackWriter, Precision, Preprocess,
    Quant, TensorId,
};
use criterion::{Criterion, criterion_group, criterion_main};

/// timm's cait_xxs24_224.
const XXS24_224: ModelConfig = ModelConfig {
    img_size: [224, 224],
    patch_size: 16,
    in_chans: 3,
    num_classes: 1000,
    embed_dim: 192,
    depth: 24,
    num_heads: 4,
    mlp_hidden_dim: 768,
    depth_token_only: 2,
    mlp_hidden_dim_token_only: 768,
    qkv_bias: true,
    global_pool: GlobalPool::Token,
};

/// The `tiny` timm fixture's shape (tests/fixtures/timm/tiny).
const TINY: ModelConfig = ModelConfig {
    img_size: [32, 32],
    patch_size: 8,
    in_chans: 3,
    num_classes: 10,
    embed_dim: 16,
    depth: 2,
    num_heads: 4,
    mlp_hidden_dim: 64,
    depth_token_only: 2,
    mlp_hidden_dim_token_only: 64,
    qkv_bias: true,
    global_pool: GlobalPool::Token,
};

fn random(len: usize, scale: f32, seed: &mut u32) -> Vec<f32> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 17;
            *seed ^= *seed << 5;
            ((*seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0) * scale
        })
        .collect()
}

/// Pack bytes in a `u64` buffer, so the f32 tensors are aligned for zero-copy views.
fn pack_words(cfg: &ModelConfig, precision: Precision) -> (Vec<u64>, usize) {
    let preprocess = Preprocess {
        input_size: [cfg.in_chans, cfg.img_size[0], cfg.img_size[1]],
        interpolation: Interpolation::Bicubic,
        crop_pct: 1.0,
        norm_channels: cfg.in_chans as u8,
        mean: [0.5; 8],
        std: [0.25; 8],
    };
    let mut writer = PackWriter::new(*cfg, precision, preprocess);
    let mut seed = 0x1234_5678;
    for spec in cfg.tensors() {
        let id = spec.id;
        let dims = spec.shape.dims();
        let numel = spec.shape.numel().unwrap();
        let scale = if dims.len() >= 2 {
            (3.0 / (numel / dims[0] as usize) as f32).sqrt()
        } else {
            0.5
        };
        let data = random(numel, scale, &mut seed);
        let name = id.to_string();
        match precision {
            Precision::F16 if id.is_linear_weight() => {
                let h: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
                writer.add_f16(&name, dims, &h).unwrap();
            }
            Precision::Int8 if id.is_linear_weight() => {
                let out = dims[0] as usize;
                let s = writer
                    .add_f32(
                        &Int8Tensor::WeightScale(id).to_string(),
                        &[out as u32],
                        &vec![scale / 127.0; out],
                    )
                    .unwrap();
                let q: Vec<i8> = data.iter().map(|&v| (v / scale * 127.0) as i8).collect();
                let quant = Quant::PerChannel { axis: 0, scales: s };
                writer.add_i8(&name, dims, &q, quant).unwrap();
                let bias = Int8Tensor::AccBias(id).to_string();
                writer
                    .add_i32(&bias, &[out as u32], &vec![0; out], Quant::None)
                    .unwrap();
            }
            Precision::Int8 => {
                use BlockParam::*;
                let folded = matches!(
                    id,
                    TensorId::Block(_, Gamma1 | Gamma2 | QkvBias | ProjBias | Fc1Bias | Fc2Bias)
                        | TensorId::TokenBlock(
                            _,
                            Gamma1 | Gamma2 | QBias | KBias | VBias | ProjBias | Fc1Bias | Fc2Bias
                        )
                        | TensorId::PatchEmbedBias
                        | TensorId::HeadBias
                );
                if !folded {
                    writer.add_f32(&name, dims, &data).unwrap();
                }
            }
            _ => {
                writer.add_f32(&name, dims, &data).unwrap();
            }
        }
    }
    if precision == Precision::Int8 {
        // Activation scales that keep values in range (each row: scale, zero point).
        let mut table = vec![0.05f32; act::ROWS * 2];
        for row in 0..act::ROWS {
            table[row * 2 + 1] = 0.0;
        }
        for (token_only, depth) in [(false, cfg.depth), (true, cfg.depth_token_only)] {
            for index in 0..depth {
                let t = Int8Tensor::BlockActQuant { token_only, index };
                writer
                    .add_f32(&t.to_string(), &[act::ROWS as u32, 2], &table)
                    .unwrap();
            }
        }
        for t in [Int8Tensor::PatchEmbedActQuant, Int8Tensor::HeadActQuant] {
            writer
                .add_f32(&t.to_string(), &[1, 2], &[0.02, 0.0])
                .unwrap();
        }
        let d = cfg.embed_dim as usize;
        let mut smooth = vec![1.0f32; d];
        smooth.extend(vec![0.0f32; d]);
        writer
            .add_f32(&Int8Tensor::NormSmooth.to_string(), &[2, d as u32], &smooth)
            .unwrap();
        writer.metadata(META_QK, "int8").metadata(META_AV, "int8");
    }
    let bytes = writer.finish().unwrap();
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    (words, bytes.len())
}

fn bench_model(
    c: &mut Criterion,
    name: &str,
    cfg: &ModelConfig,
    precision: Precision,
    samples: usize,
) {
    let (words, len) = pack_words(cfg, precision);
    let pack = Pack::parse(&bytemuck::cast_slice(&words)[..len]).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let mut seed = 42;
    let image = random(model.input_len(), 1.0, &mut seed);
    let mut workspace = vec![0u32; model.workspace_bytes().div_ceil(4)];
    let mut logits = vec![0.0; model.logits_len()];
    let mut group = c.benchmark_group(format!("forward_{precision}"));
    group.sample_size(samples);
    group.bench_function(name, |b| {
        b.iter(|| {
            model
                .forward(
                    std::hint::black_box(&image),
                    bytemuck::cast_slice_mut(&mut workspace),
                    &mut logits,
                )
                .unwrap()
        })
    });
    group.finish();
    if precision != Precision::F32 {
        return;
    }
    // What a forward pass spends re-resolving block weights in the pack (from_pack resolves every
    // tensor once, as a forward pass does).
    let mut group = c.benchmark_group("from_pack");
    group.sample_size(samples.max(50));
    group.bench_function(name, |b| {
        b.iter(|| Model::from_pack(std::hint::black_box(&pack)).unwrap())
    });
    group.finish();
}

fn forward(c: &mut Criterion) {
    for precision in [Precision::F32, Precision::Int8, Precision::F16] {
        bench_model(c, "cait_xxs24_224", &XXS24_224, precision, 10);
        bench_model(c, "tiny", &TINY, precision, 100);
    }
}

criterion_group!(benches, forward);
criterion_main!(benches);
