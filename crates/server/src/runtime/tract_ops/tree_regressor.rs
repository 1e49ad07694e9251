//! `TreeEnsembleRegressor`, on the classifier's flattened trees ([`Ensemble`]),
//! aggregated like ORT 1.31's `TreeAggregatorSum/Average/Min/Max`: one target
//! takes each leaf's first weight and `base_values[0]` when there is exactly
//! one base value, and only PROBIT transforms it; several targets add
//! `base_values` when there is one per target and go through `write_scores`.
//! The trees are added up in ORT's order and thread split, like the classifier.

use super::eval::Feature;
use super::kernel::*;
use super::parse::{build_forest, float_attr};
use super::*;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

#[derive(Debug)]
pub(super) struct TreeEnsembleRegressor {
    e: Ensemble,
    n_targets: usize,
    aggregate: Aggregate,
}

pub(super) fn parse_tree_ensemble_regressor(ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let n_targets = node.get_attr_opt::<i64>("n_targets")?.unwrap_or(1);
    node.expect_attr(
        "n_targets",
        n_targets >= 1 && n_targets < u32::MAX as i64,
        "at least 1",
    )?;
    let n_targets = n_targets as usize;
    let aggregate = match node
        .get_attr_opt::<&str>("aggregate_function")?
        .unwrap_or("SUM")
    {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Average,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        other => bail!("Invalid aggregate_function {other}"),
    };
    let forest = build_forest(ctx, node, "target", n_targets)?;
    let base_values = float_attr(ctx, node, "base_values")?.unwrap_or_default();
    let post_transform = PostTransform::of(node)?;
    // Never the classifiers' binary case (the only reader of weights_all_positive).
    let e = forest.into_ensemble(
        Labels::Int((0..n_targets as i64).collect()),
        base_values,
        post_transform,
        false,
    );
    parsed(TreeEnsembleRegressor {
        e,
        n_targets,
        aggregate,
    })
}

impl TreeEnsembleRegressor {
    fn run<T: Feature>(&self, x: &[T], stride: usize, rows: usize) -> Vec<f32> {
        let e = &self.e;
        match e.uniform {
            Some(Mode::Leq) => self.run_with(x, stride, rows, |r, row| {
                e.leaf_uniform::<eval::CmpLeq, T>(r, row)
            }),
            Some(Mode::Lt) => self.run_with(x, stride, rows, |r, row| {
                e.leaf_uniform::<eval::CmpLt, T>(r, row)
            }),
            Some(Mode::Gte) => self.run_with(x, stride, rows, |r, row| {
                e.leaf_uniform::<eval::CmpGte, T>(r, row)
            }),
            Some(Mode::Gt) => self.run_with(x, stride, rows, |r, row| {
                e.leaf_uniform::<eval::CmpGt, T>(r, row)
            }),
            Some(Mode::Eq) => self.run_with(x, stride, rows, |r, row| {
                e.leaf_uniform::<eval::CmpEq, T>(r, row)
            }),
            Some(Mode::Neq) => self.run_with(x, stride, rows, |r, row| {
                e.leaf_uniform::<eval::CmpNeq, T>(r, row)
            }),
            None => self.run_with(x, stride, rows, |r, row| e.leaf_generic(r, row)),
        }
    }

    #[inline(always)]
    fn add(&self, s: &mut f32, h: &mut bool, v: f32) {
        match self.aggregate {
            Aggregate::Sum | Aggregate::Average => *s += v,
            Aggregate::Min => {
                if !*h || v < *s {
                    *s = v
                }
            }
            Aggregate::Max => {
                if !*h || v > *s {
                    *s = v
                }
            }
        }
        *h = true;
    }

    #[inline(always)]
    fn run_with<T: Feature, F: Fn(u32, &[T]) -> Node>(
        &self,
        x: &[T],
        stride: usize,
        rows: usize,
        leaf: F,
    ) -> Vec<f32> {
        let e = &self.e;
        let c = self.n_targets;
        let chunks = e.tree_chunks(rows);
        let mut out = vec![0f32; rows * c];
        let mut parts = vec![0f32; chunks.len() * c];
        let mut has = vec![false; chunks.len() * c];
        for r in 0..rows {
            let row = &x[r * stride..][..stride];
            parts.fill(0.0);
            has.fill(false);
            for (k, trees) in chunks.iter().enumerate() {
                let (s, h) = (&mut parts[k * c..][..c], &mut has[k * c..][..c]);
                for &root in &e.roots[trees.clone()] {
                    let l = leaf(root, row);
                    let w = &e.weights[l.true_id as usize..l.false_id as usize];
                    if c == 1 {
                        // ORT reads only a leaf's first weight for one target.
                        if let Some(w) = w.first() {
                            self.add(&mut s[0], &mut h[0], w.value);
                        }
                    } else {
                        for w in w {
                            self.add(&mut s[w.class as usize], &mut h[w.class as usize], w.value);
                        }
                    }
                }
            }
            // ORT's MergePrediction: later partial results into the first.
            let (first, rest) = parts.split_at_mut(c);
            let (first_h, rest_h) = has.split_at_mut(c);
            for k in 1..chunks.len() {
                for t in 0..c {
                    let (v, hv) = (rest[(k - 1) * c + t], rest_h[(k - 1) * c + t]);
                    if !hv {
                        continue;
                    }
                    match self.aggregate {
                        Aggregate::Sum | Aggregate::Average => first[t] += v,
                        Aggregate::Min => {
                            if !(first_h[t] && first[t] < v) {
                                first[t] = v
                            }
                        }
                        Aggregate::Max => {
                            if !(first_h[t] && first[t] > v) {
                                first[t] = v
                            }
                        }
                    }
                    first_h[t] = true;
                }
            }
            self.finalize(first, first_h, &mut out[r * c..][..c]);
        }
        out
    }

    fn finalize(&self, s: &[f32], h: &[bool], z: &mut [f32]) {
        let e = &self.e;
        let n_trees = e.roots.len() as f32;
        let base = &e.base_values;
        if self.n_targets == 1 {
            let origin = if base.len() == 1 { base[0] } else { 0.0 };
            let v = match self.aggregate {
                Aggregate::Sum => s[0] + origin,
                Aggregate::Average => s[0] / n_trees + origin,
                Aggregate::Min | Aggregate::Max => {
                    if h[0] {
                        s[0] + origin
                    } else {
                        origin
                    }
                }
            };
            z[0] = if e.post_transform == PostTransform::Probit {
                eval::probit(v)
            } else {
                v
            };
            return;
        }
        let use_base = base.len() == self.n_targets;
        for t in 0..self.n_targets {
            let b = if use_base { base[t] } else { 0.0 };
            z[t] = match self.aggregate {
                Aggregate::Sum => s[t] + b,
                Aggregate::Average => s[t] / n_trees + b,
                Aggregate::Min | Aggregate::Max => b + if h[t] { s[t] } else { 0.0 },
            };
        }
        eval::write_scores(z, e.post_transform);
    }
}

impl Kernel for TreeEnsembleRegressor {
    fn name(&self) -> &'static str {
        "TreeEnsembleRegressor"
    }

    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let (_, shape) = only_input(inputs, self.name())?;
        let (rows, features) = fact_rows(&shape, self.name())?;
        if let Ok(f) = features.to_usize() {
            ensure!(
                self.e.max_feature < f,
                "The tree ensemble uses feature {} but the input has {f} features",
                self.e.max_feature
            );
        }
        Ok(tvec!((
            f32::datum_type(),
            tvec![rows, self.n_targets.to_dim()]
        )))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let (rows, stride) = rows_features(x, self.name())?;
        ensure!(
            self.e.max_feature < stride,
            "The tree ensemble uses feature {} but the input has {stride} features",
            self.e.max_feature
        );
        let y = if x.datum_type() == f64::datum_type() {
            self.run(x.try_as_plain_ram()?.as_slice::<f64>()?, stride, rows)
        } else {
            let x = x.cast_to::<f32>()?;
            self.run(x.try_as_plain_ram()?.as_slice::<f32>()?, stride, rows)
        };
        Ok(tvec!(f32_tensor(&[rows, self.n_targets], y)?))
    }
}
