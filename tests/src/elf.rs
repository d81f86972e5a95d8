//! Sizes of an ARM firmware ELF, read with `arm-none-eabi-size` (tools/test.sh installs it).

use std::path::Path;
use std::process::Command;

/// Bytes the ELF puts in flash: its loaded sections below RAM (the vector table, code, read-only
/// data, unwind index) and the initial values of `.data`. Debug sections sit at address 0 with
/// nothing loaded and do not count.
pub fn flash_bytes(elf: &Path) -> u64 {
    let out = Command::new("arm-none-eabi-size")
        .args(["-A", "-d"])
        .arg(elf)
        .output()
        .expect("arm-none-eabi-size (apt-get install -y gcc-arm-none-eabi)");
    assert!(out.status.success(), "arm-none-eabi-size {}", elf.display());
    let mut flash = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [name, size, addr] = cols[..] else {
            continue;
        };
        let (Ok(size), Ok(addr)) = (size.parse::<u64>(), addr.parse::<u64>()) else {
            continue;
        };
        let loaded = matches!(
            name,
            ".vector_table" | ".text" | ".rodata" | ".ARM.exidx" | ".data"
        );
        if loaded && (addr < 0x2000_0000 || name == ".data") {
            flash += size;
        }
    }
    flash
}
