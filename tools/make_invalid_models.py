"""Writes models that must fail to load, for hoist-server's error-path tests.

examples/models/invalid/unknown_op.onnx: a graph using an operator no runtime knows
(`NoSuchOp` in domain `com.example`); both runtimes must refuse it and name the op.

Run: .venv-models/bin/python tools/make_invalid_models.py (see tools/make-models.sh).
"""
import pathlib

import onnx
from onnx import TensorProto, helper

out = pathlib.Path(__file__).resolve().parent.parent / "examples" / "models" / "invalid"
out.mkdir(parents=True, exist_ok=True)

node = helper.make_node("NoSuchOp", ["input"], ["output"], domain="com.example")
graph = helper.make_graph(
    [node],
    "unknown_op",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
    [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 4])],
)
model = helper.make_model(
    graph,
    opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    producer_name="hoist-tools",
)
model.ir_version = 8
onnx.save(model, out / "unknown_op.onnx")
print(f"wrote {out / 'unknown_op.onnx'}")
