//! timm's hub `config.json` (`HubConfig::parse`) on arbitrary text: a config, `None` for another
//! tool's file, or an error naming the field; never a panic.
#![no_main]

use cait_import::HubConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `load_checkpoint` reads the file as UTF-8 text first.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(c)) = HubConfig::parse(text) {
        std::hint::black_box(&c);
    }
});
