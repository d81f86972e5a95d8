//! AdamW (Loshchilov & Hutter; PyTorch's `torch.optim.AdamW` arithmetic) over a burn module.
//!
//! burn's own `ModuleOptimizer` restores saved state on `Device::default()`, which with the wgpu
//! feature compiled in is the GPU, even for a CPU run and even on a machine without one; the
//! moments here live on the parameters' device and are saved as plain safetensors, so a run
//! resumes on any backend.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};

use crate::Error;
use crate::model::Cait;
use crate::reference::read;

/// First and second moments of one parameter, flattened.
#[derive(Clone, Debug)]
struct Moments {
    m: Tensor<1>,
    v: Tensor<1>,
}

/// AdamW with per-parameter decoupled weight decay (off for the `no_decay` ids).
#[derive(Clone, Debug)]
pub struct AdamW {
    /// β1.
    pub beta_1: f64,
    /// β2.
    pub beta_2: f64,
    /// ε, added to √v̂.
    pub epsilon: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    no_decay: BTreeSet<ParamId>,
    moments: HashMap<ParamId, Moments>,
    /// Steps taken (the bias correction's t).
    steps: u64,
}

impl AdamW {
    /// PyTorch's defaults (β = 0.9, 0.999; ε = 1e-8) with `weight_decay` on every parameter but
    /// those in `no_decay`.
    pub fn new(weight_decay: f64, no_decay: impl IntoIterator<Item = ParamId>) -> AdamW {
        AdamW {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay,
            no_decay: no_decay.into_iter().collect(),
            moments: HashMap::new(),
            steps: 0,
        }
    }

    /// Updates every parameter that has a gradient.
    pub fn step(&mut self, lr: f64, model: Cait, mut grads: GradientsParams) -> Cait {
        self.steps += 1;
        let t = self.steps as i32;
        let correction_1 = 1.0 - self.beta_1.powi(t);
        let correction_2 = 1.0 - self.beta_2.powi(t);
        let mut mapper = Update {
            opt: self,
            lr,
            grads: &mut grads,
            correction_1,
            correction_2,
        };
        model.map(&mut mapper)
    }

    /// Writes the moments and the step count to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let mut host: BTreeMap<String, (Vec<u8>, usize)> = BTreeMap::new();
        for (id, mo) in &self.moments {
            for (which, t) in [("m", &mo.m), ("v", &mo.v)] {
                let values = read(t.clone())?;
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                host.insert(format!("{which}.{}", id.val()), (bytes, values.len()));
            }
        }
        let views: Vec<(String, TensorView<'_>)> = host
            .iter()
            .map(|(k, (bytes, n))| {
                (
                    k.clone(),
                    TensorView::new(Dtype::F32, vec![*n], bytes).expect("sizes agree"),
                )
            })
            .collect();
        let meta = HashMap::from([("steps".to_string(), self.steps.to_string())]);
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("optimizer state: {e}"),
        })?;
        crate::export::write_atomic(path, &bytes)
    }

    /// Restores what [`save`](Self::save) wrote, placing the moments on `device`.
    pub fn load(&mut self, path: &Path, device: &Device) -> Result<(), Error> {
        let bad = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("optimizer state: {e}")))?;
        let steps = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("steps"))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("optimizer state has no step count".into()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("optimizer state: {e}")))?;
        let mut halves: HashMap<u64, [Option<Tensor<1>>; 2]> = HashMap::new();
        for (name, view) in st.tensors() {
            let (which, id) = name
                .split_once('.')
                .and_then(|(w, id)| Some((w, id.parse::<u64>().ok()?)))
                .ok_or_else(|| bad(format!("unexpected optimizer tensor {name}")))?;
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!("optimizer tensor {name} is not f32")));
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let n = values.len();
            let t = Tensor::from_data(TensorData::new(values, [n]), device);
            let slot = match which {
                "m" => 0,
                "v" => 1,
                _ => return Err(bad(format!("unexpected optimizer tensor {name}"))),
            };
            halves.entry(id).or_default()[slot] = Some(t);
        }
        self.moments.clear();
        for (id, [m, v]) in halves {
            let (Some(m), Some(v)) = (m, v) else {
                return Err(bad(format!(
                    "optimizer state of parameter {id} is incomplete"
                )));
            };
            self.moments.insert(ParamId::from(id), Moments { m, v });
        }
        self.steps = steps;
        Ok(())
    }
}

struct Update<'a> {
    opt: &'a mut AdamW,
    lr: f64,
    grads: &'a mut GradientsParams,
    correction_1: f64,
    correction_2: f64,
}

impl ModuleMapper for Update<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let opt = &mut *self.opt;
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let require_grad = tensor.is_require_grad();
        let p = tensor.inner().reshape([n]);
        let g = grad.inner().reshape([n]);
        let (b1, b2) = (opt.beta_1, opt.beta_2);
        let moments = match opt.moments.remove(&id) {
            Some(Moments { m, v }) => Moments {
                m: m.mul_scalar(b1) + g.clone().mul_scalar(1.0 - b1),
                v: v.mul_scalar(b2) + g.square().mul_scalar(1.0 - b2),
            },
            None => Moments {
                m: g.clone().mul_scalar(1.0 - b1),
                v: g.square().mul_scalar(1.0 - b2),
            },
        };
        let m_hat = moments.m.clone().div_scalar(self.correction_1);
        let v_hat = moments.v.clone().div_scalar(self.correction_2);
        let decay = if opt.no_decay.contains(&id) {
            0.0
        } else {
            opt.weight_decay
        };
        let p = p.mul_scalar(1.0 - self.lr * decay)
            - (m_hat / v_hat.sqrt().add_scalar(opt.epsilon)).mul_scalar(self.lr);
        opt.moments.insert(id, moments);
        let mut updated = Tensor::from_inner(p.reshape(dims));
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}
