#!/usr/bin/env python3
"""Train the model zoo's small CNN in PyTorch and export it to ONNX twice.

Run by tools/make_zoo.py with the PyTorch venv's python (tools/torch-venv.sh), not by
hand:

    python tools/export_cnn.py --data train.npz --out DIR

`train.npz` holds `X` (FP32 [n, 64], 8x8 digits scaled to [0, 1]) and `y` (INT64
[n]): make_zoo.py's training split, so the split is made in one place. Trains

    nn.Sequential(Conv2d(1, 8, 3, padding=1), ReLU(), MaxPool2d(2), Flatten(),
                  Linear(8 * 4 * 4, 10))

on the CPU (fixed seeds, one thread, deterministic algorithms; a few seconds), then
exports the same trained module with `torch.onnx.export` as users call it, input
`input` [batch_size, 1, 8, 8], output `output` (logits), a dynamic batch dimension,
torch's default opset:

- DIR/cnn.onnx: the legacy TorchScript exporter (`dynamo=False`, `dynamic_axes`);
- DIR/cnn_dynamo.onnx: the dynamo exporter (`dynamo=True`, torch's default since 2.9,
  `dynamic_shapes`), with its weights in cnn_dynamo.onnx.data as it writes them;
- DIR/export.json: the versions of torch, onnx and onnxscript that exported them.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

SEED = 0
EPOCHS = 20
BATCH = 64


def train(X: np.ndarray, y: np.ndarray) -> nn.Module:
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xs = torch.from_numpy(X.reshape(-1, 1, 8, 8))
    ys = torch.from_numpy(y)
    order = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(xs), generator=order)
        for i in range(0, len(xs), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xs[idx]), ys[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xs).argmax(1) == ys).float().mean().item()
    print(f"export_cnn: trained {EPOCHS} epochs, training accuracy {acc:.3f}", file=sys.stderr)
    return model


def export(model: nn.Module, example: torch.Tensor, out: Path) -> None:
    with warnings.catch_warnings():
        # "You are using the legacy TorchScript-based ONNX export": that is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (example,), str(out / "cnn.onnx"), dynamo=False,
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}})
    torch.onnx.export(
        model, (example,), str(out / "cnn_dynamo.onnx"), dynamo=True,
        input_names=["input"], output_names=["output"],
        dynamic_shapes=({0: torch.export.Dim("batch_size")},))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="npz with X [n, 64] and y [n]")
    ap.add_argument("--out", type=Path, required=True, help="directory for the .onnx files")
    args = ap.parse_args()
    data = np.load(args.data)
    X, y = data["X"].astype(np.float32), data["y"].astype(np.int64)
    if X.ndim != 2 or X.shape[1] != 64 or len(X) != len(y):
        print(f"export_cnn: {args.data}: X must be [n, 64] and y [n], got {X.shape} and "
              f"{y.shape}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    model = train(X, y)
    export(model, torch.from_numpy(X[:2].reshape(-1, 1, 8, 8)), args.out)

    import onnx
    import onnxscript

    (args.out / "export.json").write_text(json.dumps({
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
    }) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
