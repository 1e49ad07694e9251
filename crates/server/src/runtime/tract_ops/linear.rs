//! `LinearRegressor` and `LinearClassifier`, as ORT 1.31 computes them: the
//! input cast to f32, `scores = x · coefficientsᵀ + intercepts`, then ORT's
//! label rule and `batched_update_scores_inplace`.

use super::kernel::*;
use super::*;

fn dot(x: &[f32], w: &[f32]) -> f32 {
    x.iter().zip(w).map(|(a, b)| a * b).sum()
}

/// `scores[r * targets + t] = x[r] · coef[t] + intercept[t]`.
fn gemm(x: &[f32], rows: usize, features: usize, coef: &[f32], intercepts: &[f32]) -> Vec<f32> {
    let targets = coef.len() / features.max(1);
    let mut out = Vec::with_capacity(rows * targets);
    for r in 0..rows {
        let row = &x[r * features..][..features];
        for t in 0..targets {
            out.push(
                dot(row, &coef[t * features..][..features])
                    + intercepts.get(t).copied().unwrap_or(0.0),
            );
        }
    }
    out
}

fn check_features(coef: &[f32], targets: usize, features: usize, op: &str) -> TractResult<()> {
    ensure!(
        coef.len() == targets * features,
        "{op} has {} coefficients for {targets} targets, the input has {features} features",
        coef.len()
    );
    Ok(())
}

#[derive(Debug)]
pub(super) struct LinearRegressor {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    targets: usize,
    post_transform: PostTransform,
}

pub(super) fn parse_linear_regressor(_ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let coefficients: Vec<f32> = node.get_attr_vec("coefficients")?;
    let intercepts: Vec<f32> = node.get_attr_opt_vec("intercepts")?.unwrap_or_default();
    let targets = node.get_attr_opt::<i64>("targets")?.unwrap_or(1);
    node.expect_attr("targets", targets >= 1, "at least 1")?;
    let targets = targets as usize;
    node.expect_attr(
        "intercepts",
        intercepts.is_empty() || intercepts.len() == targets,
        || format!("0 or {targets} values"),
    )?;
    node.expect_attr(
        "coefficients",
        !coefficients.is_empty() && coefficients.len().is_multiple_of(targets),
        || format!("a multiple of targets ({targets})"),
    )?;
    let post_transform = PostTransform::of(node)?;
    parsed(LinearRegressor {
        coefficients,
        intercepts,
        targets,
        post_transform,
    })
}

impl Kernel for LinearRegressor {
    fn name(&self) -> &'static str {
        "LinearRegressor"
    }

    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let (_, shape) = only_input(inputs, self.name())?;
        let (rows, _) = fact_rows(&shape, self.name())?;
        Ok(tvec!((
            f32::datum_type(),
            tvec![rows, self.targets.to_dim()]
        )))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let (rows, features) = rows_features(x, self.name())?;
        check_features(&self.coefficients, self.targets, features, self.name())?;
        let mut y = gemm(
            &as_f32(x)?,
            rows,
            features,
            &self.coefficients,
            &self.intercepts,
        );
        if self.post_transform != PostTransform::None {
            for row in y.chunks_mut(self.targets) {
                update_scores(row, self.post_transform);
            }
        }
        Ok(tvec!(f32_tensor(&[rows, self.targets], y)?))
    }
}

#[derive(Debug)]
pub(super) struct LinearClassifier {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    labels: ClassLabels,
    post_transform: PostTransform,
}

pub(super) fn parse_linear_classifier(_ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let coefficients: Vec<f32> = node.get_attr_vec("coefficients")?;
    let intercepts: Vec<f32> = node.get_attr_opt_vec("intercepts")?.unwrap_or_default();
    let labels = ClassLabels::parse(node, "classlabels_ints", "classlabels_strings")?;
    // ORT counts targets by the intercepts.
    node.expect_attr("intercepts", !intercepts.is_empty(), "at least one value")?;
    node.expect_attr(
        "coefficients",
        coefficients.len().is_multiple_of(intercepts.len()),
        || format!("a multiple of the intercepts' count ({})", intercepts.len()),
    )?;
    let n = intercepts.len();
    node.expect(n == 1 || labels.len() == n, || {
        format!(
            "as many class labels as intercepts ({n}), got {}",
            labels.len()
        )
    })?;
    let post_transform = PostTransform::of(node)?;
    parsed(LinearClassifier {
        coefficients,
        intercepts,
        labels,
        post_transform,
    })
}

impl LinearClassifier {
    fn targets(&self) -> usize {
        self.intercepts.len()
    }

    /// ORT writes two score columns for one target with two labels.
    fn add_second_class(&self) -> bool {
        self.targets() == 1 && self.labels.len() == 2
    }

    fn columns(&self) -> usize {
        if self.add_second_class() {
            2
        } else {
            self.targets()
        }
    }
}

impl Kernel for LinearClassifier {
    fn name(&self) -> &'static str {
        "LinearClassifier"
    }

    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        classifier_facts(inputs, self.name(), &self.labels, self.columns())
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let (rows, features) = rows_features(x, self.name())?;
        let t = self.targets();
        check_features(&self.coefficients, t, features, self.name())?;
        let scores = gemm(
            &as_f32(x)?,
            rows,
            features,
            &self.coefficients,
            &self.intercepts,
        );
        let picks: Vec<Out> = scores
            .chunks(t)
            .map(|s| {
                if t == 1 {
                    // Binary: the two labels if there are two, else literal 1/0.
                    if self.labels.len() == 2 {
                        Out::Index((s[0] > 0.0) as usize)
                    } else {
                        Out::Literal(s[0] > 0.0)
                    }
                } else {
                    let mut best = 0;
                    for k in 1..t {
                        if s[k] > s[best] {
                            best = k;
                        }
                    }
                    Out::Index(best)
                }
            })
            .collect();
        let c = self.columns();
        let mut z = Vec::with_capacity(rows * c);
        if self.add_second_class() && self.post_transform == PostTransform::Probit {
            // Sic: ORT transforms the packed scores in place and never expands
            // them, so the first `rows` values are the scores and the rest is
            // left unwritten (zeros here).
            z.extend(scores.iter().map(|&s| eval::probit(s)));
            z.resize(rows * c, 0.0);
            return Ok(tvec!(
                label_tensor(&self.labels, &picks)?,
                f32_tensor(&[rows, c], z)?
            ));
        }
        for s in scores.chunks(t) {
            if self.add_second_class() {
                // ORT 1.31's binary expansion: [1 - s, s], with s through the
                // logistic first under LOGISTIC (checked against ORT).
                let v = if self.post_transform == PostTransform::Logistic {
                    eval::logistic(s[0])
                } else {
                    s[0]
                };
                z.extend([1.0 - v, v]);
            } else {
                let at = z.len();
                z.extend_from_slice(s);
                if self.post_transform != PostTransform::None {
                    update_scores(&mut z[at..], self.post_transform);
                }
            }
        }
        Ok(tvec!(
            label_tensor(&self.labels, &picks)?,
            f32_tensor(&[rows, c], z)?
        ))
    }
}
