//! timm's CaiT presets, shared by the importer and everything that builds or checks a published
//! model: the ten variants timm registers (`timm/models/cait.py`), and the eval preprocessing of
//! their pretrained cfgs (CaiT's `_cfg`: bicubic, `crop_pct` 1.0, ImageNet mean/std).

use crate::{GlobalPool, MAX_NORM_CHANNELS, ModelConfig, Preprocess};

/// timm's `IMAGENET_DEFAULT_MEAN` (`timm/data/constants.py`), used by every CaiT pretrained cfg.
pub const IMAGENET_DEFAULT_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// timm's `IMAGENET_DEFAULT_STD`.
pub const IMAGENET_DEFAULT_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// One of timm's published CaiT architectures (`timm/models/cait.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// timm's model name.
    pub name: &'static str,
    /// `embed_dim`.
    pub embed_dim: u32,
    /// `depth` (self-attention blocks).
    pub depth: u32,
    /// `num_heads`.
    pub num_heads: u32,
    /// Square input side: the pretrained cfg's `input_size[1]`.
    pub img_size: u32,
}

/// The ten CaiT variants timm registers, with `fb_dist_in1k` weights. From `timm/models/cait.py`
/// (timm 1.0): every one has `patch_size=16`, `mlp_ratio=4`, `qkv_bias=True`, `depth_token_only=2`,
/// `mlp_ratio_token_only=4`, 3 input channels and 1000 classes; `_cfg` gives `input_size=(3, 384,
/// 384)` unless the entry overrides it (224 for the `_224` models, 448 for `cait_m48_448`),
/// `crop_pct=1.0`, `interpolation='bicubic'`, ImageNet default mean/std.
pub const VARIANTS: [Variant; 10] = [
    Variant::new("cait_xxs24_224", 192, 24, 4, 224),
    Variant::new("cait_xxs24_384", 192, 24, 4, 384),
    Variant::new("cait_xxs36_224", 192, 36, 4, 224),
    Variant::new("cait_xxs36_384", 192, 36, 4, 384),
    Variant::new("cait_xs24_384", 288, 24, 6, 384),
    Variant::new("cait_s24_224", 384, 24, 8, 224),
    Variant::new("cait_s24_384", 384, 24, 8, 384),
    Variant::new("cait_s36_384", 384, 36, 8, 384),
    Variant::new("cait_m36_384", 768, 36, 16, 384),
    Variant::new("cait_m48_448", 768, 48, 16, 448),
];

impl Variant {
    /// Patch side of every published CaiT.
    pub const PATCH_SIZE: u32 = 16;
    /// Class-attention blocks of every published CaiT.
    pub const DEPTH_TOKEN_ONLY: u32 = 2;
    /// `mlp_ratio` (and `mlp_ratio_token_only`) of every published CaiT.
    pub const MLP_RATIO: u32 = 4;
    /// ImageNet-1k classes.
    pub const NUM_CLASSES: u32 = 1000;
    /// Input channels (RGB).
    pub const IN_CHANS: u32 = 3;

    const fn new(name: &'static str, d: u32, depth: u32, heads: u32, img: u32) -> Variant {
        Variant {
            name,
            embed_dim: d,
            depth,
            num_heads: heads,
            img_size: img,
        }
    }

    /// The variant's config as timm builds it (`num_classes=1000`, `global_pool='token'`).
    pub const fn config(&self) -> ModelConfig {
        ModelConfig {
            img_size: [self.img_size, self.img_size],
            patch_size: Self::PATCH_SIZE,
            in_chans: Self::IN_CHANS,
            num_classes: Self::NUM_CLASSES,
            embed_dim: self.embed_dim,
            depth: self.depth,
            num_heads: self.num_heads,
            mlp_hidden_dim: self.embed_dim * Self::MLP_RATIO,
            depth_token_only: Self::DEPTH_TOKEN_ONLY,
            mlp_hidden_dim_token_only: self.embed_dim * Self::MLP_RATIO,
            qkv_bias: true,
            global_pool: GlobalPool::Token,
        }
    }

    /// The variant's pretrained cfg as a [`Preprocess`].
    pub const fn preprocess(&self) -> Preprocess {
        Preprocess::imagenet([Self::IN_CHANS, self.img_size, self.img_size])
    }

    /// Whether `cfg` is this architecture. The head (`num_classes`) and `global_pool` are free:
    /// timm keeps the architecture name when they are changed at creation.
    pub fn matches(&self, cfg: &ModelConfig) -> bool {
        let mut canonical = self.config();
        canonical.num_classes = cfg.num_classes;
        canonical.global_pool = cfg.global_pool;
        canonical == *cfg
    }

    /// The variant timm registers under `name` (`cait_xxs24_224` …), if any; a pretrained tag
    /// (`.fb_dist_in1k`) is ignored.
    pub fn named(name: &str) -> Option<&'static Variant> {
        let base = name.split('.').next().unwrap_or(name);
        VARIANTS.iter().find(|v| v.name == base)
    }
}

/// The published variant `cfg` is, if any.
pub fn identify(cfg: &ModelConfig) -> Option<&'static Variant> {
    VARIANTS.iter().find(|v| v.matches(cfg))
}

/// timm's eval preprocessing for a CaiT with no pretrained cfg of its own: CaiT's `_cfg`
/// (`crop_pct=1.0`, bicubic, ImageNet mean/std) at the model's input size, with mean/std fitted to
/// the channel count by [`norm_for_channels`].
pub fn default_preprocess(cfg: &ModelConfig) -> Preprocess {
    let (mean, std, norm_channels) = norm_for_channels(
        &IMAGENET_DEFAULT_MEAN,
        &IMAGENET_DEFAULT_STD,
        cfg.in_chans as usize,
    )
    .unwrap_or(([0.0; MAX_NORM_CHANNELS], [1.0; MAX_NORM_CHANNELS], 0));
    Preprocess {
        norm_channels,
        mean,
        std,
        ..Preprocess::imagenet([cfg.in_chans, cfg.img_size[0], cfg.img_size[1]])
    }
}

/// Per-channel mean, standard deviation and the count of channels they hold, as [`Preprocess`]
/// records them.
pub type Norm = ([f32; MAX_NORM_CHANNELS], [f32; MAX_NORM_CHANNELS], u8);

/// Fits mean/std lists to `channels` the way timm's `resolve_model_data_config` does: a list with
/// one value per channel is kept, a single value is repeated, and any other length is replaced by
/// its average, repeated (so a 1-channel model gets mean 0.449, std 0.226 from ImageNet's). `None`
/// for more channels than a pack records ([`MAX_NORM_CHANNELS`]).
pub fn norm_for_channels(mean: &[f64], std: &[f64], channels: usize) -> Option<Norm> {
    if channels == 0 || channels > MAX_NORM_CHANNELS {
        return None;
    }
    let fit = |v: &[f64]| -> [f32; MAX_NORM_CHANNELS] {
        let mut out = [0f32; MAX_NORM_CHANNELS];
        if v.len() == channels {
            for (o, x) in out.iter_mut().zip(v) {
                *o = *x as f32;
            }
        } else {
            let avg = if v.len() == 1 {
                v[0]
            } else {
                v.iter().sum::<f64>() / v.len().max(1) as f64
            };
            for o in &mut out[..channels] {
                *o = avg as f32;
            }
        }
        out
    };
    Some((fit(mean), fit(std), channels as u8))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::Interpolation;

    #[test]
    fn variants_have_timms_parameter_counts() {
        // From timm 1.0.31: sum(p.numel() for p in create_model(name).parameters()).
        let params: Vec<u64> = VARIANTS.iter().map(|v| v.config().num_params()).collect();
        assert_eq!(
            params,
            [
                11_956_264,  // cait_xxs24_224
                12_029_224,  // cait_xxs24_384
                17_299_720,  // cait_xxs36_224
                17_372_680,  // cait_xxs36_384
                26_670_088,  // cait_xs24_384
                46_916_200,  // cait_s24_224
                47_062_120,  // cait_s24_384
                68_366_632,  // cait_s36_384
                271_221_352, // cait_m36_384
                356_460_520, // cait_m48_448
            ]
        );
        for v in &VARIANTS {
            v.config().validate().unwrap();
            assert_eq!(identify(&v.config()).map(|v| v.name), Some(v.name));
            assert_eq!(Variant::named(v.name), Some(v));
        }
        assert_eq!(
            Variant::named("cait_xxs24_224.fb_dist_in1k").map(|v| v.name),
            Some("cait_xxs24_224")
        );
        assert_eq!(Variant::named("vit_base_patch16_224"), None);
    }

    #[test]
    fn variants_differ_only_where_timm_says() {
        let names: BTreeSet<_> = VARIANTS.iter().map(|v| v.name).collect();
        assert_eq!(names.len(), 10);
        // The name encodes depth and image size.
        for v in &VARIANTS {
            let tail = v.name.rsplit('_').next().unwrap();
            assert_eq!(tail, v.img_size.to_string(), "{}", v.name);
            assert!(v.name.contains(&v.depth.to_string()), "{}", v.name);
            assert_eq!(
                v.preprocess(),
                default_preprocess(&v.config()),
                "{}",
                v.name
            );
        }
        let p = VARIANTS[9].preprocess();
        assert_eq!(p.input_size, [3, 448, 448]);
        assert_eq!(p.interpolation, Interpolation::Bicubic);
        assert_eq!(p.crop_pct, 1.0);
        assert_eq!(p.norm_channels, 3);
        assert_eq!(&p.mean[..3], &[0.485f32, 0.456, 0.406]);
        assert_eq!(&p.std[..3], &[0.229f32, 0.224, 0.225]);
    }

    #[test]
    fn a_fine_tuned_head_keeps_the_architecture_name() {
        let mut cfg = VARIANTS[5].config();
        cfg.num_classes = 10;
        cfg.global_pool = GlobalPool::Avg;
        assert_eq!(identify(&cfg).map(|v| v.name), Some("cait_s24_224"));
        cfg.img_size = [256, 256];
        assert_eq!(identify(&cfg), None);
    }

    #[test]
    fn channel_rule_follows_timm() {
        let (mean, std, n) =
            norm_for_channels(&IMAGENET_DEFAULT_MEAN, &IMAGENET_DEFAULT_STD, 1).unwrap();
        assert_eq!(n, 1);
        // (0.485 + 0.456 + 0.406) / 3 and (0.229 + 0.224 + 0.225) / 3, as timm prints them.
        assert!((mean[0] - 0.449).abs() < 1e-6, "{}", mean[0]);
        assert!((std[0] - 0.226).abs() < 1e-6, "{}", std[0]);
        let (mean, _, n) = norm_for_channels(&[0.5], &[0.5], 4).unwrap();
        assert_eq!((n, &mean[..4]), (4, &[0.5f32; 4][..]));
        assert!(norm_for_channels(&[0.5], &[0.5], 9).is_none());
    }
}
