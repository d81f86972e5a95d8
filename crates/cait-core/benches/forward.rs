//! f32 forward latency, one image, one thread: a cait_xxs24_224-shaped model and a tiny one, both
//! with random weights in a pack built in memory.
//!
//! `cargo bench -p cait-core --bench forward`; `from_pack/*` is the cost of resolving every tensor
//! once, which a forward pass also pays for the blocks (weights are looked up per block, not cached).

use cait_core::Model;
use cait_pack::{GlobalPool, Interpolation, ModelConfig, Pack, PackWriter, Precision, Preprocess};
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
fn pack_words(cfg: &ModelConfig) -> (Vec<u64>, usize) {
    let preprocess = Preprocess {
        input_size: [cfg.in_chans, cfg.img_size[0], cfg.img_size[1]],
        interpolation: Interpolation::Bicubic,
        crop_pct: 1.0,
        norm_channels: cfg.in_chans as u8,
        mean: [0.5; 8],
        std: [0.25; 8],
    };
    let mut writer = PackWriter::new(*cfg, Precision::F32, preprocess);
    let mut seed = 0x1234_5678;
    for spec in cfg.tensors() {
        let dims = spec.shape.dims();
        let numel = spec.shape.numel().unwrap();
        let scale = if dims.len() >= 2 {
            (3.0 / (numel / dims[0] as usize) as f32).sqrt()
        } else {
            0.5
        };
        let data = random(numel, scale, &mut seed);
        writer.add_f32(&spec.id.to_string(), dims, &data).unwrap();
    }
    let bytes = writer.finish().unwrap();
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    (words, bytes.len())
}

fn bench_model(c: &mut Criterion, name: &str, cfg: &ModelConfig, samples: usize) {
    let (words, len) = pack_words(cfg);
    let pack = Pack::parse(&bytemuck::cast_slice(&words)[..len]).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let mut seed = 42;
    let image = random(model.input_len(), 1.0, &mut seed);
    let mut workspace = vec![0u32; model.workspace_bytes().div_ceil(4)];
    let mut logits = vec![0.0; model.logits_len()];
    let mut group = c.benchmark_group("forward_f32");
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
    bench_model(c, "cait_xxs24_224", &XXS24_224, 20);
    bench_model(c, "tiny", &TINY, 100);
}

criterion_group!(benches, forward);
criterion_main!(benches);
