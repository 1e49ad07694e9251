//! TreeEnsembleClassifier: the inference-time op (expands to the typed op) and the
//! typed op.

use super::*;

#[derive(Clone)]
pub(super) struct TreeEnsembleClassifier(pub(super) Arc<Ensemble>);

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
pub(super) struct TreeEnsembleClassifierOp(Arc<Ensemble>);

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
