//! Hoist's own ONNX-ML (`ai.onnx.ml`) operators for the tract runtime.
//!
//! tract-onnx 0.23.9 cannot run the scikit-learn models that skl2onnx emits
//! (with `zipmap` off), so [`register`] plugs these into the tract parser:
//!
//! * `Scaler` (StandardScaler and friends): tract has no implementation, so every
//!   pipeline containing one failed to load. Here it is `y = (x - offset) * scale`
//!   in f32, wired as two tract broadcasting ops (bit-identical to ORT).
//! * `TreeEnsembleClassifier`, replacing tract's own, which refuses the binary
//!   GradientBoosting layout (one `base_values` entry, one score column for two
//!   classes), returns label 0 for every binary RandomForest row (argmax of a
//!   single score column), and is slow (~1 ms per row for 100 trees). This one
//!   follows onnxruntime 1.31's `TreeEnsembleCommonClassifier` and
//!   `TreeAggregatorClassifier` (checked against it, labels and scores): the
//!   "binary case" (two labels, every leaf weight on one class id, the score is
//!   the positive class's) labels positive when the score is `> 0.5` if all
//!   weights are positive (forests), `> 0` otherwise (boosting), and writes
//!   `[1 - s, s]` or `[-s, s]`, or `[sigmoid(-s), sigmoid(s)]` under LOGISTIC;
//!   base values and `has_score` bookkeeping, first-maximum tie-breaking, ORT's
//!   quirks for two-class models with weights on both classes, and the NONE,
//!   LOGISTIC, SOFTMAX, SOFTMAX_ZERO and PROBIT formulas. Exact ties (a 50/50
//!   forest vote) depend on float rounding, so the trees are also added up in
//!   ORT's order, including how ORT splits them between its intra-op threads
//!   (see [`match_ort_intra_op_threads`]). It is fast (~2 us per row for 100
//!   trees): trees are flattened into a 16-byte node array (false child next to
//!   its parent), the comparison is monomorphised when all branches share one
//!   mode, and rows go in blocks with the tree loop outside.
//!
//! The other ONNX-ML operators go through one generic wrapper ([`kernel`]: a
//! kernel gives output facts and an eval) and follow ORT 1.31's kernels, quirks
//! included (each file says which): `TreeEnsembleRegressor` ([`tree_regressor`],
//! on the classifier's flattened trees), `LinearRegressor`/`LinearClassifier`
//! ([`linear`]), `SVMClassifier`/`SVMRegressor` ([`svm`]), `Normalizer`,
//! `Binarizer`, `Imputer`, `OneHotEncoder`, `ArrayFeatureExtractor`,
//! `FeatureVectorizer` ([`preprocess`]) and `LabelEncoder` ([`label_encoder`]).
//! tract's own `LinearClassifier`, `LinearRegressor`, `Normalizer` and
//! `TreeEnsembleClassifier` are replaced; its `CategoryMapper` matches ORT and
//! stays. ZipMap is not here: the model loader rewrites it away. [`guard`] works
//! around a tract declutter bug (`Tile`/`Expand` feeding a `MatMul`). [`topk`]
//! replaces tract's `TopK` (NaN ordered as ONNX Runtime orders it: k-NN models
//! answer rows with missing values as ORT and MLflow do).
//!
//! Every variant is checked against ORT by `crates/server/tests/ops.rs` on the
//! models `tools/make_op_models.py` writes to `examples/ops/`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::logic::wire_with_rank_broadcast;
use tract_onnx::tract_hir::tract_core;

mod eval;
pub mod guard;
mod kernel;
mod label_encoder;
mod linear;
mod model;
mod ops;
mod parse;
mod preprocess;
mod scaler;
mod svm;
mod topk;
mod tree_regressor;
use model::{
    Ensemble, LEAF, Labels, MISSING_TRUE, Mode, Node, ORT_PARALLEL_N, ORT_PARALLEL_TREE,
    ORT_THREADS, Pick, PostTransform, ROW_BLOCK, Weight,
};
use ops::TreeEnsembleClassifier;
use parse::parse_tree_ensemble_classifier;
use scaler::parse_scaler;

/// Registers hoist's ONNX-ML operator implementations into a tract ONNX parser,
/// replacing tract's own where they are wrong.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert("Scaler", parse_scaler);
    onnx.op_register
        .insert("TreeEnsembleClassifier", parse_tree_ensemble_classifier);
    onnx.op_register.insert(
        "TreeEnsembleRegressor",
        tree_regressor::parse_tree_ensemble_regressor,
    );
    onnx.op_register
        .insert("LinearRegressor", linear::parse_linear_regressor);
    onnx.op_register
        .insert("LinearClassifier", linear::parse_linear_classifier);
    onnx.op_register
        .insert("SVMClassifier", svm::parse_svm_classifier);
    onnx.op_register
        .insert("SVMRegressor", svm::parse_svm_regressor);
    onnx.op_register
        .insert("Normalizer", preprocess::parse_normalizer);
    onnx.op_register
        .insert("Binarizer", preprocess::parse_binarizer);
    onnx.op_register
        .insert("Imputer", preprocess::parse_imputer);
    onnx.op_register
        .insert("OneHotEncoder", preprocess::parse_one_hot_encoder);
    onnx.op_register.insert(
        "ArrayFeatureExtractor",
        preprocess::parse_array_feature_extractor,
    );
    onnx.op_register
        .insert("FeatureVectorizer", preprocess::parse_feature_vectorizer);
    onnx.op_register
        .insert("LabelEncoder", label_encoder::parse_label_encoder);
    topk::register(onnx);
}

/// Makes tree ensembles parsed from now on add up their trees in the order an
/// onnxruntime session with `intra_op_threads` threads does (0 = ORT's default,
/// the number of physical cores, which is also what happens without this call).
/// Only exact ties between classes (e.g. a 50/50 forest vote) depend on it: ORT
/// splits the trees between its threads for batches over 50 rows (and for one
/// row with over 80 trees), and the rounding of the partial sums decides them.
#[allow(dead_code)] // Optional: only needed when hoist sets ORT's intra-op thread count.
pub fn match_ort_intra_op_threads(intra_op_threads: usize) {
    ORT_THREADS.store(intra_op_threads, Ordering::Relaxed);
}

/// The thread count ORT uses by default: physical cores, read from sysfs (as
/// distinct package/core id pairs), else the available parallelism.
fn ort_default_threads() -> usize {
    let mut cores = std::collections::BTreeSet::new();
    if let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name
                .strip_prefix("cpu")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                continue;
            }
            let read =
                |f: &str| std::fs::read_to_string(entry.path().join("topology").join(f)).ok();
            if let (Some(package), Some(core)) = (read("physical_package_id"), read("core_id")) {
                cores.insert((package.trim().to_string(), core.trim().to_string()));
            }
        }
    }
    if cores.is_empty() {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        cores.len()
    }
}

fn ort_threads() -> usize {
    match ORT_THREADS.load(Ordering::Relaxed) {
        0 => ort_default_threads(),
        n => n,
    }
}

type ParsedOp = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;
