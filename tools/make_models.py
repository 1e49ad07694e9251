#!/usr/bin/env python3
"""Generate hoist's example MLflow ONNX models under examples/models/.

Everything is deterministic (fixed seeds, datasets that ship with scikit-learn,
no downloads). Run through `bash tools/make-models.sh`, which sets up the
pinned virtualenv from tools/requirements-models.txt.

Each model directory is written by `mlflow.onnx.save_model` (MLmodel with the
onnx + python_function flavors and a tensor signature, model.onnx,
input_example.json, ...) plus a `reference.json` holding inputs and the
outputs onnxruntime (CPU) computes for them. The breast-cancer test split is also
written as labelled golden data to examples/data/ (--data-out).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np

SEED = 0
REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "examples" / "models"
DEFAULT_DATA_OUT = REPO / "examples" / "data"

# Fixed values written into every MLmodel so that regenerating gives no diff.
FIXED_CREATED = "2025-01-01 00:00:00.000000"
UUID_NAMESPACE = uuid.UUID("6f1d2c1e-0b7a-4c39-9a57-5e0f5b2a7c11")

CNN_CLASSES = ["red", "green", "blue"]
CNN_SIZE = 64

# breast_cancer_slow: breast_cancer_lr plus a dead-end dense block that costs ~30-80 ms
# of CPU per model call (tuned on hoist-server with both runtimes; see the README).
SLOW_ROWS = 360  # rows of the expanded copy of the input the block works on
SLOW_WIDTH = 360  # width of the block, a multiple of breast_cancer's 30 features
SLOW_LAYERS = 80  # MatMul + Tanh layers, all sharing one [SLOW_WIDTH, SLOW_WIDTH] weight
SLOW_SCALE = 1e-30  # the block's mean (in [-1, 1]) times this is added to probabilities

# breast_cancer_batch2: breast_cancer_lr with a batch size hard-coded into the graph.
BATCH2_ROWS = 2  # the only batch size it runs; = rows of the input example (X_test[:2])

# breast_cancer_shuffled: breast_cancer_lr's pipeline trained on permuted training labels.
SHUFFLED_SEED = SEED + 3  # seed of the permutation (held-out accuracy ~0.62)

# breast_cancer_skewed: breast_cancer_lr with this added to the intercept (log-odds of
# class 1), so it predicts class 1 (benign) for ~93% of the test rows instead of ~63%.
SKEW_INTERCEPT_SHIFT = 16.0
SKEW_MIN_CLASS1 = 0.9  # the script asserts at least this share of class 1 on the test split

# diabetes_lr / diabetes_shifted: a regressor (one number per row, the disease
# progression score, ~25..346) and the same model answering this much higher, for
# prediction drift on binned output values (hoist-server --prediction-bins).
DIABETES_SHIFT = 60.0


# --------------------------------------------------------------------------- helpers


def f32_json(values) -> list[float]:
    """Flatten to float32 and emit the shortest decimal that round-trips to the same f32."""
    arr = np.asarray(values, dtype=np.float32).ravel()
    return [float(np.format_float_positional(v, unique=True, trim="-")) if np.isfinite(v)
            else float(v) for v in arr]


def i64_json(values) -> list[int]:
    return [int(v) for v in np.asarray(values, dtype=np.int64).ravel()]


def ort_session(model_path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


def run_ort(model_path: Path, input_name: str, x: np.ndarray):
    sess = ort_session(model_path)
    names = [o.name for o in sess.get_outputs()]
    assert names == ["label", "probabilities"], names
    assert [i.name for i in sess.get_inputs()] == [input_name]
    label, proba = sess.run(None, {input_name: x})
    assert label.dtype == np.int64 and label.shape == (x.shape[0],), (label.dtype, label.shape)
    assert proba.dtype == np.float32 and proba.ndim == 2 and proba.shape[0] == x.shape[0]
    return label, proba


def check_label_is_argmax(name: str, label: np.ndarray, proba: np.ndarray) -> None:
    am = np.argmax(proba, axis=1)
    bad = np.nonzero(am != label)[0]
    assert bad.size == 0, f"{name}: label != argmax(probabilities) at rows {bad.tolist()}"


def signature_for(input_name: str, input_shape: tuple, n_classes: int):
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    inputs = Schema([TensorSpec(np.dtype(np.float32), input_shape, input_name)])
    outputs = Schema(
        [
            TensorSpec(np.dtype(np.int64), (-1,), "label"),
            TensorSpec(np.dtype(np.float32), (-1, n_classes), "probabilities"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def pip_requirements() -> list[str]:
    import mlflow
    import onnx
    import onnxruntime

    return [
        f"mlflow=={mlflow.__version__}",
        f"onnx=={onnx.__version__}",
        f"onnxruntime=={onnxruntime.__version__}",
    ]


def fix_mlmodel(path: Path, name: str) -> None:
    """Replace the per-run fields (creation time, uuid) with fixed ones."""
    mlmodel = path / "MLmodel"
    text = mlmodel.read_text()
    text = re.sub(r"(?m)^utc_time_created: .*$", f"utc_time_created: '{FIXED_CREATED}'", text)
    text = re.sub(
        r"(?m)^model_uuid: .*$", f"model_uuid: {uuid.uuid5(UUID_NAMESPACE, name).hex}", text
    )
    mlmodel.write_text(text)


def save_mlflow(
    out: Path,
    name: str,
    model,
    input_name: str,
    input_shape: tuple,
    n_classes: int,
    input_example: np.ndarray,
    metadata: dict | None = None,
    external_data: bool = False,
    signature=None,
) -> Path:
    import mlflow.onnx

    path = out / name
    if path.exists():
        shutil.rmtree(path)
    kwargs = {}
    if external_data:
        # MLflow's default (save_as_external_data=True): initializers of 1 KiB or more
        # go to a file beside model.onnx. onnx only moves tensors stored as raw_data
        # (skl2onnx writes float_data), so convert them first, and fix the file name
        # (onnx would otherwise pick a random uuid).
        from onnx import numpy_helper

        model = type(model).FromString(model.SerializeToString())
        for i, t in enumerate(model.graph.initializer):
            model.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(t), t.name)
            )
        kwargs["location"] = "model.onnx.data"
    mlflow.onnx.save_model(
        model,
        str(path),
        signature=signature or signature_for(input_name, input_shape, n_classes),
        input_example=input_example,
        pip_requirements=pip_requirements(),
        metadata=metadata,
        save_as_external_data=external_data,
        **kwargs,
    )
    fix_mlmodel(path, name)
    (path / "model.onnx.data").exists() and (path / "model.onnx.data").chmod(0o644)
    for f in path.iterdir():
        assert f.stat().st_size < 1_000_000, f"{f} is too large ({f.stat().st_size} bytes)"
    return path


def write_reference(path: Path, name: str, input_name: str, x: np.ndarray) -> tuple:
    label, proba = run_ort(path / "model.onnx", input_name, x)
    check_label_is_argmax(name, label, proba)
    ref = {
        "model": name,
        "rows": int(x.shape[0]),
        "inputs": {
            input_name: {"datatype": "FP32", "shape": list(x.shape), "data": f32_json(x)}
        },
        "outputs": {
            "label": {"datatype": "INT64", "shape": list(label.shape), "data": i64_json(label)},
            "probabilities": {
                "datatype": "FP32",
                "shape": list(proba.shape),
                "data": f32_json(proba),
            },
        },
    }
    (path / "reference.json").write_text(json.dumps(ref, separators=(",", ":")) + "\n")
    return label, proba


# --------------------------------------------------------------------------- tabular models


def sklearn_to_onnx(model, clf, n_features: int):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options={id(clf): {"zipmap": False}},
    )
    return onx


def tabular_split(X, y):
    """The stratified 75/25 train/test split every tabular model uses (X as float32)."""
    from sklearn.model_selection import train_test_split

    X = X.astype(np.float32)
    return train_test_split(X, y, test_size=0.25, random_state=SEED, stratify=y)


def make_tabular(
    out: Path,
    name: str,
    model,
    clf,
    X,
    y,
    n_ref: int = 20,
    shuffle_labels_seed: int | None = None,
    **save_kwargs,
):
    X_train, X_test, y_train, y_test = tabular_split(X, y)
    if shuffle_labels_seed is not None:
        # Same split and test rows, but the training labels are randomly permuted, so
        # the model learns nothing about the features (held-out accuracy near chance).
        y_train = np.random.default_rng(shuffle_labels_seed).permutation(y_train)
    model.fit(X_train, y_train)
    acc = model.score(X_test, y_test)
    n_features = X.shape[1]
    n_classes = len(clf.classes_)
    assert list(clf.classes_) == list(range(n_classes)), clf.classes_
    onx = sklearn_to_onnx(model, clf, n_features)

    path = save_mlflow(
        out,
        name,
        onx,
        "input",
        (-1, n_features),
        n_classes,
        input_example=X_test[:2],
        **save_kwargs,
    )
    x_ref = np.ascontiguousarray(X_test[:n_ref])
    label, proba = write_reference(path, name, "input", x_ref)

    # onnxruntime should agree with scikit-learn on the whole test split.
    full_label, full_proba = run_ort(path / "model.onnx", "input", X_test)
    agree = float(np.mean(full_label == model.predict(X_test)))
    max_diff = float(np.max(np.abs(full_proba - model.predict_proba(X_test))))
    assert agree >= 0.99, f"{name}: onnxruntime agrees with sklearn on only {agree:.3f}"
    assert max_diff < 1e-3, f"{name}: probabilities differ from sklearn by {max_diff}"
    print(
        f"{name}: test accuracy {acc:.3f}, ort/sklearn label agreement {agree:.3f}, "
        f"max |dp| {max_diff:.2e}"
    )
    return onx, X_test


def make_breast_cancer(out: Path, data_out: Path) -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)

    clf = LogisticRegression(max_iter=1000, random_state=SEED)
    pipe = Pipeline([("scaler", StandardScaler()), ("clf", clf)])
    lr_onx, X_test = make_tabular(out, "breast_cancer_lr", pipe, clf, X, y)
    make_breast_cancer_slow(out, lr_onx, X_test)
    make_breast_cancer_batch2(out, lr_onx, X_test)
    make_breast_cancer_skewed(out, pipe, X, y)

    clf = LogisticRegression(max_iter=1000, random_state=SEED)
    pipe = Pipeline([("scaler", StandardScaler()), ("clf", clf)])
    make_tabular(out, "breast_cancer_shuffled", pipe, clf, X, y,
                 shuffle_labels_seed=SHUFFLED_SEED)

    clf = GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=SEED)
    make_tabular(out, "breast_cancer_gbt", clf, clf, X, y)

    clf = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=SEED)
    make_tabular(out, "breast_cancer_rf", clf, clf, X, y)

    _, X_test, _, y_test = tabular_split(X, y)
    write_breast_cancer_golden(data_out, X_test, y_test)
    golden_metrics(out, X_test, y_test)


def add_unpruned_dense_block(model, input_name: str, n_features: int):
    """`model` (label + probabilities) plus a dense block whose result is ~0.

    Stands for a model that "accidentally shipped an unpruned dense block": the input
    is summed over the batch ([1, n_features], so the cost per call does not grow with
    the batch and nothing can be constant-folded), tiled to [SLOW_ROWS, SLOW_WIDTH],
    then SLOW_LAYERS times h = Tanh(h @ W) with one shared W. The mean of the last h
    (in [-1, 1]) times SLOW_SCALE is added to the probabilities: far below float32
    resolution for any probability above ~1e-22, so outputs equal the original model's,
    but no optimiser can prove the block dead (no multiplication by 0). Tanh keeps
    every value finite and away from denormals.
    """
    from onnx import helper, numpy_helper

    assert SLOW_WIDTH % n_features == 0, (SLOW_WIDTH, n_features)
    slow = type(model).FromString(model.SerializeToString())
    g = slow.graph
    renamed = 0
    for node in g.node:
        for i, o in enumerate(node.output):
            if o == "probabilities":
                node.output[i] = "probabilities_lr"
                renamed += 1
    assert renamed == 1, renamed

    rng = np.random.default_rng(SEED + 2)
    w = (rng.standard_normal((SLOW_WIDTH, SLOW_WIDTH)) / np.sqrt(SLOW_WIDTH)).astype(np.float32)
    g.initializer.extend(
        [
            numpy_helper.from_array(w, "dense.weight"),
            numpy_helper.from_array(np.array([0], dtype=np.int64), "dense.batch_axis"),
            numpy_helper.from_array(
                np.array([SLOW_ROWS, SLOW_WIDTH // n_features], dtype=np.int64), "dense.repeats"
            ),
            numpy_helper.from_array(np.array(SLOW_SCALE, dtype=np.float32), "dense.scale"),
        ]
    )
    nodes = [
        helper.make_node("ReduceSum", [input_name, "dense.batch_axis"], ["dense.x"],
                         name="dense.sum", keepdims=1),
        helper.make_node("Tile", ["dense.x", "dense.repeats"], ["dense.h0"], name="dense.tile"),
    ]
    h = "dense.h0"
    for i in range(SLOW_LAYERS):
        nodes.append(helper.make_node("MatMul", [h, "dense.weight"], [f"dense.mm{i}"],
                                      name=f"dense.matmul{i}"))
        nodes.append(helper.make_node("Tanh", [f"dense.mm{i}"], [f"dense.h{i + 1}"],
                                      name=f"dense.tanh{i}"))
        h = f"dense.h{i + 1}"
    nodes += [
        helper.make_node("ReduceMean", [h], ["dense.mean"], name="dense.mean", keepdims=0),
        helper.make_node("Mul", ["dense.mean", "dense.scale"], ["dense.tiny"], name="dense.mul"),
        helper.make_node("Add", ["probabilities_lr", "dense.tiny"], ["probabilities"],
                         name="dense.add"),
    ]
    g.node.extend(nodes)
    slow.doc_string = (
        "breast_cancer_lr plus an unpruned dense block (deliberately slow: "
        f"{SLOW_LAYERS} MatMul {SLOW_ROWS}x{SLOW_WIDTH}x{SLOW_WIDTH} per call) that does "
        "not change the outputs."
    )
    import onnx

    onnx.checker.check_model(slow, full_check=True)
    return slow


def make_breast_cancer_slow(out: Path, lr_onx, X_test: np.ndarray, n_ref: int = 20) -> None:
    """breast_cancer_lr with the same outputs, but ~30-80 ms per call: a bad canary."""
    import tempfile
    import time

    import onnx

    name = "breast_cancer_slow"
    n_features = X_test.shape[1]
    model = add_unpruned_dense_block(lr_onx, "input", n_features)
    path = save_mlflow(out, name, model, "input", (-1, n_features), 2, input_example=X_test[:2])
    write_reference(path, name, "input", np.ascontiguousarray(X_test[:n_ref]))

    # Same outputs as breast_cancer_lr on the whole test split.
    lr_label, lr_proba = run_ort(out / "breast_cancer_lr" / "model.onnx", "input", X_test)
    label, proba = run_ort(path / "model.onnx", "input", X_test)
    assert np.array_equal(label, lr_label), f"{name}: labels differ from breast_cancer_lr"
    max_diff = float(np.max(np.abs(proba - lr_proba)))
    assert max_diff <= 1e-6, f"{name}: probabilities differ from breast_cancer_lr by {max_diff}"

    # onnxruntime must not have optimised the block away: every MatMul is still there.
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # no warning about saving the ORT_ENABLE_ALL graph
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        sess = ort.InferenceSession(str(path / "model.onnx"), opts,
                                    providers=["CPUExecutionProvider"])
        optimized = onnx.load(opts.optimized_model_filepath)
    n_matmul = sum("MatMul" in n.op_type for n in optimized.graph.node)
    assert n_matmul == SLOW_LAYERS, f"{name}: onnxruntime kept {n_matmul} MatMul nodes"

    x1 = X_test[:1]
    sess.run(None, {"input": x1})
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        sess.run(None, {"input": x1})
        times.append(time.perf_counter() - t0)
    print(
        f"{name}: labels equal breast_cancer_lr's, max |dp| {max_diff:.2e}, "
        f"{n_matmul} MatMul kept by onnxruntime, one row takes "
        f"{1000 * float(np.median(times)):.1f} ms (onnxruntime, 1 thread, informational)"
    )


def hard_code_batch_size(model, n_features: int, rows: int):
    """`model` with a lower bound on the scaled features stored for exactly `rows` rows.

    Stands for a step exported with the batch size of the input example baked in: the
    scaled features, flattened, are clipped from below by a bound of `rows * n_features`
    values (all -FLT_MAX), and the smallest clipped value is the lower bound of a Max on
    the features. For a batch of `rows` rows that is the identity, so the outputs equal
    the original model's exactly; for any other batch the flattened features (1 row: 30
    values, 3 rows: 90) cannot broadcast against the 60 stored values and the Max fails
    at run time in ONNX Runtime and tract alike. The graph still declares a dynamic
    batch dimension and nothing fails at load (a Reshape to the constant shape
    [rows, n_features] would: tract checks its volume against the symbolic batch).
    """
    from onnx import helper, numpy_helper

    fixed = type(model).FromString(model.SerializeToString())
    g = fixed.graph
    scaler = [n for n in g.node if n.op_type == "Scaler"]
    assert len(scaler) == 1, [n.op_type for n in g.node]
    scaled = scaler[0].output[0]
    consumers = 0
    for node in g.node:
        for i, x in enumerate(node.input):
            if x == scaled:
                node.input[i] = "batch2.bounded"
                consumers += 1
    assert consumers == 1, consumers
    lowest = np.finfo(np.float32).min
    g.initializer.extend(
        [
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "batch2.flat_shape"),
            numpy_helper.from_array(
                np.full(rows * n_features, lowest, dtype=np.float32), "batch2.lower_bound"
            ),
        ]
    )
    nodes = [
        helper.make_node("Reshape", [scaled, "batch2.flat_shape"], ["batch2.flat"],
                         name="batch2.flatten"),
        helper.make_node("Max", ["batch2.flat", "batch2.lower_bound"], ["batch2.clipped"],
                         name="batch2.clip"),
        helper.make_node("ReduceMin", ["batch2.clipped"], ["batch2.lowest"],
                         name="batch2.lowest", keepdims=0),
        helper.make_node("Max", [scaled, "batch2.lowest"], ["batch2.bounded"],
                         name="batch2.bound"),
    ]
    at = list(g.node).index(scaler[0]) + 1
    for i, node in enumerate(nodes):
        g.node.insert(at + i, node)
    fixed.doc_string = (
        f"breast_cancer_lr with a hard-coded batch size of {rows}: a lower bound on the "
        f"scaled features is stored for {rows * n_features} values ({rows} rows), so any "
        "other batch size fails at run time."
    )
    import onnx

    onnx.checker.check_model(fixed, full_check=True)
    return fixed


def make_breast_cancer_batch2(out: Path, lr_onx, X_test: np.ndarray) -> None:
    """breast_cancer_lr that only runs batches of BATCH2_ROWS rows: a bad canary."""
    name = "breast_cancer_batch2"
    n_features = X_test.shape[1]
    rows = BATCH2_ROWS
    model = hard_code_batch_size(lr_onx, n_features, rows)
    # Same signature and input example (X_test[:2]) as breast_cancer_lr, so loading and
    # smoke tests with the example pass; reference.json holds only those rows.
    assert rows == 2
    path = save_mlflow(out, name, model, "input", (-1, n_features), 2, input_example=X_test[:2])
    write_reference(path, name, "input", np.ascontiguousarray(X_test[:rows]))

    # Every 2-row batch of the test split gives exactly breast_cancer_lr's outputs.
    sess = ort_session(path / "model.onnx")
    lr_sess = ort_session(out / "breast_cancer_lr" / "model.onnx")
    n = X_test.shape[0] // rows * rows
    for i in range(0, n, rows):
        x = X_test[i:i + rows]
        got, want = sess.run(None, {"input": x}), lr_sess.run(None, {"input": x})
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), f"{name}: rows {i}.."

    # Any other batch size fails inside the model.
    import onnxruntime as ort

    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # the expected broadcast errors are raised, not logged
    failed = []
    for k in (1, 3, 20):
        try:
            sess.run(None, {"input": X_test[:k]}, quiet)
        except Exception as e:  # onnxruntime raises its own exception types
            failed.append(f"{k} rows: {str(e).splitlines()[0][:140]}")
        else:
            raise AssertionError(f"{name}: a batch of {k} rows did not fail")
    print(f"{name}: {rows}-row batches equal breast_cancer_lr's outputs; "
          f"other sizes fail ({failed[0]})")


def make_breast_cancer_skewed(out: Path, lr_pipe, X, y, n_ref: int = 20) -> None:
    """breast_cancer_lr with a shifted intercept: a canary whose predicted class mix drifts.

    The fitted breast_cancer_lr pipeline with SKEW_INTERCEPT_SHIFT added to the logistic
    regression's intercept, converted like breast_cancer_lr (same names, signature and
    input example). It answers every input with the same shapes, but predicts class 1
    for most realistic rows.
    """
    import copy

    name = "breast_cancer_skewed"
    _, X_test, _, y_test = tabular_split(X, y)
    pipe = copy.deepcopy(lr_pipe)
    clf = pipe.steps[-1][1]
    clf.intercept_ = clf.intercept_ + SKEW_INTERCEPT_SHIFT
    n_features = X_test.shape[1]
    onx = sklearn_to_onnx(pipe, clf, n_features)
    path = save_mlflow(
        out, name, onx, "input", (-1, n_features), 2, input_example=X_test[:2]
    )
    write_reference(path, name, "input", np.ascontiguousarray(X_test[:n_ref]))

    label, proba = run_ort(path / "model.onnx", "input", X_test)
    check_label_is_argmax(name, label, proba)
    agree = float(np.mean(label == pipe.predict(X_test)))
    max_diff = float(np.max(np.abs(proba - pipe.predict_proba(X_test))))
    assert agree >= 0.99, f"{name}: onnxruntime agrees with sklearn on only {agree:.3f}"
    assert max_diff < 1e-3, f"{name}: probabilities differ from sklearn by {max_diff}"
    lr_label, _ = run_ort(out / "breast_cancer_lr" / "model.onnx", "input", X_test)
    share = float(np.mean(label == 1))
    assert share >= SKEW_MIN_CLASS1, f"{name}: class 1 on only {share:.3f} of the test rows"
    print(
        f"{name}: class 1 on {share:.3f} of the test rows (breast_cancer_lr: "
        f"{float(np.mean(lr_label == 1)):.3f}), test accuracy {float(np.mean(label == y_test)):.3f}"
    )


def regression_onnx(name: str, coef: np.ndarray, intercept: float, n_features: int):
    """`variable = input @ coef + intercept`: a linear regressor in plain ONNX
    (MatMul, Add), which both runtimes run; output FP32 [-1, 1] like skl2onnx's."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(coef.reshape(n_features, 1).astype(np.float32), "coef")
    b = numpy_helper.from_array(np.array([intercept], dtype=np.float32), "intercept")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "coef"], ["xw"]),
            helper.make_node("Add", ["xw", "intercept"], ["variable"]),
        ],
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_breast_cancer_batch1(out: Path) -> None:
    """breast_cancer_batch1: breast_cancer_lr exported with a batch size of 1 fixed in
    its declared input (the converter's default when a batch is traced): a bad
    release whose server refuses (400) any request of more than one row that stable
    serves. Made from the breast_cancer_lr already written (its graph unchanged)."""
    import onnx

    lr = onnx.load(str(out / "breast_cancer_lr" / "model.onnx"))
    lr.graph.input[0].type.tensor_type.shape.dim[0].ClearField("dim_param")
    lr.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    ref = json.loads((out / "breast_cancer_lr" / "reference.json").read_text())
    x_all = np.array(ref["inputs"]["input"]["data"], dtype=np.float32).reshape(
        ref["inputs"]["input"]["shape"]
    )
    n_features = x_all.shape[1]
    name = "breast_cancer_batch1"
    path = save_mlflow(out, name, lr, "input", (1, n_features), 2, input_example=x_all[:1])
    write_reference(path, name, "input", np.ascontiguousarray(x_all[:1]))
    sess = ort_session(path / "model.onnx")
    lr_sess = ort_session(out / "breast_cancer_lr" / "model.onnx")
    for i in range(x_all.shape[0]):
        x = x_all[i:i + 1]
        got, want = sess.run(None, {"input": x}), lr_sess.run(None, {"input": x})
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), f"{name}: row {i}"
    print(f"{name}: 1-row requests equal breast_cancer_lr's outputs; its input is [1, {n_features}]")


def make_diabetes_retrain(out: Path) -> None:
    """diabetes_retrain: diabetes_lr's LinearRegression retrained on another 75/25
    split (random_state=SEED + 1): a good regressor release whose values differ a
    little from diabetes_lr's, without bias."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True)
    X = X.astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=SEED + 1
    )
    reg = LinearRegression().fit(X_train, y_train)
    n_features = X.shape[1]
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_features), "input")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1), "variable")]),
    )
    name = "diabetes_retrain"
    onx = regression_onnx(name, reg.coef_, float(reg.intercept_), n_features)
    path = save_mlflow(
        out, name, onx, "input", (-1, n_features), 0,
        input_example=X_test[:2], signature=signature,
    )
    sess = ort_session(path / "model.onnx")
    base = ort_session(out / "diabetes_lr" / "model.onnx")
    (pred,) = sess.run(None, {"input": np.ascontiguousarray(X)})
    (was,) = base.run(None, {"input": np.ascontiguousarray(X)})
    d = pred[:, 0] - was[:, 0]
    print(
        f"{name}: against diabetes_lr on all rows: mean |diff| {float(np.mean(np.abs(d))):.2f}, "
        f"bias {float(np.mean(d)):+.2f}, diabetes_lr mean {float(np.mean(np.abs(was))):.1f}"
    )


def make_diabetes(out: Path) -> None:
    """diabetes_lr (LinearRegression on scikit-learn's diabetes data) and
    diabetes_shifted (the same, DIABETES_SHIFT higher): regressors for drift on
    binned values. reference.json holds the first 20 test rows' outputs."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True)
    X = X.astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=SEED
    )
    reg = LinearRegression().fit(X_train, y_train)
    n_features = X.shape[1]
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_features), "input")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1), "variable")]),
    )
    for name, shift in (("diabetes_lr", 0.0), ("diabetes_shifted", DIABETES_SHIFT)):
        onx = regression_onnx(name, reg.coef_, float(reg.intercept_) + shift, n_features)
        path = save_mlflow(
            out, name, onx, "input", (-1, n_features), 0,
            input_example=X_test[:2], signature=signature,
        )
        x = np.ascontiguousarray(X_test[:20])
        sess = ort_session(path / "model.onnx")
        (pred,) = sess.run(None, {"input": x})
        want = reg.predict(x) + shift
        assert np.max(np.abs(pred[:, 0] - want)) < 1e-3, f"{name}: onnxruntime differs from sklearn"
        ref = {
            "model": name,
            "rows": int(x.shape[0]),
            "inputs": {"input": {"datatype": "FP32", "shape": list(x.shape), "data": f32_json(x)}},
            "outputs": {
                "variable": {"datatype": "FP32", "shape": list(pred.shape), "data": f32_json(pred)}
            },
        }
        (path / "reference.json").write_text(json.dumps(ref, separators=(",", ":")) + "\n")
        (all_pred,) = sess.run(None, {"input": np.ascontiguousarray(X_test)})
        print(
            f"{name}: test predictions {float(all_pred.min()):.0f}..{float(all_pred.max()):.0f}, "
            f"median {float(np.median(all_pred)):.0f}, R^2 {reg.score(X_test, y_test):.3f}"
        )


def write_breast_cancer_golden(data_out: Path, X_test: np.ndarray, y_test: np.ndarray) -> None:
    """The breast-cancer test split as labelled golden data (CSV and JSON Lines).

    Features are the models' `input` (raw, unscaled values, float32 written as the
    shortest decimal that round-trips), in load_breast_cancer's column order; `label`
    is the class the models predict (0 malignant, 1 benign).
    """
    from sklearn.datasets import load_breast_cancer

    names = [n.replace(" ", "_") for n in load_breast_cancer().feature_names]
    assert len(names) == X_test.shape[1] and "label" not in names
    data_out.mkdir(parents=True, exist_ok=True)
    rows = [f32_json(r) for r in X_test]
    for r, x in zip(rows, X_test):  # parsing as f64 then casting gives the same f32
        assert np.array_equal(np.asarray(r, dtype=np.float64).astype(np.float32), x)

    csv_lines = [",".join(names + ["label"])]
    csv_lines += [",".join([repr(v) for v in r] + [str(int(l))]) for r, l in zip(rows, y_test)]
    (data_out / "breast_cancer_golden.csv").write_text("\n".join(csv_lines) + "\n")
    jsonl = [
        json.dumps({"features": r, "label": int(l)}, separators=(",", ":"))
        for r, l in zip(rows, y_test)
    ]
    (data_out / "breast_cancer_golden.jsonl").write_text("\n".join(jsonl) + "\n")
    print(
        f"breast_cancer_golden: {len(rows)} rows x {len(names)} features, "
        f"labels {np.bincount(y_test).tolist()} -> {data_out}"
    )


def golden_metrics(out: Path, X_test: np.ndarray, y_test: np.ndarray) -> None:
    """Accuracy, per-class recall and log-loss of every breast_cancer_* model on the
    golden rows (onnxruntime; breast_cancer_batch2 in 2-row batches, the last row paired
    with the one before it). Informational: the README quotes these."""
    for path in sorted(out.glob("breast_cancer_*")):
        sess = ort_session(path / "model.onnx")
        if path.name == "breast_cancer_batch2":
            labels, probas = [], []
            for i in range(0, len(X_test), BATCH2_ROWS):
                j = min(i, len(X_test) - BATCH2_ROWS)
                lab, pr = sess.run(None, {"input": X_test[j:j + BATCH2_ROWS]})
                labels.append(lab[i - j:])
                probas.append(pr[i - j:])
            label, proba = np.concatenate(labels), np.concatenate(probas)
        else:
            label, proba = sess.run(None, {"input": X_test})
        assert label.shape == y_test.shape
        acc = float(np.mean(label == y_test))
        recall = [float(np.mean(label[y_test == c] == c)) for c in (0, 1)]
        p_true = np.clip(proba[np.arange(len(y_test)), y_test].astype(np.float64), 1e-15, 1.0)
        log_loss = float(-np.mean(np.log(p_true)))
        mix = np.bincount(label, minlength=2).tolist()
        if path.name == "breast_cancer_shuffled":
            assert acc < 0.8, f"{path.name}: golden accuracy {acc:.3f} is not near chance"
        print(
            f"golden {path.name}: accuracy {acc:.4f}, recall 0 {recall[0]:.4f} 1 {recall[1]:.4f}, "
            f"log-loss {log_loss:.4f}, predicted classes {mix}"
        )


def make_digits(out: Path) -> None:
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixel intensities 0..16 -> [0, 1]; the model expects scaled input
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=500, random_state=SEED)
    # digits_mlp keeps MLflow's default of storing weights in an external-data file
    # beside model.onnx, so that code path has a fixture.
    make_tabular(out, "digits_mlp", clf, clf, X, y, external_data=True)


# --------------------------------------------------------------------------- image CNN


def build_cnn(gemm_w: np.ndarray, gemm_b: np.ndarray, features_output: bool = False):
    """A small hand-designed CNN: Conv-Relu-MaxPool-Conv-Relu-GlobalAveragePool-Flatten-Gemm-Softmax.

    conv1 (9 filters, 3x3): the 3 channel means and the 6 ordered channel differences
    (a - b), so after Relu the feature maps say "how much redder than green" etc.
    conv2 (9 -> 9, 3x3, stride 2): close to identity (centre tap) with a small fixed
    perturbation. Global average pooling turns these into 9 features; the Gemm
    (fitted with logistic regression on synthetic images) maps them to 3 logits.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(SEED + 1)
    w1 = np.zeros((9, 3, 3, 3), dtype=np.float32)
    for c in range(3):
        w1[c, c] = 1.0 / 9.0
    k = 3
    for a in range(3):
        for b in range(3):
            if a != b:
                w1[k, a] = 1.0 / 9.0
                w1[k, b] = -1.0 / 9.0
                k += 1
    b1 = np.zeros(9, dtype=np.float32)
    w2 = rng.normal(0.0, 0.01, size=(9, 9, 3, 3)).astype(np.float32)
    for c in range(9):
        w2[c, c, 1, 1] += 1.0
    b2 = np.full(9, 0.01, dtype=np.float32)

    inits = [
        numpy_helper.from_array(w1, "conv1.weight"),
        numpy_helper.from_array(b1, "conv1.bias"),
        numpy_helper.from_array(w2, "conv2.weight"),
        numpy_helper.from_array(b2, "conv2.bias"),
        numpy_helper.from_array(gemm_w.astype(np.float32), "fc.weight"),  # [3, 9]
        numpy_helper.from_array(gemm_b.astype(np.float32), "fc.bias"),  # [3]
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv1.weight", "conv1.bias"], ["c1"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1",
                         kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["features"], name="flatten", axis=1),
        helper.make_node("Gemm", ["features", "fc.weight", "fc.bias"], ["logits"], name="fc",
                         alpha=1.0, beta=1.0, transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], name="argmax",
                         axis=1, keepdims=0),
    ]
    outputs = [
        helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]),
    ]
    if features_output:
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 9]))
    graph = helper.make_graph(
        nodes,
        "image_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, CNN_SIZE, CNN_SIZE])],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="hoist-make-models",
        producer_version="1",
        doc_string="Dominant-colour classifier: classes red, green, blue. "
        "Input NCHW float32, RGB pixels scaled to [0, 1].",
    )
    model.ir_version = 8
    import onnx

    onnx.checker.check_model(model, full_check=True)
    return model


def synthetic_image(rng: np.random.Generator, dominant: int) -> np.ndarray:
    """uint8 HWC RGB image whose dominant colour is `dominant`, with noise and clutter."""
    hi = rng.uniform(140, 255)
    lo = rng.uniform(0, hi * 0.6, size=3)
    base = lo.copy()
    base[dominant] = hi
    img = np.broadcast_to(base, (CNN_SIZE, CNN_SIZE, 3)).copy()
    # A few rectangles of random colour covering a minority of the image.
    for _ in range(rng.integers(0, 4)):
        h, w = rng.integers(4, 24, size=2)
        y0, x0 = rng.integers(0, CNN_SIZE - h), rng.integers(0, CNN_SIZE - w)
        img[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 255, size=3)
    img += rng.normal(0, rng.uniform(2, 25), size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def to_nchw(images_hwc_uint8) -> np.ndarray:
    x = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in images_hwc_uint8])
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def dominant_label(img: np.ndarray) -> int:
    return int(np.argmax(img.reshape(-1, 3).astype(np.float64).mean(axis=0)))


def make_image_cnn(out: Path) -> None:
    import onnxruntime as ort
    from PIL import Image
    from sklearn.linear_model import LogisticRegression

    name = "image_cnn"
    rng = np.random.default_rng(SEED)

    # 1. Synthetic training set; labels are the channel with the largest mean.
    imgs = [synthetic_image(rng, int(rng.integers(0, 3))) for _ in range(900)]
    y = np.array([dominant_label(im) for im in imgs])
    x = to_nchw(imgs)

    # 2. Features from the fixed convolutional part, then fit the last layer.
    feat_model = build_cnn(np.zeros((3, 9)), np.zeros(3), features_output=True)
    sess = ort.InferenceSession(feat_model.SerializeToString(), providers=["CPUExecutionProvider"])
    feats = np.concatenate(
        [sess.run(["features"], {"image": x[i:i + 100]})[0] for i in range(0, len(x), 100)]
    )
    lr = LogisticRegression(C=50.0, max_iter=5000, random_state=SEED).fit(feats, y)
    train_acc = lr.score(feats, y)
    model = build_cnn(lr.coef_, lr.intercept_)

    # 3. Held-out synthetic check.
    test_imgs = [synthetic_image(rng, int(rng.integers(0, 3))) for _ in range(300)]
    y_test = np.array([dominant_label(im) for im in test_imgs])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    test_label = sess.run(["label"], {"image": to_nchw(test_imgs)})[0]
    test_acc = float(np.mean(test_label == y_test))
    assert test_acc >= 0.95, f"image_cnn: synthetic test accuracy only {test_acc:.3f}"

    # 4. Three reference images: mostly red / green / blue, with noise and a blob.
    ref_rng = np.random.default_rng(SEED + 42)
    ref_imgs = []
    for c in range(3):
        base = np.array([40.0, 40.0, 40.0])
        base[c] = 210.0
        img = np.broadcast_to(base, (CNN_SIZE, CNN_SIZE, 3)).copy()
        other = (c + 1) % 3
        blob = np.array([30.0, 30.0, 30.0])
        blob[other] = 200.0
        img[8:24, 36:56] = blob  # a smaller patch of another colour
        img += ref_rng.normal(0, 12, size=img.shape)
        ref_imgs.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))

    metadata = {
        "hoist": {
            "labels": CNN_CLASSES,
            "image": {
                "layout": "NCHW",
                "scale": 1.0 / 255.0,
                "mean": [0.0, 0.0, 0.0],
                "std": [1.0, 1.0, 1.0],
            },
        }
    }
    path = save_mlflow(
        out,
        name,
        model,
        "image",
        (-1, 3, CNN_SIZE, CNN_SIZE),
        3,
        input_example=to_nchw(ref_imgs[:1]),
        metadata=metadata,
    )

    img_dir = path / "images"
    img_dir.mkdir()
    for c, img in enumerate(ref_imgs):
        Image.fromarray(img, "RGB").save(img_dir / f"{CNN_CLASSES[c]}.png", optimize=True)
    Image.fromarray(ref_imgs[0], "RGB").save(img_dir / "red.jpg", quality=90)

    # Reference inputs are the PNGs as decoded: uint8 RGB -> float / 255 -> NCHW.
    decoded = [np.asarray(Image.open(img_dir / f"{c}.png").convert("RGB")) for c in CNN_CLASSES]
    for a, b in zip(decoded, ref_imgs):
        assert np.array_equal(a, b)
    label, _ = write_reference(path, name, "image", to_nchw(decoded))
    assert label.tolist() == [0, 1, 2], f"image_cnn: reference images classified as {label}"

    entries = []
    for fname in ["red.png", "green.png", "blue.png", "red.jpg"]:
        im = np.asarray(Image.open(img_dir / fname).convert("RGB"))
        lab, proba = run_ort(path / "model.onnx", "image", to_nchw([im]))
        check_label_is_argmax(name, lab, proba)
        entries.append({"file": fname, "label": int(lab[0]), "class": CNN_CLASSES[int(lab[0])]})
        assert entries[-1]["class"] == fname.split(".")[0], entries[-1]
    (path / "reference_images.json").write_text(json.dumps(entries, indent=2) + "\n")
    print(
        f"{name}: synthetic train accuracy {train_acc:.3f}, test accuracy {test_acc:.3f}, "
        f"reference images -> {[e['class'] for e in entries]}"
    )


# --------------------------------------------------------------------------- pyfunc

# The pyfunc group (--only pyfunc): MLflow models without an onnx flavor, served by
# MLflow's own scoring server (`mlflow models serve`). Written under examples/pyfunc/
# (not examples/models/: those are all ONNX). Loadable by the pinned MLflow venv
# (tools/mlflow-venv.sh: the same scikit-learn, numpy and scipy as the pins below).
PYFUNC_OUT = REPO / "examples" / "pyfunc"
# The custom PythonModel's rule: benign (1) when the worst area is below this.
CUSTOM_WORST_AREA = 880.0


def pyfunc_requirements() -> list[str]:
    import cloudpickle
    import mlflow
    import scipy
    import sklearn

    return [
        f"mlflow=={mlflow.__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
        f"numpy=={np.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"scipy=={scipy.__version__}",
    ]


def save_pyfunc(out: Path, name: str, save) -> Path:
    """Run `save(path)` into a fresh out/name, pin its MLmodel's per-run fields, and
    check that it has no onnx flavor (it must be served by MLflow, not hoist-server)."""
    import yaml

    path = out / name
    if path.exists():
        shutil.rmtree(path)
    save(str(path))
    fix_mlmodel(path, name)
    flavors = yaml.safe_load((path / "MLmodel").read_text())["flavors"]
    assert "onnx" not in flavors and "python_function" in flavors, flavors
    for f in path.rglob("*"):
        assert f.stat().st_size < 1_000_000, f"{f} is too large"
    return path


class WorstAreaRule:
    """The custom model's logic, kept apart from MLflow so it pickles by value."""

    def __init__(self, column: int, limit: float):
        self.column, self.limit = column, limit

    def predict(self, x) -> list[int]:
        x = np.asarray(x, dtype=np.float64)
        return [int(v < self.limit) for v in x[:, self.column]]


def make_pyfunc(out: Path) -> None:
    """breast_cancer_sklearn (a pickled scikit-learn pipeline), breast_cancer_constant
    (a pipeline that predicts class 0 for every row: a bad release) and
    breast_cancer_custom (a custom `mlflow.pyfunc.PythonModel`: a one-feature rule)."""
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    names = list(load_breast_cancer().feature_names)
    X_train, X_test, y_train, y_test = tabular_split(X, y)
    X_train, X_test = X_train.astype(np.float64), X_test.astype(np.float64)
    example = X_test[:2]
    reqs = pyfunc_requirements()

    def sklearn_model(name: str, pipe) -> None:
        pipe.fit(X_train, y_train)
        pred = pipe.predict(X_test)
        sig = infer_signature(X_test, pred)
        save_pyfunc(out, name, lambda p: mlflow.sklearn.save_model(
            pipe, p, signature=sig, input_example=example, pip_requirements=reqs,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE))
        print(f"{name}: accuracy {np.mean(pred == y_test):.3f}, "
              f"classes {np.bincount(pred, minlength=2).tolist()} on the test split")

    sklearn_model("breast_cancer_sklearn", Pipeline([
        ("scaler", StandardScaler()),
        ("clf", LogisticRegression(max_iter=1000, random_state=SEED)),
    ]))
    sklearn_model("breast_cancer_constant", Pipeline([
        ("scaler", StandardScaler()),
        ("clf", DummyClassifier(strategy="constant", constant=0)),
    ]))

    class WorstArea(mlflow.pyfunc.PythonModel):
        def __init__(self, rule: WorstAreaRule):
            self.rule = rule

        def predict(self, context, model_input, params=None):
            return self.rule.predict(model_input)

    rule = WorstAreaRule(names.index("worst area"), CUSTOM_WORST_AREA)
    pred = np.asarray(rule.predict(X_test))
    save_pyfunc(out, "breast_cancer_custom", lambda p: mlflow.pyfunc.save_model(
        p, python_model=WorstArea(rule), signature=infer_signature(X_test, pred),
        input_example=example, pip_requirements=reqs))
    print(f"breast_cancer_custom: accuracy {np.mean(pred == y_test):.3f} on the test split")


# --------------------------------------------------------------------------- pytorch

# The pytorch group (--only pytorch): MLflow models with the pytorch flavor (a pickled
# torch.nn.Module, no onnx flavor), served by MLflow's scoring server. Run with the
# python of tools/torch-venv.sh (torch 2.15.0 and the MLflow venv's pins); written under
# examples/pyfunc/ beside the other models MLflow serves.
TORCH_HIDDEN = 16  # width of the MLP's one hidden layer
TORCH_EPOCHS = 200  # full-batch Adam steps on the training split
TORCH_LR = 0.01


def pytorch_requirements() -> list[str]:
    import cloudpickle
    import mlflow
    import torch

    return [
        f"mlflow=={mlflow.__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
        f"numpy=={np.__version__}",
        # The local version (+cu132) names the CUDA build; any 2.15.0 build loads it.
        f"torch=={torch.__version__.split('+')[0]}",
    ]


def make_pytorch(out: Path) -> None:
    """breast_cancer_torch (a small MLP, trained) and breast_cancer_torch_bad (the same
    MLP with an output layer that says "malignant" (0) for every row: a bad release).
    Both take the 30 float64 features and answer one class label per row, as the
    scikit-learn pyfunc models do, so the gateway's judgement reads their classes."""
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = tabular_split(X, y)
    X_train, X_test = X_train.astype(np.float64), X_test.astype(np.float64)
    example = X_test[:2]
    reqs = pytorch_requirements()

    class BreastCancerMLP(torch.nn.Module):
        """Standardize with the training split's mean and std (buffers), one hidden
        ReLU layer, two logits; `forward` answers the argmax: the class label."""

        def __init__(self, mean: np.ndarray, std: np.ndarray, hidden: int):
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
            self.hidden = torch.nn.Linear(len(mean), hidden)
            self.out = torch.nn.Linear(hidden, 2)

        def logits(self, x):
            x = (x.to(torch.float32) - self.mean) / self.std
            return self.out(torch.relu(self.hidden(x)))

        def forward(self, x):
            return self.logits(x).argmax(dim=1)

    def predict(model) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(X_test)).numpy()

    model = BreastCancerMLP(X_train.mean(axis=0), X_train.std(axis=0) + 1e-6, TORCH_HIDDEN)
    opt = torch.optim.Adam(model.parameters(), lr=TORCH_LR)
    xt, yt = torch.from_numpy(X_train), torch.from_numpy(y_train).long()
    for _ in range(TORCH_EPOCHS):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model.logits(xt), yt)
        loss.backward()
        opt.step()
    model.eval()

    bad = BreastCancerMLP(X_train.mean(axis=0), X_train.std(axis=0) + 1e-6, TORCH_HIDDEN)
    bad.load_state_dict(model.state_dict())
    with torch.no_grad():
        bad.out.weight.zero_()
        bad.out.bias.copy_(torch.tensor([1.0, 0.0]))
    bad.eval()

    for name, m in [("breast_cancer_torch", model), ("breast_cancer_torch_bad", bad)]:
        pred = predict(m)
        sig = infer_signature(X_test, pred)
        save_pyfunc(out, name, lambda p, m=m, sig=sig: mlflow.pytorch.save_model(
            m, p, signature=sig, input_example=example, pip_requirements=reqs))
        # What MLflow's scoring server will call: the model as pyfunc loads it.
        loaded = mlflow.pyfunc.load_model(str(out / name)).predict(X_test)
        assert np.array_equal(np.asarray(loaded), pred), name
        print(f"{name}: accuracy {np.mean(pred == y_test):.3f}, "
              f"classes {np.bincount(pred, minlength=2).tolist()} on the test split")
    bad_pred = predict(bad)
    assert (bad_pred == 0).all(), bad_pred


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--data-out", type=Path, default=DEFAULT_DATA_OUT,
                    help="output directory of the golden data (breast_cancer_golden.*)")
    ap.add_argument("--only", choices=["diabetes", "judgement", "pyfunc", "pytorch"],
                    help="write only these models (the others are left as they are)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    if args.only == "diabetes":
        make_diabetes(args.out)
        return 0
    if args.only == "pyfunc":
        # MLflow pyfunc models (no onnx flavor) go to examples/pyfunc unless --out says.
        make_pyfunc(PYFUNC_OUT if args.out == DEFAULT_OUT else args.out)
        return 0
    if args.only == "pytorch":
        # PyTorch models (tools/torch-venv.sh's python) go to examples/pyfunc too.
        make_pytorch(PYFUNC_OUT if args.out == DEFAULT_OUT else args.out)
        return 0
    if args.only == "judgement":
        make_breast_cancer_batch1(args.out)
        make_diabetes_retrain(args.out)
        return 0
    make_breast_cancer(args.out, args.data_out)
    make_digits(args.out)
    make_image_cnn(args.out)
    make_diabetes(args.out)
    make_breast_cancer_batch1(args.out)
    make_diabetes_retrain(args.out)

    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
