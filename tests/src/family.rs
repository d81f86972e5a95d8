//! A family of synthesized CaiT checkpoints for judging int8 quantization: the synth recipe's
//! shapes and streams, with the strengths that trained models show and the fixtures' recipe does
//! not — larger LayerScale on both branches, talking-heads mixes further from identity, LayerNorm
//! weights with spread, and outlier channels after the LayerNorms.
//!
//! Every member is made deterministically from [`crate::synth`]'s streams (SplitMix64 per tensor
//! name), so tests and `tools/compare_int8_ort.py` (through the `int8_family` example of
//! cait-quant, which writes a member as a timm hub folder) see the same weights. Images are drawn
//! from the recipe's input distribution (`0.8 · n`) under stream names of their own, so the
//! calibration images, the held-out images and the test images never overlap.
//!
//! # Recipe (on top of "cait-edge-synth-v1")
//! ```text
//!   *.gamma_1, *.gamma_2         g_lo + (g_hi - g_lo) · u      stream "<name>#strength"
//!   *.attn.proj_l/proj_w.weight  I + talk · n                   stream "<name>#strength"
//!   LayerNorm *.norm*.weight     1 + ln · n                     stream "<name>#strength"
//!   everything else              as the synth recipe
//!   outliers: channels c_k = (7 + 61·k) mod D, k < count, of norm1 and norm2 of every block
//!   (and of the final norm when `final_norm`): weight and bias × factor, and the matching input
//!   columns of the consumers (qkv | q, k, v; fc1; head) ÷ factor — the float function is unchanged.
//! ```

use std::io;
use std::path::Path;

use crate::synth::{self, Kind, SplitMix64, SynthSpec};

/// How strong the weights are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Strength {
    /// LayerScale of both branches ~ U(lo, hi); `None` keeps the synth recipe's
    /// (U(0.02, 0.2) attention, U(0.1, 1) MLP).
    pub gamma: Option<(f64, f64)>,
    /// Talking-heads mixes `I + talk · n`.
    pub talk: f64,
    /// LayerNorm weights `1 + ln · n`; `None` keeps the synth recipe's `1 ± 0.2`.
    pub ln: Option<f64>,
}

/// The synth recipe itself.
pub const GENTLE: Strength = Strength {
    gamma: None,
    talk: 0.1,
    ln: None,
};
/// Between the two.
pub const MEDIUM: Strength = Strength {
    gamma: Some((0.05, 0.5)),
    talk: 0.2,
    ln: Some(0.1),
};
/// The recipe of the held-out int8 issue: LayerScale U(0.1, 1) on both branches, talking heads
/// `I + 0.3 · n`, LayerNorm weights `1 + 0.1 · n`.
pub const STRONG: Strength = Strength {
    gamma: Some((0.1, 1.0)),
    talk: 0.3,
    ln: Some(0.1),
};

/// Outlier channels after the LayerNorms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outliers {
    /// How many channels.
    pub count: usize,
    /// Their weight and bias factor.
    pub factor: f32,
    /// Also the final norm (the head's input).
    pub final_norm: bool,
}

/// One member of the family.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// `strong`, `strong-out3x25` ...
    pub name: String,
    /// Shapes and seed.
    pub spec: SynthSpec,
    pub strength: Strength,
    pub outliers: Option<Outliers>,
}

/// cait_xxs24_224's shape (D 192, 4 heads, 24 + 2 blocks) at `img` pixels (16-pixel patches), 100
/// classes, seed `seed`.
pub fn xxs24_shape(img: usize, seed: u64) -> SynthSpec {
    let mut s = SynthSpec::timm_variant("cait_xxs24_224", seed).expect("a timm variant");
    s.name = format!("xxs24-{img}");
    s.img_size = img;
    s.num_classes = 100;
    s
}

/// A wider model with more heads (cait_xs24's D 288 and 6 heads), 12 blocks, at `img` pixels.
pub fn wide_shape(img: usize, seed: u64) -> SynthSpec {
    let mut s = SynthSpec::timm_variant("cait_xs24_384", seed).expect("a timm variant");
    s.name = format!("xs12-{img}");
    s.img_size = img;
    s.depth = 12;
    s.num_classes = 100;
    s
}

/// The family the int8 tests and the comparison run on: every strength without outliers, and
/// outlier channels of several counts and factors (with and without the final norm) on the
/// strong recipe, on xxs24's shape at `img` pixels; plus the wider model, strong, with outliers.
pub fn members(img: usize) -> Vec<Member> {
    let out = |count, factor, final_norm| {
        Some(Outliers {
            count,
            factor,
            final_norm,
        })
    };
    let m = |name: &str, spec: SynthSpec, strength, outliers| Member {
        name: name.to_string(),
        spec,
        strength,
        outliers,
    };
    let xxs = |seed| xxs24_shape(img, seed);
    vec![
        m("gentle", xxs(101), GENTLE, None),
        m("medium", xxs(102), MEDIUM, None),
        m("strong", xxs(103), STRONG, None),
        m("gentle-out4x25", xxs(101), GENTLE, out(4, 25.0, true)),
        m("strong-out3x25", xxs(103), STRONG, out(3, 25.0, false)),
        m("strong-out3x50-final", xxs(103), STRONG, out(3, 50.0, true)),
        m("strong-out8x10-final", xxs(103), STRONG, out(8, 10.0, true)),
        m(
            "wide-strong-out4x25",
            wide_shape(img, 104),
            STRONG,
            out(4, 25.0, true),
        ),
    ]
}

/// The member called `name` at `img` pixels.
pub fn member(name: &str, img: usize) -> Option<Member> {
    members(img).into_iter().find(|m| m.name == name)
}

/// The outlier channels of a `d`-wide model.
pub fn outlier_channels(count: usize, d: usize) -> Vec<usize> {
    (0..count).map(|k| (7 + 61 * k) % d).collect()
}

impl Member {
    /// Every tensor, in timm state-dict order: `(name, shape, values)`.
    pub fn state_dict(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let spec = &self.spec;
        let st = self.strength;
        let mut sd: Vec<(String, Vec<usize>, Vec<f32>)> = synth::tensor_list(spec)
            .into_iter()
            .map(|(name, shape, kind)| {
                let count: usize = shape.iter().product();
                let mut g = SplitMix64::for_tensor(spec.seed, &format!("{name}#strength"));
                let redrawn: Option<Vec<f32>> = match kind {
                    Kind::Gamma1 | Kind::Gamma2 => st.gamma.map(|(lo, hi)| {
                        (0..count)
                            .map(|_| (lo + (hi - lo) * g.uniform()) as f32)
                            .collect()
                    }),
                    Kind::TalkingHeads => {
                        let cols = shape[1];
                        Some(
                            (0..count)
                                .map(|i| {
                                    let eye = if i / cols == i % cols { 1.0 } else { 0.0 };
                                    (eye + st.talk * g.normal()) as f32
                                })
                                .collect(),
                        )
                    }
                    Kind::LnWeight => st
                        .ln
                        .map(|s| (0..count).map(|_| (1.0 + s * g.normal()) as f32).collect()),
                    _ => None,
                };
                let v = redrawn.unwrap_or_else(|| synth::tensor(spec.seed, &name, &shape, kind));
                (name, shape, v)
            })
            .collect();
        if let Some(o) = self.outliers {
            apply_outliers(&mut sd, spec, o);
        }
        sd
    }

    /// Writes `dir/model.safetensors` and `dir/config.json` (a timm hub folder).
    pub fn write_hub_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        synth::write_state_dict(&self.state_dict(), &dir.join("model.safetensors"))?;
        let text = serde_json::to_string_pretty(&synth::hub_config(&self.spec, None))
            .map_err(|e| io::Error::other(e.to_string()))?;
        std::fs::write(dir.join("config.json"), text)
    }

    /// `n` images `[n, C, H, W]` from the recipe's input distribution, stream `stream`
    /// (`"calibration"`, `"holdout"`, `"test"` ... never overlap).
    pub fn images(&self, stream: &str, n: usize) -> Vec<f32> {
        let s = &self.spec;
        synth::tensor(
            s.seed,
            &format!("family-{stream}"),
            &[n, s.in_chans, s.img_size, s.img_size],
            Kind::Input,
        )
    }
}

/// Scales the outlier channels of the LayerNorms by `o.factor` and divides the consumers' input
/// columns by it: the float function is the same.
fn apply_outliers(sd: &mut [(String, Vec<usize>, Vec<f32>)], spec: &SynthSpec, o: Outliers) {
    let d = spec.embed_dim;
    let channels = outlier_channels(o.count, d);
    let mut norms: Vec<(String, Vec<String>)> = Vec::new();
    for i in 0..spec.depth {
        let p = format!("blocks.{i}");
        norms.push((format!("{p}.norm1"), vec![format!("{p}.attn.qkv.weight")]));
        norms.push((format!("{p}.norm2"), vec![format!("{p}.mlp.fc1.weight")]));
    }
    for i in 0..spec.depth_token_only {
        let p = format!("blocks_token_only.{i}");
        let qkv = ["q", "k", "v"].map(|x| format!("{p}.attn.{x}.weight"));
        norms.push((format!("{p}.norm1"), qkv.to_vec()));
        norms.push((format!("{p}.norm2"), vec![format!("{p}.mlp.fc1.weight")]));
    }
    if o.final_norm && spec.num_classes > 0 {
        norms.push(("norm".into(), vec!["head.weight".into()]));
    }
    let find = |sd: &mut [(String, Vec<usize>, Vec<f32>)], name: &str| {
        sd.iter().position(|t| t.0 == name).expect("tensor")
    };
    for (norm, consumers) in norms {
        for p in ["weight", "bias"] {
            let i = find(sd, &format!("{norm}.{p}"));
            for &c in &channels {
                sd[i].2[c] *= o.factor;
            }
        }
        for w in consumers {
            let i = find(sd, &w);
            for row in sd[i].2.chunks_exact_mut(d) {
                for &c in &channels {
                    row[c] /= o.factor;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_distinct_and_deterministic() {
        let all = members(32);
        let names: std::collections::HashSet<_> = all.iter().map(|m| m.name.clone()).collect();
        assert_eq!(names.len(), all.len());
        let a = member("strong-out3x25", 32).unwrap().state_dict();
        let b = member("strong-out3x25", 32).unwrap().state_dict();
        assert_eq!(a, b);
        let plain = member("strong", 32).unwrap().state_dict();
        let get = |sd: &[(String, Vec<usize>, Vec<f32>)], n: &str| {
            sd.iter().find(|t| t.0 == n).unwrap().2.clone()
        };
        // The outliers scale exactly the chosen channels of norm1 and leave the rest alone.
        let (w0, w1) = (
            get(&plain, "blocks.0.norm1.weight"),
            get(&a, "blocks.0.norm1.weight"),
        );
        for c in 0..192 {
            let want = if [7, 68, 129].contains(&c) {
                w0[c] * 25.0
            } else {
                w0[c]
            };
            assert_eq!(w1[c], want, "channel {c}");
        }
        // Without `final_norm`, the final norm is untouched; the strong gammas are in [0.1, 1).
        assert_eq!(get(&plain, "norm.weight"), get(&a, "norm.weight"));
        let g = get(&plain, "blocks.5.gamma_1");
        assert!(g.iter().all(|&v| (0.1..1.0).contains(&v)));
        assert!(g.iter().any(|&v| v > 0.5));
    }

    #[test]
    fn image_streams_differ() {
        let m = member("gentle", 32).unwrap();
        let (a, b) = (m.images("calibration", 2), m.images("holdout", 2));
        assert_eq!(a.len(), 2 * 3 * 32 * 32);
        assert_ne!(a, b);
    }
}
