#!/usr/bin/env bash
# Run hoist-server against real clients: tritonclient.http and MLflow-style
# scoring requests. Needs the server binary (HOIST_SERVER_BIN, default
# target/debug/hoist-server) and the example models in examples/models/.
# Set ORT_DYLIB_PATH to also test the onnxruntime runtime. Extra arguments go
# to pytest (e.g. `-k binary -x`).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
venv="$repo/.venv-clients"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/clients/requirements.txt
bin="${HOIST_SERVER_BIN:-target/debug/hoist-server}"
[[ "$bin" = /* ]] || bin="$repo/$bin"
if [[ ! -x "$bin" ]]; then
    echo "tests/clients: no hoist-server binary at $bin (build it or set HOIST_SERVER_BIN)" >&2
    exit 1
fi
export HOIST_SERVER_BIN="$bin"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/clients "$@"
