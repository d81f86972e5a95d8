#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the suite needs, then runs it.
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the suite needs: QEMU for the firmware tests, Mesa's software Vulkan (lavapipe)
# for the burn-wgpu tests, Fashion-MNIST for the bundled model's accuracy suite, the Arm GCC
# with newlib (and make) for the C example (firmware/c-example), and QEMU user mode with the
# AArch64 cross linker and C library for the AArch64 Linux tests.
APT_PACKAGES=(qemu-system-arm mesa-vulkan-drivers dataset-fashion-mnist gcc-arm-none-eabi libnewlib-arm-none-eabi make
  qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
if ((${#APT_PACKAGES[@]})); then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
      echo "tools/test.sh: please install: ${missing[*]} (apt-get install -y ${missing[*]})" >&2
      exit 1
    fi
  fi
fi

# The toolchain and its targets (thumbv7em, aarch64 Linux, the FPU-less thumbv7m/thumbv6m and
# RV32IMC, the Cortex-M55's thumbv8m.main) come from rust-toolchain.toml.
rustup show active-toolchain >/dev/null
rustup target add thumbv7em-none-eabihf aarch64-unknown-linux-gnu thumbv7m-none-eabi \
  thumbv6m-none-eabi riscv32imc-unknown-none-elf thumbv8m.main-none-eabihf >/dev/null

echo "== no_std crates build for Cortex-M (thumbv7em-none-eabihf)"
cargo build -q -p cait-pack -p cait-core --target thumbv7em-none-eabihf
cargo build -q -p cait-core --target thumbv7em-none-eabihf --features arm-dsp
cargo rustc -q -p cait-capi --lib --crate-type staticlib --target thumbv7em-none-eabihf --features arm-dsp

echo "== cait-core builds for cores without an FPU: Cortex-M3 (thumbv7m), M0+ (thumbv6m), RV32IMC"
for target in thumbv7m-none-eabi thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
  cargo build -q -p cait-core --target "$target"
done

echo "== each engine alone, and none (cait-core's cargo features float and int8; firmware links only one);"
echo "   each kind of int8 activation scales alone (int8-static, int8-dynamic) beside the float engine"
# A type check for Cortex-M: the firmware tests (tools/cait/tests/qemu*.rs) build and run each engine
# alone on the device for real.
for engine in float int8 "" "float int8-static" "float int8-dynamic"; do
  cargo check -q -p cait-core --no-default-features --features "$engine" --target thumbv7em-none-eabihf
  cargo test -q -p cait-core --no-default-features --features "$engine" --lib engine_left_out
done

echo "== cait-core's tests on AArch64 Linux, under qemu-aarch64 (.cargo/config.toml): with SDOT, and without"
cargo test -q -p cait-core --features std --target aarch64-unknown-linux-gnu --lib
QEMU_CPU=cortex-a53 cargo test -q -p cait-core --features std --target aarch64-unknown-linux-gnu --lib

echo "== tests"
cargo test -q --workspace

echo "== doc tests and lints"
cargo clippy -q --workspace --all-targets -- -D warnings
cargo fmt --all -- --check
(cd firmware && cargo clippy -q --release --bins -- -D warnings && cargo fmt -- --check)
(cd firmware && cargo clippy -q --release --bins --target thumbv8m.main-none-eabihf \
  --no-default-features --features mps3-an547,int8 -- -D warnings)
echo "tools/test.sh: all passed"
