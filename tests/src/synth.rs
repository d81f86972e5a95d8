//! Deterministic synthesized CaiT weights and inputs, bit-identical to `tools/make_fixtures.py`.
//!
//! Large architectures (cait_xxs24_224 has 11,956,264 parameters, 48 MB) are not committed: their
//! golden fixtures in `tests/fixtures/timm/<name>/` hold only `spec.json`, `logits.npy` and
//! `features.npy`, and the weights and input are re-made here from the recipe below. The unit tests
//! at the bottom prove this generator agrees with the Python one by checking the per-tensor
//! fingerprints that the script stored in every `spec.json` (first 4 values as f32 bits, the bits of
//! the f64 left-to-right sum and a position-weighted checksum), and, for committed fixtures, the
//! whole `model.safetensors` and `input.npy`.
//!
//! # Recipe "cait-edge-synth-v1" (the same text heads tools/make_fixtures.py; change both or none)
//!
//! All integer arithmetic is modulo 2^64.
//! ```text
//!   fnv1a64(bytes):   h = 0xCBF29CE484222325; for b in bytes: h = (h ^ b) * 0x100000001B3
//!   mix64(z):         z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//!                     z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//!                     return z ^ (z >> 31)
//!   stream per tensor: state = mix64(fixture_seed ^ fnv1a64(tensor_name as UTF-8))
//!   next():           state = state + 0x9E3779B97F4A7C15; return mix64(state)      (SplitMix64)
//!   uniform u:        (next() >> 11) * 2^-53                  (f64, exact, in [0, 1))
//!   normal n:         ((((0.0 + u1) + u2) + ... + u12)) - 6.0 (f64, summed left to right; Irwin-Hall)
//! ```
//! Elements are drawn in C (row-major) order, one draw (u) or twelve draws (n) per element. Every
//! value is computed in f64 with +, -, *, / and sqrt only (correctly rounded in both languages, no
//! FMA) and then rounded to nearest f32.
//! ```text
//!   cls_token                       1.0 * n          [1, 1, D]
//!   pos_embed                       1.0 * n          [1, N, D]
//!   *.gamma_1 (attention branch)    0.02 + 0.18 * u  (LayerScale ~ U(0.02, 0.2))
//!   *.gamma_2 (MLP branch)          0.1 + 0.9 * u    (LayerScale ~ U(0.1, 1))
//!   *.attn.proj_l.weight, proj_w    I[i, j] + 0.1 * n  (identity + noise; H x H)
//!   LayerNorm *.norm*.weight        1.0 + 0.2 * (2.0 * u - 1.0)
//!   LayerNorm *.norm*.bias          0.1 * (2.0 * u - 1.0)
//!   every other weight (Linear, Conv2d patch_embed.proj)
//!                                   n * scale,  scale = gain * sqrt(1.0 / fan_in)  (scale computed first)
//!                                   fan_in = product of shape[1:] (in_features; in_chans*p*p for the conv)
//!                                   gain = 1.25 for *.attn.qkv.weight, *.attn.q.weight, *.attn.k.weight
//!                                   (sharper attention), gain = 1.0 for every other weight
//!   every other bias (Linear, Conv, proj_l/proj_w)  0.02 * n
//!   input (tensor name "input")     0.8 * n          [B, C, H, W]
//! ```
//! The scales keep logits O(1) and attention neither saturated nor uniform (a small attention-branch
//! LayerScale keeps a 24-block stack from collapsing to identical tokens); each `spec.json` records
//! the measured attention entropies under `stats`.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Name of the recipe; `spec.json["recipe"]` must equal it.
pub const RECIPE: &str = "cait-edge-synth-v1";
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const TOKEN_SCALE: f64 = 1.0;
const INPUT_SCALE: f64 = 0.8;
const QK_GAIN: f64 = 1.25;

/// FNV-1a, 64 bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// The SplitMix64 output function.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64 generator (Steele, Lea, Flood 2014).
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started at `state` (the first output is `mix64(state + GOLDEN)`).
    pub fn new(state: u64) -> Self {
        Self { state }
    }

    /// The stream of one tensor of one fixture.
    pub fn for_tensor(fixture_seed: u64, name: &str) -> Self {
        Self::new(mix64(fixture_seed ^ fnv1a64(name.as_bytes())))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform in [0, 1), 53 bits, exact.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Approximate standard normal: sum of 12 uniforms, left to right, minus 6.
    pub fn normal(&mut self) -> f64 {
        let mut s = 0.0f64;
        for _ in 0..12 {
            s += self.uniform();
        }
        s - 6.0
    }
}

/// timm `global_pool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// `"token"`: the class token.
    Token,
    /// `"avg"`: mean of the patch tokens.
    Avg,
}

impl Pool {
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Token => "token",
            Pool::Avg => "avg",
        }
    }
}

/// A synthesized CaiT: the resolved timm model args plus the fixture seed.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthSpec {
    /// Fixture name (directory under `tests/fixtures/timm`).
    pub name: String,
    pub seed: u64,
    /// The registered timm architecture the model was built from (`timm.create_model(architecture,
    /// **timm_args)`), e.g. `cait_xxs24_224`.
    pub architecture: String,
    pub img_size: usize,
    pub patch_size: usize,
    pub in_chans: usize,
    pub num_classes: usize,
    pub global_pool: Pool,
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    /// `int(embed_dim * mlp_ratio)`
    pub mlp_hidden: usize,
    pub depth_token_only: usize,
    /// `int(embed_dim * mlp_ratio_token_only)`
    pub mlp_hidden_token_only: usize,
    pub qkv_bias: bool,
}

/// How a tensor's values are drawn (see the recipe).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Token,
    Gamma1,
    Gamma2,
    TalkingHeads,
    LnWeight,
    LnBias,
    Weight { gain: f64 },
    Bias,
    Input,
}

impl SynthSpec {
    pub fn num_patches(&self) -> usize {
        let g = self.img_size / self.patch_size;
        g * g
    }

    /// A registered timm variant (`cait_pack::timm::VARIANTS`: patch 16, 3 channels, 1000
    /// classes, token pool, MLP ratio 4).
    pub fn timm_variant(architecture: &str, seed: u64) -> Option<Self> {
        let v = cait_pack::timm::Variant::named(architecture)?;
        let c = v.config();
        Some(Self {
            name: v.name.to_string(),
            seed,
            architecture: v.name.to_string(),
            img_size: c.img_size[0] as usize,
            patch_size: c.patch_size as usize,
            in_chans: c.in_chans as usize,
            num_classes: c.num_classes as usize,
            global_pool: Pool::Token,
            embed_dim: c.embed_dim as usize,
            depth: c.depth as usize,
            num_heads: c.num_heads as usize,
            mlp_hidden: c.mlp_hidden_dim as usize,
            depth_token_only: c.depth_token_only as usize,
            mlp_hidden_token_only: c.mlp_hidden_dim_token_only as usize,
            qkv_bias: c.qkv_bias,
        })
    }

    /// From the text of a fixture's `spec.json`.
    pub fn from_spec_json(text: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let recipe = v["recipe"].as_str().unwrap_or("");
        if recipe != RECIPE {
            return Err(format!("spec recipe {recipe:?} is not {RECIPE:?}"));
        }
        let m = &v["model"];
        let u = |key: &str| -> Result<usize, String> {
            m[key]
                .as_u64()
                .map(|x| x as usize)
                .ok_or_else(|| format!("spec.json model.{key} missing"))
        };
        let global_pool = match m["global_pool"].as_str() {
            Some("token") => Pool::Token,
            Some("avg") => Pool::Avg,
            other => return Err(format!("unsupported global_pool {other:?}")),
        };
        let spec = Self {
            name: v["name"]
                .as_str()
                .ok_or("spec.json name missing")?
                .to_string(),
            seed: v["seed"].as_u64().ok_or("spec.json seed missing")?,
            architecture: v["architecture"]
                .as_str()
                .ok_or("architecture missing")?
                .to_string(),
            img_size: u("img_size")?,
            patch_size: u("patch_size")?,
            in_chans: u("in_chans")?,
            num_classes: u("num_classes")?,
            global_pool,
            embed_dim: u("embed_dim")?,
            depth: u("depth")?,
            num_heads: u("num_heads")?,
            mlp_hidden: u("mlp_hidden")?,
            depth_token_only: u("depth_token_only")?,
            mlp_hidden_token_only: u("mlp_hidden_token_only")?,
            qkv_bias: m["qkv_bias"].as_bool().ok_or("qkv_bias missing")?,
        };
        if u("num_patches")? != spec.num_patches() {
            return Err("num_patches disagrees with img_size / patch_size".into());
        }
        Ok(spec)
    }

    /// From `dir/spec.json`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let p = dir.join("spec.json");
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        Self::from_spec_json(&text)
    }

    /// Number of parameters (what timm's `sum(p.numel() for p in model.parameters())` gives).
    pub fn param_count(&self) -> usize {
        tensor_list(self)
            .iter()
            .map(|(_, s, _)| s.iter().product::<usize>())
            .sum()
    }
}

/// `tests/fixtures/timm` of this crate.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("timm")
}

/// `(name, shape, kind)` of every tensor, in timm state-dict order.
pub fn tensor_list(spec: &SynthSpec) -> Vec<(String, Vec<usize>, Kind)> {
    let d = spec.embed_dim;
    let h = spec.num_heads;
    let w = |gain: f64| Kind::Weight { gain };
    let mut out: Vec<(String, Vec<usize>, Kind)> = vec![
        ("cls_token".into(), vec![1, 1, d], Kind::Token),
        (
            "pos_embed".into(),
            vec![1, spec.num_patches(), d],
            Kind::Token,
        ),
        (
            "patch_embed.proj.weight".into(),
            vec![d, spec.in_chans, spec.patch_size, spec.patch_size],
            w(1.0),
        ),
        ("patch_embed.proj.bias".into(), vec![d], Kind::Bias),
    ];
    let mut push = |name: String, shape: Vec<usize>, kind: Kind| out.push((name, shape, kind));
    fn head(push: &mut impl FnMut(String, Vec<usize>, Kind), pre: &str, d: usize) {
        push(format!("{pre}.gamma_1"), vec![d], Kind::Gamma1);
        push(format!("{pre}.gamma_2"), vec![d], Kind::Gamma2);
        push(format!("{pre}.norm1.weight"), vec![d], Kind::LnWeight);
        push(format!("{pre}.norm1.bias"), vec![d], Kind::LnBias);
    }
    fn tail(push: &mut impl FnMut(String, Vec<usize>, Kind), pre: &str, d: usize, hidden: usize) {
        push(format!("{pre}.norm2.weight"), vec![d], Kind::LnWeight);
        push(format!("{pre}.norm2.bias"), vec![d], Kind::LnBias);
        push(
            format!("{pre}.mlp.fc1.weight"),
            vec![hidden, d],
            Kind::Weight { gain: 1.0 },
        );
        push(format!("{pre}.mlp.fc1.bias"), vec![hidden], Kind::Bias);
        push(
            format!("{pre}.mlp.fc2.weight"),
            vec![d, hidden],
            Kind::Weight { gain: 1.0 },
        );
        push(format!("{pre}.mlp.fc2.bias"), vec![d], Kind::Bias);
    }
    for i in 0..spec.depth {
        let pre = format!("blocks.{i}");
        head(&mut push, &pre, d);
        push(format!("{pre}.attn.qkv.weight"), vec![3 * d, d], w(QK_GAIN));
        if spec.qkv_bias {
            push(format!("{pre}.attn.qkv.bias"), vec![3 * d], Kind::Bias);
        }
        push(format!("{pre}.attn.proj.weight"), vec![d, d], w(1.0));
        push(format!("{pre}.attn.proj.bias"), vec![d], Kind::Bias);
        push(
            format!("{pre}.attn.proj_l.weight"),
            vec![h, h],
            Kind::TalkingHeads,
        );
        push(format!("{pre}.attn.proj_l.bias"), vec![h], Kind::Bias);
        push(
            format!("{pre}.attn.proj_w.weight"),
            vec![h, h],
            Kind::TalkingHeads,
        );
        push(format!("{pre}.attn.proj_w.bias"), vec![h], Kind::Bias);
        tail(&mut push, &pre, d, spec.mlp_hidden);
    }
    for i in 0..spec.depth_token_only {
        let pre = format!("blocks_token_only.{i}");
        head(&mut push, &pre, d);
        for (q, gain) in [("q", QK_GAIN), ("k", QK_GAIN), ("v", 1.0)] {
            push(format!("{pre}.attn.{q}.weight"), vec![d, d], w(gain));
            if spec.qkv_bias {
                push(format!("{pre}.attn.{q}.bias"), vec![d], Kind::Bias);
            }
        }
        push(format!("{pre}.attn.proj.weight"), vec![d, d], w(1.0));
        push(format!("{pre}.attn.proj.bias"), vec![d], Kind::Bias);
        tail(&mut push, &pre, d, spec.mlp_hidden_token_only);
    }
    push("norm.weight".into(), vec![d], Kind::LnWeight);
    push("norm.bias".into(), vec![d], Kind::LnBias);
    if spec.num_classes > 0 {
        push("head.weight".into(), vec![spec.num_classes, d], w(1.0));
        push("head.bias".into(), vec![spec.num_classes], Kind::Bias);
    }
    out
}

/// The values of one tensor (C order).
pub fn tensor(seed: u64, name: &str, shape: &[usize], kind: Kind) -> Vec<f32> {
    let count: usize = shape.iter().product();
    let mut g = SplitMix64::for_tensor(seed, name);
    let mut out = Vec::with_capacity(count);
    match kind {
        Kind::Token => out.extend((0..count).map(|_| (TOKEN_SCALE * g.normal()) as f32)),
        Kind::Input => out.extend((0..count).map(|_| (INPUT_SCALE * g.normal()) as f32)),
        Kind::Gamma1 => out.extend((0..count).map(|_| (0.02 + 0.18 * g.uniform()) as f32)),
        Kind::Gamma2 => out.extend((0..count).map(|_| (0.1 + 0.9 * g.uniform()) as f32)),
        Kind::TalkingHeads => {
            let cols = shape[1];
            for i in 0..count {
                let eye = if i / cols == i % cols { 1.0 } else { 0.0 };
                out.push((eye + 0.1 * g.normal()) as f32);
            }
        }
        Kind::LnWeight => {
            out.extend((0..count).map(|_| (1.0 + 0.2 * (2.0 * g.uniform() - 1.0)) as f32))
        }
        Kind::LnBias => out.extend((0..count).map(|_| (0.1 * (2.0 * g.uniform() - 1.0)) as f32)),
        Kind::Weight { gain } => {
            let fan_in: usize = shape[1..].iter().product();
            let scale = gain * (1.0 / fan_in as f64).sqrt();
            out.extend((0..count).map(|_| (g.normal() * scale) as f32));
        }
        Kind::Bias => out.extend((0..count).map(|_| (0.02 * g.normal()) as f32)),
    }
    out
}

/// Every tensor of the model, in timm state-dict order: `(name, shape, values)`.
pub fn state_dict(spec: &SynthSpec) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    tensor_list(spec)
        .into_iter()
        .map(|(name, shape, kind)| {
            let v = tensor(spec.seed, &name, &shape, kind);
            (name, shape, v)
        })
        .collect()
}

/// The input batch `[batch, C, H, W]` (tensor name `"input"`).
pub fn input(spec: &SynthSpec, batch: usize) -> (Vec<usize>, Vec<f32>) {
    let shape = vec![batch, spec.in_chans, spec.img_size, spec.img_size];
    let v = tensor(spec.seed, "input", &shape, Kind::Input);
    (shape, v)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes the state dict as `path` (safetensors, F32, timm key names).
pub fn write_safetensors(spec: &SynthSpec, path: &Path) -> io::Result<()> {
    write_state_dict(&state_dict(spec), path)
}

/// Writes a state dict `(name, shape, values)` as `path` (safetensors, F32).
pub fn write_state_dict(sd: &[(String, Vec<usize>, Vec<f32>)], path: &Path) -> io::Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = sd
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), f32_bytes(v)))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|t| (n.clone(), t))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io::Error::other(e.to_string()))?;
    safetensors::tensor::serialize_to_file(views, None, path)
        .map_err(|e| io::Error::other(e.to_string()))
}

/// A timm hub `config.json` describing `spec` (the shape `timm.models._hub.save_for_hf` writes, with
/// every model arg explicit), so `timm.create_model("local-dir:DIR")` rebuilds the model.
pub fn hub_config(spec: &SynthSpec, label_names: Option<&[String]>) -> Value {
    let d = spec.embed_dim as f64;
    let mut cfg = json!({
        "architecture": spec.architecture,
        "num_classes": spec.num_classes,
        "num_features": spec.embed_dim,
        "global_pool": spec.global_pool.as_str(),
    });
    if let Some(labels) = label_names {
        cfg["label_names"] = json!(labels);
    }
    cfg["model_args"] = json!({
        "img_size": [spec.img_size, spec.img_size],
        "patch_size": spec.patch_size,
        "in_chans": spec.in_chans,
        "num_classes": spec.num_classes,
        "embed_dim": spec.embed_dim,
        "depth": spec.depth,
        "num_heads": spec.num_heads,
        "mlp_ratio": spec.mlp_hidden as f64 / d,
        "depth_token_only": spec.depth_token_only,
        "mlp_ratio_token_only": spec.mlp_hidden_token_only as f64 / d,
        "qkv_bias": spec.qkv_bias,
        "global_pool": spec.global_pool.as_str(),
    });
    let (mean, std) = if spec.in_chans == 3 {
        (json!([0.485, 0.456, 0.406]), json!([0.229, 0.224, 0.225]))
    } else {
        // what timm's resolve_data_config does for other channel counts: the mean of the means
        let m = vec![0.449; spec.in_chans];
        let s = vec![0.226; spec.in_chans];
        (json!(m), json!(s))
    };
    cfg["pretrained_cfg"] = json!({
        "tag": "synth",
        "custom_load": false,
        "input_size": [spec.in_chans, spec.img_size, spec.img_size],
        "fixed_input_size": true,
        "interpolation": "bicubic",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": mean,
        "std": std,
        "num_classes": spec.num_classes,
        "pool_size": null,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "license": "apache-2.0",
    });
    cfg
}

/// Writes `dir/model.safetensors` and, when `with_config`, `dir/config.json` (timm hub layout).
pub fn write_hub_dir(
    spec: &SynthSpec,
    dir: &Path,
    with_config: bool,
    label_names: Option<&[String]>,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_safetensors(spec, &dir.join("model.safetensors"))?;
    if with_config {
        let text = serde_json::to_string_pretty(&hub_config(spec, label_names))
            .map_err(|e| io::Error::other(e.to_string()))?;
        std::fs::write(dir.join("config.json"), text)?;
    }
    Ok(())
}

/// Fingerprint of a tensor, as `spec.json["fingerprints"]` stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// Bits of the first (up to) 4 values.
    pub first4_bits: Vec<u32>,
    /// Bits of the f64 sum of all values, added left to right.
    pub sum_bits: u64,
    /// `sum(bits(v[i]) * (2 i + 1)) mod 2^64`.
    pub checksum: u64,
}

pub fn fingerprint(values: &[f32]) -> Fingerprint {
    let mut sum = 0.0f64;
    let mut checksum = 0u64;
    for (i, v) in values.iter().enumerate() {
        sum += f64::from(*v);
        let w = (i as u64).wrapping_mul(2).wrapping_add(1);
        checksum = checksum.wrapping_add(u64::from(v.to_bits()).wrapping_mul(w));
    }
    Fingerprint {
        first4_bits: values.iter().take(4).map(|v| v.to_bits()).collect(),
        sum_bits: sum.to_bits(),
        checksum,
    }
}

/// The fingerprints stored in a `spec.json`: `(name, shape, fingerprint)` in stored order.
pub fn stored_fingerprints(
    spec_json: &str,
) -> Result<Vec<(String, Vec<usize>, Fingerprint)>, String> {
    let v: Value = serde_json::from_str(spec_json).map_err(|e| e.to_string())?;
    let arr = v["fingerprints"].as_array().ok_or("fingerprints missing")?;
    let hex = |x: &Value| -> Result<u64, String> {
        u64::from_str_radix(x.as_str().ok_or("hex string expected")?, 16).map_err(|e| e.to_string())
    };
    arr.iter()
        .map(|f| {
            let name = f["name"].as_str().ok_or("name")?.to_string();
            let shape = f["shape"]
                .as_array()
                .ok_or("shape")?
                .iter()
                .map(|x| x.as_u64().map(|x| x as usize).ok_or("shape"))
                .collect::<Result<Vec<_>, _>>()?;
            let first4_bits = f["first4_bits"]
                .as_array()
                .ok_or("first4_bits")?
                .iter()
                .map(|x| x.as_u64().map(|x| x as u32).ok_or("first4_bits"))
                .collect::<Result<Vec<_>, _>>()?;
            let fp = Fingerprint {
                first4_bits,
                sum_bits: hex(&f["sum_bits"])?,
                checksum: hex(&f["checksum"])?,
            };
            Ok((name, shape, fp))
        })
        .collect()
}

/// Reads a little-endian float32 C-order `.npy` (v1/v2/v3): `(shape, values)`.
pub fn read_npy_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>), String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a .npy file".into());
    }
    let (hlen, start) = match b[6] {
        1 => (usize::from(u16::from_le_bytes([b[8], b[9]])), 10),
        2 | 3 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = std::str::from_utf8(&b[start..start + hlen]).map_err(|e| e.to_string())?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(format!("expected little-endian f32 C order, got {header}"));
    }
    let sh = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("no shape")?;
    let shape = sh
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let data = &b[start + hlen..];
    let n: usize = shape.iter().product();
    if data.len() != 4 * n {
        return Err(format!(
            "expected {} data bytes, found {}",
            4 * n,
            data.len()
        ));
    }
    let v = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, v))
}

/// `name -> (shape, values)`.
pub type TensorMap = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Reads an F32 safetensors file into `name -> (shape, values)`.
pub fn read_safetensors_f32(path: &Path) -> Result<TensorMap, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for (name, t) in st.tensors() {
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(format!("{name}: {:?}, expected F32", t.dtype()));
        }
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, (t.shape().to_vec(), v));
    }
    Ok(out)
}

/// Names of the fixture directories (those with a `spec.json`), sorted.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().join("spec.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_vector() {
        // Outputs of the reference SplitMix64 (Vigna's splitmix64.c) seeded with 1234567.
        let mut g = SplitMix64::new(1_234_567);
        let want = [
            6_457_827_717_110_365_317u64,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
            4_593_380_528_125_082_431,
            16_408_922_859_458_223_821,
        ];
        for w in want {
            assert_eq!(g.next_u64(), w);
        }
    }

    #[test]
    fn fnv1a64_reference_vector() {
        assert_eq!(fnv1a64(b""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xAF63_DC4C_8601_EC8C);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_F739_67E8);
    }

    #[test]
    fn uniform_and_normal_ranges() {
        let mut g = SplitMix64::new(42);
        let mut sum = 0.0;
        for _ in 0..10_000 {
            let u = g.uniform();
            assert!((0.0..1.0).contains(&u));
            let n = g.normal();
            assert!((-6.0..6.0).contains(&n));
            sum += n;
        }
        assert!((sum / 10_000.0).abs() < 0.05);
    }

    #[test]
    fn timm_variant_param_counts() {
        // timm's own counts are checked on the presets (cait_pack::timm's tests).
        for v in &cait_pack::timm::VARIANTS {
            assert_eq!(
                SynthSpec::timm_variant(v.name, 0).unwrap().param_count() as u64,
                v.config().num_params(),
                "{}",
                v.name
            );
        }
    }

    fn check_fixture(name: &str) {
        let dir = fixtures_dir().join(name);
        let text = std::fs::read_to_string(dir.join("spec.json")).unwrap();
        let spec = SynthSpec::from_spec_json(&text).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let batch = v["batch"].as_u64().unwrap() as usize;
        assert_eq!(
            v["param_count"].as_u64().unwrap() as usize,
            spec.param_count(),
            "{name}"
        );

        let stored = stored_fingerprints(&text).unwrap();
        let sd = state_dict(&spec);
        let (in_shape, x) = input(&spec, batch);
        let ours: Vec<(&str, &[usize], &[f32])> = sd
            .iter()
            .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
            .chain(std::iter::once((
                "input",
                in_shape.as_slice(),
                x.as_slice(),
            )))
            .collect();
        assert_eq!(ours.len(), stored.len(), "{name}: tensor count");
        for ((n, s, vals), (sn, ss, sfp)) in ours.iter().zip(&stored) {
            assert_eq!(n, sn, "{name}: tensor order");
            assert_eq!(*s, ss.as_slice(), "{name}: {n} shape");
            assert_eq!(&fingerprint(vals), sfp, "{name}: {n} fingerprint");
        }

        // committed files hold exactly the synthesized values
        let st = dir.join("model.safetensors");
        if st.is_file() {
            let file = read_safetensors_f32(&st).unwrap();
            assert_eq!(file.len(), sd.len(), "{name}: safetensors tensor count");
            for (n, s, vals) in &sd {
                let (fs, fv) = &file[n];
                assert_eq!(fs, s, "{name}: {n}");
                assert!(
                    fv.iter().zip(vals).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{name}: {n} differs from model.safetensors"
                );
            }
        }
        let inp = dir.join("input.npy");
        if inp.is_file() {
            let (s, v) = read_npy_f32(&inp).unwrap();
            assert_eq!(s, in_shape);
            assert!(
                v.iter().zip(&x).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}: input.npy"
            );
        }
        let (ls, lv) = read_npy_f32(&dir.join("logits.npy")).unwrap();
        assert_eq!(ls, vec![batch, spec.num_classes]);
        assert!(lv.iter().all(|x| x.is_finite()));
        let (fs, _) = read_npy_f32(&dir.join("features.npy")).unwrap();
        assert_eq!(fs, vec![batch, spec.embed_dim]);
    }

    #[test]
    fn all_fixtures_are_checked() {
        let names = fixture_names();
        for want in [
            "tiny",
            "tiny_avg",
            "gray",
            "noqkvbias",
            "wide288",
            "xxs24_224",
        ] {
            assert!(names.iter().any(|n| n == want), "fixture {want} missing");
        }
    }

    #[test]
    fn fixture_tiny() {
        check_fixture("tiny");
    }

    #[test]
    fn fixture_tiny_avg() {
        check_fixture("tiny_avg");
    }

    #[test]
    fn fixture_gray() {
        check_fixture("gray");
    }

    #[test]
    fn fixture_noqkvbias() {
        check_fixture("noqkvbias");
    }

    #[test]
    fn fixture_wide288() {
        check_fixture("wide288");
    }

    #[test]
    fn fixture_xxs24_224() {
        let spec = SynthSpec::load(&fixtures_dir().join("xxs24_224")).unwrap();
        let mut want = SynthSpec::timm_variant("cait_xxs24_224", spec.seed).unwrap();
        want.name = "xxs24_224".into();
        assert_eq!(spec, want);
        assert_eq!(spec.param_count(), 11_956_264);
        check_fixture("xxs24_224");
    }

    #[test]
    fn hub_config_round_trip_shape() {
        let spec = SynthSpec::load(&fixtures_dir().join("tiny")).unwrap();
        let ours = hub_config(&spec, None);
        let theirs: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures_dir().join("tiny").join("config.json")).unwrap(),
        )
        .unwrap();
        for key in ["architecture", "num_classes", "num_features", "global_pool"] {
            assert_eq!(ours[key], theirs[key], "{key}");
        }
        for key in [
            "input_size",
            "mean",
            "std",
            "interpolation",
            "crop_pct",
            "num_classes",
        ] {
            assert_eq!(
                ours["pretrained_cfg"][key], theirs["pretrained_cfg"][key],
                "{key}"
            );
        }
        for (k, v) in theirs["model_args"].as_object().unwrap() {
            if k == "mlp_ratio" {
                assert_eq!(ours["model_args"][k].as_f64(), v.as_f64());
            } else {
                assert_eq!(&ours["model_args"][k], v, "model_args.{k}");
            }
        }
    }

    /// `CAIT_SYNTH_OUT=DIR cargo test -p cait-tests --lib write_hub_dirs -- --ignored` writes
    /// DIR/<fixture>/{model.safetensors,config.json} for every fixture, to be loaded by timm.
    #[test]
    #[ignore]
    fn write_hub_dirs() {
        let out = PathBuf::from(std::env::var("CAIT_SYNTH_OUT").expect("CAIT_SYNTH_OUT"));
        for name in fixture_names() {
            let spec = SynthSpec::load(&fixtures_dir().join(&name)).unwrap();
            write_hub_dir(&spec, &out.join(&name), true, None).unwrap();
        }
    }
}
