#!/usr/bin/env python3
"""Generate small ONNX-ML operator models under examples/ops/ for the tract-vs-ORT
operator test (crates/server/tests/ops.rs).

Each model is `<name>.onnx` plus `<name>.json` holding deterministic input
tensors ({"inputs": [{"name", "dtype", "shape", "data"}]}). The outputs are not
stored: the test runs every model on both runtimes and compares them.

Two kinds of models: hand-built with onnx.helper for exact attribute coverage
(every aggregate function, post-transform, kernel, encoder form), and real
converter output from skl2onnx (zipmap off). Every model is checked to load and
run on onnxruntime here. Run with the shared venv:

    .venv-models/bin/python tools/make_op_models.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "examples" / "ops"
RNG = np.random.default_rng(16)
ROWS = 8
FEATURES = 4

FLOAT, INT64, STRING, DOUBLE = TensorProto.FLOAT, TensorProto.INT64, TensorProto.STRING, TensorProto.DOUBLE
NP = {FLOAT: np.float32, INT64: np.int64, DOUBLE: np.float64}
DTYPE = {FLOAT: "float32", INT64: "int64", STRING: "string", DOUBLE: "float64"}


def features(rows=ROWS, width=FEATURES, nan=False, dtype=np.float32):
    x = RNG.normal(size=(rows, width)).round(3).astype(dtype)
    if nan:
        x[1, 0] = np.nan
        x[3, 2] = np.nan
    return x


def save(name, model, inputs):
    """inputs: list of (name, numpy array)."""
    onnx.checker.check_model(model)
    path = OUT / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    sess.run(None, {n: v for n, v in inputs})
    doc = {"inputs": []}
    for n, v in inputs:
        if v.dtype.kind in "OU":
            data = [str(s) for s in v.ravel()]
            dt = "string"
        else:
            data = [None if (isinstance(x, float) and np.isnan(x)) else x for x in v.ravel().tolist()]
            dt = str(v.dtype)
        doc["inputs"].append({"name": n, "dtype": dt, "shape": list(v.shape), "data": data})
    (OUT / f"{name}.json").write_text(json.dumps(doc) + "\n")


def one_node(op, attrs, inputs, outputs, ml_opset=3, extra_inits=()):
    """inputs/outputs: list of (name, elem_type, shape)."""
    node = helper.make_node(op, [i[0] for i in inputs], [o[0] for o in outputs], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph(
        [node],
        op,
        [helper.make_tensor_value_info(*i) for i in inputs if i[0] not in {t.name for t in extra_inits}],
        [helper.make_tensor_value_info(*o) for o in outputs],
        initializer=list(extra_inits),
    )
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", ml_opset)],
        ir_version=8,
    )


# --- tree ensembles -----------------------------------------------------------------

def small_trees(n_trees, n_out, missing=False, modes=("BRANCH_LEQ",)):
    """Random depth-2 trees over FEATURES features, weights on n_out outputs."""
    a = {k: [] for k in ["nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values",
                         "nodes_modes", "nodes_truenodeids", "nodes_falsenodeids",
                         "nodes_missing_value_tracks_true", "w_tree", "w_node", "w_id", "w_val"]}
    for t in range(n_trees):
        # 0: root, 1 and 2 branches, 3..6 leaves
        for nid in range(7):
            a["nodes_treeids"].append(t)
            a["nodes_nodeids"].append(nid)
            if nid < 3:
                a["nodes_featureids"].append(int(RNG.integers(FEATURES)))
                a["nodes_values"].append(round(float(RNG.normal()), 2))
                a["nodes_modes"].append(modes[(t + nid) % len(modes)])
                a["nodes_truenodeids"].append([1, 3, 5][nid])
                a["nodes_falsenodeids"].append([2, 4, 6][nid])
                a["nodes_missing_value_tracks_true"].append(int(missing and (t + nid) % 2 == 0))
            else:
                a["nodes_featureids"].append(0)
                a["nodes_values"].append(0.0)
                a["nodes_modes"].append("LEAF")
                a["nodes_truenodeids"].append(0)
                a["nodes_falsenodeids"].append(0)
                a["nodes_missing_value_tracks_true"].append(0)
                for k in range(n_out):
                    if n_out == 1 or RNG.random() < 0.8:
                        a["w_tree"].append(t)
                        a["w_node"].append(nid)
                        a["w_id"].append(k)
                        a["w_val"].append(round(float(RNG.normal()), 3))
    if not missing:
        del a["nodes_missing_value_tracks_true"]
    return a


def tree_regressor(name, n_out, aggregate="SUM", post="NONE", base=None, missing=False, modes=("BRANCH_LEQ",),
                   as_tensor=False, n_trees=5):
    a = small_trees(n_trees, n_out, missing, modes)
    attrs = {k: v for k, v in a.items() if k.startswith("nodes_")}
    attrs.update(target_treeids=a["w_tree"], target_nodeids=a["w_node"], target_ids=a["w_id"],
                 n_targets=n_out, aggregate_function=aggregate, post_transform=post)
    weights = a["w_val"]
    if as_tensor:
        vals = attrs.pop("nodes_values")
        attrs["nodes_values_as_tensor"] = numpy_helper.from_array(np.array(vals, np.float32), "nodes_values")
        attrs["target_weights_as_tensor"] = numpy_helper.from_array(np.array(weights, np.float32), "w")
    else:
        attrs["target_weights"] = weights
    if base is not None:
        attrs["base_values"] = base
    m = one_node("TreeEnsembleRegressor", attrs, [("X", FLOAT, [None, FEATURES])], [("Y", FLOAT, [None, n_out])])
    save(name, m, [("X", features(nan=missing or True))])


def trees():
    for agg in ["SUM", "AVERAGE", "MIN", "MAX"]:
        tree_regressor(f"ter_{agg.lower()}_1", 1, agg, base=[0.5])
        tree_regressor(f"ter_{agg.lower()}_3", 3, agg, base=[0.1, -0.2, 0.3])
    for post in ["LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"]:
        tree_regressor(f"ter_post_{post.lower()}_3", 3, "SUM", post=post)
    tree_regressor("ter_probit_1", 1, "AVERAGE", post="PROBIT")
    tree_regressor("ter_logistic_1", 1, "SUM", post="LOGISTIC")
    tree_regressor("ter_missing", 2, "SUM", missing=True)
    tree_regressor("ter_modes", 2, "SUM", modes=("BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ", "BRANCH_LEQ"))
    tree_regressor("ter_as_tensor", 2, "AVERAGE", as_tensor=True)
    tree_regressor("ter_100_trees", 1, "SUM", n_trees=100)


# --- linear ---------------------------------------------------------------------------

def linear():
    x = features()
    for post in ["NONE", "LOGISTIC", "SOFTMAX", "PROBIT"]:
        for t in [1, 3]:
            coef = RNG.normal(size=t * FEATURES).round(3).tolist()
            attrs = dict(coefficients=coef, intercepts=RNG.normal(size=t).round(3).tolist(), targets=t, post_transform=post)
            if post == "PROBIT":
                attrs["coefficients"] = [c * 0.05 for c in coef]
                attrs["intercepts"] = [0.5] * t
            m = one_node("LinearRegressor", attrs, [("X", FLOAT, [None, FEATURES])], [("Y", FLOAT, [None, t])], ml_opset=1)
            save(f"linreg_{post.lower()}_{t}", m, [("X", x)])
    cases = [
        ("multi_int", dict(classlabels_ints=[3, 5, 7]), 3, INT64),
        ("multi_str", dict(classlabels_strings=["a", "b", "c"]), 3, STRING),
        ("binary_int", dict(classlabels_ints=[0, 1]), 1, INT64),
        ("binary_str", dict(classlabels_strings=["no", "yes"]), 1, STRING),
    ]
    for post in ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"]:
        for tag, labels, t, lt in cases:
            attrs = dict(coefficients=RNG.normal(size=t * FEATURES).round(3).tolist(),
                         intercepts=RNG.normal(size=t).round(3).tolist(), post_transform=post, **labels)
            cols = 2 if (t == 1 and len(next(iter(labels.values()))) == 2) else t
            m = one_node("LinearClassifier", attrs, [("X", FLOAT, [None, FEATURES])],
                         [("label", lt, [None]), ("scores", FLOAT, [None, cols])], ml_opset=1)
            save(f"lincls_{tag}_{post.lower()}", m, [("X", x)])
    # int64 and double inputs are cast to float
    attrs = dict(coefficients=RNG.normal(size=3 * FEATURES).round(3).tolist(), intercepts=[0.1, 0.2, 0.3],
                 classlabels_ints=[0, 1, 2])
    m = one_node("LinearClassifier", attrs, [("X", INT64, [None, FEATURES])],
                 [("label", INT64, [None]), ("scores", FLOAT, [None, 3])], ml_opset=1)
    save("lincls_int_input", m, [("X", (features() * 10).astype(np.int64))])


# --- SVM --------------------------------------------------------------------------------

def svm():
    x = features()
    kernels = {"LINEAR": [0.0, 0.0, 0.0], "POLY": [0.3, 0.5, 3.0], "RBF": [0.4, 0.0, 0.0], "SIGMOID": [0.2, 0.1, 0.0]}
    for kname, params in kernels.items():
        for classes in [2, 3]:
            for proba in [False, True]:
                vpc = [2] * classes
            nv = sum(vpc)
            for proba in [False, True]:
                pairs = classes * (classes - 1) // 2
                attrs = dict(kernel_type=kname, kernel_params=params, vectors_per_class=vpc,
                             support_vectors=RNG.normal(size=nv * FEATURES).round(3).tolist(),
                             coefficients=RNG.normal(size=(classes - 1) * nv).round(3).tolist(),
                             rho=RNG.normal(size=pairs).round(3).tolist(),
                             classlabels_ints=list(range(classes)))
                if proba:
                    attrs.update(prob_a=(-RNG.random(pairs) * 2).round(3).tolist(), prob_b=RNG.normal(size=pairs).round(3).tolist())
                cols = classes if proba else (2 if classes == 2 else pairs)
                m = one_node("SVMClassifier", attrs, [("X", FLOAT, [None, FEATURES])],
                             [("label", INT64, [None]), ("scores", FLOAT, [None, cols])], ml_opset=1)
                save(f"svc_{kname.lower()}_{classes}{'_proba' if proba else ''}", m, [("X", x)])
        for one_class in [0, 1]:
            attrs = dict(kernel_type=kname, kernel_params=params, n_supports=3,
                         support_vectors=RNG.normal(size=3 * FEATURES).round(3).tolist(),
                         coefficients=RNG.normal(size=3).round(3).tolist(), rho=[0.2], one_class=one_class)
            m = one_node("SVMRegressor", attrs, [("X", FLOAT, [None, FEATURES])], [("Y", FLOAT, [None, 1])], ml_opset=1)
            save(f"svr_{kname.lower()}{'_oneclass' if one_class else ''}", m, [("X", x)])
    # liblinear mode (no support vectors) and string labels
    attrs = dict(coefficients=RNG.normal(size=3 * FEATURES).round(3).tolist(), rho=[0.3], kernel_params=[0.0, 0.0, 0.0],
                 classlabels_strings=["x", "y", "z"], post_transform="SOFTMAX")
    m = one_node("SVMClassifier", attrs, [("X", FLOAT, [None, FEATURES])],
                 [("label", STRING, [None]), ("scores", FLOAT, [None, 3])], ml_opset=1)
    save("svc_liblinear_str", m, [("X", x)])
    attrs = dict(coefficients=RNG.normal(size=FEATURES).round(3).tolist(), rho=[0.3], kernel_params=[0.0, 0.0, 0.0], n_supports=0)
    m = one_node("SVMRegressor", attrs, [("X", FLOAT, [None, FEATURES])], [("Y", FLOAT, [None, 1])], ml_opset=1)
    save("svr_liblinear", m, [("X", x)])


# --- preprocessing and encoders ---------------------------------------------------------

def preprocessing():
    x = features(nan=False)
    x[2] = 0.0
    for norm in ["MAX", "L1", "L2"]:
        m = one_node("Normalizer", dict(norm=norm), [("X", FLOAT, [None, FEATURES])], [("Y", FLOAT, [None, FEATURES])], ml_opset=1)
        save(f"normalizer_{norm.lower()}", m, [("X", x)])
    m = one_node("Normalizer", dict(norm="L2"), [("X", DOUBLE, [None, FEATURES])], [("Y", FLOAT, [None, FEATURES])], ml_opset=1)
    save("normalizer_l2_double", m, [("X", x.astype(np.float64))])
    xb = features(nan=True)
    m = one_node("Binarizer", dict(threshold=0.25), [("X", FLOAT, [None, FEATURES])], [("Y", FLOAT, [None, FEATURES])], ml_opset=1)
    save("binarizer", m, [("X", features())])
    m = one_node("Imputer", dict(imputed_value_floats=[1.5, 2.5, 3.5, 4.5], replaced_value_float=float("nan")),
                 [("X", FLOAT, [None, FEATURES])], [("Y", FLOAT, [None, FEATURES])], ml_opset=1)
    save("imputer_nan", m, [("X", xb)])
    xi = RNG.integers(-2, 3, size=(ROWS, FEATURES)).astype(np.int64)
    m = one_node("Imputer", dict(imputed_value_int64s=[9], replaced_value_int64=0),
                 [("X", INT64, [None, FEATURES])], [("Y", INT64, [None, FEATURES])], ml_opset=1)
    save("imputer_int", m, [("X", xi)])
    m = one_node("OneHotEncoder", dict(cats_int64s=[-2, 0, 2, 7], zeros=1),
                 [("X", INT64, [None, FEATURES])], [("Y", FLOAT, [None, FEATURES, 4])], ml_opset=1)
    save("onehot_int", m, [("X", xi)])
    xs = np.array([["red"], ["green"], ["blue"], ["teal"], ["red"], ["blue"], ["green"], ["red"]], dtype=object)
    m = one_node("OneHotEncoder", dict(cats_strings=["blue", "green", "red"], zeros=1),
                 [("X", STRING, [None, 1])], [("Y", FLOAT, [None, 1, 3])], ml_opset=1)
    save("onehot_str", m, [("X", xs)])
    idx = numpy_helper.from_array(np.array([3, 0, 3], np.int64), "idx")
    m = one_node("ArrayFeatureExtractor", {}, [("X", FLOAT, [None, FEATURES]), ("idx", INT64, [3])],
                 [("Y", FLOAT, [None, 3])], ml_opset=1, extra_inits=[idx])
    save("afe_float", m, [("X", x)])
    idx = numpy_helper.from_array(np.array([0], np.int64), "idx")
    m = one_node("ArrayFeatureExtractor", {}, [("X", STRING, [None, 1]), ("idx", INT64, [1])],
                 [("Y", STRING, [None, 1])], ml_opset=1, extra_inits=[idx])
    save("afe_string", m, [("X", xs)])
    m = one_node("FeatureVectorizer", dict(inputdimensions=[2, 3, 1]),
                 [("A", FLOAT, [None, 2]), ("B", FLOAT, [None, 2]), ("C", FLOAT, [None, 2])],
                 [("Y", FLOAT, [None, 6])], ml_opset=1)
    save("feature_vectorizer", m, [("A", features(width=2)), ("B", features(width=2)), ("C", features(width=2))])
    m = one_node("CategoryMapper", dict(cats_strings=["blue", "green", "red"], cats_int64s=[10, 20, 30], default_int64=-7),
                 [("X", STRING, [None, 1])], [("Y", INT64, [None, 1])], ml_opset=1)
    save("category_mapper_s2i", m, [("X", xs)])
    m = one_node("CategoryMapper", dict(cats_strings=["blue", "green", "red"], cats_int64s=[-2, 0, 2], default_string="?"),
                 [("X", INT64, [None, FEATURES])], [("Y", STRING, [None, FEATURES])], ml_opset=1)
    save("category_mapper_i2s", m, [("X", xi)])

    # LabelEncoder: opset 1, 2 and 4
    m = one_node("LabelEncoder", dict(classes_strings=["blue", "green", "red"], default_int64=-5),
                 [("X", STRING, [None, 1])], [("Y", INT64, [None, 1])], ml_opset=1)
    save("label_encoder_1_s2i", m, [("X", xs)])
    m = one_node("LabelEncoder", dict(classes_strings=["blue", "green", "red"], default_string="none"),
                 [("X", INT64, [None, FEATURES])], [("Y", STRING, [None, FEATURES])], ml_opset=1)
    save("label_encoder_1_i2s", m, [("X", xi)])
    m = one_node("LabelEncoder", dict(keys_strings=["blue", "green", "red", "red"], values_int64s=[1, 2, 3, 4]),
                 [("X", STRING, [None, 1])], [("Y", INT64, [None, 1])], ml_opset=2)
    save("label_encoder_2_s2i", m, [("X", xs)])
    m = one_node("LabelEncoder", dict(keys_int64s=[-2, 0, 2], values_strings=["a", "b", "c"], default_string="d"),
                 [("X", INT64, [None, FEATURES])], [("Y", STRING, [None, FEATURES])], ml_opset=2)
    save("label_encoder_2_i2s", m, [("X", xi)])
    m = one_node("LabelEncoder", dict(keys_floats=[0.0, 1.5, float("nan")], values_floats=[10.0, 20.0, 30.0]),
                 [("X", FLOAT, [None, 3])], [("Y", FLOAT, [None, 3])], ml_opset=4)
    xf = np.array([[0.0, 1.5, np.nan], [-0.0, 2.0, 1.5]] * 4, np.float32)
    save("label_encoder_4_f2f", m, [("X", xf)])
    m = one_node("LabelEncoder", dict(
        keys_tensor=numpy_helper.from_array(np.array([-2, 0, 2], np.int64), "k"),
        values_tensor=numpy_helper.from_array(np.array([0.5, 1.5, 2.5], np.float32), "v"),
        default_tensor=numpy_helper.from_array(np.array([-1.0], np.float32), "d")),
        [("X", INT64, [None, FEATURES])], [("Y", FLOAT, [None, FEATURES])], ml_opset=4)
    save("label_encoder_4_tensor", m, [("X", xi)])
    m = one_node("LabelEncoder", dict(keys_strings=["blue", "red"], values_floats=[1.0, 2.0]),
                 [("X", STRING, [None, 1])], [("Y", FLOAT, [None, 1])], ml_opset=2)
    save("label_encoder_2_s2f_default", m, [("X", xs)])


# --- real converter output --------------------------------------------------------------

def converters():
    from skl2onnx import convert_sklearn, to_onnx
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Binarizer, LabelEncoder, Normalizer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC, SVR, NuSVR, OneClassSVM

    iris_x, iris_y = load_iris(return_X_y=True)
    iris_x = iris_x.astype(np.float32)
    dia_x, dia_y = load_diabetes(return_X_y=True)
    dia_x = dia_x.astype(np.float32)
    opts = {"zipmap": False}

    def conv(name, est, x, options=None, rows=None):
        n = x.shape[1]
        m = convert_sklearn(est, initial_types=[("X", FloatTensorType([None, n]))], options=options,
                            target_opset={"": 17, "ai.onnx.ml": 3})
        save(name, m, [("X", (rows if rows is not None else x[::max(1, len(x) // ROWS)][:ROWS]).astype(np.float32))])

    conv("skl_linear_regression", LinearRegression().fit(dia_x, dia_y), dia_x)
    conv("skl_logistic_regression", LogisticRegression(max_iter=500).fit(iris_x, iris_y), iris_x, {id: opts} if False else {LogisticRegression: opts})
    binary = iris_y != 0
    conv("skl_logistic_binary", LogisticRegression(max_iter=500).fit(iris_x, binary.astype(int)), iris_x, {LogisticRegression: opts})
    conv("skl_svc_proba", SVC(probability=True, random_state=0).fit(iris_x, iris_y), iris_x, {SVC: opts})
    conv("skl_svc_binary", SVC(probability=True, random_state=0).fit(iris_x, binary.astype(int)), iris_x, {SVC: opts})
    conv("skl_svc_poly", SVC(kernel="poly", degree=3).fit(iris_x, iris_y), iris_x, {SVC: opts})
    conv("skl_svr", SVR().fit(dia_x, dia_y), dia_x)
    conv("skl_nusvr", NuSVR(kernel="linear").fit(dia_x, dia_y), dia_x)
    conv("skl_oneclass_svm", OneClassSVM(nu=0.2).fit(iris_x), iris_x)
    conv("skl_gbr_100", GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=0).fit(dia_x, dia_y), dia_x)
    conv("skl_rfr", RandomForestRegressor(n_estimators=10, max_depth=5, random_state=0).fit(dia_x, dia_y), dia_x)
    conv("skl_normalizer_pipeline", make_pipeline(Normalizer(norm="l2"), StandardScaler(), LinearRegression()).fit(dia_x, dia_y), dia_x)
    conv("skl_binarizer", Binarizer(threshold=0.01).fit(dia_x), dia_x)
    xn = dia_x.copy()
    xn[::7, 2] = np.nan
    conv("skl_imputer_pipeline", make_pipeline(SimpleImputer(), LinearRegression()).fit(xn, dia_y), xn,
         rows=xn[:ROWS])

    # One-hot encoding of a string column next to numeric ones (two inputs).
    colors = np.array(["red", "green", "blue", "teal"], dtype=object)[RNG.integers(0, 4, size=60)].reshape(-1, 1)
    nums = RNG.normal(size=(60, 2)).astype(np.float32)
    y = (nums[:, 0] > 0).astype(int)
    ct = ColumnTransformer([("oh", OneHotEncoder(handle_unknown="ignore"), [0])], remainder="drop")
    pipe = make_pipeline(ct, LogisticRegression()).fit(colors, y)
    m = convert_sklearn(pipe, initial_types=[("color", StringTensorType([None, 1]))],
                        options={LogisticRegression: opts}, target_opset={"": 17, "ai.onnx.ml": 3})
    test = np.array([["red"], ["blue"], ["purple"], ["green"], ["teal"], ["red"], ["green"], ["blue"]], dtype=object)
    save("skl_onehot_pipeline", m, [("color", test)])
    ints = RNG.integers(0, 5, size=(60, 1)).astype(np.int64)
    m = convert_sklearn(OneHotEncoder(handle_unknown="ignore").fit(ints), initial_types=[("X", Int64TensorType([None, 1]))],
                        target_opset={"": 17, "ai.onnx.ml": 3})
    save("skl_onehot_int", m, [("X", np.arange(-1, 7, dtype=np.int64).reshape(-1, 1))])
    le = LabelEncoder().fit(["cat", "dog", "mouse"])
    m = convert_sklearn(le, initial_types=[("X", StringTensorType([None]))], target_opset={"": 17, "ai.onnx.ml": 2})
    save("skl_label_encoder", m, [("X", np.array(["dog", "cat", "mouse", "bird", "cat", "dog", "dog", "mouse"], dtype=object))])


# --- tract declutter reproduction --------------------------------------------------------

def declutter_repro(d=16):
    """ReduceSum(keepdims) -> MatMul -> Tile -> MatMul -> MatMul: tract 0.23.9's EinSum
    declutter dropped the Tile's broadcast ("Trying to substitute a d,d,F32 by 1,d,F32");
    see crates/server/src/runtime/tract_ops/guard.rs."""
    w = lambda n: numpy_helper.from_array((RNG.normal(size=(d, d)) / d).astype(np.float32), n)
    nodes = [
        helper.make_node("ReduceSum", ["X", "axes"], ["r"], keepdims=1),
        helper.make_node("MatMul", ["r", "W1"], ["m"]),
        helper.make_node("Tile", ["m", "reps"], ["t"]),
        helper.make_node("MatMul", ["t", "W2"], ["u"]),
        helper.make_node("MatMul", ["u", "W3"], ["Y"]),
    ]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "axes"), w("W1"), w("W2"), w("W3"),
             numpy_helper.from_array(np.array([d, 1], np.int64), "reps")]
    g = helper.make_graph(nodes, "declutter_tile_matmul", [helper.make_tensor_value_info("X", FLOAT, [None, d])],
                          [helper.make_tensor_value_info("Y", FLOAT, [d, d])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    save("declutter_tile_matmul", m, [("X", features(rows=3, width=d))])


def fallback_model():
    """A LinearClassifier with one class label: ORT 1.31 refuses to load it (it wants two
    for a one-target model), tract serves it (label 1/0 by the score's sign). The
    `--runtime auto` fallback test loads it; it is outside the ORT comparison."""
    attrs = dict(coefficients=[0.5, -0.25, 1.0, 0.0], intercepts=[0.1], classlabels_ints=[4])
    m = one_node("LinearClassifier", attrs, [("X", FLOAT, [None, FEATURES])],
                 [("label", INT64, [None]), ("scores", FLOAT, [None, 1])], ml_opset=1)
    onnx.checker.check_model(m)
    (OUT / "fallback").mkdir(exist_ok=True)
    (OUT / "fallback" / "ort_refuses.onnx").write_bytes(m.SerializeToString())
    # The other way round: StringNormalizer (lower-casing text) is in ONNX Runtime, not
    # in tract. Without an ONNX Runtime library hoist-server names `hoist runtime install`.
    node = helper.make_node("StringNormalizer", ["text"], ["normalized"], case_change_action="LOWER", locale="C")
    g = helper.make_graph([node], "tract_refuses", [helper.make_tensor_value_info("text", STRING, [None])],
                          [helper.make_tensor_value_info("normalized", STRING, [None])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    (OUT / "fallback" / "tract_refuses.onnx").write_bytes(m.SerializeToString())


def topk():
    """TopK (standard domain) with NaN and ties: ONNX Runtime orders NaN above every
    number in both directions and breaks ties by the lower index; tract's own TopK
    did not (k-NN rows with a missing feature got other neighbours)."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(6, 40)).round(1).astype(np.float32)
    x[1, :] = np.nan      # every distance NaN: a k-NN row with a missing feature
    x[2, ::3] = np.nan    # NaN among numbers
    x[3, 5:9] = x[3, 0]   # ties
    # Along the features only: the operator test also runs each row alone.
    for largest in (0, 1):
        node = helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=1, largest=largest)
        graph = helper.make_graph(
            [node],
            "topk",
            [helper.make_tensor_value_info("x", FLOAT, [None, 40])],
            [helper.make_tensor_value_info("values", FLOAT, [None, None]),
             helper.make_tensor_value_info("indices", INT64, [None, None])],
            initializer=[numpy_helper.from_array(np.array([5], dtype=np.int64), "k")],
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        save(f"topk_{'largest' if largest else 'smallest'}", m, [("x", x)])

def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    trees()
    linear()
    svm()
    preprocessing()
    converters()
    declutter_repro()
    fallback_model()
    topk()
    n = len(list(OUT.glob("*.onnx")))
    size = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{n} models, {size / 1e6:.2f} MB in {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
