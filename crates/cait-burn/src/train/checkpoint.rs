//! The per-epoch training checkpoint: `checkpoint/{model.safetensors, optimizer.safetensors,
//! state.json}`. It is written to `checkpoint.tmp/` and swapped in by renames, so an interrupted
//! write leaves the previous epoch's checkpoint usable.

use std::path::{Path, PathBuf};

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use cait_pack::ModelConfig;
use serde_json::{Value, json};

use super::adamw::AdamW;
use super::{EpochSummary, TrainConfig};
use crate::Error;
use crate::export::{save_safetensors, write_atomic};
use crate::model::{Cait, ParamSource, renumber};
use crate::reference::timm_adapter;

const STATE_VERSION: u64 = 1;

/// Progress and randomness at the end of an epoch.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CheckpointState {
    pub epochs_done: usize,
    pub global_step: u64,
    pub rng: u64,
    pub history: Vec<EpochSummary>,
    /// The options that must not change across a resume (they decide every step).
    pub recipe: Value,
}

impl CheckpointState {
    pub fn new(cfg: &TrainConfig, model: &ModelConfig) -> CheckpointState {
        CheckpointState {
            epochs_done: 0,
            global_step: 0,
            // A stream separate from the init's (which uses `seed` itself).
            rng: cfg.seed ^ 0xC0FF_EE00_D15E_A5E5,
            history: Vec::new(),
            recipe: recipe(cfg, model),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "version": STATE_VERSION,
            "epochs_done": self.epochs_done,
            "global_step": self.global_step,
            "rng": self.rng.to_string(), // u64 does not survive JSON's doubles
            "recipe": self.recipe,
            "history": self.history.iter().map(|e| json!({
                "epoch": e.epoch,
                "train_loss": e.train_loss,
                "train_top1": e.train_top1,
                "eval_top1": e.eval_top1,
                "seconds": e.seconds,
                "images_per_sec": e.images_per_sec,
            })).collect::<Vec<_>>(),
        })
    }

    fn from_json(v: &Value) -> Option<CheckpointState> {
        if v.get("version")?.as_u64()? != STATE_VERSION {
            return None;
        }
        let history = v
            .get("history")?
            .as_array()?
            .iter()
            .map(|e| {
                Some(EpochSummary {
                    epoch: e.get("epoch")?.as_u64()? as usize,
                    train_loss: e.get("train_loss")?.as_f64()?,
                    train_top1: e.get("train_top1")?.as_f64()?,
                    eval_top1: e.get("eval_top1").and_then(Value::as_f64),
                    seconds: e.get("seconds")?.as_f64()?,
                    images_per_sec: e.get("images_per_sec")?.as_f64()?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(CheckpointState {
            epochs_done: v.get("epochs_done")?.as_u64()? as usize,
            global_step: v.get("global_step")?.as_u64()?,
            rng: v.get("rng")?.as_str()?.parse().ok()?,
            history,
            recipe: v.get("recipe")?.clone(),
        })
    }
}

/// Every option that decides the sequence of steps.
fn recipe(cfg: &TrainConfig, model: &ModelConfig) -> Value {
    json!({
        "model": format!("{model:?}"),
        "finetune": cfg.finetune.as_ref().map(|p| p.display().to_string()),
        "init_values": cfg.init_values,
        "drop_path_rate": cfg.drop_path_rate,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "min_lr": cfg.min_lr,
        "warmup_epochs": cfg.warmup_epochs,
        "weight_decay": cfg.weight_decay,
        "label_smoothing": cfg.label_smoothing,
        "hflip": cfg.hflip,
        "crop_padding": cfg.crop_padding,
        "seed": cfg.seed.to_string(),
    })
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn save_checkpoint_dir(
    dir: &Path,
    model: &Cait,
    optim: &AdamW,
    state: &CheckpointState,
) -> Result<(), Error> {
    let tmp = sibling(dir, ".tmp");
    let old = sibling(dir, ".old");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    save_safetensors(model, &tmp.join("model.safetensors"))?;
    optim.save(&tmp.join("optimizer.safetensors"))?;
    let text = serde_json::to_string_pretty(&state.to_json()).expect("json serializes");
    write_atomic(&tmp.join("state.json"), text.as_bytes())?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// The checkpoint in `dir` (or its `.old` sibling if a swap was interrupted), if any.
pub(crate) fn load_checkpoint_dir(
    dir: &Path,
    cfg: &TrainConfig,
    model_cfg: &ModelConfig,
    device: &Device,
    mut optim: AdamW,
) -> Result<Option<(Cait, AdamW, CheckpointState)>, Error> {
    let dir = if dir.join("state.json").exists() {
        dir.to_path_buf()
    } else if sibling(dir, ".old").join("state.json").exists() {
        sibling(dir, ".old")
    } else {
        return Ok(None);
    };
    let state_path = dir.join("state.json");
    let bad = |reason: String| Error::Checkpoint {
        path: state_path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a training state: {e}")))?;
    let state = CheckpointState::from_json(&value)
        .ok_or_else(|| bad("not a training state written by this version".into()))?;
    let want = recipe(cfg, model_cfg);
    if state.recipe != want {
        let field = want
            .as_object()
            .and_then(|w| {
                w.iter()
                    .find(|(k, v)| state.recipe.get(k.as_str()) != Some(v))
                    .map(|(k, v)| {
                        format!(
                            "{k} was {} and is now {v}",
                            state.recipe.get(k.as_str()).unwrap_or(&Value::Null)
                        )
                    })
            })
            .unwrap_or_default();
        return Err(bad(format!(
            "cannot resume: the run's options changed ({field}); use the original options or a new output folder"
        )));
    }

    let weights = dir.join("model.safetensors");
    let mut model =
        Cait::build(model_cfg, &ParamSource::Placeholder, device).map_err(|reason| {
            Error::Weights {
                path: weights.clone(),
                reason,
            }
        })?;
    let mut store = SafetensorsStore::from_file(&weights).with_from_adapter(timm_adapter());
    model.load_from(&mut store).map_err(|e| Error::Checkpoint {
        path: weights.clone(),
        reason: format!("burn SafetensorsStore: {e}"),
    })?;
    let model = renumber(model);
    optim.load(&dir.join("optimizer.safetensors"), device)?;
    Ok(Some((model, optim, state)))
}
