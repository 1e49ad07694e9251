#!/usr/bin/env bash
# gRPC against REST on one hoist-server: the same one-row inference of
# examples/models/breast_cancer_lr over the Open Inference Protocol's REST (JSON
# body) and gRPC (raw tensors, one multiplexed HTTP/2 connection), from one load
# generator (crates/server/examples/grpc_load.rs, one client thread), one after the
# other, on 127.0.0.1. See docs/grpc.md.
#
# Environment (all optional):
#   BENCH_SECONDS=10          seconds per protocol and concurrency
#   BENCH_CONCURRENCY="1 16"  concurrent callers
#   BENCH_PROFILE=release     cargo profile of hoist-server and the generator (dev: faster to build)
#   BENCH_SKIP_BUILD=1        use the binaries already built for that profile
#   ORT_DYLIB_PATH            libonnxruntime.so (default: tools/fetch-onnxruntime.sh)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_CONCURRENCY="${BENCH_CONCURRENCY:-1 16}"
BENCH_PROFILE="${BENCH_PROFILE:-release}"
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(bash tools/fetch-onnxruntime.sh | tail -n 1)}"
export ORT_DYLIB_PATH

dir=debug; [ "$BENCH_PROFILE" = dev ] || dir="$BENCH_PROFILE"
if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    cargo build --quiet --profile "$BENCH_PROFILE" -p hoist-server --bin hoist-server --example grpc_load
fi
target="${CARGO_TARGET_DIR:-$repo/target}/$dir"

out="$(mktemp)"
"$target/hoist-server" --model examples/models/breast_cancer_lr --port 0 --grpc-port 0 \
    --runtime onnxruntime --log warn >"$out" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 1 600); do
    grep -q '^grpc listening on ' "$out" && curl -sf "$(sed -n 's/^listening on //p' "$out")/v2/health/ready" >/dev/null && break
    sleep 0.1
done
http="$(sed -n 's/^listening on //p' "$out")"
grpc="$(sed -n 's/^grpc listening on //p' "$out")"
[ -n "$http" ] && [ -n "$grpc" ] || { cat "$out" >&2; echo "hoist-server did not start" >&2; exit 1; }

echo "hoist-server ($BENCH_PROFILE, onnxruntime) $(git rev-parse --short HEAD), $(nproc) cores"
for c in $BENCH_CONCURRENCY; do
    "$target/examples/grpc_load" "$http" "$grpc" "$c" "$BENCH_SECONDS"
done
