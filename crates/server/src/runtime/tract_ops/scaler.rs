//! `Scaler`: `y = (x - offset) * scale` in f32, as two tract broadcasting ops.

use super::*;

/// `ai.onnx.ml.Scaler`: `y = (x - offset) * scale`, per feature (last axis) or
/// with a single value, output always f32.
#[derive(Debug, Clone)]
pub(super) struct Scaler {
    pub(super) offset: Vec<f32>,
    pub(super) scale: Vec<f32>,
}

pub(super) fn parse_scaler(_ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
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
