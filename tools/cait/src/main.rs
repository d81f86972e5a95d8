//! `cait`: inspect, quantize and run CaiT models on the host.
//!
//! A thin command-line layer over `cait-import` (checkpoint import), `cait-data` (datasets and
//! preprocessing), `cait-quant` (quantization), `cait-pack` (the `.cait` format) and `cait-core`
//! (the engine). Errors print one line and exit with status 1.

mod attention;
mod bench;
mod classify;
mod eval;
mod export;
mod firmware_build;
mod input;
mod inspect;
mod model;
mod output;
mod progress;
mod qemu;
mod quantize;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Run pretrained CaiT vision transformers from timm checkpoints or `.cait` weight packs.
#[derive(Parser)]
#[command(name = "cait", version, about, long_about = None)]
#[command(after_help = "Examples:\n  \
    cait inspect model.safetensors\n  \
    cait quantize model.safetensors --precision f32 -o model.cait\n  \
    cait classify --model model.cait cat.jpg --top-k 5\n  \
    cait eval --model model.cait --data /usr/share/datasets/fashion-mnist\n  \
    cait export model.cait --c-array -o model.h\n  \
    cait bench --model model.cait --json\n  \
    cait train --data /usr/share/datasets/fashion-mnist -o out/fashion-cait --epochs 12")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a checkpoint or pack: architecture, parameters, precision, sizes, workspace bytes.
    Inspect(inspect::Args),
    /// Turn a timm checkpoint into a `.cait` weight pack.
    Quantize(quantize::Args),
    /// Classify images (PNG/JPEG) or a normalized `.npy` batch [N, C, H, W].
    Classify(classify::Args),
    /// Where the class token looks: per-head class-attention maps and a saliency overlay (PNG +
    /// .npy), and for a quantized pack the cosine of its maps to a float model's.
    Attention(attention::Args),
    /// Top-1/top-5 accuracy on a labelled dataset (Fashion-MNIST IDX, .npy + labels, image folder).
    Eval(eval::Args),
    /// Build the Cortex-M firmware with a pack and images, run it in qemu-system-arm, report the
    /// device's logits, instructions, RAM and flash.
    Qemu(qemu::Args),
    /// Time one image on this machine: median and spread over runs, the kernels selected.
    Bench(bench::Args),
    /// Write a pack as a C array for a C firmware (`--c-array -o model.h`), with its length,
    /// workspace bytes and input shape as macros.
    Export(export::Args),
    /// Train a CaiT (or fine-tune a timm checkpoint) on burn, CPU or GPU, and write a timm hub
    /// folder (model.safetensors + config.json).
    Train(Box<train::Args>),
}

/// Where a model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The no_std cait-core engine (the same code that runs on the microcontroller).
    Core,
    /// The burn float reference on the CPU.
    BurnCpu,
    /// The burn float reference on a GPU through wgpu.
    BurnWgpu,
}

impl Backend {
    /// The name as typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Core => "core",
            Backend::BurnCpu => "burn-cpu",
            Backend::BurnWgpu => "burn-wgpu",
        }
    }
}

/// Options shared by every command that loads a model.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// A `.cait` pack, or a timm checkpoint (`model.safetensors`, a `.pth`, or a hub folder with
    /// `config.json`).
    #[arg(long, short = 'm', value_name = "MODEL")]
    pub model: PathBuf,
    /// Head pooling of a checkpoint whose pooling cannot be read from a `config.json`
    /// (shapes alone cannot tell token from avg).
    #[arg(long, value_name = "POOL", value_parser = ["token", "avg"])]
    pub global_pool: Option<String>,
    #[command(flatten)]
    pub preprocess: model::PreprocessArgs,
}

/// Rust ignores SIGPIPE, so writing to a closed pipe (`cait classify … | head -1`) is an error that
/// `println!` turns into a panic. Restore the default action: the process ends quietly when its
/// reader goes away, as `cat` or `grep` do.
#[cfg(unix)]
fn end_quietly_on_broken_pipe() {
    // SAFETY: called first thing in `main`, before any thread exists; SIG_DFL is a valid action
    // for SIGPIPE and no Rust code relies on SIGPIPE being ignored.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn end_quietly_on_broken_pipe() {}

/// Mesa's Vulkan device-select layer looks for the display's GPU by connecting to Wayland, and on a
/// machine without a session (no `XDG_RUNTIME_DIR`: CI, ssh, containers) prints `error:
/// XDG_RUNTIME_DIR is invalid or not set in the environment.` at every adapter probe of
/// `--backend burn-wgpu`. Without a session there is no display to select by, so the layer is
/// switched off (`NODEVICE_SELECT=1`) unless the user set it either way.
fn quiet_headless_vulkan() {
    let session = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| PathBuf::from(d).is_dir());
    if !session && std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: called first thing in `main`, before any thread exists that could read the
        // environment concurrently.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

/// An image decoder's panic on a corrupt file is caught by cait-data and reported as that file's
/// error; the default hook would still print the panic and a backtrace hint first.
fn quiet_decoder_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !cait_data::decoding() {
            default(info)
        }
    }));
}

/// The error as one line: the context chain joined, outermost first, one clause per cause. Many
/// errors display their source as part of their own message (`path: os error`) and also return it
/// as `source()`; a cause whose text the line already holds is not repeated.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn main() -> ExitCode {
    end_quietly_on_broken_pipe();
    quiet_headless_vulkan();
    quiet_decoder_panics();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Classify(args) => classify::run(args),
        Command::Attention(args) => attention::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Qemu(args) => qemu::run(args),
        Command::Export(args) => export::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Train(args) => train::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let wrapped = anyhow::Error::new(std::io::Error::other(format!("/data: {io}")))
            .context("loading /data");
        assert_eq!(
            one_line(&wrapped),
            "loading /data: /data: No such file or directory"
        );
        // A source that repeats its wrapper's text.
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "/x: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Outer(std::io::Error::other("os error 2")));
        assert_eq!(one_line(&e), "/x: os error 2");
    }
}
