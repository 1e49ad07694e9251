#!/usr/bin/env bash
# Create (or reuse) the second MLflow virtualenv: MLflow 2.x, so the registry tests
# (crates/registry/tests/mlflow.rs, crates/cli/tests/mlflow.rs) also run against a
# real 2.x tracking server. `.venv-mlflow2` in the repository root (ignored by git).
# Prints the venv's python path as its last line; tools/test.sh runs the MLflow test
# binaries a second time with HOIST_MLFLOW_PYTHON set to it.
#
# Pins: mlflow 2.22.5, the newest 2.x release. SQLAlchemy stays below 2.1 (2.1 removed
# FallbackAsyncAdaptedQueuePool, which MLflow 2.22's SQL store imports: the server does
# not start); pandas below 3 (MLflow 2.x requires it); onnx and ONNX Runtime 1.31.1 (the
# previous pin; enough for the tests that log and load an ONNX model with MLflow's own
# client).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-mlflow2"

reqs="mlflow==2.22.5
SQLAlchemy==2.0.58
pandas==2.3.3
numpy==2.4.6
onnx==1.23.2
onnxruntime==1.31.1"

# shellcheck source=tools/venv-lib.sh
. "$root/tools/venv-lib.sh"
ensure_venv mlflow2-venv "$venv" "$reqs" 'import mlflow, onnx, onnxruntime; assert mlflow.__version__ == "2.22.5", mlflow.__version__' "mlflow 2.22.5 and the ONNX stack"

echo "$venv/bin/python"
