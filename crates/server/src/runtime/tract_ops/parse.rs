//! TreeEnsembleClassifier: parsing the ONNX node into an [`Ensemble`].

use super::*;

/// Reads a float list attribute, or its `<name>_as_tensor` variant (cast to f32).
pub(super) fn float_attr(
    ctx: &ParsingContext,
    node: &NodeProto,
    name: &str,
) -> TractResult<Option<Vec<f32>>> {
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

pub(super) fn ints_attr<'a>(node: &'a NodeProto, name: &str, n: usize) -> TractResult<&'a [i64]> {
    let v = node.get_attr_slice::<i64>(name)?;
    node.expect_attr(name, v.len() == n, || {
        format!("{n} values, got {}", v.len())
    })?;
    Ok(v)
}

pub(super) fn parse_tree_ensemble_classifier(ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let ensemble = build_ensemble(ctx, node)?;
    Ok((expand(TreeEnsembleClassifier(Arc::new(ensemble))), vec![]))
}

pub(super) fn build_ensemble(ctx: &ParsingContext, node: &NodeProto) -> TractResult<Ensemble> {
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

    let forest = build_forest(ctx, node, "class", n_classes)?;
    let binary_case = n_classes == 2 && forest.ids_seen == 1;

    let base_values = float_attr(ctx, node, "base_values")?.unwrap_or_default();
    // ORT 1.31's rule: none or one per class, and for two classes also just one.
    let nb = base_values.len();
    node.expect_attr(
        "base_values",
        nb == 0 || nb == n_classes || (n_classes == 2 && nb == 1),
        || format!("0 or {n_classes} values, got {nb}"),
    )?;
    let post_transform = PostTransform::of(node)?;

    Ok(forest.into_ensemble(labels, base_values, post_transform, binary_case))
}

/// The trees and leaf weights of a tree ensemble, laid out for evaluation.
pub(super) struct Forest {
    pub(super) nodes: Vec<Node>,
    pub(super) flags: Vec<u8>,
    pub(super) uniform: Option<Mode>,
    pub(super) roots: Vec<u32>,
    pub(super) weights: Vec<Weight>,
    pub(super) max_feature: usize,
    /// How many distinct output ids the listed weights name.
    pub(super) ids_seen: usize,
    pub(super) weights_all_positive: bool,
}

impl Forest {
    /// The ensemble these trees make with the rest of the node's attributes.
    pub(super) fn into_ensemble(
        self,
        labels: Labels,
        base_values: Vec<f32>,
        post_transform: PostTransform,
        binary_case: bool,
    ) -> Ensemble {
        Ensemble {
            nodes: self.nodes,
            flags: self.flags,
            uniform: self.uniform,
            roots: self.roots,
            weights: self.weights,
            max_feature: self.max_feature,
            labels,
            base_values,
            post_transform,
            binary_case,
            weights_all_positive: self.weights_all_positive,
            ort_threads: ort_threads(),
        }
    }
}

/// Reads the `nodes_*` attributes and the `{prefix}_*` leaf weights (prefix
/// `class` or `target`) with `n_out` outputs into a [`Forest`].
pub(super) fn build_forest(
    ctx: &ParsingContext,
    node: &NodeProto,
    prefix: &str,
    n_out: usize,
) -> TractResult<Forest> {
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
    let c_tree = node.get_attr_slice::<i64>(&format!("{prefix}_treeids"))?;
    let nw = c_tree.len();
    let c_node = ints_attr(node, &format!("{prefix}_nodeids"), nw)?;
    let c_ids = ints_attr(node, &format!("{prefix}_ids"), nw)?;
    let c_weights = float_attr(ctx, node, &format!("{prefix}_weights"))?.unwrap_or_default();
    node.expect_attr(&format!("{prefix}_weights"), c_weights.len() == nw, || {
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
            &format!("{prefix}_ids"),
            c_ids[k] >= 0 && (c_ids[k] as usize) < n_out,
            || format!("class ids below {n_out}, got {}", c_ids[k]),
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
    Ok(Forest {
        nodes,
        flags,
        uniform,
        roots,
        weights,
        max_feature,
        ids_seen: classes_seen.len(),
        weights_all_positive,
    })
}

/// Rejects cycles, which would make evaluation loop forever. Shared subtrees
/// (a DAG) are fine.
pub(super) fn check_acyclic(nodes: &[Node]) -> TractResult<()> {
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
