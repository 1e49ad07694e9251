#!/usr/bin/env bash
# tract against ONNX Runtime, single row, on every model of the zoo (examples/zoo),
# side by side in one process (crates/server/examples/runtime_latency.rs). Writes
# bench/results/runtimes-<date>.md. See bench/README.md and docs/benchmarks.md.
#
# Environment (all optional):
#   BENCH_ROUNDS=15        interleaved rounds of ~20 ms per runtime per model
#   BENCH_SKIP_BUILD=1     use the existing target/release/examples/runtime_latency
#   ORT_DYLIB_PATH         libonnxruntime.so (default: tools/fetch-onnxruntime.sh's pin)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
BENCH_ROUNDS="${BENCH_ROUNDS:-15}"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    echo "[bench] cargo build --release -p hoist-server --example runtime_latency" >&2
    cargo build --release -q --locked -p hoist-server --example runtime_latency
fi
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(bash tools/fetch-onnxruntime.sh | tail -n 1)}"
export ORT_DYLIB_PATH
mkdir -p bench/results
out="bench/results/runtimes-$(date +%Y-%m-%d).md"
{
    echo "# tract vs ONNX Runtime, single row ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "# ORT: $ORT_DYLIB_PATH; rounds: $BENCH_ROUNDS; command: bash bench/runtimes.sh"
    target/release/examples/runtime_latency examples/zoo --rounds "$BENCH_ROUNDS"
} | tee "$out"
ratios=$(grep -o 'ratio *[0-9.]*' "$out" | awk '{print $2}')
over=$(echo "$ratios" | awk '$1 > 2 {n++} END {print n+0}')
echo "[bench] $(echo "$ratios" | wc -l) models; tract over 2x ONNX Runtime on $over; written to $out" >&2
