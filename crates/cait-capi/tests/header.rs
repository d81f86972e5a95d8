//! `include/cait.h` is what cbindgen makes of `src/lib.rs` today (regenerate with
//! `CAIT_BLESS=1 cargo test -p cait-capi --test header`).

use std::path::Path;

#[test]
fn header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut generated);
    let path = dir.join("include/cait.h");
    if std::env::var_os("CAIT_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with CAIT_BLESS=1 cargo test -p cait-capi --test header",
        path.display()
    );
}
