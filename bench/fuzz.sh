#!/usr/bin/env bash
# Runs every cargo-fuzz target of hoist for a set time and records the result.
#
#   bash bench/fuzz.sh                 # every target, FUZZ_SECONDS (600) each
#   FUZZ_SECONDS=60 bash bench/fuzz.sh
#   FUZZ_TARGETS="oip_request mlflow_request" bash bench/fuzz.sh   # only these
#   FUZZ_PARALLEL=1 bash bench/fuzz.sh  # all targets at once (each still FUZZ_SECONDS)
#
# Fuzz crates: crates/gateway/fuzz and crates/server/fuzz (each its own cargo-fuzz
# crate; targets are discovered with `cargo +nightly fuzz list`). Each target starts
# from its committed seed corpus (<fuzz dir>/corpus/<target>); what the run finds goes
# to a scratch corpus under <fuzz dir>/target/ (set FUZZ_GROW_CORPUS=1 to add it to
# the committed corpus instead). Built with overflow checks and debug assertions (-a);
# a single allocation over FUZZ_MALLOC_LIMIT_MB (256) counts as a crash, so an input
# of a few KB that makes the parser reserve gigabytes is found like a panic.
#
# Writes bench/results/fuzz-<date>.txt (target, runs, seconds, crashes) and exits
# non-zero if any target crashed; crash inputs stay in <fuzz dir>/artifacts/<target>/.
# Needs the nightly toolchain (rustup) and installs cargo-fuzz if it is missing.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
FUZZ_MALLOC_LIMIT_MB=${FUZZ_MALLOC_LIMIT_MB:-256}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FUZZ_DIRS=("$ROOT/crates/gateway/fuzz" "$ROOT/crates/server/fuzz")

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is needed: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

mkdir -p "$ROOT/bench/results"
summary="$ROOT/bench/results/fuzz-$(date -u +%Y-%m-%d).txt"
{
    echo "# bench/fuzz.sh $(date -u +%Y-%m-%dT%H:%M:%SZ), FUZZ_SECONDS=$FUZZ_SECONDS, $(cargo +nightly --version)"
    printf '%-28s %14s %8s %8s\n' target runs seconds crashes
} >"$summary"

run_one() {
    local dir=$1 target=$2 crate
    crate=$(basename "$(dirname "$dir")")
    seeds="$dir/corpus/$target"
    mkdir -p "$seeds" "$dir/artifacts/$target"
    if [ "${FUZZ_GROW_CORPUS:-0}" = 1 ]; then
        corpora=("$seeds")
    else
        work="$dir/target/fuzz-corpus/$target"
        mkdir -p "$work"
        corpora=("$work" "$seeds")
    fi
    before=$(find "$dir/artifacts/$target" -type f | wc -l)
    log="$dir/target/fuzz-$target.log"
    mkdir -p "$(dirname "$log")"
    echo "fuzz.sh: $crate/$target for ${FUZZ_SECONDS}s (log: $log)" >&2
    start=$(date +%s)
    set +e
    (cd "$dir/.." && cargo +nightly fuzz run -a --fuzz-dir "$dir" "$target" "${corpora[@]}" -- \
        -max_total_time="$FUZZ_SECONDS" -malloc_limit_mb="$FUZZ_MALLOC_LIMIT_MB" \
        -print_final_stats=1) >"$log" 2>&1
    rc=$?
    set -e
    seconds=$(($(date +%s) - start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ -z "$runs" ]; then
        runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    fi
    after=$(find "$dir/artifacts/$target" -type f | wc -l)
    crashes=$((after - before))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # the run failed without an artifact (a build error, say)
        tail -20 "$log" >&2
    fi
    printf '%-28s %14s %8s %8s\n' "$crate/$target" "${runs:-?}" "$seconds" "$crashes" | tee -a "$summary"
    [ "$crashes" -eq 0 ]
}
failed=0
pids=()
for dir in "${FUZZ_DIRS[@]}"; do
    if [ ! -f "$dir/Cargo.toml" ]; then
        echo "fuzz.sh: no fuzz crate at $dir; skipped" >&2
        continue
    fi
    crate=$(basename "$(dirname "$dir")")
    targets=$(cd "$dir/.." && cargo +nightly fuzz list --fuzz-dir "$dir")
    for target in $targets; do
        if [ -n "${FUZZ_TARGETS:-}" ] && ! [[ " $FUZZ_TARGETS " == *" $target "* ]]; then
            continue
        fi
        if [ "${FUZZ_PARALLEL:-0}" = 1 ]; then
            run_one "$dir" "$target" &
            pids+=($!)
        else
            run_one "$dir" "$target" || failed=1
        fi
    done
done

for p in "${pids[@]}"; do wait "$p" || failed=1; done
echo "fuzz.sh: summary in $summary" >&2
exit "$failed"
