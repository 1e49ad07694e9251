//! The generic wrapper the table-driven ONNX-ML operators share: a [`Kernel`]
//! (output facts from input facts, and an eval) becomes both the
//! inference-time op tract's parser needs and the typed op it runs.

use super::*;

/// An operator evaluated by hand on whole tensors.
pub(super) trait Kernel: fmt::Debug + Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Output datum types and shapes from the inputs' (ONNX outputs in order).
    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>>;
    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>>;
}

#[derive(Clone, Debug)]
pub(super) struct MlOp(pub(super) Arc<dyn Kernel>);

impl PartialEq for MlOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for MlOp {}

/// Wraps a kernel as the op a tract ONNX parser returns.
pub(super) fn parsed(k: impl Kernel) -> ParsedOp {
    Ok((expand(MlOp(Arc::new(k))), vec![]))
}

impl Expansion for MlOp {
    fn name(&self) -> StaticName {
        self.0.name().into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.0)])
    }

    fn nboutputs(&self) -> TractResult<usize> {
        // Probe with an empty fact list is not possible: every kernel reports
        // its arity through `facts` on a one-row input instead.
        Ok(self.arity())
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let n = inputs.len();
        s.given_all(
            (0..n).map(|i| (&inputs[i].datum_type).bex()),
            move |s, dts: Vec<DatumType>| {
                s.given_all(
                    inputs.iter().map(|i| &i.shape),
                    move |s, shapes: Vec<TVec<TDim>>| {
                        let ins: Vec<(DatumType, &[TDim])> = dts
                            .iter()
                            .copied()
                            .zip(shapes.iter().map(|s| s.as_slice()))
                            .collect();
                        let facts = self.0.facts(&ins)?;
                        ensure!(
                            facts.len() >= outputs.len(),
                            "{} has {} outputs, the graph wires {}",
                            self.0.name(),
                            facts.len(),
                            outputs.len()
                        );
                        for (o, (dt, shape)) in outputs.iter().zip(facts) {
                            s.equals(&o.datum_type, dt)?;
                            s.equals(&o.shape, ShapeFactoid::from(shape))?;
                        }
                        Ok(())
                    },
                )
            },
        )
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.clone(), inputs)
    }
}

impl MlOp {
    fn arity(&self) -> usize {
        let one = [1.to_dim(), 1.to_dim()];
        // Probe with a plausible input; kernels with a fixed output count
        // ignore the input, the rest fall back to one output.
        self.0
            .facts(&[(f32::datum_type(), &one)])
            .map(|f| f.len())
            .unwrap_or(1)
    }
}

impl Op for MlOp {
    fn name(&self) -> StaticName {
        format!("Hoist{}", self.0.name()).into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.0)])
    }

    op_as_typed_op!();
}

impl EvalOp for MlOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.0.eval(inputs)
    }
}

impl TypedOp for MlOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let ins: Vec<(DatumType, &[TDim])> = inputs
            .iter()
            .map(|f| (f.datum_type, f.shape.dims()))
            .collect();
        Ok(self
            .0
            .facts(&ins)?
            .into_iter()
            .map(|(dt, shape)| TypedFact::dt_shape(dt, shape))
            .collect())
    }

    as_op!();
}

// ---------------------------------------------------------------------------
// Helpers shared by the kernels
// ---------------------------------------------------------------------------

/// `(rows, features)` of a rank-1 (one row) or rank-2 input, as ORT reads it.
pub(super) fn rows_features(x: &Tensor, op: &str) -> TractResult<(usize, usize)> {
    match x.rank() {
        1 => Ok((1, x.shape()[0])),
        2 => Ok((x.shape()[0], x.shape()[1])),
        r => bail!("{op} expects a rank 1 or 2 input, got rank {r}"),
    }
}

/// Symbolic `(rows, features)` of a rank-1 or rank-2 input fact.
pub(super) fn fact_rows(shape: &[TDim], op: &str) -> TractResult<(TDim, TDim)> {
    match shape.len() {
        1 => Ok((1.to_dim(), shape[0].clone())),
        2 => Ok((shape[0].clone(), shape[1].clone())),
        r => bail!("{op} expects a rank 1 or 2 input, got rank {r}"),
    }
}

/// The input as f32, cast like ORT's `static_cast<float>` (f64, ints).
pub(super) fn as_f32(x: &Tensor) -> TractResult<Vec<f32>> {
    let c = x.cast_to::<f32>()?;
    Ok(c.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
}

pub(super) fn only_input(
    inputs: &[(DatumType, &[TDim])],
    op: &str,
) -> TractResult<(DatumType, Vec<TDim>)> {
    ensure!(
        inputs.len() == 1,
        "{op} takes one input, got {}",
        inputs.len()
    );
    Ok((inputs[0].0, inputs[0].1.to_vec()))
}

/// A classifier's output facts: one label per row, and `columns` f32 scores per row.
pub(super) fn classifier_facts(
    inputs: &[(DatumType, &[TDim])],
    op: &str,
    labels: &ClassLabels,
    columns: usize,
) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
    let (_, shape) = only_input(inputs, op)?;
    let (rows, _) = fact_rows(&shape, op)?;
    Ok(tvec!(
        (labels.datum_type(), tvec![rows.clone()]),
        (f32::datum_type(), tvec![rows, columns.to_dim()])
    ))
}

pub(super) fn f32_tensor(shape: &[usize], v: Vec<f32>) -> TractResult<TValue> {
    Ok(Tensor::from_shape(shape, &v)?.into_tvalue())
}

/// Class labels of a classifier output (`classlabels_ints` or `_strings`).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum ClassLabels {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl ClassLabels {
    pub(super) fn parse(node: &NodeProto, ints: &str, strings: &str) -> TractResult<ClassLabels> {
        let s: Vec<String> = node.get_attr_opt_vec(strings)?.unwrap_or_default();
        if !s.is_empty() {
            return Ok(ClassLabels::Str(s));
        }
        let i: Vec<i64> = node.get_attr_opt_vec(ints)?.unwrap_or_default();
        Ok(ClassLabels::Int(i))
    }

    pub(super) fn len(&self) -> usize {
        match self {
            ClassLabels::Int(v) => v.len(),
            ClassLabels::Str(v) => v.len(),
        }
    }

    pub(super) fn datum_type(&self) -> DatumType {
        match self {
            ClassLabels::Int(_) => i64::datum_type(),
            ClassLabels::Str(_) => String::datum_type(),
        }
    }
}

/// A label a classifier writes: an index into its labels, or a literal
/// (ORT's "1"/"0" or 1/0 fallbacks for binary models).
#[derive(Clone, Copy, Debug)]
pub(super) enum Out {
    Index(usize),
    /// Positive (true) or negative (false) literal label.
    Literal(bool),
}

/// Builds the label tensor from picks.
pub(super) fn label_tensor(labels: &ClassLabels, picks: &[Out]) -> TractResult<TValue> {
    let n = picks.len();
    Ok(match labels {
        ClassLabels::Int(l) => {
            let v: Vec<i64> = picks
                .iter()
                .map(|p| match *p {
                    Out::Index(k) => l[k],
                    Out::Literal(b) => b as i64,
                })
                .collect();
            Tensor::from_shape(&[n], &v)?.into_tvalue()
        }
        ClassLabels::Str(l) => {
            let v: Vec<String> = picks
                .iter()
                .map(|p| match *p {
                    Out::Index(k) => l[k].clone(),
                    Out::Literal(b) => (if b { "1" } else { "0" }).to_string(),
                })
                .collect();
            tract_ndarray::Array1::from_vec(v)
                .into_dyn()
                .into_tensor()
                .into_tvalue()
        }
    })
}

/// ORT's `batched_update_scores_inplace` for one row of `z.len()` scores with
/// no second class to add: post-transforms for two or more scores, PROBIT
/// alone for one.
pub(super) fn update_scores(z: &mut [f32], post: PostTransform) {
    if z.len() > 1 {
        eval::write_scores(z, post);
    } else if post == PostTransform::Probit {
        z.iter_mut().for_each(|v| *v = eval::probit(*v));
    }
}
