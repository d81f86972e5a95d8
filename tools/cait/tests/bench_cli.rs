//! `cait bench`: one JSON object with the latency figures in a sane order, the kernels named, and
//! usage errors for requests that time nothing. (No figure is compared with a threshold: timings
//! belong in reports, not in assertions.)

use std::path::{Path, PathBuf};

mod common;
use common::{assert_error, cait, json, ok, p};

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fashion-cait/fashion-cait-int8.cait")
}

fn bench_json(extra: &[&str]) -> serde_json::Value {
    let bundled = bundled();
    let mut args = vec!["bench", "--json", "--model", p(&bundled)];
    args.extend_from_slice(extra);
    json(&ok(&args))
}

#[test]
fn json_has_the_latency_figures_in_order() {
    let v = bench_json(&["--runs", "5", "--warmup", "1"]);
    let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("no {k} in {v}"));
    assert!(f("ms_min") > 0.0);
    assert!(f("ms_min") <= f("ms_per_image"));
    assert!(f("ms_per_image") <= f("ms_p90"));
    assert!(f("ms_p90") <= f("ms_max"));
    assert!(f("images_per_second") > 0.0);
    assert_eq!(v["runs"], 5);
    assert_eq!(v["threads"], 1);
    assert_eq!(v["precision"], "int8");
    assert_eq!(v["backend"], "core");
    assert!(
        v["kernels"].as_str().unwrap().starts_with("int8 matmul"),
        "{v}"
    );
}

#[test]
fn threads_each_run_their_own_session() {
    let v = bench_json(&["--runs", "3", "--warmup", "0", "--threads", "2"]);
    assert_eq!(v["threads"], 2);
    assert!(v["ms_per_image"].as_f64().unwrap() > 0.0);
}

#[test]
fn requests_that_time_nothing_are_refused() {
    for (args, expect) in [
        (&["--runs", "0"][..], "--runs 0"),
        (&["--threads", "0"][..], "--threads 0"),
        (&["--backend", "burn-cpu"][..], "checkpoint"),
    ] {
        let bundled = bundled();
        let mut all = vec!["bench", "--model", p(&bundled)];
        all.extend_from_slice(args);
        assert_error(&cait(&all), &[expect]);
    }
}
