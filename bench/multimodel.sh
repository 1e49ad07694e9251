#!/usr/bin/env bash
# Memory of many models: N small tabular models served by ONE hoist-server
# (--model-repository) against N hoist-server processes, one per model (how hoist
# serves them today), both in one run on 127.0.0.1. The N models are copies of one
# example package (examples/models/breast_cancer_lr) under N names: each copy is
# loaded on its own (its own runtime session, executor and metrics), as N different
# models of that size would be.
#
#   bash bench/multimodel.sh
#   BENCH_MODELS=20 bash bench/multimodel.sh
#
# Environment (all optional):
#   BENCH_MODELS=50            how many models
#   BENCH_MODEL=breast_cancer_lr   the example package copied
#   BENCH_SERVER_ARGS=""       more hoist-server flags for both setups (e.g. "--workers 1")
#   BENCH_SKIP_BUILD=1         use the existing target/release/hoist-server
#   BENCH_BIN=PATH             use this hoist-server binary (no build)
#   BENCH_READY_TIMEOUT=120    seconds the servers may take to get ready
#   ORT_DYLIB_PATH             libonnxruntime.so (default: ~/.hoist/lib)
#
# Each server answers one request per model before it is measured (so what a first
# request allocates is counted). RSS is VmRSS from /proc/PID/status, summed over the
# processes; PSS (/proc/PID/smaps_rollup, shared pages split between the processes
# that map them) is given beside it. Writes bench/results/multimodel-<date>.txt
# (multimodel-<date>-debug.txt for a binary under a debug/ directory).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

BENCH_MODELS="${BENCH_MODELS:-50}"
BENCH_MODEL="${BENCH_MODEL:-breast_cancer_lr}"
BENCH_SERVER_ARGS="${BENCH_SERVER_ARGS:-}"
BENCH_READY_TIMEOUT="${BENCH_READY_TIMEOUT:-120}"
src="$repo/examples/models/$BENCH_MODEL"
bin="${BENCH_BIN:-$repo/target/release/hoist-server}"

log() { printf '[multimodel %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -f "$src/MLmodel" && -f "$src/input_example.json" ]] || die "missing example model $src"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 && -z "${BENCH_BIN:-}" ]]; then
    log "building hoist-server (release)"
    cargo build --release -q -p hoist-server
fi
[[ -x "$bin" ]] || die "no $bin (build it, or unset BENCH_SKIP_BUILD)"

ort="${ORT_DYLIB_PATH:-}"
if [[ -z "$ort" ]]; then
    ort="$(ls "${HOIST_HOME:-$HOME/.hoist}"/lib/libonnxruntime.so* 2>/dev/null | head -1 || true)"
fi
[[ -n "$ort" && -f "$ort" ]] || die "no ONNX Runtime library: run tools/fetch-onnxruntime.sh or set ORT_DYLIB_PATH"

work="$(mktemp -d /tmp/hoist-multimodel.XXXXXX)"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

names=()
mkdir -p "$work/models"
for i in $(seq -w 1 "$BENCH_MODELS"); do
    names+=("m$i")
    cp -r "$src" "$work/models/m$i"
done
example="$(cat "$src/input_example.json")"
body="{\"inputs\": $example}"

# Starts hoist-server with ARGS: its pid in $last_pid, its stdout file in $last_out.
started=0
start() {
    started=$((started + 1))
    last_out="$work/out.$started"
    # shellcheck disable=SC2086
    "$bin" "$@" --port 0 --onnxruntime "$ort" $BENCH_SERVER_ARGS >"$last_out" 2>"$last_out.err" &
    last_pid=$!
    pids+=("$last_pid")
}

# Waits until the server writing OUT answers ready; prints its address.
ready() {
    local out=$1 addr="" t=0
    while (( t < BENCH_READY_TIMEOUT * 10 )); do
        addr="$(sed -n 's#^listening on http://##p' "$out" 2>/dev/null | head -1)"
        if [[ -n "$addr" ]] && curl -sf "http://$addr/v2/health/ready" >/dev/null; then
            echo "$addr"
            return 0
        fi
        sleep 0.1
        t=$((t + 1))
    done
    die "a server did not get ready: $(cat "$out.err")"
}

score() { # ADDR PATH
    curl -sf -H 'content-type: application/json' -d "$body" "http://$1$2" >/dev/null \
        || die "POST http://$1$2 failed"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup"; }
mb() { echo $((($1 + 512) / 1024)); }

# One process, every model.
log "one hoist-server, $BENCH_MODELS models (--model-repository)"
start --model-repository "$work/models"
one_pid=$last_pid one_out=$last_out
t0=$(date +%s.%N)
addr="$(ready "$one_out")"
t1=$(date +%s.%N)
loaded="$(curl -sf -X POST -d '{"ready": true}' "http://$addr/v2/repository/index" | grep -o '"READY"' | wc -l)"
[[ "$loaded" == "$BENCH_MODELS" ]] || die "$loaded of $BENCH_MODELS models ready"
for n in "${names[@]}"; do score "$addr" "/models/$n/invocations"; done
one_rss=$(rss_kb "$one_pid")
one_pss=$(pss_kb "$one_pid")
one_threads=$(awk '/^Threads:/ {print $2}' "/proc/$one_pid/status")
one_start=$(echo "$t1 - $t0" | bc)
kill "$one_pid"; wait "$one_pid" 2>/dev/null || true

# One process per model.
log "$BENCH_MODELS hoist-server processes, one model each"
outs=(); ppids=()
t0=$(date +%s.%N)
for n in "${names[@]}"; do
    start --model "$work/models/$n"
    ppids+=("$last_pid"); outs+=("$last_out")
done
addrs=()
for o in "${outs[@]}"; do addrs+=("$(ready "$o")"); done
t1=$(date +%s.%N)
for a in "${addrs[@]}"; do score "$a" /invocations; done
many_rss=0; many_pss=0; many_threads=0
for p in "${ppids[@]}"; do
    many_rss=$((many_rss + $(rss_kb "$p")))
    many_pss=$((many_pss + $(pss_kb "$p")))
    many_threads=$((many_threads + $(awk '/^Threads:/ {print $2}' "/proc/$p/status")))
done
many_start=$(echo "$t1 - $t0" | bc)

mkdir -p bench/results
suffix=""
[[ "$bin" == */debug/* ]] && suffix="-debug"
result="bench/results/multimodel-$(date -u +%Y-%m-%d)$suffix.txt"
{
    echo "# bench/multimodel.sh $(date -u +%Y-%m-%dT%H:%M:%SZ): $BENCH_MODELS copies of examples/models/$BENCH_MODEL"
    echo "# $bin ($("$bin" --version | awk '{print $2}')), runtime auto (ONNX Runtime $(basename "$ort")), flags: ${BENCH_SERVER_ARGS:-(defaults)}"
    echo "# $(nproc) CPUs, $(uname -sr); RSS = VmRSS summed over the processes, PSS from smaps_rollup"
    printf '%-34s %10s %10s %8s %10s\n' setup rss_mb pss_mb threads ready_s
    printf '%-34s %10s %10s %8s %10.1f\n' "one process, $BENCH_MODELS models" \
        "$(mb "$one_rss")" "$(mb "$one_pss")" "$one_threads" "$one_start"
    printf '%-34s %10s %10s %8s %10.1f\n' "$BENCH_MODELS processes, one model each" \
        "$(mb "$many_rss")" "$(mb "$many_pss")" "$many_threads" "$many_start"
} | tee "$result"
log "wrote $result"
