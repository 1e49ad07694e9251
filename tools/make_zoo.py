#!/usr/bin/env python3
"""Generate hoist's model zoo under examples/zoo/: models logged the way MLflow users
log them.

Every scikit-learn model is converted with `skl2onnx.to_onnx(model, X)` and its
defaults (so classifiers get skl2onnx's ZipMap `output_probability`, a sequence of
maps), XGBoost and LightGBM with onnxmltools' defaults, and each is saved with
`mlflow.onnx.save_model(onx, path, input_example=...)` (a pandas DataFrame or an
ndarray, whichever the model was trained on). The CNN is built with onnx.helper from
exactly the operators `torch.onnx.export` emits for Conv -> Relu -> MaxPool -> Flatten
-> Gemm (torch's wheel pulls in CUDA libraries far too large for CI; see
examples/zoo/README.md).

Everything is deterministic (fixed seeds, datasets that ship with scikit-learn). Run
through `bash tools/make-models.sh --zoo`, which sets up the pinned virtualenv.

Writes examples/zoo/<name>/ (an MLflow model) and examples/zoo/zoo.json: per model,
its kind, inputs (deterministic sample rows) and the outputs ONNX Runtime (Python,
CPU) gave for them. A ZipMap output is recorded as hoist serves it: its probability
matrix (`[n, classes]` FP32) plus the class labels (`labels`). In sample data,
`null` stands for NaN (JSON has no NaN).
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
    import mlflow.onnx
    import onnx

    onnx.checker.check_model(onx)
    # Reproducible bytes: converters list opsets in set order and onnxmltools names
    # the graph with a random uuid. Neither changes what the model computes.
    opsets = sorted(onx.opset_import, key=lambda o: o.domain)
    del onx.opset_import[:]
    onx.opset_import.extend(opsets)
    if re.fullmatch(r"[0-9a-f]{32}", onx.graph.name):
        onx.graph.name = name
    path = out / name
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


def make_cnn(out: Path, zoo: list) -> None:
    """The graph torch.onnx.export writes for

        nn.Sequential(Conv2d(1, 4, 3, padding=1), ReLU(), MaxPool2d(2), Flatten(),
                      Linear(4 * 4 * 4, 10))

    on a [N, 1, 8, 8] input (opset 18, `input` -> `output`, a dynamic batch): Conv,
    Relu, MaxPool, Flatten, Gemm(transB=1). The weights are fitted on digits (the
    conv layer fixed random, the Gemm by logistic regression on its features)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.linear_model import LogisticRegression

    X_train, X_test, y_train, _ = digits()
    rng = np.random.default_rng(SEED + 7)
    w = rng.normal(0.0, 0.5, size=(4, 1, 3, 3)).astype(np.float32)
    b = np.zeros(4, dtype=np.float32)

    def features(x):  # numpy Conv(pad 1) -> Relu -> MaxPool(2) -> Flatten
        img = x.reshape(-1, 1, 8, 8)
        pad = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)))
        conv = np.zeros((img.shape[0], 4, 8, 8), dtype=np.float32)
        for k in range(4):
            for i in range(3):
                for j in range(3):
                    conv[:, k] += w[k, 0, i, j] * pad[:, 0, i:i + 8, j:j + 8]
            conv[:, k] += b[k]
        r = np.maximum(conv, 0)
        p = r.reshape(-1, 4, 4, 2, 4, 2).max(axis=(3, 5))
        return p.reshape(p.shape[0], -1)

    clf = LogisticRegression(max_iter=2000).fit(features(X_train), y_train)
    inits = [
        numpy_helper.from_array(w, "0.weight"),
        numpy_helper.from_array(b, "0.bias"),
        numpy_helper.from_array(clf.coef_.astype(np.float32), "4.weight"),
        numpy_helper.from_array(clf.intercept_.astype(np.float32), "4.bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "0.weight", "0.bias"], ["/0/Conv_output_0"],
                         name="/0/Conv", dilations=[1, 1], group=1, kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["/0/Conv_output_0"], ["/1/Relu_output_0"], name="/1/Relu"),
        helper.make_node("MaxPool", ["/1/Relu_output_0"], ["/2/MaxPool_output_0"],
                         name="/2/MaxPool", ceil_mode=0, dilations=[1, 1], kernel_shape=[2, 2],
                         pads=[0, 0, 0, 0], strides=[2, 2]),
        helper.make_node("Flatten", ["/2/MaxPool_output_0"], ["/3/Flatten_output_0"],
                         name="/3/Flatten", axis=1),
        helper.make_node("Gemm", ["/3/Flatten_output_0", "4.weight", "4.bias"], ["output"],
                         name="/4/Gemm", alpha=1.0, beta=1.0, transB=1),
    ]
    graph = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch_size", 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch_size", 10])],
        initializer=inits,
    )
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                            producer_name="pytorch", producer_version="2.15.0")
    onx.ir_version = 10  # what torch.onnx.export writes at opset 18
    onnx.checker.check_model(onx, full_check=True)
    x = X_test[:SAMPLE_ROWS].reshape(-1, 1, 8, 8)
    save(out, "cnn", "cnn", onx, X_test[:2].reshape(-1, 1, 8, 8), {"input": x}, zoo,
         "Conv-Relu-MaxPool-Flatten-Gemm (torch.onnx.export's ops) on 8x8 digits; logits")


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
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    np.random.seed(SEED)
    zoo: list = []
    make_sklearn(out, zoo)
    make_categorical(out, zoo)
    make_boosters(out, zoo)
    make_cnn(out, zoo)
    make_current_ir(out, zoo)
    import lightgbm
    import mlflow
    import onnx
    import onnxmltools
    import onnxruntime
    import skl2onnx
    import sklearn
    import xgboost

    doc = {
        "generated_by": "tools/make_zoo.py",
        "versions": {
            "mlflow": mlflow.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "skl2onnx": skl2onnx.__version__,
            "onnxmltools": onnxmltools.__version__, "scikit-learn": sklearn.__version__,
            "xgboost": xgboost.__version__, "lightgbm": lightgbm.__version__,
        },
        "models": zoo,
    }
    (out / "zoo.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"make_zoo: {len(zoo)} models, {total} bytes under {out}", file=sys.stderr)
    assert total < 6_000_000, "the zoo must stay under 6 MB"
    return 0


if __name__ == "__main__":
    sys.exit(main())
