#!/usr/bin/env bash
# Create (or reuse) the virtualenv the MLflow integration tests run a real MLflow
# tracking server and the real `mlflow` Python client from: `.venv-mlflow` in the
# repository root (ignored by git). Prints the venv's python path as its last line;
# `cargo test -p hoist-registry` finds it there, or through HOIST_MLFLOW_PYTHON.
#
# Pins: mlflow 3.17.2 (3.18.0 does not install: its mlflow-skinny is missing), and the
# ONNX stack the example models were made with.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-mlflow"
python="${PYTHON:-python3}"

reqs="mlflow==3.17.2
numpy==2.4.6
onnx==1.23.2
onnxruntime==1.32.0
scikit-learn==1.9.1
scipy==1.17.1
skl2onnx==1.20.0"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "mlflow-venv: $python not found; install Python 3.11 (with venv) first" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "mlflow-venv: creating $venv" >&2
    "$python" -m venv "$venv" || {
        echo "mlflow-venv: could not create a venv (on Debian: apt-get install python3-venv)" >&2
        exit 1
    }
fi

# Reinstall only when the pins changed since the last successful install.
stamp="$venv/.requirements-mlflow.sha256"
want="$(printf '%s\n' "$reqs" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "mlflow-venv: installing mlflow 3.17.2 and the ONNX stack into $venv" >&2
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $reqs >&2
    "$venv/bin/python" -c 'import mlflow, onnx, cryptography' >&2
    echo "$want" > "$stamp"
fi

echo "$venv/bin/python"
