//! A model bound to its workspace once: what firmware keeps for the life of the program.

use cait_pack::Pack;

use crate::workspace::as_aligned_bytes;
use crate::{Error, Input, Model, Outputs, top_k};

/// A pack checked once and bound to its workspace: the firmware's handle on the model.
///
/// [`Session::new`] does every check that can fail on the pack or the memory — the pack's
/// checksum over every byte, its header and config, every tensor the config implies (presence,
/// dtype, shape, alignment), the workspace's size and alignment — so that afterwards only the
/// input can be refused ([`Error::InputLength`], [`Error::LogitsLength`]).
///
/// ```
/// use cait_core::{Input, PixelLayout, Session, Workspace, workspace_bytes_for};
///
/// // The bundled Fashion-MNIST model: 28×28 gray in, 10 classes out.
/// cait_pack::include_pack!(PACK = "../../../models/fashion-cait/fashion-cait-int8.cait");
/// const BYTES: usize = workspace_bytes_for(PACK.bytes());
///
/// let mut workspace = Workspace::<BYTES>::new(); // in firmware: a `static`
/// let mut session = Session::new(PACK.bytes(), workspace.as_bytes_mut())?;
/// let frame = [0u8; 28 * 28]; // a camera frame at the model's size
/// let mut logits = [0f32; 10];
/// let (class, _logit) = session.classify(
///     Input::Pixels { data: &frame, layout: PixelLayout::Hwc },
///     &mut logits,
/// )?;
/// assert!(class < 10);
/// # Ok::<(), cait_core::Error>(())
/// ```
pub struct Session<'a> {
    model: Model<'a>,
    workspace: &'a mut [u8],
}

impl<'a> Session<'a> {
    /// Validates `pack` (see above) and binds `workspace`, which needs
    /// [`Model::workspace_bytes`] bytes at a 4-byte aligned address (a
    /// [`Workspace`](crate::Workspace) is 16-aligned).
    ///
    /// Errors: [`Error::Pack`] for a corrupted, truncated or foreign pack, the errors of
    /// [`Model::from_pack`], [`Error::WorkspaceTooSmall`] and [`Error::WorkspaceMisaligned`].
    pub fn new(pack: &'a [u8], workspace: &'a mut [u8]) -> Result<Session<'a>, Error> {
        let pack = Pack::parse(pack)?;
        let model = Model::from_pack(&pack)?;
        as_aligned_bytes(workspace, model.workspace_bytes())?;
        Ok(Session { model, workspace })
    }

    /// The model: its config, labels, preprocessing and sizes.
    pub fn model(&self) -> &Model<'a> {
        &self.model
    }

    /// Runs one input; `logits` has [`Model::logits_len`] values.
    pub fn run(&mut self, input: Input<'_>, logits: &mut [f32]) -> Result<(), Error> {
        self.run_with(input, Outputs::logits(logits))
    }

    /// [`run`](Self::run) with optional extra outputs (features, class attention): see
    /// [`Outputs`].
    pub fn run_with(&mut self, input: Input<'_>, outputs: Outputs<'_>) -> Result<(), Error> {
        self.model.forward_input(input, self.workspace, outputs)
    }

    /// [`run`](Self::run), then the top class and its logit (the earlier class on a tie).
    pub fn classify(
        &mut self,
        input: Input<'_>,
        logits: &mut [f32],
    ) -> Result<(usize, f32), Error> {
        self.run(input, logits)?;
        Ok(top_1(logits))
    }

    /// The frame buffer inside the workspace: [`Model::input_len`] bytes of 8-bit HWC pixels
    /// (interleaved, RGBRGB…) that [`classify_frame`](Self::classify_frame) reads in place — fill
    /// it from the camera, then classify, with no RAM for the frame beyond the workspace.
    ///
    /// Errors: [`Error::WorkspaceTooSmall`] when the bound workspace has fewer than
    /// [`Model::frame_workspace_bytes`] bytes ([`frame_workspace_bytes_for`](crate::frame_workspace_bytes_for)
    /// sizes it at compile time).
    pub fn frame_mut(&mut self) -> Result<&mut [u8], Error> {
        let (at, len) = (self.model.frame_offset(), self.model.input_len());
        let needed = self.model.frame_workspace_bytes();
        let got = self.workspace.len();
        match self.workspace.get_mut(at..at + len) {
            Some(frame) if got >= needed => Ok(frame),
            _ => Err(Error::WorkspaceTooSmall { needed, got }),
        }
    }

    /// Classifies the frame in [`frame_mut`](Self::frame_mut) ([`Model::forward_frame`]: the
    /// logits of the same pixels given as [`Input::Pixels`] in HWC, bit for bit), then returns
    /// the top class and its logit. The frame is overwritten: fill it again for the next image.
    pub fn classify_frame(&mut self, logits: &mut [f32]) -> Result<(usize, f32), Error> {
        self.run_frame_with(Outputs::logits(logits))?;
        Ok(top_1(logits))
    }

    /// [`classify_frame`](Self::classify_frame)'s run with optional extra outputs (features,
    /// class attention): see [`Outputs`].
    pub fn run_frame_with(&mut self, outputs: Outputs<'_>) -> Result<(), Error> {
        self.model.forward_frame(self.workspace, outputs)
    }
}

/// The top class and its logit (the earlier class on a tie). A model has at least one logit (the
/// config is validated), so the top-1 exists.
fn top_1(logits: &[f32]) -> (usize, f32) {
    top_k::<1>(logits).first().copied().unwrap_or((0, f32::NAN))
}

impl core::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("model", &self.model)
            .field("workspace_bytes", &self.workspace.len())
            .finish()
    }
}
