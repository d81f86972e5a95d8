#!/usr/bin/env bash
# Runs every cargo-fuzz target (crates/cait-pack/fuzz, crates/cait-import/fuzz and
# crates/cait-data/fuzz), one at a time, for SECONDS_PER_TARGET seconds each (default 60), and
# prints per target the executions of this run, executions per second, the total over every run
# recorded in the ledger, and the crashes (0, or the artifact files libFuzzer wrote). Exits
# non-zero if any target crashed or failed.
#
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Each target starts from its committed seeds (cait-import and cait-data: fuzz/corpus/<target>;
# cait-pack: seeds made by its fuzz_seeds example) and grows a scratch corpus under
# target/fuzz-corpus/, kept between runs, so later runs start where earlier ones stopped. Logs and the ledger
# (runs.tsv: date, target, seconds, executions, crashes, sanitizer) are there too.
#
# Environment: FUZZ_WORK (scratch folder), FUZZ_SANITIZER (address, the default, or none),
# FUZZ_ARGS (more libFuzzer flags). Needs the nightly toolchain; installs cargo-fuzz if missing.
set -euo pipefail

secs=${1:-60}
shift || true
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_WORK:-$root/target/fuzz-corpus}
sanitizer=${FUZZ_SANITIZER:-address}
mkdir -p "$work"
ledger=$work/runs.tsv

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz
fi

# crate folder (relative to the root) and its targets, in the order they run.
crates=("crates/cait-pack" "crates/cait-import" "crates/cait-data")
declare -A targets=(
    ["crates/cait-pack"]="pack_parse model_from_pack"
    ["crates/cait-import"]="pickle hub_config checkpoint"
    ["crates/cait-data"]="npy idx labels image"
)

wanted() {
    [ ${#only[@]} -eq 0 ] && return 0
    local t
    for t in "${only[@]}"; do [ "$t" = "$1" ] && return 0; done
    return 1
}
only=("$@")

# cait-pack's seeds are generated, not committed.
pack_seeds=$work/seeds/cait-pack
if wanted pack_parse || wanted model_from_pack; then
    if [ -z "$(ls -A "$pack_seeds" 2>/dev/null)" ]; then
        mkdir -p "$pack_seeds"
        (cd "$root" && cargo run --quiet -p cait-pack --features std --example fuzz_seeds -- "$pack_seeds")
    fi
fi

failed=0
summary=()
for crate in "${crates[@]}"; do
    for t in ${targets[$crate]}; do
        wanted "$t" || continue
        name=$(basename "$crate")
        if [ "$crate" = "crates/cait-pack" ]; then
            seeds=$pack_seeds
        else
            seeds=$root/$crate/fuzz/corpus/$t
        fi
        scratch=$work/$name/$t
        log=$work/$name-$t.log
        artifacts=$root/$crate/fuzz/artifacts/$t
        mkdir -p "$scratch"
        before=$( (find "$artifacts" -type f 2>/dev/null || true) | wc -l)
        echo "== $name/$t: ${secs}s (log: $log)" >&2
        # Build first, so that the time limit is all fuzzing.
        if ! (cd "$root/$crate" && cargo +nightly fuzz build -s "$sanitizer" "$t") >"$log" 2>&1; then
            summary+=("$(printf '%-28s build failed, see %s' "$name/$t" "$log")")
            failed=1
            continue
        fi
        set +e
        # shellcheck disable=SC2086
        (cd "$root/$crate" && cargo +nightly fuzz run -s "$sanitizer" "$t" "$scratch" "$seeds" -- \
            -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
            ${FUZZ_ARGS:-}) >>"$log" 2>&1
        rc=$?
        set -e
        execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
        [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
        [ -n "$execs" ] || execs=0
        # libFuzzer's own count of the seconds it ran; after a crash, from its average speed.
        ran=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1 | awk '{print $5}' || true)
        if [ -z "$ran" ]; then
            speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
            [ -n "$speed" ] && [ "$speed" -gt 0 ] && ran=$(((execs + speed - 1) / speed))
        fi
        [ -n "$ran" ] && [ "$ran" -gt 0 ] || ran=$secs
        crashes=$(grep -o 'Test unit written to [^ ]*' "$log" | sed 's/Test unit written to //' \
            | grep -v '/slow-unit-' || true)
        if [ "$rc" -ne 0 ] && [ -z "$crashes" ]; then
            crashes="exit status $rc, see $log"
        fi
        ncrash=0
        [ -n "$crashes" ] && ncrash=$(printf '%s\n' "$crashes" | wc -l)
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$name/$t" "$ran" "$execs" "$ncrash" \
            "$sanitizer" >>"$ledger"
        total=$(awk -F'\t' -v t="$name/$t" '$2 == t { s += $4 } END { printf "%d", s }' "$ledger")
        line=$(printf '%-26s %11s execs in %5ss  %7s/s  total %12s  crashes %s' "$name/$t" \
            "$execs" "$ran" "$((execs / ran))" "$total" "$ncrash")
        if [ "$ncrash" -ne 0 ]; then
            failed=1
            line+=$'\n'$(printf '%s\n' "$crashes" | sed 's/^/    /')
        fi
        after=$( (find "$artifacts" -type f 2>/dev/null || true) | wc -l)
        [ "$after" -gt "$before" ] && [ "$ncrash" -eq 0 ] &&
            line+=$'\n'"    (slow units written to $artifacts)"
        summary+=("$line")
        echo "$line" >&2
    done
done

echo
printf '%s\n' "${summary[@]}"
exit "$failed"
