//! Run-time backend choice: burn 0.22 dispatches on the device, so one (non-generic) model type
//! runs on either.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use burn::tensor::Device;

use crate::Error;

/// Which burn backend runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// burn's pure-Rust CPU backend (`flex`), multi-threaded with rayon.
    Cpu,
    /// burn's wgpu backend: Vulkan/Metal/DX12 GPUs, or a software Vulkan such as Mesa's lavapipe.
    Wgpu,
}

impl BackendKind {
    /// The CLI's name: `burn-cpu` or `burn-wgpu`.
    pub const fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "burn-cpu",
            BackendKind::Wgpu => "burn-wgpu",
        }
    }

    /// The device, initialised once per process. For wgpu this fails (rather than panics)
    /// when no adapter exists, with a message saying how to get a software one.
    pub fn device(self) -> Result<Device, Error> {
        match self {
            BackendKind::Cpu => Ok(Device::flex()),
            BackendKind::Wgpu => {
                static WGPU: OnceLock<Result<Device, String>> = OnceLock::new();
                WGPU.get_or_init(|| {
                    Device::wgpu_options().init().map_err(|e| {
                        format!(
                            "{e}. No GPU or Vulkan driver was found; on Debian/Ubuntu a software \
                             Vulkan device (lavapipe) comes with `apt-get install -y mesa-vulkan-drivers`"
                        )
                    })
                })
                .clone()
                .map_err(|reason| Error::Backend {
                    backend: self,
                    reason,
                })
            }
        }
    }
}

/// The name of the hardware `device` runs on, as its driver reports it (for wgpu the adapter's
/// name, e.g. `NVIDIA H200` or `llvmpipe (LLVM 15.0.6, 256 bits)` for lavapipe); the CPU backend
/// reports its thread count.
pub fn device_name(device: &Device) -> String {
    match device.identity() {
        Some(identity) if !identity.name.is_empty() => identity.name,
        _ => format!(
            "CPU, {} threads",
            std::thread::available_parallelism().map_or(1, usize::from)
        ),
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = String;

    /// Accepts `burn-cpu`/`cpu`/`flex` and `burn-wgpu`/`wgpu`.
    fn from_str(s: &str) -> Result<BackendKind, String> {
        match s {
            "burn-cpu" | "cpu" | "flex" => Ok(BackendKind::Cpu),
            "burn-wgpu" | "wgpu" => Ok(BackendKind::Wgpu),
            other => Err(format!(
                "unknown burn backend `{other}` (burn-cpu, burn-wgpu)"
            )),
        }
    }
}
