#!/usr/bin/env bash
# Create (or reuse) the virtualenv the PyTorch flavor test serves its models from
# (crates/cli/tests/flavors.rs: `[server] python` is this venv's python, which runs
# `python -m mlflow models serve`): a real PyTorch, MLflow 3.17.2 and the pins of
# tools/mlflow-venv.sh (so the scikit-learn example models load in it too), and onnx +
# onnxscript for torch.onnx.export (tools/make_zoo.py exports the model zoo's CNN with
# it). Prints the venv's python path as its last line; tools/test.sh exports it as
# HOIST_TORCH_PYTHON.
#
# The package index's Linux torch wheel is the CUDA build: 539 MB, plus 2.1 GB of nvidia-* CUDA
# libraries that libtorch links against (it runs on a CPU-only machine, no GPU needed,
# but will not import without them). 5.1 GB on disk with MLflow, so the venv lives under
# ~/.hoist (not in the checkout), named by a hash of the pins: runs on the same machine
# reuse it, new pins make a new one (remove old ~/.hoist/venv-torch-* by hand).
#
# torch and its CUDA libraries go in with --no-deps, every one pinned: that leaves out
# triton (~1 GB, torch.compile's GPU kernels) and cuda-bindings, which CPU inference
# never loads. pip then warns that torch's triton requirement is missing; that is
# expected.
#
# The last group is for exporting the model zoo's CNN (tools/export_cnn.py, run by
# tools/make_zoo.py): torch.onnx.export needs `onnx` (its legacy TorchScript exporter)
# and `onnxscript` with `onnx-ir` (its default, dynamo exporter); onnx needs ml-dtypes.
# Also --no-deps, every one pinned: their other requirements (numpy, protobuf,
# packaging, typing-extensions) are already pinned above or come with MLflow.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

torch_reqs="--no-deps
torch==2.15.0
filelock==4.3.2
fsspec==2026.9.0
jinja2==3.1.6
markupsafe==3.0.4
mpmath==1.3.0
networkx==3.6.1
sympy==1.14.0
typing-extensions==4.16.0
nvidia-cublas==13.4.1.3
nvidia-cuda-cccl==13.3.5.0.6
nvidia-cuda-cupti==13.2.86
nvidia-cuda-nvrtc==13.2.86
nvidia-cuda-runtime==13.2.86
nvidia-cudnn-cu13==9.26.0.51
nvidia-cufft==12.2.0.57
nvidia-cufile==1.17.1.22
nvidia-cusolver==12.2.0.11
nvidia-cusparse==12.7.10.12
nvidia-cusparselt-cu13==0.8.1
nvidia-nccl-cu13==2.30.7
nvidia-nvjitlink==13.5.37
nvidia-nvshmem-cu13==3.7.2
nvidia-nvtx==13.2.86"

# As tools/mlflow-venv.sh, less the ONNX packages no PyTorch or pickled model needs.
mlflow_reqs="mlflow==3.17.2
numpy==2.4.6
scikit-learn==1.9.1
scipy==1.17.1"

export_reqs="--no-deps
onnx==1.23.2
onnxscript==0.7.2
onnx-ir==1.1.0
ml-dtypes==0.7.0"

hash="$(printf '%s\n%s\n%s\n' "$torch_reqs" "$mlflow_reqs" "$export_reqs" | sha256sum | cut -c1-12)"
venv="${HOIST_TORCH_VENV:-$HOME/.hoist/venv-torch-$hash}"
mkdir -p "$(dirname "$venv")"

# shellcheck source=tools/venv-lib.sh
. "$root/tools/venv-lib.sh"
ensure_venv torch-venv "$venv" "$torch_reqs" \
    'import torch; assert torch.__version__.startswith("2.15.0"), torch.__version__; torch.nn.Linear(2, 1)(torch.ones(1, 2))' \
    "torch 2.15.0 (CUDA build, run on the CPU) and its CUDA libraries"
ensure_venv torch-mlflow-venv "$venv" "$mlflow_reqs" 'import mlflow.pytorch, sklearn' \
    "mlflow 3.17.2 and scikit-learn"
ensure_venv torch-export-venv "$venv" "$export_reqs" \
    'import onnx, onnxscript, onnx_ir, torch.onnx; assert onnx.__version__ == "1.23.2", onnx.__version__' \
    "onnx 1.23.2 and onnxscript 0.7.2 (torch.onnx.export)"

echo "$venv/bin/python"
