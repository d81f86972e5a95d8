//! int8 on the fixture family (`cait_tests::family`), judged on images the quantizer never saw.
//!
//! ```sh
//! cargo run --release -p cait-quant --example int8_family -- [--img 64] [--calib 128] [--test 64] \
//!     [--member NAME]... [--method minmax|percentile|mse] [--smoothing off|ALPHA] [--json] \
//!     [--min-sqnr DB] [--class-path static|dynamic] [--activation-scales static|dynamic] \
//!     [--qk int8|f32] [--av int8|f32] \
//!     [--write DIR]
//! ```
//! For each member: `quantize_int8` with every choice automatic (or as given) on `--calib`
//! images of the calibration stream, then the int8 pack and the f32 pack on `--test` images of a
//! stream the quantizer never saw: worst-image and mean logit cosine, logit SQNR and top-1
//! agreement against the float model — beside the SQNR the quantizer reported on its own held-out
//! part, so the two can be compared. `--write DIR` also writes each member as a timm hub folder
//! with `calib.npy` and `test.npy` beside it, for `tools/compare_int8_ort.py`.

use std::path::PathBuf;
use std::time::Instant;

use cait_data::progress::Silent;
use cait_data::{Dataset, npy};
use cait_import::{ImportOptions, load_checkpoint, write_pack_f32};
use cait_quant::{
    ActivationScales, AttnMode, Budget, CalibMethod, ClassPath, Int8Options, Smoothing,
    quantize_int8,
};
use cait_tests::family::{self, Member};
use cait_tests::logits::{compare, run_pack};

struct Args {
    img: usize,
    calib: usize,
    test: usize,
    members: Vec<String>,
    method: Option<CalibMethod>,
    smoothing: Option<Smoothing>,
    min_sqnr: Option<f64>,
    class_path: ClassPath,
    activation_scales: Option<ActivationScales>,
    qk: Option<AttnMode>,
    av: Option<AttnMode>,
    json: bool,
    write: Option<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        img: 64,
        calib: 128,
        test: 64,
        members: Vec::new(),
        method: None,
        smoothing: None,
        min_sqnr: None,
        class_path: ClassPath::default(),
        activation_scales: None,
        qk: None,
        av: None,
        json: false,
        write: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--img" => a.img = number(value()?)?,
            "--calib" => a.calib = number(value()?)?,
            "--test" => a.test = number(value()?)?,
            "--member" => a.members.push(value()?),
            "--json" => a.json = true,
            "--class-path" => {
                a.class_path = match value()?.as_str() {
                    "static" => ClassPath::Static,
                    "dynamic" => ClassPath::Dynamic,
                    v => return Err(format!("--class-path {v}: static or dynamic")),
                }
            }
            "--activation-scales" => {
                a.activation_scales = match value()?.as_str() {
                    "static" => Some(ActivationScales::Static),
                    "dynamic" => Some(ActivationScales::Dynamic),
                    v => return Err(format!("--activation-scales {v}: static or dynamic")),
                }
            }
            "--min-sqnr" => {
                let v = value()?;
                a.min_sqnr = Some(v.parse().map_err(|_| format!("--min-sqnr {v}"))?);
            }
            "--write" => a.write = Some(PathBuf::from(value()?)),
            "--method" => {
                let v = value()?;
                a.method = Some(
                    *CalibMethod::ALL
                        .iter()
                        .find(|m| m.as_str() == v)
                        .ok_or(format!("--method {v}"))?,
                )
            }
            "--smoothing" => {
                let v = value()?;
                a.smoothing = Some(match v.as_str() {
                    "off" => Smoothing::Off,
                    x => Smoothing::Alpha(x.parse().map_err(|_| format!("--smoothing {x}"))?),
                })
            }
            "--qk" | "--av" => {
                let mode = match value()?.as_str() {
                    "int8" => AttnMode::Int8,
                    "f32" => AttnMode::F32,
                    v => return Err(format!("{flag} {v}: int8 or f32")),
                };
                if flag == "--qk" {
                    a.qk = Some(mode);
                } else {
                    a.av = Some(mode);
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn dataset(m: &Member, stream: &str, n: usize) -> Dataset {
    let s = &m.spec;
    Dataset {
        images: m.images(stream, n),
        labels: None,
        n,
        sample_shape: [s.in_chans, s.img_size, s.img_size],
        class_names: None,
    }
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("int8_family: {e}");
            std::process::exit(2);
        }
    };
    let all = family::members(args.img);
    let chosen: Vec<&Member> = if args.members.is_empty() {
        all.iter().collect()
    } else {
        args.members
            .iter()
            .map(|n| {
                all.iter().find(|m| &m.name == n).unwrap_or_else(|| {
                    eprintln!("int8_family: no member {n}");
                    std::process::exit(2)
                })
            })
            .collect()
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut rows = Vec::new();
    if !args.json {
        println!(
            "{:<24} {:>9} {:>9} {:>8} {:>7} {:>10} {:>6}  choices",
            "member", "worst cos", "mean cos", "SQNR dB", "top-1", "report dB", "time s"
        );
    }
    for m in chosen {
        let dir = match &args.write {
            Some(root) => root.join(&m.name),
            None => tmp.path().join(&m.name),
        };
        m.write_hub_dir(&dir).expect("writing the checkpoint");
        let ckpt = load_checkpoint(&dir, &ImportOptions::default()).expect("checkpoint");
        let calib = dataset(m, "calibration", args.calib);
        let test = dataset(m, "test", args.test);
        if args.write.is_some() {
            let shape = |n| {
                [
                    n,
                    calib.sample_shape[0],
                    calib.sample_shape[1],
                    calib.sample_shape[2],
                ]
            };
            npy::write_f32(dir.join("calib.npy"), &shape(calib.n), &calib.images).expect("npy");
            npy::write_f32(dir.join("test.npy"), &shape(test.n), &test.images).expect("npy");
        }
        let opts = Int8Options {
            method: args.method,
            smoothing: args.smoothing,
            budget: args.min_sqnr.map(Budget::MinSqnr),
            class_path: args.class_path,
            activation_scales: args.activation_scales,
            qk: args.qk,
            av: args.av,
            ..Int8Options::default()
        };
        let t = Instant::now();
        let q = quantize_int8(&ckpt, &calib, &opts, &Silent).expect("quantize");
        let secs = t.elapsed().as_secs_f64();
        let float = run_pack(&write_pack_f32(&ckpt).expect("f32 pack"), &test.images);
        let a = compare(&float, &run_pack(&q.bytes, &test.images));
        let (worst, mean, sqnr, agree) = (a.worst_cosine, a.mean_cosine, a.sqnr_db, a.top1);
        let reported = q.report.logit_sqnr_db.unwrap_or(f64::NAN);
        let mut choices: Vec<String> = q.report.choices.iter().map(|c| c.chosen.clone()).collect();
        if let Some(mixed) = &q.report.mixed {
            choices.push(format!("f16: [{}]", mixed.kept.join(" ")));
        }
        if args.json {
            rows.push(serde_json::json!({
                "member": m.name, "worst_cosine": worst, "mean_cosine": mean,
                "logit_sqnr_db": sqnr, "top1_agreement": agree, "test_images": test.n,
                "reported_sqnr_db": reported, "reported_images": q.report.images,
                "choices": choices, "seconds": secs,
            }));
        } else {
            println!(
                "{:<24} {worst:>9.5} {mean:>9.5} {sqnr:>8.2} {:>6.1}% {reported:>10.2} {secs:>6.1}  {}",
                m.name,
                100.0 * agree,
                choices.join(", ")
            );
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "img": args.img, "calib": args.calib, "test": args.test, "rows": rows })
        );
    } else {
        println!(
            "({} calibration images split fit/select/report by the quantizer; {} test images from a stream it never saw; report dB = its own held-out figure)",
            args.calib, args.test
        );
    }
}
