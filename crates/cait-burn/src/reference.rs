//! The float reference: a timm checkpoint loaded through burn's store and run on a chosen backend.

use std::path::Path;

use burn::store::{
    FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore,
    SafetensorsStore,
};
use burn::tensor::{DType, Device, Tensor, TensorData};
use cait_import::{Checkpoint, CheckpointFormat, ImportOptions, load_checkpoint};
use cait_pack::{ModelConfig, Preprocess};

use crate::model::{Cait, ParamSource};
use crate::{BackendKind, Error};

/// Images per device call in [`Reference::forward`]; bounds activation memory for big batches.
pub const MAX_DEVICE_BATCH: usize = 64;

/// How the weights reached the module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightSource {
    /// burn's `SafetensorsStore` with its PyTorch adapter.
    SafetensorsStore,
    /// burn's `PytorchStore`, reading the state dict under this top-level key (`None`: the file
    /// is the state dict itself).
    PytorchStore {
        /// `model`, `state_dict` ..., or none.
        top_level_key: Option<String>,
    },
    /// burn's stores could not read the file; the tensors cait-import imported were used instead.
    Imported {
        /// Why the store failed.
        reason: String,
    },
}

/// Per-image outputs of a batch, in batch order.
#[derive(Clone, Debug, PartialEq)]
pub struct Outputs {
    /// n × classes logits (the features when the model has no head).
    pub logits: Vec<f32>,
    /// n × D pre-logits features.
    pub features: Vec<f32>,
    /// One n × H × (N+1) map per class-attention block: the class query's attention over
    /// `[cls; patches]`, softmax rows (each sums to 1).
    pub attention: Vec<Vec<f32>>,
}

/// A CaiT checkpoint on a burn backend.
#[derive(Debug)]
pub struct Reference {
    model: Cait,
    device: Device,
    backend: BackendKind,
    checkpoint: Checkpoint,
    weights: WeightSource,
}

impl Reference {
    /// Loads a timm checkpoint (file or hub folder): cait-import imports and checks it (config,
    /// preprocessing, labels), then burn's store applies the weights to the module; where the
    /// store cannot read the file the imported tensors are used ([`WeightSource::Imported`]).
    pub fn load(
        path: &Path,
        opts: &ImportOptions,
        backend: BackendKind,
    ) -> Result<Reference, Error> {
        let ckpt = load_checkpoint(path, opts)?;
        let device = backend.device()?;
        let mut model =
            Cait::build(&ckpt.config, &ParamSource::Placeholder, &device).map_err(|reason| {
                Error::Weights {
                    path: ckpt.source.clone(),
                    reason,
                }
            })?;
        let weights = match apply_store(&mut model, &ckpt) {
            Ok(source) => source,
            Err(reason) => {
                model = Cait::build(&ckpt.config, &ParamSource::Host(&ckpt.tensors), &device)
                    .map_err(|reason| Error::Weights {
                        path: ckpt.source.clone(),
                        reason,
                    })?;
                WeightSource::Imported { reason }
            }
        };
        Ok(Reference {
            model,
            device,
            backend,
            checkpoint: Checkpoint {
                tensors: Default::default(), // the weights live on the device now
                ..ckpt
            },
            weights,
        })
    }

    /// A reference built from an already imported checkpoint's tensors (no store involved).
    pub fn from_checkpoint(ckpt: &Checkpoint, backend: BackendKind) -> Result<Reference, Error> {
        let device = backend.device()?;
        let model = Cait::build(&ckpt.config, &ParamSource::Host(&ckpt.tensors), &device).map_err(
            |reason| Error::Weights {
                path: ckpt.source.clone(),
                reason,
            },
        )?;
        Ok(Reference {
            model,
            device,
            backend,
            checkpoint: Checkpoint {
                tensors: Default::default(),
                ..ckpt.clone()
            },
            weights: WeightSource::Imported {
                reason: "built from imported tensors".into(),
            },
        })
    }

    /// Runs `n` images (`batch`: n × C × H × W floats, normalized as the model's preprocessing
    /// says), at most [`MAX_DEVICE_BATCH`] per device call.
    pub fn forward(&self, batch: &[f32], n: usize) -> Result<Outputs, Error> {
        let cfg = &self.checkpoint.config;
        let per = cfg.input_len().unwrap_or(0);
        if batch.len() != n * per {
            return Err(Error::InputShape {
                n,
                expected: n * per,
                found: batch.len(),
            });
        }
        let mut out = Outputs {
            logits: Vec::with_capacity(n * cfg.logits_len()),
            features: Vec::with_capacity(n * cfg.embed_dim as usize),
            attention: vec![Vec::new(); cfg.depth_token_only as usize],
        };
        for chunk in batch.chunks(MAX_DEVICE_BATCH * per.max(1)) {
            let b = chunk.len() / per.max(1);
            let images = images_tensor(chunk, b, cfg, &self.device);
            let o = self.model.forward(images);
            out.logits.extend(read(o.logits)?);
            out.features.extend(read(o.features)?);
            for (all, a) in out.attention.iter_mut().zip(o.attention) {
                all.extend(read(a)?);
            }
        }
        Ok(out)
    }

    /// The architecture.
    pub fn config(&self) -> &ModelConfig {
        &self.checkpoint.config
    }

    /// Eval preprocessing from the checkpoint.
    pub fn preprocess(&self) -> &Preprocess {
        &self.checkpoint.preprocess
    }

    /// Class names, if the checkpoint's `config.json` has them.
    pub fn labels(&self) -> Option<&[String]> {
        self.checkpoint.labels.as_deref()
    }

    /// The imported checkpoint's description (tensors emptied: the weights are on the device).
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The backend running the model.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// The hardware the model runs on ([`crate::device_name`]).
    pub fn device_name(&self) -> String {
        crate::device_name(&self.device)
    }

    /// How the weights were loaded.
    pub fn weight_source(&self) -> &WeightSource {
        &self.weights
    }

    /// The burn module.
    pub fn model(&self) -> &Cait {
        &self.model
    }

    /// The device the module lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// `n` images as a [n, C, H, W] tensor.
pub(crate) fn images_tensor(
    data: &[f32],
    n: usize,
    cfg: &ModelConfig,
    device: &Device,
) -> Tensor<4> {
    let shape = [
        n,
        cfg.in_chans as usize,
        cfg.img_size[0] as usize,
        cfg.img_size[1] as usize,
    ];
    Tensor::from_data(TensorData::new(data.to_vec(), shape), device)
}

/// A tensor's values, in row-major order.
pub(crate) fn read<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, Error> {
    t.try_into_data()
        .map_err(|e| Error::Readback {
            reason: format!("{e:?}"),
        })?
        .try_into_vec::<f32>()
        .map_err(|e| Error::Readback {
            reason: format!("{e:?}"),
        })
}

/// Timm → burn adapter: PyTorch layout, then f32 whatever the file stores.
pub(crate) fn timm_adapter() -> impl ModuleAdapter + 'static {
    PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32))
}

/// Loads the checkpoint's weights into `model` with burn's store; the error is the store's.
fn apply_store(model: &mut Cait, ckpt: &Checkpoint) -> Result<WeightSource, String> {
    match ckpt.format {
        CheckpointFormat::Safetensors => {
            let mut store = SafetensorsStore::from_file(&ckpt.source)
                .with_from_adapter(timm_adapter())
                .with_key_remapping(r"^module\.", "");
            model
                .load_from(&mut store)
                .map_err(|e| format!("burn SafetensorsStore: {e}"))?;
            Ok(WeightSource::SafetensorsStore)
        }
        CheckpointFormat::TorchZip => {
            // Where timm's checkpoint_filter_fn and cait-import look for the state dict.
            let mut first_error = None;
            for key in [
                None,
                Some("model"),
                Some("state_dict"),
                Some("model_ema"),
                Some("state_dict_ema"),
                Some("module"),
            ] {
                let mut store =
                    PytorchStore::from_file(&ckpt.source).with_key_remapping(r"^module\.", "");
                if let Some(k) = key {
                    store = store.with_top_level_key(k);
                }
                match model.load_from(&mut store) {
                    Ok(_) => {
                        return Ok(WeightSource::PytorchStore {
                            top_level_key: key.map(str::to_string),
                        });
                    }
                    Err(e) => {
                        first_error.get_or_insert_with(|| format!("burn PytorchStore: {e}"));
                    }
                }
            }
            Err(first_error.unwrap_or_default())
        }
    }
}
