//! `cait inspect --json`: the same keys for a checkpoint and a pack, the timm architecture named the
//! same way by both, label names, and the quantizer's held-out figures as numbers.

use std::path::Path;

mod common;
use common::{json, ok, p};

#[test]
fn checkpoint_and_pack_report_the_same_keys() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fashion-cait");
    let ckpt = json(&ok(&["inspect", "--json", p(&models)]));
    let pack = json(&ok(&[
        "inspect",
        "--json",
        p(&models.join("fashion-cait-int8.cait")),
    ]));
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&ckpt), keys(&pack));
    assert_eq!(
        (&ckpt["kind"], &pack["kind"]),
        (&"checkpoint".into(), &"pack".into())
    );
    // config.json names the timm factory; both say so.
    for v in [&ckpt, &pack] {
        assert_eq!(v["timm_architecture"], "cait_xxs24_224", "{v}");
        let names = v["label_names"].as_array().unwrap();
        assert_eq!(names.len(), 10);
        assert_eq!(names[0], "T-shirt/top");
        assert_eq!(v["labels"], 10);
    }
    assert_eq!(ckpt["format"], "safetensors");
    assert_eq!(pack["format"], "cait");
    assert_eq!(
        pack["file_bytes"],
        std::fs::metadata(models.join("fashion-cait-int8.cait"))
            .unwrap()
            .len()
    );
    assert!(ckpt["quantization"].is_null());
    let q = &pack["quantization"];
    assert_eq!(q["weights"], "int8");
    assert_eq!(q["f16_blocks"], 0);
    let sqnr = q["held_out_logit_sqnr_db"].as_f64().unwrap();
    let agree = q["held_out_top1_agreement"].as_f64().unwrap();
    assert!((20.0..80.0).contains(&sqnr), "{q}");
    assert!((0.9..=1.0).contains(&agree), "{q}");
    assert_eq!(q["held_out_images"], 1024);
    // The documents state the bundled pack's size and workspace as inspect reports them.
    let docs = ["README.md", "models/fashion-cait/README.md"];
    for (what, key) in [
        ("int8 pack bytes", "pack_bytes"),
        ("int8 workspace bytes", "workspace_bytes"),
    ] {
        let value = pack[key].as_u64().unwrap();
        cait_tests::docs::assert_documented(&docs, &cait_tests::docs::thousands(value), what);
    }
    // The numbers are the ones the text record states.
    let text = pack["metadata"]["quant.held_out"].as_str().unwrap();
    assert!(text.contains(&format!("logit SQNR {sqnr:.2} dB")), "{text}");
}
