//! A guard against a tract 0.23.9 declutter bug, applied to the typed model
//! before it is optimised.
//!
//! `EinSum`'s `declutter_broadcast` rule (tract-core `ops/einsum/mod.rs`)
//! drops any `MultiBroadcastTo` feeding an EinSum, assuming the EinSum
//! broadcasts that input itself. That only holds for batch axes: when the
//! broadcast widens a matmul's row (`m`) or column (`n`) axis the EinSum's
//! output shrinks, and the patch fails validation. ONNX `Tile` of a `[1, K]`
//! tensor to `[M, K]` (and `Expand`) declutters into exactly such a
//! `MultiBroadcastTo`, so `ReduceSum(keepdims) → MatMul → Tile → MatMul` graphs
//! failed to load with "Trying to substitute a 320,320,F32 by 1,320,F32"
//! (reproduced by `declutter_tile_before_matmul` in `runtime::tract`'s tests).
//!
//! The guard wraps every `Tile`, `DynTile` and `MultiBroadcastTo` whose output
//! reaches an `EinSum` (directly or through single-input ops) in
//! [`Materialized`], which evaluates the wrapped op unchanged but offers no
//! declutter rule, so the broadcast is computed as the graph says.

use tract_core::ops::array::{DynTile, MultiBroadcastTo, Tile};
use tract_core::ops::einsum::EinSum;

use super::*;

/// Wraps the broadcasts that feed an EinSum (see the module doc). Returns how
/// many were wrapped.
pub fn keep_broadcasts_before_einsum(model: &mut TypedModel) -> TractResult<usize> {
    let mut wrapped = 0;
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let is_broadcast =
            node.op_is::<Tile>() || node.op_is::<DynTile>() || node.op_is::<MultiBroadcastTo>();
        if !is_broadcast || !reaches_einsum(model, id) {
            continue;
        }
        let inner: Arc<dyn TypedOp> = Arc::from(node.op.clone());
        model.node_mut(id).op = Box::new(Materialized(inner));
        wrapped += 1;
    }
    Ok(wrapped)
}

/// Whether `id`'s first output flows into an EinSum, directly or through a
/// short chain of single-input ops (which declutter may remove).
fn reaches_einsum(model: &TypedModel, id: usize) -> bool {
    let mut frontier = vec![(id, 0usize)];
    while let Some((at, depth)) = frontier.pop() {
        for succ in &model.node(at).outputs[0].successors {
            let next = model.node(succ.node);
            if next.op_is::<EinSum>() {
                return true;
            }
            if depth < 4 && next.inputs.len() == 1 && !next.outputs.is_empty() {
                frontier.push((succ.node, depth + 1));
            }
        }
    }
    false
}

/// Evaluates the wrapped op, with no declutter or codegen rule of its own.
#[derive(Clone, Debug)]
pub struct Materialized(Arc<dyn TypedOp>);

impl PartialEq for Materialized {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Materialized {}

impl Op for Materialized {
    fn name(&self) -> StaticName {
        format!("HoistMaterialized({})", self.0.name()).into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        self.0.info()
    }

    op_as_typed_op!();
}

impl EvalOp for Materialized {
    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.0.eval(ctx, inputs)
    }

    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        self.0.eval_out_of_plan(inputs)
    }

    fn state(&self, ctx: &EvalContext) -> TractResult<Option<Box<dyn OpState>>> {
        self.0.state(ctx)
    }
}

impl TypedOp for Materialized {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.0.output_facts(inputs)
    }

    as_op!();
}
