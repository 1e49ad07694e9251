#!/usr/bin/env bash
# hoist-server's gRPC port (--grpc-port) against Triton's real gRPC client,
# tritonclient.grpc, in raw mode (its default: raw_input_contents) and plain mode
# (typed InferTensorContents through the client's own generated stubs), answers
# compared with the REST side's. The venv comes from tools/grpc-venv.sh (pinned,
# reused). Needs the server binary (HOIST_SERVER_BIN, default target/debug/hoist-server).
# Extra arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
python="${HOIST_GRPC_PYTHON:-$(bash tools/grpc-venv.sh | tail -n 1)}"
bin="${HOIST_SERVER_BIN:-target/debug/hoist-server}"
[[ "$bin" = /* ]] || bin="$repo/$bin"
if [[ ! -x "$bin" ]]; then
    echo "tests/grpc: no hoist-server binary at $bin (build it or set HOIST_SERVER_BIN)" >&2
    exit 1
fi
export HOIST_SERVER_BIN="$bin"
exec "$python" -m pytest -q -p no:cacheprovider tests/grpc "$@"
