#!/usr/bin/env python3
"""Generate hoist's model zoo under examples/zoo/: models logged the way MLflow users
log them.

Every scikit-learn model is converted with `skl2onnx.to_onnx(model, X)` and its
defaults (so classifiers get skl2onnx's ZipMap `output_probability`, a sequence of
maps), XGBoost and LightGBM with onnxmltools' defaults, and each is saved with
`mlflow.onnx.save_model(onx, path, input_example=...)` (a pandas DataFrame or an
ndarray, whichever the model was trained on). The CNN is trained in PyTorch and
exported by `torch.onnx.export`, once with each exporter (`cnn`: the legacy
TorchScript one, `cnn_dynamo`: the dynamo one): tools/export_cnn.py, run as a
subprocess with the PyTorch venv's python (HOIST_TORCH_PYTHON, else the one
tools/torch-venv.sh prints; torch's wheel is too large for this venv), then saved here
like the others.

Everything is deterministic (fixed seeds, datasets that ship with scikit-learn). Run
through `bash tools/make-models.sh --zoo`, which sets up the pinned virtualenv.

Writes examples/zoo/<name>/ (an MLflow model) and examples/zoo/zoo.json: per model,
its kind, inputs (deterministic sample rows) and the outputs ONNX Runtime (Python,
CPU) gave for them. A ZipMap output is recorded as hoist serves it: its probability
matrix (`[n, classes]` FP32) plus the class labels (`labels`). In sample data,
`null` stands for NaN (JSON has no NaN).

`--only cnn,cnn_dynamo` regenerates just those models (files and zoo.json entries);
the others keep theirs. Models are written under examples/zoo/.staging/ and moved into
place once all are made.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_models import f32_json, fix_mlmodel, pip_requirements  # noqa: E402

SEED = 0
REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "examples" / "zoo"
SAMPLE_ROWS = 5
MAX_FILE_BYTES = 1_000_000
STAGING = ".staging"

# --only: the models to regenerate (None: all); the others keep their files and their
# zoo.json entries (PREVIOUS, read from the existing zoo.json).
ONLY: set[str] | None = None
PREVIOUS: dict[str, dict] = {}


def selected(name: str) -> bool:
    return ONLY is None or name in ONLY

import warnings  # noqa: E402

warnings.filterwarnings("ignore")


# --------------------------------------------------------------------------- data


def split(X, y):
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=0.25, random_state=SEED)


def iris():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return split(X.astype(np.float32), y)


def wine():
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    return split(X.astype(np.float32), y)


def breast_cancer():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    return split(X.astype(np.float32), y)


def diabetes():
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    return split(X.astype(np.float32), y.astype(np.float32))


def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return split((X / 16.0).astype(np.float32), y)


def with_nans(X: np.ndarray, rate: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = X.copy()
    X[rng.random(X.shape) < rate] = np.nan
    return X


def shops(n: int, seed: int):
    """A small tabular set: a string `city` and two numeric columns; the target
    depends on all three."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    cities = np.array(["berlin", "lisbon", "oslo", "paris"])
    city = cities[rng.integers(0, 4, n)]
    size = rng.normal(100.0, 30.0, n).astype(np.float32)
    age = rng.uniform(0.0, 40.0, n).astype(np.float32)
    score = (size / 30.0 - age / 10.0 + np.select(
        [city == "berlin", city == "lisbon", city == "oslo"], [1.0, -1.0, 2.0], 0.0)
        + rng.normal(0.0, 0.5, n))
    y = (score > np.median(score)).astype(np.int64)
    return pd.DataFrame({"city": city, "size": size, "age": age}), y


# --------------------------------------------------------------------------- recording


def tensor_json(arr: np.ndarray) -> dict:
    arr = np.asarray(arr)
    if arr.dtype.kind in "OUS":
        return {"datatype": "BYTES", "shape": list(arr.shape),
                "data": [str(v) for v in arr.ravel()]}
    if arr.dtype == np.int64:
        return {"datatype": "INT64", "shape": list(arr.shape),
                "data": [int(v) for v in arr.ravel()]}
    if arr.dtype == np.float32:
        return {"datatype": "FP32", "shape": list(arr.shape),
                "data": [None if np.isnan(v) else v for v in f32_json(arr)]}
    if arr.dtype == np.float64:
        return {"datatype": "FP64", "shape": list(arr.shape),
                "data": [None if np.isnan(v) else float(v) for v in arr.ravel()]}
    raise ValueError(f"unexpected dtype {arr.dtype}")


def zipmap_labels(onx) -> dict[str, list]:
    """For each graph output fed by a ZipMap: its class labels."""
    outs = {o.name for o in onx.graph.output}
    found = {}
    for node in onx.graph.node:
        if node.op_type == "ZipMap" and node.output[0] in outs:
            for a in node.attribute:
                if a.name == "classlabels_int64s":
                    found[node.output[0]] = [int(v) for v in a.ints]
                elif a.name == "classlabels_strings":
                    found[node.output[0]] = [s.decode() for s in a.strings]
    return found


def run_reference(path: Path, onx, feeds: dict) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = sess.run(None, feeds)
    zm = zipmap_labels(onx)
    outputs = {}
    for name, value in zip(names, got):
        if name in zm:
            labels = zm[name]
            matrix = np.array([[row[k] for k in labels] for row in value], dtype=np.float32)
            outputs[name] = {**tensor_json(matrix), "labels": labels}
        else:
            outputs[name] = tensor_json(np.asarray(value))
    return outputs


# --------------------------------------------------------------------------- saving


def save(out: Path, name: str, kind: str, onx, input_example, feeds: dict, zoo: list,
         note: str) -> None:
    """Saves the model under out/.staging/<name> (main() moves it into place once every
    model is made) and appends its zoo.json entry. A model --only leaves out keeps its
    files and its previous entry."""
    import mlflow.onnx
    import onnx

    if not selected(name):
        if name not in PREVIOUS:
            raise SystemExit(f"make_zoo: {name} is not in {out / 'zoo.json'} yet; "
                             f"add it to --only")
        zoo.append(PREVIOUS[name])
        return
    onnx.checker.check_model(onx)
    # Reproducible bytes: converters list opsets in set order and onnxmltools names
    # the graph with a random uuid. Neither changes what the model computes.
    opsets = sorted(onx.opset_import, key=lambda o: o.domain)
    del onx.opset_import[:]
    onx.opset_import.extend(opsets)
    if re.fullmatch(r"[0-9a-f]{32}", onx.graph.name):
        onx.graph.name = name
    path = out / STAGING / name
    if path.exists():
        shutil.rmtree(path)
    mlflow.onnx.save_model(
        onx,
        str(path),
        input_example=input_example,
        pip_requirements=pip_requirements(),
        # MLflow's default moves initializers of 1 KiB or more stored as raw_data to a
        # file beside model.onnx (the CNN's); name it rather than a random uuid.
        location="model.onnx.data",
    )
    fix_mlmodel(path, name)
    if (path / "model.onnx.data").exists():
        (path / "model.onnx.data").chmod(0o644)
    for f in path.iterdir():
        assert f.stat().st_size < MAX_FILE_BYTES, f"{f} is too large ({f.stat().st_size} bytes)"
    saved = onnx.load(str(path / "model.onnx"))
    zoo.append({
        "name": name,
        "kind": kind,
        "note": note,
        "ir_version": int(saved.ir_version),
        "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in saved.opset_import},
        "inputs": {k: tensor_json(v) for k, v in feeds.items()},
        "outputs": run_reference(path, saved, feeds),
    })
    print(f"make_zoo: {name} ({kind})", file=sys.stderr)


def patch_make_attribute() -> None:
    """skl2onnx 1.20's HistGradientBoosting converter hands onnx.helper lists of numpy
    booleans (scikit-learn 1.9 stores missing-value directions as np.bool_), which
    onnx 1.23 refuses (`Expected an int, got a boolean`). Cast them to int, as the
    converter meant; nothing else changes."""
    import onnx.helper

    orig = onnx.helper.make_attribute
    if getattr(orig, "_hoist_patched", False):
        return

    def make_attribute(key, value, *args, **kwargs):
        if isinstance(value, (list, tuple)) and any(
                isinstance(v, (bool, np.bool_)) for v in value):
            value = [int(v) for v in value]
        return orig(key, value, *args, **kwargs)

    make_attribute._hoist_patched = True
    onnx.helper.make_attribute = make_attribute


def to_onnx(model, X):
    from skl2onnx import to_onnx as skl_to_onnx

    patch_make_attribute()
    return skl_to_onnx(model, X)


def sk(out, zoo, name, kind, model, data, note, example_rows=2):
    """A scikit-learn model on one numeric matrix: to_onnx(model, X), ndarray example."""
    X_train, X_test, y_train, _ = data
    model.fit(X_train, y_train)
    onx = to_onnx(model, X_train[:1])
    x = X_test[:SAMPLE_ROWS]
    save(out, name, kind, onx, X_test[:example_rows], {"X": x}, zoo, note)


# --------------------------------------------------------------------------- models


def make_sklearn(out: Path, zoo: list) -> None:
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor,
                                  HistGradientBoostingClassifier,
                                  HistGradientBoostingRegressor, RandomForestClassifier,
                                  RandomForestRegressor)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, SVR
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    sk(out, zoo, "linear_regression", "regressor", LinearRegression(), diabetes(),
       "LinearRegression on diabetes")
    sk(out, zoo, "logistic_regression", "classifier", LogisticRegression(max_iter=1000),
       iris(), "LogisticRegression on iris (3 classes, ZipMap)")
    sk(out, zoo, "svc", "classifier", make_pipeline(StandardScaler(), SVC()), breast_cancer(),
       "StandardScaler + SVC (rbf, no probability) on breast_cancer")
    sk(out, zoo, "svr", "regressor", make_pipeline(StandardScaler(), SVR(C=50.0)), diabetes(),
       "StandardScaler + SVR (rbf) on diabetes")
    sk(out, zoo, "knn_classifier", "classifier", KNeighborsClassifier(n_neighbors=5), iris(),
       "KNeighborsClassifier on iris")
    sk(out, zoo, "knn_regressor", "regressor", KNeighborsRegressor(n_neighbors=5), diabetes(),
       "KNeighborsRegressor on diabetes")
    sk(out, zoo, "decision_tree_classifier", "classifier",
       DecisionTreeClassifier(max_depth=4, random_state=SEED), wine(),
       "DecisionTreeClassifier on wine")
    sk(out, zoo, "decision_tree_regressor", "regressor",
       DecisionTreeRegressor(max_depth=5, random_state=SEED), diabetes(),
       "DecisionTreeRegressor on diabetes")
    sk(out, zoo, "random_forest_classifier", "classifier",
       RandomForestClassifier(n_estimators=10, max_depth=6, random_state=SEED), wine(),
       "RandomForestClassifier on wine")
    sk(out, zoo, "random_forest_regressor", "regressor",
       RandomForestRegressor(n_estimators=10, max_depth=6, random_state=SEED), diabetes(),
       "RandomForestRegressor on diabetes")
    sk(out, zoo, "gradient_boosting_classifier", "classifier",
       GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=SEED), iris(),
       "GradientBoostingClassifier on iris (3 classes)")
    sk(out, zoo, "gradient_boosting_regressor", "regressor",
       GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=SEED), diabetes(),
       "GradientBoostingRegressor on diabetes")
    sk(out, zoo, "hist_gradient_boosting_classifier", "classifier",
       HistGradientBoostingClassifier(max_iter=20, random_state=SEED), breast_cancer(),
       "HistGradientBoostingClassifier on breast_cancer")
    sk(out, zoo, "hist_gradient_boosting_regressor", "regressor",
       HistGradientBoostingRegressor(max_iter=20, random_state=SEED), diabetes(),
       "HistGradientBoostingRegressor on diabetes")
    sk(out, zoo, "mlp_classifier", "classifier",
       MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=SEED), digits(),
       "MLPClassifier on digits (10 classes)")
    sk(out, zoo, "mlp_regressor", "regressor",
       make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(16,), max_iter=500,
                                                    random_state=SEED)), diabetes(),
       "StandardScaler + MLPRegressor on diabetes")
    sk(out, zoo, "scaler_logistic_regression", "classifier",
       make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), breast_cancer(),
       "StandardScaler + LogisticRegression on breast_cancer")
    sk(out, zoo, "pca_logistic_regression", "classifier",
       make_pipeline(StandardScaler(), PCA(n_components=8, random_state=SEED),
                     LogisticRegression(max_iter=1000)), digits(),
       "StandardScaler + PCA(8) + LogisticRegression on digits")

    # SimpleImputer with NaN inputs: trained and sampled with missing values.
    X_train, X_test, y_train, _ = diabetes()
    X_train, X_test = with_nans(X_train, 0.1, SEED), with_nans(X_test, 0.2, SEED + 1)
    sk(out, zoo, "imputer_ridge", "regressor",
       make_pipeline(SimpleImputer(strategy="mean"), Ridge(alpha=0.1)),
       (X_train, X_test, y_train, None),
       "SimpleImputer(mean) + Ridge on diabetes with NaN inputs")

    # String class labels: the label output is a string tensor, ZipMap keys are strings.
    X_train, X_test, y_train, y_test = iris()
    names = np.array(["setosa", "versicolor", "virginica"])
    sk(out, zoo, "string_labels", "classifier",
       make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
       (X_train, X_test, names[y_train], names[y_test]),
       "StandardScaler + LogisticRegression on iris with string class labels")


def make_categorical(out: Path, zoo: list) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    df, y = shops(300, SEED)
    train, test = df.iloc[:225].reset_index(drop=True), df.iloc[225:].reset_index(drop=True)
    y_train = y[:225]

    # OneHotEncoder of one string column ([n, 1] string input).
    city_train = train[["city"]].to_numpy()
    city_test = test[["city"]].to_numpy()
    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"),
                          LogisticRegression(max_iter=1000)).fit(city_train, y_train)
    onx = to_onnx(model, city_train[:1])
    save(out, "onehot_logistic_regression", "classifier", onx, city_test[:2],
         {"X": city_test[:SAMPLE_ROWS]}, zoo,
         "OneHotEncoder of a string column + LogisticRegression")

    # ColumnTransformer over a DataFrame: skl2onnx makes one graph input per column.
    model = make_pipeline(
        ColumnTransformer([
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ("num", StandardScaler(), ["size", "age"]),
        ]),
        LogisticRegression(max_iter=1000),
    ).fit(train, y_train)
    onx = to_onnx(model, train[:1])
    rows = test.iloc[:SAMPLE_ROWS]
    feeds = {
        "city": rows[["city"]].to_numpy(),
        "size": rows[["size"]].to_numpy().astype(np.float32),
        "age": rows[["age"]].to_numpy().astype(np.float32),
    }
    save(out, "column_transformer", "classifier", onx, test.iloc[:2], feeds, zoo,
         "ColumnTransformer(OneHotEncoder(city), StandardScaler(size, age)) + "
         "LogisticRegression; three graph inputs, DataFrame input example")


def make_boosters(out: Path, zoo: list) -> None:
    import lightgbm
    import xgboost
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    X_train, X_test, y_train, _ = iris()
    m = xgboost.XGBClassifier(n_estimators=10, max_depth=3, random_state=SEED, n_jobs=1)
    m.fit(X_train, y_train)
    onx = convert_xgboost(m, initial_types=[("input", FloatTensorType([None, 4]))])
    save(out, "xgboost_classifier", "classifier", onx, X_test[:2],
         {"input": X_test[:SAMPLE_ROWS]}, zoo, "XGBClassifier on iris via onnxmltools")

    X_train, X_test, y_train, _ = diabetes()
    m = xgboost.XGBRegressor(n_estimators=20, max_depth=3, random_state=SEED, n_jobs=1)
    m.fit(X_train, y_train)
    onx = convert_xgboost(m, initial_types=[("input", FloatTensorType([None, 10]))])
    save(out, "xgboost_regressor", "regressor", onx, X_test[:2],
         {"input": X_test[:SAMPLE_ROWS]}, zoo, "XGBRegressor on diabetes via onnxmltools")

    X_train, X_test, y_train, _ = breast_cancer()
    m = lightgbm.LGBMClassifier(n_estimators=10, num_leaves=8, random_state=SEED, n_jobs=1,
                                verbose=-1)
    m.fit(X_train, y_train)
    onx = convert_lightgbm(m, initial_types=[("input", FloatTensorType([None, 30]))])
    save(out, "lightgbm_classifier", "classifier", onx, X_test[:2],
         {"input": X_test[:SAMPLE_ROWS]}, zoo,
         "LGBMClassifier on breast_cancer via onnxmltools (ZipMap)")

    X_train, X_test, y_train, _ = diabetes()
    m = lightgbm.LGBMRegressor(n_estimators=20, num_leaves=8, random_state=SEED, n_jobs=1,
                               verbose=-1)
    m.fit(X_train, y_train)
    onx = convert_lightgbm(m, initial_types=[("input", FloatTensorType([None, 10]))])
    save(out, "lightgbm_regressor", "regressor", onx, X_test[:2],
         {"input": X_test[:SAMPLE_ROWS]}, zoo, "LGBMRegressor on diabetes via onnxmltools")


def torch_python() -> str:
    """The PyTorch venv's python: HOIST_TORCH_PYTHON, else the last line
    tools/torch-venv.sh prints (it creates the venv under ~/.hoist the first time)."""
    import os
    import subprocess

    if os.environ.get("HOIST_TORCH_PYTHON"):
        return os.environ["HOIST_TORCH_PYTHON"]
    done = subprocess.run(["bash", str(REPO / "tools" / "torch-venv.sh")],
                          stdout=subprocess.PIPE, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def strip_stack_traces(onx) -> None:
    """The dynamo exporter records each node's Python stack trace, with the absolute
    paths of the exporting machine's torch install, in `pkg.torch.onnx.stack_trace`
    node metadata. Drop those (the other metadata stays); nothing else changes."""
    for node in onx.graph.node:
        keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)


def make_cnn(out: Path, zoo: list, versions: dict) -> None:
    """A small CNN trained in PyTorch on 8x8 digits and exported by torch.onnx.export,
    once with each exporter: tools/export_cnn.py, run with the PyTorch venv's python
    (the torch wheel is too large for .venv-models). `cnn` is the legacy TorchScript
    exporter's graph (Conv, Relu, MaxPool, Flatten, Gemm), `cnn_dynamo` the dynamo
    exporter's (Conv, Relu, MaxPool, Reshape, Gemm); both take `input` [batch_size, 1,
    8, 8] and answer `output`, the logits."""
    import subprocess
    import tempfile

    import onnx
    import onnxruntime as ort

    names = ("cnn", "cnn_dynamo")
    if not any(selected(n) for n in names):
        for n in names:
            save(out, n, "cnn", None, None, {}, zoo, "")
        return
    X_train, X_test, y_train, y_test = digits()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "train.npz", X=X_train, y=y_train)
        subprocess.run([torch_python(), str(REPO / "tools" / "export_cnn.py"),
                        "--data", str(tmp / "train.npz"), "--out", str(tmp / "export")],
                       check=True)
        exported = json.loads((tmp / "export" / "export.json").read_text())
        versions.update({"torch": exported["torch"], "onnxscript": exported["onnxscript"]})
        assert exported["onnx"] == onnx.__version__, exported
        models = {n: onnx.load(str(tmp / "export" / f"{n}.onnx")) for n in names}

    # Both graphs compute the same trained module: same logits, decent accuracy.
    images = X_test.reshape(-1, 1, 8, 8)
    logits = {}
    for n, onx in models.items():
        sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
        logits[n] = sess.run(None, {"input": images})[0]
        acc = float((logits[n].argmax(1) == y_test).mean())
        print(f"make_zoo: {n} test accuracy {acc:.3f}", file=sys.stderr)
        assert acc >= 0.9, f"{n}: test accuracy only {acc:.3f}"
    np.testing.assert_allclose(logits["cnn"], logits["cnn_dynamo"], rtol=1e-5, atol=1e-5)

    x = images[:SAMPLE_ROWS]
    torch_v = exported["torch"]
    notes = {
        "cnn": f"Conv-Relu-MaxPool-Flatten-Gemm trained in torch {torch_v} on 8x8 digits, "
               "exported by torch.onnx.export(dynamo=False) (TorchScript); logits",
        "cnn_dynamo": f"the same CNN exported by torch.onnx.export(dynamo=True) (torch "
                      f"{torch_v}, onnxscript {exported['onnxscript']}): Conv-Relu-MaxPool-"
                      "Reshape-Gemm; logits",
    }
    for n, onx in models.items():
        strip_stack_traces(onx)
        save(out, n, "cnn", onx, images[:2], {"input": x}, zoo, notes[n])


def make_current_ir(out: Path, zoo: list) -> None:
    """A model as current `onnx.helper.make_model` writes it by default (its newest IR
    version and opset): the case ONNX Runtime releases lag behind."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    X_train, X_test, y_train, _ = diabetes()
    coef, *_ = np.linalg.lstsq(np.c_[X_train, np.ones(len(X_train))], y_train, rcond=None)
    inits = [numpy_helper.from_array(coef[:-1].astype(np.float32).reshape(10, 1), "coef"),
             numpy_helper.from_array(np.array([coef[-1]], dtype=np.float32), "intercept")]
    nodes = [helper.make_node("MatMul", ["input", "coef"], ["m"]),
             helper.make_node("Add", ["m", "intercept"], ["variable"])]
    graph = helper.make_graph(
        nodes, "current_ir",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, ["N", 1])],
        initializer=inits)
    onx = helper.make_model(graph)  # onnx's defaults: IR onnx.IR_VERSION, newest opset
    assert onx.ir_version == onnx.IR_VERSION
    save(out, "current_onnx_defaults", "regressor", onx, X_test[:2],
         {"input": X_test[:SAMPLE_ROWS]}, zoo,
         f"MatMul + Add written with onnx {onnx.__version__}'s defaults "
         f"(IR {onx.ir_version}, opset {onx.opset_import[0].version})")


def main() -> int:
    global ONLY, PREVIOUS
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", metavar="NAME[,NAME...]",
                    help="regenerate only these models; the others keep their files and "
                         "their entries in the existing zoo.json")
    args = ap.parse_args()
    out: Path = args.out
    previous_doc: dict = {}
    if args.only:
        ONLY = {n.strip() for n in args.only.split(",") if n.strip()}
        try:
            previous_doc = json.loads((out / "zoo.json").read_text())
        except (OSError, ValueError) as e:
            print(f"make_zoo: --only needs the existing {out / 'zoo.json'}: {e}",
                  file=sys.stderr)
            return 2
        PREVIOUS = {m["name"]: m for m in previous_doc["models"]}
    out.mkdir(parents=True, exist_ok=True)
    staging = out / STAGING
    if staging.exists():
        shutil.rmtree(staging)
    np.random.seed(SEED)
    zoo: list = []
    versions: dict = {}
    make_sklearn(out, zoo)
    make_categorical(out, zoo)
    make_boosters(out, zoo)
    make_cnn(out, zoo, versions)
    make_current_ir(out, zoo)

    names = [m["name"] for m in zoo]
    unknown = sorted((ONLY or set()) - set(names))
    if unknown:
        shutil.rmtree(staging, ignore_errors=True)
        print(f"make_zoo: --only: no model named {', '.join(unknown)} (the zoo has: "
              f"{', '.join(names)}); nothing written", file=sys.stderr)
        return 2
    if staging.exists():
        for made in sorted(staging.iterdir()):
            if (out / made.name).exists():
                shutil.rmtree(out / made.name)
            made.rename(out / made.name)
        staging.rmdir()

    import lightgbm
    import mlflow
    import onnx
    import onnxmltools
    import onnxruntime
    import skl2onnx
    import sklearn
    import xgboost

    versions = {
        "mlflow": mlflow.__version__, "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__, "skl2onnx": skl2onnx.__version__,
        "onnxmltools": onnxmltools.__version__, "scikit-learn": sklearn.__version__,
        "xgboost": xgboost.__version__, "lightgbm": lightgbm.__version__,
        # torch's, from the CNN's export (or the previous zoo.json when --only left it out)
        "torch": previous_doc.get("versions", {}).get("torch"),
        "onnxscript": previous_doc.get("versions", {}).get("onnxscript"),
        **versions,
    }
    doc = {
        "generated_by": "tools/make_zoo.py",
        "versions": versions,
        "models": zoo,
    }
    (out / "zoo.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"make_zoo: {len(zoo)} models, {total} bytes under {out}", file=sys.stderr)
    assert total < 6_000_000, "the zoo must stay under 6 MB"
    return 0


if __name__ == "__main__":
    sys.exit(main())
