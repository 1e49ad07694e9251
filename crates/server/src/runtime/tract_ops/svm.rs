//! `SVMClassifier` and `SVMRegressor`, as ORT 1.31 computes them (`svmclassifier.cc`,
//! `svmregressor.cc`): kernels in f32, the one-vs-one decision sums in f64,
//! votes with first-maximum ties, Platt probabilities coupled pairwise
//! (libsvm's `multiclass_probability`), and ORT's two-class score layouts.

use super::kernel::*;
use super::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum KernelType {
    Linear,
    Poly,
    Rbf,
    Sigmoid,
}

/// The SVM kernel with its parameters (`kernel_type`, `kernel_params`).
#[derive(Clone, Debug)]
struct SvmKernel {
    kind: KernelType,
    gamma: f32,
    coef0: f32,
    degree: f32,
}

impl SvmKernel {
    fn parse(node: &NodeProto) -> TractResult<SvmKernel> {
        let kind = match node
            .get_attr_opt::<&str>("kernel_type")?
            .unwrap_or("LINEAR")
        {
            "LINEAR" => KernelType::Linear,
            "POLY" => KernelType::Poly,
            "RBF" => KernelType::Rbf,
            // ORT maps any other name to SIGMOID.
            _ => KernelType::Sigmoid,
        };
        let p: Vec<f32> = node.get_attr_opt_vec("kernel_params")?.unwrap_or_default();
        node.expect_attr(
            "kernel_params",
            p.is_empty() || p.len() >= 3,
            "none or 3 values",
        )?;
        let (gamma, coef0, degree) = if p.is_empty() {
            (0.0, 0.0, 0.0)
        } else {
            (p[0], p[1], p[2])
        };
        Ok(SvmKernel {
            kind,
            gamma,
            coef0,
            degree,
        })
    }

    /// ORT's `batched_kernel_dot` for one row against one vector; `c` is the
    /// constant a LINEAR kernel adds.
    fn apply(&self, x: &[f32], v: &[f32], c: f32) -> f32 {
        match self.kind {
            KernelType::Rbf => {
                let mut sum = 0f32;
                for (a, b) in x.iter().zip(v) {
                    let d = a - b;
                    sum += d * d;
                }
                (-self.gamma * sum).exp()
            }
            KernelType::Linear => dot(x, v) + c,
            KernelType::Poly => {
                let y = self.gamma * dot(x, v) + self.coef0;
                if self.degree == 2.0 {
                    y * y
                } else if self.degree == 3.0 {
                    y * y * y
                } else {
                    y.powf(self.degree)
                }
            }
            KernelType::Sigmoid => (self.gamma * dot(x, v) + self.coef0).tanh(),
        }
    }
}

fn dot(x: &[f32], w: &[f32]) -> f32 {
    x.iter().zip(w).map(|(a, b)| a * b).sum()
}

fn check_features(features: usize, want: usize, op: &str) -> TractResult<()> {
    ensure!(
        features == want,
        "{op} expects {want} features, the input has {features}"
    );
    Ok(())
}

#[derive(Debug)]
pub(super) struct SvmClassifier {
    kernel: SvmKernel,
    labels: ClassLabels,
    vectors_per_class: Vec<usize>,
    starts: Vec<usize>,
    n_vectors: usize,
    features: usize,
    support_vectors: Vec<f32>,
    coefficients: Vec<f32>,
    rho: Vec<f32>,
    prob_a: Vec<f32>,
    prob_b: Vec<f32>,
    post_transform: PostTransform,
    weights_all_positive: bool,
}

pub(super) fn parse_svm_classifier(_ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let mut kernel = SvmKernel::parse(node)?;
    let labels = ClassLabels::parse(node, "classlabels_ints", "classlabels_strings")?;
    let c = labels.len();
    node.expect(c >= 1, "class labels")?;
    let vectors_per_class: Vec<i64> = node
        .get_attr_opt_vec("vectors_per_class")?
        .unwrap_or_default();
    node.expect_attr(
        "vectors_per_class",
        vectors_per_class.iter().all(|&v| v >= 0),
        "non-negative counts",
    )?;
    let vectors_per_class: Vec<usize> = vectors_per_class.iter().map(|&v| v as usize).collect();
    let mut starts = vec![];
    let mut n_vectors = 0;
    for &v in &vectors_per_class {
        starts.push(n_vectors);
        n_vectors += v;
    }
    let support_vectors: Vec<f32> = node
        .get_attr_opt_vec("support_vectors")?
        .unwrap_or_default();
    let coefficients: Vec<f32> = node.get_attr_vec("coefficients")?;
    let rho: Vec<f32> = node.get_attr_vec("rho")?;
    let prob_a: Vec<f32> = node.get_attr_opt_vec("prob_a")?.unwrap_or_default();
    let prob_b: Vec<f32> = node.get_attr_opt_vec("prob_b")?.unwrap_or_default();
    node.expect(
        prob_a.len() == prob_b.len(),
        "as many prob_a as prob_b values",
    )?;
    node.expect_attr(
        "coefficients",
        !coefficients.is_empty(),
        "at least one value",
    )?;
    let pairs = c * (c - 1) / 2;
    let features = if n_vectors > 0 {
        node.expect_attr(
            "vectors_per_class",
            vectors_per_class.len() == c,
            "one count per class",
        )?;
        node.expect_attr(
            "support_vectors",
            support_vectors.len().is_multiple_of(n_vectors),
            || format!("a multiple of the vector count {n_vectors}"),
        )?;
        node.expect_attr(
            "coefficients",
            coefficients.len() >= (c - 1) * n_vectors,
            || format!("at least {} values", (c - 1) * n_vectors),
        )?;
        node.expect_attr("rho", rho.len() >= pairs, || {
            format!("at least {pairs} values")
        })?;
        node.expect_attr("prob_a", prob_a.is_empty() || prob_a.len() >= pairs, || {
            format!("none or at least {pairs} values")
        })?;
        support_vectors.len() / n_vectors
    } else {
        kernel.kind = KernelType::Linear;
        node.expect_attr("rho", !rho.is_empty(), "at least one value")?;
        node.expect_attr("coefficients", coefficients.len().is_multiple_of(c), || {
            format!("a multiple of the class count {c}")
        })?;
        coefficients.len() / c
    };
    let weights_all_positive = coefficients.iter().all(|&w| w >= 0.0);
    let post_transform = PostTransform::of(node)?;
    parsed(SvmClassifier {
        kernel,
        labels,
        vectors_per_class,
        starts,
        n_vectors,
        features,
        support_vectors,
        coefficients,
        rho,
        prob_a,
        prob_b,
        post_transform,
        weights_all_positive,
    })
}

impl SvmClassifier {
    fn svc(&self) -> bool {
        self.n_vectors > 0
    }

    fn have_proba(&self) -> bool {
        !self.prob_a.is_empty()
    }

    fn columns(&self) -> usize {
        let c = self.labels.len();
        if self.svc() && !self.have_proba() {
            if c > 2 { c * (c - 1) / 2 } else { 2 }
        } else {
            c
        }
    }

    /// One row in SVC mode: the pairwise decision values and the votes.
    fn one_vs_one(
        &self,
        row: &[f32],
        kernels: &mut [f32],
        scores: &mut Vec<f32>,
        votes: &mut [usize],
    ) {
        for (v, k) in kernels.iter_mut().enumerate() {
            *k = self.kernel.apply(
                row,
                &self.support_vectors[v * self.features..][..self.features],
                0.0,
            );
        }
        let c = self.labels.len();
        let nv = self.n_vectors;
        let mut pair = 0;
        for i in 0..c - 1 {
            let (si, ni) = (self.starts[i], self.vectors_per_class[i]);
            for j in i + 1..c {
                let (sj, nj) = (self.starts[j], self.vectors_per_class[j]);
                let mut sum = 0f64;
                for m in 0..ni {
                    sum += (self.coefficients[nv * (j - 1) + si + m] * kernels[si + m]) as f64;
                }
                for m in 0..nj {
                    sum += (self.coefficients[nv * i + sj + m] * kernels[sj + m]) as f64;
                }
                sum += self.rho[pair] as f64;
                pair += 1;
                scores.push(sum as f32);
                votes[if sum > 0.0 { i } else { j }] += 1;
            }
        }
    }
}

fn first_max<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for k in 1..v.len() {
        if v[k] > v[best] {
            best = k;
        }
    }
    best
}

/// libsvm's pairwise coupling, exactly as ORT's `multiclass_probability` (f32).
fn multiclass_probability(k: usize, r: &[f32], p: &mut [f32]) {
    let mut q = vec![0f32; k * k];
    let mut qp = vec![0f32; k];
    let eps = 0.005f32 / k as f32;
    for i in 0..k {
        p[i] = 1.0 / k as f32;
        for j in 0..i {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = q[j * k + i];
        }
        for j in i + 1..k {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = -r[j * k + i] * r[i * k + j];
        }
    }
    for _ in 0..100 {
        let mut pqp = 0f32;
        for i in 0..k {
            qp[i] = 0.0;
            for j in 0..k {
                qp[i] += q[i * k + j] * p[j];
            }
            pqp += p[i] * qp[i];
        }
        let mut max_error = 0f32;
        for &v in qp.iter() {
            let error = (v - pqp).abs();
            if error > max_error {
                max_error = error;
            }
        }
        if max_error < eps {
            break;
        }
        for i in 0..k {
            let diff = (-qp[i] + pqp) / q[i * k + i];
            p[i] += diff;
            pqp = (pqp + diff * (diff * q[i * k + i] + 2.0 * qp[i])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[i * k + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
}

fn sigmoid_probability(score: f32, a: f32, b: f32) -> f32 {
    1.0 - eval::logistic(score * a + b)
}

impl Kernel for SvmClassifier {
    fn name(&self) -> &'static str {
        "SVMClassifier"
    }

    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        classifier_facts(inputs, self.name(), &self.labels, self.columns())
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let (rows, features) = rows_features(x, self.name())?;
        check_features(features, self.features, self.name())?;
        let x = as_f32(x)?;
        let c = self.labels.len();
        let cols = self.columns();
        let mut z = vec![0f32; rows * cols];
        let mut picks = Vec::with_capacity(rows);
        let mut kernels = vec![0f32; self.n_vectors];
        let mut scores = Vec::with_capacity(c * c);
        let mut votes = vec![0usize; c];
        let mut probs2 = vec![0f32; c * c];
        for r in 0..rows {
            let row = &x[r * features..][..features];
            let out = &mut z[r * cols..][..cols];
            scores.clear();
            if self.svc() {
                votes.fill(0);
                self.one_vs_one(row, &mut kernels, &mut scores, &mut votes);
                // The label is the vote's, with or without probabilities.
                picks.push(Out::Index(first_max(&votes)));
                if self.have_proba() {
                    probs2.fill(0.0);
                    let mut index = 0;
                    for i in 0..c - 1 {
                        for j in i + 1..c {
                            let v = sigmoid_probability(
                                scores[index],
                                self.prob_a[index],
                                self.prob_b[index],
                            )
                            .clamp(1.0e-7, 1.0 - 1.0e-7);
                            probs2[i * c + j] = v;
                            probs2[j * c + i] = 1.0 - v;
                            index += 1;
                        }
                    }
                    multiclass_probability(c, &probs2, out);
                    update_scores(out, self.post_transform);
                } else if c > 2 {
                    out.copy_from_slice(&scores);
                    update_scores(out, self.post_transform);
                } else {
                    // One decision value, expanded to two columns like ORT.
                    let s = scores[0];
                    match self.post_transform {
                        PostTransform::Probit => out[0] = eval::probit(s),
                        PostTransform::None => out.copy_from_slice(&[-s, s]),
                        _ => out.copy_from_slice(&[1.0 - s, s]),
                    }
                }
            } else {
                // liblinear mode: one score per class, rho[0] added to each.
                for k in 0..c {
                    scores.push(self.kernel.apply(
                        row,
                        &self.coefficients[k * features..][..features],
                        self.rho[0],
                    ));
                }
                let best = first_max(&scores);
                let max_weight = scores[best];
                let pick = if c == 2 && !self.have_proba() {
                    if (self.weights_all_positive && max_weight >= 0.5)
                        || (max_weight > 0.0 && !self.weights_all_positive)
                    {
                        1
                    } else {
                        best
                    }
                } else {
                    best
                };
                picks.push(Out::Index(pick));
                out.copy_from_slice(&scores);
                update_scores(out, self.post_transform);
            }
        }
        Ok(tvec!(
            label_tensor(&self.labels, &picks)?,
            f32_tensor(&[rows, cols], z)?
        ))
    }
}

#[derive(Debug)]
pub(super) struct SvmRegressor {
    kernel: SvmKernel,
    n_vectors: usize,
    features: usize,
    support_vectors: Vec<f32>,
    coefficients: Vec<f32>,
    rho: f32,
    one_class: bool,
}

pub(super) fn parse_svm_regressor(_ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let mut kernel = SvmKernel::parse(node)?;
    let n_vectors = node.get_attr_opt::<i64>("n_supports")?.unwrap_or(0);
    node.expect_attr("n_supports", n_vectors >= 0, "a non-negative count")?;
    let n_vectors = n_vectors as usize;
    let support_vectors: Vec<f32> = node
        .get_attr_opt_vec("support_vectors")?
        .unwrap_or_default();
    let coefficients: Vec<f32> = node.get_attr_vec("coefficients")?;
    node.expect_attr(
        "coefficients",
        !coefficients.is_empty(),
        "at least one value",
    )?;
    let rho: Vec<f32> = node.get_attr_vec("rho")?;
    node.expect_attr("rho", !rho.is_empty(), "at least one value")?;
    let features = if n_vectors > 0 {
        node.expect_attr(
            "support_vectors",
            support_vectors.len().is_multiple_of(n_vectors),
            || format!("a multiple of n_supports ({n_vectors})"),
        )?;
        node.expect_attr("coefficients", coefficients.len() >= n_vectors, || {
            format!("at least n_supports ({n_vectors}) values")
        })?;
        support_vectors.len() / n_vectors
    } else {
        kernel.kind = KernelType::Linear;
        coefficients.len()
    };
    let one_class = node.get_attr_opt::<i64>("one_class")?.unwrap_or(0) != 0;
    parsed(SvmRegressor {
        kernel,
        n_vectors,
        features,
        support_vectors,
        coefficients,
        rho: rho[0],
        one_class,
    })
}

impl Kernel for SvmRegressor {
    fn name(&self) -> &'static str {
        "SVMRegressor"
    }

    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let (_, shape) = only_input(inputs, self.name())?;
        let (rows, _) = fact_rows(&shape, self.name())?;
        Ok(tvec!((f32::datum_type(), tvec![rows, 1.to_dim()])))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let (rows, features) = rows_features(x, self.name())?;
        check_features(features, self.features, self.name())?;
        let x = as_f32(x)?;
        let mut y = Vec::with_capacity(rows);
        for r in 0..rows {
            let row = &x[r * features..][..features];
            let v = if self.n_vectors > 0 {
                let mut sum = 0f32;
                for v in 0..self.n_vectors {
                    let k = self.kernel.apply(
                        row,
                        &self.support_vectors[v * features..][..features],
                        0.0,
                    );
                    sum += k * self.coefficients[v];
                }
                sum + self.rho
            } else {
                self.kernel.apply(row, &self.coefficients, self.rho)
            };
            y.push(if self.one_class {
                if v > 0.0 { 1.0 } else { -1.0 }
            } else {
                v
            });
        }
        Ok(tvec!(f32_tensor(&[rows, 1], y)?))
    }
}
