//! `cait export`: a pack in the form a C firmware links — a 64-byte aligned `const uint8_t[]` with
//! its length, the workspace it needs and its input shape as macros (what TensorFlow Lite Micro
//! users get from `xxd -i`, aligned and with the metadata).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cait_pack::Pack;

use crate::model::AlignedBytes;
use crate::output::{check_file, group};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    cait export model.cait --c-array -o model.h\n  \
    cait export model.cait --c-array --name model -o model.h --c-source model.c\n\n\
    With NAME `model` the header defines MODEL_LEN, MODEL_WORKSPACE_BYTES,\n\
    MODEL_FRAME_WORKSPACE_BYTES, MODEL_INPUT_CHANNELS,\n\
    MODEL_INPUT_HEIGHT, MODEL_INPUT_WIDTH, MODEL_INPUT_LEN, MODEL_LOGITS_LEN and MODEL_PRECISION,\n\
    and the array `model` (in the header, `static`; with --c-source, in that file and declared\n\
    `extern` in the header). Give it to cait_session_init (crates/cait-capi/include/cait.h).")]
pub struct Args {
    /// The `.cait` pack.
    #[arg(value_name = "PACK")]
    pack: PathBuf,
    /// Write the pack as a C array (the only export format).
    #[arg(long)]
    c_array: bool,
    /// The header to write.
    #[arg(short, long, value_name = "FILE.h")]
    output: PathBuf,
    /// Also write the array's definition to this C file; the header then only declares it (for a
    /// pack included from more than one file, or kept out of headers).
    #[arg(long, value_name = "FILE.c")]
    c_source: Option<PathBuf>,
    /// The C name of the array; macros take it in upper case as their prefix. Default: the pack's
    /// file name, with every character that is not a letter, digit or `_` made `_`.
    #[arg(long)]
    name: Option<String>,
}

/// What the header states besides the bytes.
struct Facts {
    name: String,
    file: String,
    precision: &'static str,
    len: usize,
    workspace: usize,
    frame_workspace: usize,
    chw: [usize; 3],
    logits: usize,
}

pub fn run(args: Args) -> Result<()> {
    if !args.c_array {
        bail!("say which form to export: --c-array (the only one so far)");
    }
    check_file(&args.output, "-o")?;
    if let Some(c) = &args.c_source {
        check_file(c, "--c-source")?;
    }
    let name = match &args.name {
        Some(n) => {
            if !is_c_identifier(n) {
                bail!(
                    "--name {n:?}: not a C identifier (letters, digits and `_`, not first a digit)"
                );
            }
            n.clone()
        }
        None => c_name(&args.pack),
    };
    let bytes = AlignedBytes::copy_from(
        &fs::read(&args.pack).with_context(|| format!("cannot read {}", args.pack.display()))?,
    );
    let pack = Pack::parse(bytes.bytes()).with_context(|| args.pack.display().to_string())?;
    // The engine's own check: a pack it cannot run is not exported, and the workspace is its figure.
    let model =
        cait_core::Model::from_pack(&pack).with_context(|| args.pack.display().to_string())?;
    let c = pack.config();
    let facts = Facts {
        file: args
            .pack
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
        name,
        precision: pack.precision().as_str(),
        len: bytes.bytes().len(),
        workspace: model.workspace_bytes(),
        frame_workspace: model.frame_workspace_bytes(),
        chw: [
            c.in_chans as usize,
            c.img_size[0] as usize,
            c.img_size[1] as usize,
        ],
        logits: model.logits_len(),
    };
    let header_name = args
        .output
        .file_name()
        .map_or_else(|| "model.h".into(), |f| f.to_string_lossy().into_owned());
    match &args.c_source {
        None => write(&args.output, &header(&facts, Some(bytes.bytes())))?,
        Some(c) => {
            write(&args.output, &header(&facts, None))?;
            write(c, &source(&facts, &header_name, bytes.bytes()))?;
        }
    }
    eprintln!(
        "wrote {}: {} pack of {} bytes as `{}`, workspace {} bytes",
        args.output.display(),
        facts.precision,
        group(facts.len as u64),
        facts.name,
        group(facts.workspace as u64)
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn is_c_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `models/fashion-cait-int8.cait` → `fashion_cait_int8`.
fn c_name(pack: &Path) -> String {
    let stem = pack
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let mut name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, '_');
    }
    name
}

/// The header: macros, and the array's definition (`bytes`) or its declaration.
fn header(f: &Facts, bytes: Option<&[u8]>) -> String {
    let up = f.name.to_ascii_uppercase();
    let name = &f.name;
    let mut h = String::new();
    let [ch, hh, ww] = f.chw;
    let _ = write!(
        h,
        "/* {name}: {file} ({precision} pack, {len} bytes) for cait.h, made by `cait export --c-array`.\n \
         * Check it and bind a session with\n \
         *   static uint8_t workspace[{up}_WORKSPACE_BYTES] __attribute__((aligned(16)));\n \
         *   cait_session_init(&session, {name}, {up}_LEN, workspace, sizeof workspace);\n \
         * Do not edit: re-export the pack instead. */\n\
         #ifndef {up}_H\n#define {up}_H\n\n#include <stdint.h>\n\n\
         /* Bytes of the pack. */\n#define {up}_LEN {len}u\n\
         /* Bytes of the workspace the engine needs (4-byte aligned, caller-owned). */\n\
         #define {up}_WORKSPACE_BYTES {workspace}u\n\
         /* Bytes of a workspace that also holds the camera frame (cait_frame, cait_run_frame). */\n\
         #define {up}_FRAME_WORKSPACE_BYTES {frame_workspace}u\n\
         /* One input image: channels, height, width, and their product (bytes of pixels, or floats). */\n\
         #define {up}_INPUT_CHANNELS {ch}u\n#define {up}_INPUT_HEIGHT {hh}u\n\
         #define {up}_INPUT_WIDTH {ww}u\n#define {up}_INPUT_LEN {input}u\n\
         /* Logits per image (the classes). */\n#define {up}_LOGITS_LEN {logits}u\n\
         /* The pack's weight precision. */\n#define {up}_PRECISION \"{precision}\"\n\n\
         /* The pack is read in place: it must start on a 64-byte boundary. */\n\
         #if defined(__GNUC__) || defined(__clang__)\n\
         #define {up}_ALIGNED __attribute__((aligned(64)))\n\
         #elif defined(_MSC_VER)\n#define {up}_ALIGNED __declspec(align(64))\n\
         #elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L\n\
         #define {up}_ALIGNED _Alignas(64)\n\
         #else\n#error \"align {name} on 64 bytes for this compiler and define {up}_ALIGNED\"\n#endif\n\n",
        file = f.file,
        precision = f.precision,
        len = f.len,
        workspace = f.workspace,
        frame_workspace = f.frame_workspace,
        input = ch * hh * ww,
        logits = f.logits,
    );
    match bytes {
        Some(bytes) => {
            let _ = writeln!(h, "static {up}_ALIGNED const uint8_t {name}[{up}_LEN] = {{");
            push_bytes(&mut h, bytes);
            h.push_str("};\n");
        }
        None => {
            let _ = write!(
                h,
                "#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\
                 extern const uint8_t {name}[{up}_LEN];\n\
                 #ifdef __cplusplus\n}}\n#endif\n"
            );
        }
    }
    let _ = writeln!(h, "\n#endif /* {up}_H */");
    h
}

/// The C file defining the array that `header_name` declares.
fn source(f: &Facts, header_name: &str, bytes: &[u8]) -> String {
    let up = f.name.to_ascii_uppercase();
    let mut c = format!(
        "/* {name}: {file}, made by `cait export --c-array --c-source`. Do not edit. */\n\
         #include \"{header_name}\"\n\n\
         {up}_ALIGNED const uint8_t {name}[{up}_LEN] = {{\n",
        name = f.name,
        file = f.file,
    );
    push_bytes(&mut c, bytes);
    c.push_str("};\n");
    c
}

/// The bytes as `0x..,` initialisers, 16 to a line.
fn push_bytes(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 6);
    for line in bytes.chunks(16) {
        out.push_str("   ");
        for b in line {
            let _ = write!(out, " 0x{b:02x},");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_c_identifiers() {
        assert_eq!(
            c_name(Path::new("m/fashion-cait-int8.cait")),
            "fashion_cait_int8"
        );
        assert_eq!(c_name(Path::new("8bit.cait")), "_8bit");
        assert!(is_c_identifier("model_2"));
        assert!(!is_c_identifier("2model"));
        assert!(!is_c_identifier("my-model"));
        assert!(!is_c_identifier(""));
    }

    #[test]
    fn bytes_are_sixteen_to_a_line() {
        let mut s = String::new();
        push_bytes(&mut s, &(0u8..18).collect::<Vec<_>>());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], "    0x10, 0x11,");
        assert_eq!(lines[0].matches("0x").count(), 16);
    }
}
