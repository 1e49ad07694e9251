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
//! `TreeEnsembleRegressor` (which tract lacks too) is not provided: skl2onnx only
//! emits it for regressors, and hoist's example models are all classifiers.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::logic::wire_with_rank_broadcast;
use tract_onnx::tract_hir::tract_core;

/// Registers hoist's ONNX-ML operator implementations into a tract ONNX parser,
/// replacing tract's own where they are wrong.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert("Scaler", parse_scaler);
    onnx.op_register
        .insert("TreeEnsembleClassifier", parse_tree_ensemble_classifier);
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

// ---------------------------------------------------------------------------
// Scaler
// ---------------------------------------------------------------------------

/// `ai.onnx.ml.Scaler`: `y = (x - offset) * scale`, per feature (last axis) or
/// with a single value, output always f32.
#[derive(Debug, Clone)]
struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

fn parse_scaler(_ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let offset: Option<Vec<f32>> = node.get_attr_opt_vec("offset")?;
    let scale: Option<Vec<f32>> = node.get_attr_opt_vec("scale")?;
    let n = offset.as_ref().or(scale.as_ref()).map_or(1, Vec::len);
    let offset = offset.unwrap_or_else(|| vec![0.0; n]);
    let scale = scale.unwrap_or_else(|| vec![1.0; n]);
    node.expect_attr("scale", !scale.is_empty(), "at least one value")?;
    // Like ORT: as many offsets as scales (then 1, or one per feature).
    node.expect_attr("offset", offset.len() == scale.len(), || {
        format!(
            "as many values as scale ({}), got {}",
            scale.len(),
            offset.len()
        )
    })?;
    Ok((expand(Scaler { offset, scale }), vec![]))
}

impl Expansion for Scaler {
    fn name(&self) -> StaticName {
        "Scaler".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        ensure!(
            fact.rank() >= 1,
            "Scaler expects an input of rank 1 or more"
        );
        if let Ok(features) = fact.shape[fact.rank() - 1].to_usize() {
            for (name, v) in [("offset", &self.offset), ("scale", &self.scale)] {
                ensure!(
                    v.len() == 1 || v.len() == features,
                    "Scaler {name} has {} values, input has {features} features",
                    v.len()
                );
            }
        }
        let mut x = inputs[0];
        if fact.datum_type != f32::datum_type() {
            x = model.wire_node(
                format!("{prefix}.to_f32"),
                tract_core::ops::cast::cast(f32::datum_type()),
                &[x],
            )?[0];
        }
        let offset = model.add_const(format!("{prefix}.offset"), rctensor1(&self.offset))?;
        let scale = model.add_const(format!("{prefix}.scale"), rctensor1(&self.scale))?;
        let centered = wire_with_rank_broadcast(
            format!("{prefix}.sub"),
            model,
            tract_core::ops::math::sub(),
            &[x, offset],
        )?[0];
        wire_with_rank_broadcast(
            format!("{prefix}.mul"),
            model,
            tract_core::ops::math::mul(),
            &[centered, scale],
        )
    }
}

// ---------------------------------------------------------------------------
// TreeEnsembleClassifier: model
// ---------------------------------------------------------------------------

/// Marks a leaf in [`Node::feature`].
const LEAF: u32 = u32::MAX;
/// Rows evaluated together (tree loop outside, row loop inside), like ORT.
const ROW_BLOCK: usize = 128;
/// ORT's `parallel_tree_`: more trees than this and a single row is summed per thread.
const ORT_PARALLEL_TREE: usize = 80;
/// ORT's `parallel_N_`: more rows than this and the trees are summed per thread.
const ORT_PARALLEL_N: usize = 50;

/// ORT intra-op thread count the tree summation order is matched to; 0 means
/// "not set": use ORT's default (the number of physical cores).
static ORT_THREADS: AtomicUsize = AtomicUsize::new(0);

/// One tree node, 16 bytes. Branch: `x[feature] <cmp> value` goes to `true_id`,
/// otherwise `false_id`. Leaf (`feature == LEAF`): its weights are
/// `weights[true_id..false_id]`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Node {
    feature: u32,
    value: f32,
    true_id: u32,
    false_id: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
}

/// Per-node flag: the missing value (NaN) goes to the true branch.
const MISSING_TRUE: u8 = 0x80;

impl Mode {
    fn parse(s: &str) -> TractResult<Option<Mode>> {
        Ok(Some(match s {
            "BRANCH_LEQ" => Mode::Leq,
            "BRANCH_LT" => Mode::Lt,
            "BRANCH_GTE" => Mode::Gte,
            "BRANCH_GT" => Mode::Gt,
            "BRANCH_EQ" => Mode::Eq,
            "BRANCH_NEQ" => Mode::Neq,
            "LEAF" => return Ok(None),
            other => bail!("Unsupported tree node mode {other}"),
        }))
    }

    fn from_flags(flags: u8) -> Mode {
        match flags & 0x7 {
            0 => Mode::Leq,
            1 => Mode::Lt,
            2 => Mode::Gte,
            3 => Mode::Gt,
            4 => Mode::Eq,
            _ => Mode::Neq,
        }
    }

    fn flags(self) -> u8 {
        match self {
            Mode::Leq => 0,
            Mode::Lt => 1,
            Mode::Gte => 2,
            Mode::Gt => 3,
            Mode::Eq => 4,
            Mode::Neq => 5,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    fn parse(s: &str) -> TractResult<PostTransform> {
        Ok(match s {
            "NONE" => PostTransform::None,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX" => PostTransform::Softmax,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            other => bail!("Invalid post_transform {other}"),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Weight {
    class: u32,
    value: f32,
}

#[derive(Clone, Debug, PartialEq)]
enum Labels {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl Labels {
    fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::Str(v) => v.len(),
        }
    }

    fn datum_type(&self) -> DatumType {
        match self {
            Labels::Int(_) => i64::datum_type(),
            Labels::Str(_) => String::datum_type(),
        }
    }
}

/// Which label a row gets: a class index, or (ORT's two-class fallback when the
/// weights name both classes) the literal positive/negative label 1/0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pick {
    Class(usize),
    Literal(i64),
}

/// Everything the classifier needs, shared by the inference-time expansion and
/// the typed op.
#[derive(Clone, Debug, PartialEq)]
struct Ensemble {
    nodes: Vec<Node>,
    /// Per node: [`Mode::flags`] | [`MISSING_TRUE`]; only read on the generic path.
    flags: Vec<u8>,
    /// `Some(mode)` when every branch uses `mode` and none sends NaN to true.
    uniform: Option<Mode>,
    roots: Vec<u32>,
    weights: Vec<Weight>,
    /// Largest feature id mentioned by any node (ORT checks it against the input).
    max_feature: usize,
    labels: Labels,
    base_values: Vec<f32>,
    post_transform: PostTransform,
    /// Two classes and every leaf weight names the same class id.
    binary_case: bool,
    weights_all_positive: bool,
    /// ORT thread count whose tree summation order is reproduced.
    ort_threads: usize,
}

impl Ensemble {
    fn n_classes(&self) -> usize {
        self.labels.len()
    }
}

// ---------------------------------------------------------------------------
// TreeEnsembleClassifier: parsing
// ---------------------------------------------------------------------------

/// Reads a float list attribute, or its `<name>_as_tensor` variant (cast to f32).
fn float_attr(ctx: &ParsingContext, node: &NodeProto, name: &str) -> TractResult<Option<Vec<f32>>> {
    if let Some(v) = node.get_attr_opt_vec::<f32>(name)? {
        return Ok(Some(v));
    }
    let tensor_name = format!("{name}_as_tensor");
    if let Some(proto) = node.get_attr_opt::<&tract_onnx::pb::TensorProto>(&tensor_name)? {
        let t = ctx.load_tensor(proto)?;
        let t = t.cast_to::<f32>()?;
        return Ok(Some(t.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()));
    }
    Ok(None)
}

fn ints_attr<'a>(node: &'a NodeProto, name: &str, n: usize) -> TractResult<&'a [i64]> {
    let v = node.get_attr_slice::<i64>(name)?;
    node.expect_attr(name, v.len() == n, || {
        format!("{n} values, got {}", v.len())
    })?;
    Ok(v)
}

fn parse_tree_ensemble_classifier(ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let ensemble = build_ensemble(ctx, node)?;
    Ok((expand(TreeEnsembleClassifier(Arc::new(ensemble))), vec![]))
}

fn build_ensemble(ctx: &ParsingContext, node: &NodeProto) -> TractResult<Ensemble> {
    let labels = match (
        node.get_attr_opt_slice::<i64>("classlabels_int64s")?,
        node.get_attr_opt_tvec::<String>("classlabels_strings")?,
    ) {
        (Some(ints), None) => Labels::Int(ints.to_vec()),
        (None, Some(strs)) => Labels::Str(strs.into_vec()),
        (Some(ints), Some(strs)) if strs.is_empty() => Labels::Int(ints.to_vec()),
        (Some([]), Some(strs)) => Labels::Str(strs.into_vec()),
        _ => bail!("exactly one of classlabels_int64s and classlabels_strings must be set"),
    };
    let n_classes = labels.len();
    // With one class ORT switches to a single-score code path nobody emits.
    node.expect(n_classes >= 2, "at least two class labels")?;

    // --- nodes
    let tree_ids = node.get_attr_slice::<i64>("nodes_treeids")?;
    let n = tree_ids.len();
    node.expect_attr("nodes_treeids", n > 0, "at least one node")?;
    let node_ids = ints_attr(node, "nodes_nodeids", n)?;
    let feature_ids = ints_attr(node, "nodes_featureids", n)?;
    let true_ids = ints_attr(node, "nodes_truenodeids", n)?;
    let false_ids = ints_attr(node, "nodes_falsenodeids", n)?;
    let modes: Vec<Option<Mode>> = node
        .get_attr_tvec::<&str>("nodes_modes")?
        .iter()
        .map(|s| Mode::parse(s))
        .collect::<TractResult<_>>()?;
    node.expect_attr("nodes_modes", modes.len() == n, || format!("{n} values"))?;
    let values = float_attr(ctx, node, "nodes_values")?.unwrap_or_default();
    node.expect_attr("nodes_values", values.len() == n, || format!("{n} values"))?;
    let missing = node
        .get_attr_opt_slice::<i64>("nodes_missing_value_tracks_true")?
        .unwrap_or(&[]);
    let missing_true = |i: usize| missing.get(i) == Some(&1);
    for (i, &f) in feature_ids.iter().enumerate() {
        node.expect_attr("nodes_featureids", f >= 0 && f < u32::MAX as i64, || {
            format!("a valid feature id at node {i}, got {f}")
        })?;
    }

    let mut index: HashMap<(i64, i64), usize> = HashMap::with_capacity(n);
    for i in 0..n {
        if index.insert((tree_ids[i], node_ids[i]), i).is_some() {
            bail!(
                "Node {} of tree {} is defined twice",
                node_ids[i],
                tree_ids[i]
            );
        }
    }
    let child = |i: usize, id: i64, which: &str| -> TractResult<usize> {
        match index.get(&(tree_ids[i], id)) {
            Some(&c) if c != i => Ok(c),
            Some(_) => bail!(
                "Node {} of tree {} is its own {which} child",
                node_ids[i],
                tree_ids[i]
            ),
            None => bail!(
                "Node {} of tree {} ({which} child of node {}) not found",
                id,
                tree_ids[i],
                node_ids[i]
            ),
        }
    };

    // Lay the trees out depth-first, false child right after its parent, in
    // the order ORT builds them: a new tree starts at each change of tree id,
    // rooted at the first listed node of that tree.
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    let mut flags: Vec<u8> = Vec::with_capacity(n);
    let mut position: Vec<u32> = vec![u32::MAX; n];
    let mut roots: Vec<u32> = vec![];
    let mut stack: Vec<(usize, Option<(usize, bool)>)> = vec![];
    for i in 0..n {
        if i > 0 && tree_ids[i] == tree_ids[i - 1] {
            continue;
        }
        stack.push((i, None));
        while let Some((orig, link)) = stack.pop() {
            let pos = if position[orig] != u32::MAX {
                position[orig] as usize
            } else {
                let pos = nodes.len();
                position[orig] = pos as u32;
                let feature = feature_ids[orig] as u32;
                match modes[orig] {
                    Some(mode) => {
                        nodes.push(Node {
                            feature,
                            value: values[orig],
                            true_id: 0,
                            false_id: 0,
                        });
                        flags
                            .push(mode.flags() | if missing_true(orig) { MISSING_TRUE } else { 0 });
                        stack.push((child(orig, true_ids[orig], "true")?, Some((pos, true))));
                        stack.push((child(orig, false_ids[orig], "false")?, Some((pos, false))));
                    }
                    None => {
                        // Leaf: weights[true_id..false_id], filled in below.
                        nodes.push(Node {
                            feature: LEAF,
                            value: 0.0,
                            true_id: 0,
                            false_id: 0,
                        });
                        flags.push(0);
                    }
                }
                pos
            };
            match link {
                Some((parent, true)) => nodes[parent].true_id = pos as u32,
                Some((parent, false)) => nodes[parent].false_id = pos as u32,
                None => roots.push(pos as u32),
            }
        }
    }
    node.expect(nodes.len() == n, || {
        format!(
            "every node reachable from a tree root ({} of {n} are)",
            nodes.len()
        )
    })?;
    let max_feature = feature_ids.iter().copied().max().unwrap_or(0) as usize;
    check_acyclic(&nodes)?;

    // --- leaf weights, in ORT's order: sorted by (tree id, node id), then listing order.
    let c_tree = node.get_attr_slice::<i64>("class_treeids")?;
    let nw = c_tree.len();
    let c_node = ints_attr(node, "class_nodeids", nw)?;
    let c_ids = ints_attr(node, "class_ids", nw)?;
    let c_weights = float_attr(ctx, node, "class_weights")?.unwrap_or_default();
    node.expect_attr("class_weights", c_weights.len() == nw, || {
        format!("{nw} values")
    })?;
    let mut order: Vec<usize> = (0..nw).collect();
    order.sort_by_key(|&k| (c_tree[k], c_node[k], k));
    let mut weights: Vec<Weight> = Vec::with_capacity(nw);
    let mut classes_seen = std::collections::BTreeSet::new();
    let mut weights_all_positive = true;
    for &k in &order {
        // ORT looks at every listed weight for these two, used or not.
        classes_seen.insert(c_ids[k]);
        weights_all_positive &= c_weights[k] >= 0.0;
        let Some(&orig) = index.get(&(c_tree[k], c_node[k])) else {
            bail!(
                "Leaf weight for unknown node {} of tree {}",
                c_node[k],
                c_tree[k]
            );
        };
        let pos = position[orig] as usize;
        if nodes[pos].feature != LEAF {
            continue; // ORT ignores weights on branches (old onnxmltools output).
        }
        node.expect_attr(
            "class_ids",
            c_ids[k] >= 0 && (c_ids[k] as usize) < n_classes,
            || format!("class ids below {n_classes}, got {}", c_ids[k]),
        )?;
        let at = weights.len() as u32;
        let leaf = &mut nodes[pos];
        if leaf.true_id == leaf.false_id {
            leaf.true_id = at;
        }
        leaf.false_id = at + 1;
        weights.push(Weight {
            class: c_ids[k] as u32,
            value: c_weights[k],
        });
    }
    let binary_case = n_classes == 2 && classes_seen.len() == 1;

    let base_values = float_attr(ctx, node, "base_values")?.unwrap_or_default();
    // ORT 1.31's rule: none or one per class, and for two classes also just one.
    let nb = base_values.len();
    node.expect_attr(
        "base_values",
        nb == 0 || nb == n_classes || (n_classes == 2 && nb == 1),
        || format!("0 or {n_classes} values, got {nb}"),
    )?;
    let post_transform = PostTransform::parse(
        node.get_attr_opt::<&str>("post_transform")?
            .unwrap_or("NONE"),
    )?;

    let mut branch_flags = flags
        .iter()
        .zip(&nodes)
        .filter(|(_, n)| n.feature != LEAF)
        .map(|(f, _)| *f);
    let uniform = match branch_flags.next() {
        None => Some(Mode::Leq),
        Some(first) if first & MISSING_TRUE == 0 && branch_flags.all(|f| f == first) => {
            Some(Mode::from_flags(first))
        }
        Some(_) => None,
    };

    Ok(Ensemble {
        nodes,
        flags,
        uniform,
        roots,
        weights,
        max_feature,
        labels,
        base_values,
        post_transform,
        binary_case,
        weights_all_positive,
        ort_threads: ort_threads(),
    })
}

/// Rejects cycles, which would make evaluation loop forever. Shared subtrees
/// (a DAG) are fine.
fn check_acyclic(nodes: &[Node]) -> TractResult<()> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; nodes.len()];
    let mut stack: Vec<(usize, u8)> = vec![];
    for start in 0..nodes.len() {
        if state[start] != 0 {
            continue;
        }
        stack.push((start, 0));
        state[start] = 1;
        while let Some(&mut (at, ref mut next)) = stack.last_mut() {
            let node = nodes[at];
            let child = match (*next, node.feature == LEAF) {
                (_, true) | (2.., _) => None,
                (0, false) => Some(node.false_id as usize),
                _ => Some(node.true_id as usize),
            };
            *next += 1;
            match child {
                None => {
                    state[at] = 2;
                    stack.pop();
                }
                Some(c) if state[c] == 1 => bail!("Tree ensemble contains a cycle"),
                Some(c) if state[c] == 0 => {
                    state[c] = 1;
                    stack.push((c, 0));
                }
                Some(_) => (),
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// TreeEnsembleClassifier: inference-time op (expands to the typed op)
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct TreeEnsembleClassifier(Arc<Ensemble>);

impl fmt::Debug for TreeEnsembleClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        write!(
            f,
            "TreeEnsembleClassifier({} trees, {} nodes, {} classes, {:?})",
            e.roots.len(),
            e.nodes.len(),
            e.n_classes(),
            e.post_transform
        )
    }
}

impl PartialEq for TreeEnsembleClassifier {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for TreeEnsembleClassifier {}

impl Expansion for TreeEnsembleClassifier {
    fn name(&self) -> StaticName {
        "TreeEnsembleClassifier".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{self:?}")])
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 2)?;
        s.equals(&outputs[0].datum_type, self.0.labels.datum_type())?;
        s.equals(&outputs[1].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 1)?;
        s.equals(&outputs[1].rank, 2)?;
        s.equals(&outputs[1].shape[1], self.0.n_classes().to_dim())?;
        s.equals(&outputs[0].shape[0], &outputs[1].shape[0])?;
        s.given(&inputs[0].rank, move |s, rank| {
            if rank == 1 {
                s.equals(&outputs[0].shape[0], 1.to_dim())
            } else {
                s.equals(&outputs[0].shape[0], &inputs[0].shape[0])
            }
        })?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, TreeEnsembleClassifierOp(self.0.clone()), inputs)
    }
}

// ---------------------------------------------------------------------------
// TreeEnsembleClassifier: typed op
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct TreeEnsembleClassifierOp(Arc<Ensemble>);

impl PartialEq for TreeEnsembleClassifierOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for TreeEnsembleClassifierOp {}

impl fmt::Debug for TreeEnsembleClassifierOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        TreeEnsembleClassifier(self.0.clone()).fmt(f)
    }
}

impl Op for TreeEnsembleClassifierOp {
    fn name(&self) -> StaticName {
        "HoistTreeEnsembleClassifier".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{self:?}")])
    }

    op_as_typed_op!();
}

impl EvalOp for TreeEnsembleClassifierOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let e = &*self.0;
        let (n_rows, stride) = match x.rank() {
            1 => (1, x.shape()[0]),
            2 => (x.shape()[0], x.shape()[1]),
            r => bail!("TreeEnsembleClassifier expects a rank 1 or 2 input, got rank {r}"),
        };
        ensure!(
            e.max_feature < stride,
            "The tree ensemble uses feature {} but the input has {stride} features",
            e.max_feature
        );
        let c = e.n_classes();
        let mut picks = vec![Pick::Class(0); n_rows];
        let mut probs = vec![0f32; n_rows * c];
        if x.datum_type() == f64::datum_type() {
            let data = x.try_as_plain_ram()?.as_slice::<f64>()?;
            e.eval(data, stride, &mut picks, &mut probs)?;
        } else {
            let x = x.cast_to::<f32>()?;
            let data = x.try_as_plain_ram()?.as_slice::<f32>()?;
            e.eval(data, stride, &mut picks, &mut probs)?;
        }
        let labels = match &e.labels {
            Labels::Int(l) => {
                let v: Vec<i64> = picks
                    .iter()
                    .map(|p| match *p {
                        Pick::Class(k) => l[k],
                        Pick::Literal(v) => v,
                    })
                    .collect();
                Tensor::from_shape(&[n_rows], &v)?
            }
            Labels::Str(l) => {
                let v: Vec<String> = picks
                    .iter()
                    .map(|p| match *p {
                        Pick::Class(k) => l[k].clone(),
                        Pick::Literal(v) => l[v as usize].clone(),
                    })
                    .collect();
                tract_ndarray::Array1::from_vec(v).into_dyn().into_tensor()
            }
        };
        let probs = Tensor::from_shape(&[n_rows, c], &probs)?;
        Ok(tvec!(labels.into_tvalue(), probs.into_tvalue()))
    }
}

impl TypedOp for TreeEnsembleClassifierOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0];
        let n = match x.rank() {
            1 => 1.to_dim(),
            2 => x.shape[0].clone(),
            r => bail!("TreeEnsembleClassifier expects a rank 1 or 2 input, got rank {r}"),
        };
        if let Ok(features) = x.shape[x.rank() - 1].to_usize() {
            ensure!(
                self.0.max_feature < features,
                "The tree ensemble uses feature {} but the input has {features} features",
                self.0.max_feature
            );
        }
        Ok(tvec!(
            TypedFact::dt_shape(self.0.labels.datum_type(), [n.clone()]),
            f32::fact([n, self.0.n_classes().to_dim()])
        ))
    }

    as_op!();
}

// ---------------------------------------------------------------------------
// TreeEnsembleClassifier: evaluation
// ---------------------------------------------------------------------------

/// Input element the trees compare against their f32 thresholds: f32 as is,
/// f64 in double precision (like ORT's mixed-type comparison). Integer inputs
/// are cast to f32 first, as C++ does when comparing them to a float.
trait Feature: Copy + PartialOrd {
    fn threshold(t: f32) -> Self;
    fn is_nan(self) -> bool;
}

impl Feature for f32 {
    #[inline(always)]
    fn threshold(t: f32) -> Self {
        t
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Feature for f64 {
    #[inline(always)]
    fn threshold(t: f32) -> Self {
        t as f64
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// Branch comparison, monomorphised for the uniform-mode fast path.
trait Compare {
    fn go_true<T: Feature>(x: T, t: T) -> bool;
}

macro_rules! compare {
    ($name: ident, $x: ident, $t: ident, $e: expr) => {
        struct $name;
        impl Compare for $name {
            #[inline(always)]
            fn go_true<T: Feature>($x: T, $t: T) -> bool {
                $e
            }
        }
    };
}
compare!(CmpLeq, x, t, x <= t);
compare!(CmpLt, x, t, x < t);
compare!(CmpGte, x, t, x >= t);
compare!(CmpGt, x, t, x > t);
compare!(CmpEq, x, t, x == t);
compare!(CmpNeq, x, t, x != t);

impl Ensemble {
    /// Descends one tree for one row with a single comparison for all branches
    /// and no missing-value tracking (NaN compares false, except for `!=`).
    #[inline(always)]
    fn leaf_uniform<C: Compare, T: Feature>(&self, root: u32, row: &[T]) -> Node {
        let mut node = self.nodes[root as usize];
        while node.feature != LEAF {
            let x = row[node.feature as usize];
            let next = if C::go_true(x, T::threshold(node.value)) {
                node.true_id
            } else {
                node.false_id
            };
            node = self.nodes[next as usize];
        }
        node
    }

    /// Descends one tree for one row, reading each node's mode and missing flag.
    fn leaf_generic<T: Feature>(&self, root: u32, row: &[T]) -> Node {
        let mut at = root as usize;
        loop {
            let node = self.nodes[at];
            if node.feature == LEAF {
                return node;
            }
            let flags = self.flags[at];
            let x = row[node.feature as usize];
            let t = T::threshold(node.value);
            let go_true = match Mode::from_flags(flags) {
                Mode::Leq => x <= t,
                Mode::Lt => x < t,
                Mode::Gte => x >= t,
                Mode::Gt => x > t,
                Mode::Eq => x == t,
                Mode::Neq => x != t,
            } || (flags & MISSING_TRUE != 0 && x.is_nan());
            at = if go_true { node.true_id } else { node.false_id } as usize;
        }
    }

    fn eval<T: Feature>(
        &self,
        x: &[T],
        stride: usize,
        picks: &mut [Pick],
        probs: &mut [f32],
    ) -> TractResult<()> {
        match self.uniform {
            Some(Mode::Leq) => self.eval_with(x, stride, picks, probs, |r, row| {
                self.leaf_uniform::<CmpLeq, T>(r, row)
            }),
            Some(Mode::Lt) => self.eval_with(x, stride, picks, probs, |r, row| {
                self.leaf_uniform::<CmpLt, T>(r, row)
            }),
            Some(Mode::Gte) => self.eval_with(x, stride, picks, probs, |r, row| {
                self.leaf_uniform::<CmpGte, T>(r, row)
            }),
            Some(Mode::Gt) => self.eval_with(x, stride, picks, probs, |r, row| {
                self.leaf_uniform::<CmpGt, T>(r, row)
            }),
            Some(Mode::Eq) => self.eval_with(x, stride, picks, probs, |r, row| {
                self.leaf_uniform::<CmpEq, T>(r, row)
            }),
            Some(Mode::Neq) => self.eval_with(x, stride, picks, probs, |r, row| {
                self.leaf_uniform::<CmpNeq, T>(r, row)
            }),
            None => self.eval_with(x, stride, picks, probs, |r, row| self.leaf_generic(r, row)),
        }
    }

    /// How ORT (`TreeEnsembleCommon::ComputeAgg`) splits the trees for a call
    /// with `n_rows` rows: one sequential sum, or (when it parallelizes over
    /// trees) one partial sum per thread over consecutive trees, added up in
    /// thread order afterwards. Float addition is not associative, so following
    /// the same split is what makes exact ties (e.g. a 50/50 forest vote) come
    /// out with ORT's label.
    fn tree_chunks(&self, n_rows: usize) -> Vec<std::ops::Range<usize>> {
        let n_trees = self.roots.len();
        let threads = self.ort_threads.max(1);
        let by_trees = if n_rows == 1 {
            n_trees > ORT_PARALLEL_TREE && threads > 1
        } else {
            n_rows > ORT_PARALLEL_N && threads > 1 && n_trees >= threads
        };
        if !by_trees {
            return std::iter::once(0..n_trees).collect();
        }
        let parts = threads.min(n_trees);
        let (per, extra) = (n_trees / parts, n_trees % parts);
        (0..parts)
            .map(|i| {
                let start = if i < extra {
                    (per + 1) * i
                } else {
                    per * i + extra
                };
                start..start + per + (i < extra) as usize
            })
            .collect()
    }

    /// Sums the leaf weights tree after tree (in ORT's order and split, see
    /// [`Ensemble::tree_chunks`]), a block of rows at a time with the tree loop
    /// outside, then finalizes each row.
    #[inline(always)]
    fn eval_with<T: Feature, F: Fn(u32, &[T]) -> Node>(
        &self,
        x: &[T],
        stride: usize,
        picks: &mut [Pick],
        probs: &mut [f32],
        leaf: F,
    ) -> TractResult<()> {
        let c = self.n_classes();
        let n_rows = picks.len();
        let chunks = self.tree_chunks(n_rows);
        let block = ROW_BLOCK.min(n_rows) * c;
        let mut scores = vec![0f32; block * chunks.len()];
        let mut has = vec![false; scores.len()];
        for start in (0..n_rows).step_by(ROW_BLOCK) {
            let end = (start + ROW_BLOCK).min(n_rows);
            let rows = end - start;
            scores.fill(0.0);
            has.fill(false);
            for (chunk, trees) in chunks.iter().enumerate() {
                let scores = &mut scores[chunk * block..][..rows * c];
                let has = &mut has[chunk * block..][..rows * c];
                for &root in &self.roots[trees.clone()] {
                    for r in 0..rows {
                        let row = &x[(start + r) * stride..][..stride];
                        let l = leaf(root, row);
                        let s = &mut scores[r * c..][..c];
                        let h = &mut has[r * c..][..c];
                        for w in &self.weights[l.true_id as usize..l.false_id as usize] {
                            s[w.class as usize] += w.value;
                            h[w.class as usize] = true;
                        }
                    }
                }
            }
            // ORT's MergePrediction: later partial sums into the first one.
            let (first_s, rest_s) = scores.split_at_mut(block);
            let (first_h, rest_h) = has.split_at_mut(block);
            for chunk in 1..chunks.len() {
                let s = &rest_s[(chunk - 1) * block..][..rows * c];
                let h = &rest_h[(chunk - 1) * block..][..rows * c];
                for k in 0..rows * c {
                    if h[k] {
                        first_s[k] += s[k];
                        first_h[k] = true;
                    }
                }
            }
            for r in 0..rows {
                picks[start + r] = self.finalize(
                    &mut first_s[r * c..][..c],
                    &mut first_h[r * c..][..c],
                    &mut probs[(start + r) * c..][..c],
                )?;
            }
        }
        Ok(())
    }

    /// ORT's `TreeAggregatorClassifier::FinalizeScores` for one row: adds the
    /// base values, picks the label, and writes the (post-transformed) scores.
    /// A score that never received a weight counts as 0 when written.
    fn finalize(&self, s: &mut [f32], has: &mut [bool], z: &mut [f32]) -> TractResult<Pick> {
        let base = &self.base_values;
        if s.len() > 2 {
            for (k, &b) in base.iter().enumerate() {
                if has[k] {
                    s[k] += b;
                } else {
                    s[k] = b;
                    has[k] = true;
                }
            }
            let mut best: Option<usize> = None;
            for k in 0..s.len() {
                if has[k] && best.is_none_or(|b| s[k] > s[b]) {
                    best = Some(k);
                }
            }
            let Some(best) = best else {
                bail!("TreeEnsembleClassifier: no tree gave any score to this row");
            };
            for k in 0..s.len() {
                z[k] = if has[k] { s[k] } else { 0.0 };
            }
            write_scores(z, self.post_transform);
            return Ok(Pick::Class(best));
        }

        // Two classes.
        let mut add_second_class: i32 = -1;
        let mut len = 2;
        match base.len() {
            2 => {
                if has[1] {
                    // Sic: ORT ignores base_values[0] and the class-1 sum here.
                    s[1] = base[1] + s[0];
                    s[0] = -s[1];
                } else {
                    s[1] += base[1];
                    s[0] += base[0];
                }
            }
            1 => {
                s[0] += base[0];
                if !has[1] {
                    len = 1;
                }
            }
            0 => {
                add_second_class = 3;
                if !has[1] {
                    len = 1;
                }
            }
            _ => (),
        }
        let (s0, h0, s1, h1) = if len == 2 && has[1] {
            (s[0], has[0], s[1], true)
        } else {
            (s[0], has[0], 0.0, false)
        };
        let pos_weight = if h1 {
            s1
        } else if h0 {
            s0
        } else {
            0.0
        };
        let pick = if self.binary_case {
            let positive = if self.weights_all_positive {
                pos_weight > 0.5
            } else {
                pos_weight > 0.0
            };
            add_second_class = match (self.weights_all_positive, positive) {
                (true, true) => 0,
                (true, false) => 1,
                (false, true) => 2,
                (false, false) => 3,
            };
            Pick::Class(positive as usize)
        } else {
            Pick::Literal((pos_weight > 0.0) as i64)
        };

        let e0 = if has[0] { s[0] } else { 0.0 };
        if len == 2 {
            z[0] = e0;
            z[1] = if has[1] { s[1] } else { 0.0 };
            write_scores(z, self.post_transform);
        } else if self.post_transform == PostTransform::Probit {
            // ORT leaves the second column unwritten (uninitialized) here.
            z[0] = probit(e0);
            z[1] = 0.0;
        } else {
            // ORT 1.31 applies LOGISTIC here whatever the weights' signs (older
            // versions wrote `[1 - s, s]` for all-positive weights).
            match add_second_class {
                0..=3 if self.post_transform == PostTransform::Logistic => {
                    z[0] = logistic(-e0);
                    z[1] = logistic(e0);
                }
                0 | 1 => {
                    z[0] = 1.0 - e0;
                    z[1] = e0;
                }
                2 | 3 => {
                    z[0] = -e0;
                    z[1] = e0;
                }
                _ => {
                    z[0] = e0;
                    z[1] = 0.0;
                }
            }
        }
        Ok(pick)
    }
}

/// ORT's `write_scores` for two or more scores, in place.
fn write_scores(z: &mut [f32], post: PostTransform) {
    match post {
        PostTransform::None => (),
        PostTransform::Logistic => z.iter_mut().for_each(|v| *v = logistic(*v)),
        PostTransform::Probit => z.iter_mut().for_each(|v| *v = probit(*v)),
        PostTransform::Softmax => {
            let max = z.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
            let mut sum = 0f32;
            for v in z.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            z.iter_mut().for_each(|v| *v /= sum);
        }
        PostTransform::SoftmaxZero => {
            let max = z.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
            let exp_neg_max = (-max).exp();
            let mut sum = 0f32;
            for v in z.iter_mut() {
                if *v > 0.000_000_1 || *v < -0.000_000_1 {
                    *v = (*v - max).exp();
                    sum += *v;
                } else {
                    *v *= exp_neg_max;
                }
            }
            z.iter_mut().for_each(|v| *v /= sum);
        }
    }
}

fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 { 1.0 - v } else { v }
}

/// ORT's approximate inverse error function (Winitzki, a = 0.147).
fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

fn probit(x: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * x - 1.0)
}
