//! Writes a few small valid packs into a directory, as seeds for the fuzzers:
//! `cargo run -p cait-pack --features std --example fuzz_seeds -- fuzz/corpus/pack_parse`.

use std::{error::Error, fs, path::PathBuf};

use cait_pack::{GlobalPool, ModelConfig, PackWriter, Precision, Preprocess, Quant, TensorId};

fn tiny(num_classes: u32, qkv_bias: bool, global_pool: GlobalPool) -> ModelConfig {
    ModelConfig {
        img_size: [8, 8],
        patch_size: 4,
        in_chans: 3,
        num_classes,
        embed_dim: 8,
        depth: 2,
        num_heads: 2,
        mlp_hidden_dim: 16,
        depth_token_only: 2,
        mlp_hidden_dim_token_only: 16,
        qkv_bias,
        global_pool,
    }
}

/// Every tensor of `config` in f32, small values.
fn full(config: ModelConfig) -> Result<PackWriter, Box<dyn Error>> {
    let mut w = PackWriter::new(config, Precision::F32, Preprocess::imagenet([3, 8, 8]));
    w.architecture("cait_fuzz_seed");
    for (k, t) in config.tensors().enumerate() {
        let n = t.shape.numel().ok_or("overflow")?;
        let data: Vec<f32> = (0..n).map(|i| ((k + i) % 13) as f32 * 0.05 - 0.3).collect();
        w.add_f32(&t.id.to_string(), t.shape.dims(), &data)?;
    }
    Ok(w)
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: fuzz_seeds OUTPUT_DIR")?,
    );
    fs::create_dir_all(&dir)?;

    let mut f32_pack = full(tiny(3, true, GlobalPool::Token))?;
    f32_pack
        .labels(&["cat", "dog", "emu"])
        .metadata("origin", "fuzz seed");
    fs::write(dir.join("seed_f32.cait"), f32_pack.finish()?)?;

    let headless = full(tiny(0, false, GlobalPool::Avg))?;
    fs::write(dir.join("seed_headless.cait"), headless.finish()?)?;

    // Int8-style: one per-channel i8 weight with its scales, one per-tensor i32 bias.
    let config = tiny(3, true, GlobalPool::Token);
    let mut q = PackWriter::new(config, Precision::Int8, Preprocess::imagenet([3, 8, 8]));
    q.metadata("quant.weights", "int8 per-channel symmetric");
    let scales = q.add_f32("head.weight.scale", &[3], &[0.1, 0.2, 0.3])?;
    q.add_i8(
        &TensorId::HeadWeight.to_string(),
        &[3, 8],
        &[3; 24],
        Quant::PerChannel { axis: 0, scales },
    )?;
    q.add_i32(
        &TensorId::HeadBias.to_string(),
        &[3],
        &[1, -2, 3],
        Quant::PerTensor {
            scale: 0.5,
            zero_point: 0,
        },
    )?;
    q.add_f16(
        &TensorId::NormWeight.to_string(),
        &[8],
        &[half::f16::ONE; 8],
    )?;
    fs::write(dir.join("seed_int8.cait"), q.finish()?)?;

    let empty = PackWriter::new(config, Precision::F16, Preprocess::imagenet([3, 8, 8]));
    fs::write(dir.join("seed_empty.cait"), empty.finish()?)?;
    println!("wrote 4 seeds to {}", dir.display());
    Ok(())
}
