//! The board-independent application: validate the linked pack, classify every linked image, and
//! report logits and instruction counts. Generic over `embedded-hal` (a status LED, a delay) and a
//! [`Clock`], so a real board only supplies those.

use core::fmt::{self, Write};

use cait_core::Model;
use cait_pack::{ModelConfig, Pack, PackError, Precision};
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;

use crate::measure::{Clock, Stopwatch};
use cait_core::top_k;

/// Classes shown per image.
pub const TOP_K: usize = 5;

/// Why the application stopped.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AppError {
    /// The pack in flash failed validation (e.g. its checksum).
    Pack(PackError),
    /// The pack's header differs from the one the firmware was built for.
    ConfigMismatch,
    /// The engine refused the pack or the buffers.
    Model(cait_core::Error),
    /// The logits buffer does not have the model's number of logits.
    LogitsBuffer {
        /// Logits the model produces.
        expected: usize,
        /// Length of the buffer.
        got: usize,
    },
    /// The host stopped accepting output.
    Output,
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Pack(e) => write!(f, "pack refused: {e}"),
            AppError::ConfigMismatch => f.write_str(
                "pack refused: its header differs from the one the firmware was built for",
            ),
            AppError::Model(e) => write!(f, "model refused: {e}"),
            AppError::LogitsBuffer { expected, got } => {
                write!(f, "logits buffer of {got} values, the model has {expected}")
            }
            AppError::Output => f.write_str("semihosting output failed"),
        }
    }
}

impl From<fmt::Error> for AppError {
    fn from(_: fmt::Error) -> Self {
        AppError::Output
    }
}

/// What the build fixed: the pack, its expected header, the images and the workspace.
pub struct Linked<'a> {
    /// The pack's bytes as linked (validated here, at start-up).
    pub pack: &'a [u8],
    /// The config `build.rs` read from the pack's header (sizes the workspace).
    pub config: ModelConfig,
    /// The precision `build.rs` read.
    pub precision: Precision,
    /// Whether the pack lies in PSRAM.
    pub in_psram: bool,
    /// The images.
    pub images: Images<'a>,
    /// The workspace: `cait_core::workspace_bytes` bytes, `frame_workspace_bytes` with frames.
    pub workspace: &'a mut [u8],
    /// Room for one image's logits (`num_classes`, or `embed_dim` without a head).
    pub logits: &'a mut [f32],
}

/// The linked images.
#[derive(Clone, Copy)]
pub enum Images<'a> {
    /// `[N, C, H, W]` f32, normalised.
    Normalized(&'a [f32]),
    /// `[N, H, W, C]` 8-bit camera frames, each copied into the frame buffer inside the
    /// workspace and classified there (`Model::forward_frame`), as a camera's DMA would fill it.
    Frames(&'a [u8]),
}

/// Classifies every image of `linked`, lighting `led` during each inference, and writes the
/// `CAIT …` result lines (see [`crate::report`]) to `out`.
pub fn run<L, D, C, W>(
    linked: Linked<'_>,
    led: &mut L,
    delay: &mut D,
    clock: &mut C,
    out: &mut W,
) -> Result<(), AppError>
where
    L: OutputPin,
    D: DelayNs,
    C: Clock,
    W: Write,
{
    // Pack::parse checks the CRC of the whole pack: a corrupted flash image stops here.
    let pack = Pack::parse(linked.pack).map_err(AppError::Pack)?;
    if *pack.config() != linked.config || pack.precision() != linked.precision {
        return Err(AppError::ConfigMismatch);
    }
    let model = Model::from_pack(&pack).map_err(AppError::Model)?;
    if model.logits_len() != linked.logits.len() {
        return Err(AppError::LogitsBuffer {
            expected: model.logits_len(),
            got: linked.logits.len(),
        });
    }
    let precision = linked.precision.as_str();
    let workspace_bytes = match linked.images {
        Images::Normalized(_) => model.workspace_bytes(),
        Images::Frames(_) => model.frame_workspace_bytes(),
    };
    writeln!(
        out,
        "CAIT pack {} {precision} {} workspace {workspace_bytes}",
        linked.pack.len(),
        if linked.in_psram { "psram" } else { "flash" },
    )?;
    let stopwatch = Stopwatch::calibrate(clock);
    writeln!(
        out,
        "CAIT clock {} overhead {}",
        C::HZ,
        stopwatch.overhead()
    )?;

    let (logits, workspace, len) = (linked.logits, linked.workspace, model.input_len());
    let count = match linked.images {
        Images::Normalized(images) => images.len() / len,
        Images::Frames(frames) => frames.len() / len,
    };
    for i in 0..count {
        let _ = led.set_high();
        let (result, ticks) = match linked.images {
            Images::Normalized(images) => {
                let image = &images[i * len..(i + 1) * len];
                stopwatch.time(clock, || model.forward(image, workspace, logits))
            }
            Images::Frames(frames) => {
                // The camera's part (a DMA on a real board), outside the timed inference.
                let at = model.frame_offset();
                if let Some(frame) = workspace.get_mut(at..at + len) {
                    frame.copy_from_slice(&frames[i * len..(i + 1) * len]);
                }
                let outputs = cait_core::Outputs::logits(logits);
                stopwatch.time(clock, || model.forward_frame(workspace, outputs))
            }
        };
        let _ = led.set_low();
        result.map_err(AppError::Model)?;
        write!(out, "CAIT image {i} ticks {ticks} top ")?;
        for (j, (class, _)) in top_k::<TOP_K>(logits).iter().enumerate() {
            write!(out, "{}{class}", if j == 0 { "" } else { "," })?;
        }
        out.write_str(" logits")?;
        for v in logits.iter() {
            write!(out, " {:08x}", v.to_bits())?;
        }
        out.write_str("\n")?;
        // A visible blink between images on a real board.
        delay.delay_us(100);
    }
    Ok(())
}
