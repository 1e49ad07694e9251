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

reqs="mlflow==3.17.2
numpy==2.4.6
onnx==1.23.2
onnxruntime==1.32.0
scikit-learn==1.9.1
scipy==1.17.1
skl2onnx==1.20.0"

# shellcheck source=tools/venv-lib.sh
. "$root/tools/venv-lib.sh"
ensure_venv mlflow-venv "$venv" "$reqs" 'import mlflow, onnx, cryptography' "mlflow 3.17.2 and the ONNX stack"

echo "$venv/bin/python"
