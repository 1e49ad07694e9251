#!/usr/bin/env bash
# The differential conformance suite: hoist-server against `mlflow models serve` for
# every model in examples/zoo/ and examples/models/ (see run.py). Uses the pinned MLflow
# venv (tools/mlflow-venv.sh) and the hoist-server binary (HOIST_SERVER_BIN, default
# target/debug/hoist-server); ORT_DYLIB_PATH as tools/fetch-onnxruntime.sh prints it.
# Arguments: model directories to check instead of all.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
python="${HOIST_MLFLOW_PYTHON:-$(bash tools/mlflow-venv.sh | tail -n 1)}"
bin="${HOIST_SERVER_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/hoist-server}"
[[ "$bin" = /* ]] || bin="$repo/$bin"
if [[ ! -x "$bin" ]]; then
    echo "tests/conformance: no hoist-server binary at $bin (build it or set HOIST_SERVER_BIN)" >&2
    exit 1
fi
export HOIST_SERVER_BIN="$bin"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(bash tools/fetch-onnxruntime.sh | tail -n 1)}"
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
exec "$python" tests/conformance/run.py "$@"
