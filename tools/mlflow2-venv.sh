#!/usr/bin/env bash
# Create (or reuse) the second MLflow virtualenv: MLflow 2.x, so the registry tests
# (crates/registry/tests/mlflow.rs, crates/cli/tests/mlflow.rs) also run against a
# real 2.x tracking server. `.venv-mlflow2` in the repository root (ignored by git).
# Prints the venv's python path as its last line; tools/test.sh runs the MLflow test
# binaries a second time with HOIST_MLFLOW_PYTHON set to it.
#
# Pins: mlflow 2.22.5, the newest 2.x release. SQLAlchemy stays below 2.1 (2.1 removed
# FallbackAsyncAdaptedQueuePool, which MLflow 2.22's SQL store imports: the server does
# not start); pandas below 3 (MLflow 2.x requires it); the ONNX stack is the 3.x venv's,
# for the tests that log and load an ONNX model with MLflow's own client.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-mlflow2"
python="${PYTHON:-python3}"

reqs="mlflow==2.22.5
SQLAlchemy==2.0.58
pandas==2.3.3
numpy==2.4.6
onnx==1.23.2
onnxruntime==1.31.1"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "mlflow2-venv: $python not found; install Python 3.11 (with venv) first" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "mlflow2-venv: creating $venv" >&2
    "$python" -m venv "$venv" || {
        echo "mlflow2-venv: could not create a venv (on Debian: apt-get install python3-venv)" >&2
        exit 1
    }
fi

# Reinstall only when the pins changed since the last successful install.
stamp="$venv/.requirements-mlflow2.sha256"
want="$(printf '%s\n' "$reqs" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "mlflow2-venv: installing mlflow 2.22.5 and the ONNX stack into $venv" >&2
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $reqs >&2
    "$venv/bin/python" -c 'import mlflow, onnx, onnxruntime; assert mlflow.__version__ == "2.22.5", mlflow.__version__' >&2
    echo "$want" > "$stamp"
fi

echo "$venv/bin/python"
