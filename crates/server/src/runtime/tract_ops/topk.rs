//! `TopK` with ONNX Runtime's order, NaN included.
//!
//! tract 0.23.9 sorts with `partial_cmp(..).unwrap_or(Less)`, so a NaN compares
//! "less" than everything and the order of a row holding NaN depends on the sort's
//! inner workings. That made k-NN models (skl2onnx: distances, then `TopK`) answer a
//! row with a missing feature differently from ONNX Runtime and MLflow: every distance
//! of such a row is NaN, and ORT takes the first k training points where tract took
//! others (211.4 against 132.8 on `knn_regressor`).
//!
//! ORT 1.32 orders as if NaN were greater than every number, in both directions, and
//! breaks ties by the lower index: the k smallest of `[NaN, 3, 1, NaN, 2, 0.5]` are
//! `0.5, 1, 2` (indices 5, 2, 4), its k largest `NaN, NaN, 3` (0, 3, 1), and the k
//! smallest of an all-NaN row are indices `0..k` (checked against ORT 1.32 by
//! `crates/server/tests/ops.rs` on `examples/ops/topk_*`). This kernel does the same
//! when `k` is a constant of the graph (as converters write it); otherwise tract's own
//! `TopK` runs.

use std::cmp::Ordering;
use std::sync::OnceLock;

use super::kernel::*;
use super::*;

/// A tract ONNX op parser (tract's `OpBuilder`, which it does not export).
type Builder = fn(&ParsingContext, &NodeProto) -> ParsedOp;

/// tract's own `TopK` parser, for a `k` that is not a constant.
static TRACT_TOPK: OnceLock<Builder> = OnceLock::new();

/// Registers this `TopK` in place of tract's, keeping tract's as the fallback.
pub(super) fn register(onnx: &mut tract_onnx::Onnx) {
    if let Some(b) = onnx.op_register.0.get("TopK") {
        let _ = TRACT_TOPK.set(*b);
    }
    onnx.op_register.insert("TopK", parse_topk);
}

#[derive(Debug)]
pub(super) struct TopK {
    axis: i64,
    largest: bool,
    k: usize,
}

/// The value of a graph constant named `name` (an initializer, or a `Constant`
/// node's tensor), as i64s.
fn constant_i64(ctx: &ParsingContext, name: &str) -> Option<Vec<i64>> {
    let graphs = ctx
        .model
        .graph
        .iter()
        .chain(ctx.parent_graphs.iter().copied());
    for g in graphs {
        let t = g.initializer.iter().find(|t| t.name == name).or_else(|| {
            g.node
                .iter()
                .find(|n| n.op_type == "Constant" && n.output.iter().any(|o| o == name))
                .and_then(|n| n.attribute.iter().find(|a| a.name == "value"))
                .and_then(|a| a.t.as_ref())
        });
        if let Some(t) = t {
            let tensor =
                tract_onnx::tensor::load_tensor(&*ctx.framework.provider, t, ctx.model_dir).ok()?;
            let v = tensor.cast_to::<i64>().ok()?;
            return v
                .try_as_plain_ram()
                .ok()?
                .as_slice::<i64>()
                .ok()
                .map(<[i64]>::to_vec);
        }
    }
    None
}

fn parse_topk(ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let k = node
        .input
        .get(1)
        .and_then(|name| constant_i64(ctx, name))
        .filter(|v| v.len() == 1 && v[0] >= 0);
    let sorted = node.get_attr_opt::<i64>("sorted")?.unwrap_or(1) == 1;
    match k {
        // `sorted = 0` lets ORT return any order; the sorted one is a valid answer.
        Some(k) => {
            let _ = sorted;
            parsed(TopK {
                axis: node.get_attr_opt("axis")?.unwrap_or(-1i64),
                largest: node.get_attr_opt("largest")?.unwrap_or(1i64) == 1,
                k: k[0] as usize,
            })
        }
        None => match TRACT_TOPK.get() {
            Some(builtin) => builtin(ctx, node),
            None => bail!("TopK: k must be a constant of the graph"),
        },
    }
}

impl TopK {
    fn axis(&self, rank: usize) -> TractResult<usize> {
        let a = if self.axis < 0 {
            self.axis + rank as i64
        } else {
            self.axis
        };
        ensure!(
            (0..rank as i64).contains(&a),
            "TopK: axis {} out of range for rank {rank}",
            self.axis
        );
        Ok(a as usize)
    }
}

/// ORT's order: NaN above every number; `largest` reverses the values' order only,
/// ties always go to the lower index.
fn order<T: PartialOrd>(largest: bool, a: (usize, &T), b: (usize, &T)) -> Ordering {
    #[allow(clippy::eq_op)] // NaN is the only value not equal to itself
    let nan = |x: &T| x != x;
    let by_value = match (nan(a.1), nan(b.1)) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.1.partial_cmp(b.1).unwrap_or(Ordering::Equal),
    };
    let by_value = if largest {
        by_value.reverse()
    } else {
        by_value
    };
    by_value.then(a.0.cmp(&b.0))
}

fn top_k<T: Datum + PartialOrd + Copy>(
    x: &Tensor,
    axis: usize,
    k: usize,
    largest: bool,
) -> TractResult<(Tensor, Tensor)> {
    let view = x.to_plain_array_view::<T>()?;
    let mut shape: Vec<usize> = x.shape().to_vec();
    ensure!(
        k <= shape[axis],
        "TopK: k = {k} is larger than axis {axis}'s {} elements",
        shape[axis]
    );
    shape[axis] = k;
    let mut values = tract_ndarray::ArrayD::<T>::default(shape.clone());
    let mut indices = tract_ndarray::ArrayD::<i64>::zeros(shape);
    let ax = tract_ndarray::Axis(axis);
    let mut order_buf: Vec<usize> = Vec::new();
    for ((lane, mut v_out), mut i_out) in view
        .lanes(ax)
        .into_iter()
        .zip(values.lanes_mut(ax))
        .zip(indices.lanes_mut(ax))
    {
        order_buf.clear();
        order_buf.extend(0..lane.len());
        // The order is total (ties by index), so selecting the k first and sorting
        // them gives exactly the first k of a full sort, in O(n + k log k).
        let cmp = |a: &usize, b: &usize| order(largest, (*a, &lane[*a]), (*b, &lane[*b]));
        if k > 0 && k < order_buf.len() {
            order_buf.select_nth_unstable_by(k - 1, cmp);
        }
        let first = k.min(order_buf.len());
        order_buf[..first].sort_by(cmp);
        for (j, &src) in order_buf.iter().take(k).enumerate() {
            v_out[j] = lane[src];
            i_out[j] = src as i64;
        }
    }
    Ok((values.into_tensor(), indices.into_tensor()))
}

impl Kernel for TopK {
    fn name(&self) -> &'static str {
        "TopK"
    }

    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let (dt, shape) = inputs
            .first()
            .ok_or_else(|| format_err!("TopK: no input"))?;
        let axis = self.axis(shape.len())?;
        let mut out: TVec<TDim> = shape.iter().cloned().collect();
        out[axis] = self.k.to_dim();
        Ok(tvec!((*dt, out.clone()), (i64::datum_type(), out)))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let axis = self.axis(x.rank())?;
        let (v, i) = match x.datum_type() {
            DatumType::F32 => top_k::<f32>(x, axis, self.k, self.largest)?,
            DatumType::F64 => top_k::<f64>(x, axis, self.k, self.largest)?,
            DatumType::I64 => top_k::<i64>(x, axis, self.k, self.largest)?,
            DatumType::I32 => top_k::<i32>(x, axis, self.k, self.largest)?,
            other => bail!("TopK: {other:?} input is not supported"),
        };
        Ok(tvec!(v.into_tvalue(), i.into_tvalue()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vec_of<T: Datum + Copy>(t: &Tensor) -> Vec<T> {
        t.try_as_plain_ram()
            .unwrap()
            .as_slice::<T>()
            .unwrap()
            .to_vec()
    }

    fn run(row: &[f32], k: usize, largest: bool) -> (Vec<f32>, Vec<i64>) {
        let x = Tensor::from_shape(&[1, row.len()], row).unwrap();
        let (v, i) = top_k::<f32>(&x, 1, k, largest).unwrap();
        (vec_of::<f32>(&v), vec_of::<i64>(&i))
    }

    fn same(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x.is_nan() && y.is_nan()) || x == y)
    }

    /// The answers ONNX Runtime 1.32 gives (run by hand on a one-node model).
    #[test]
    fn nan_sorts_above_every_number_and_ties_go_to_the_lower_index() {
        let nan = f32::NAN;
        let (v, i) = run(&[nan, 3.0, 1.0, nan, 2.0, 0.5], 3, false);
        assert!(same(&v, &[0.5, 1.0, 2.0]), "{v:?}");
        assert_eq!(i, [5, 2, 4]);
        let (v, i) = run(&[nan, 3.0, 1.0, nan, 2.0, 0.5], 3, true);
        assert!(same(&v, &[nan, nan, 3.0]), "{v:?}");
        assert_eq!(i, [0, 3, 1]);
        assert_eq!(run(&[nan; 6], 3, false).1, [0, 1, 2]);
        assert_eq!(run(&[nan; 6], 3, true).1, [0, 1, 2]);
        let row: Vec<f32> = [5.0, nan, 1.0, 2.0, nan, 4.0].repeat(50);
        assert_eq!(run(&row, 3, false).1, [2, 8, 14]);
        assert_eq!(run(&row, 3, true).1, [1, 4, 7]);
        // Equal numbers: the lower index first, either way.
        assert_eq!(run(&[2.0, 1.0, 2.0, 1.0], 2, false).1, [1, 3]);
        assert_eq!(run(&[2.0, 1.0, 2.0, 1.0], 2, true).1, [0, 2]);
    }

    #[test]
    fn other_axes_and_a_k_too_large() {
        // Axis 0 of a 3×2 matrix: per column.
        let x = Tensor::from_shape(&[3, 2], &[3.0f32, 0.0, 1.0, 5.0, 2.0, 4.0]).unwrap();
        let (v, i) = top_k::<f32>(&x, 0, 2, false).unwrap();
        assert_eq!(vec_of::<f32>(&v), [1.0, 0.0, 2.0, 4.0]);
        assert_eq!(vec_of::<i64>(&i), [1, 0, 2, 2]);
        let e = top_k::<f32>(&x, 0, 4, false).unwrap_err();
        assert!(e.to_string().contains("k = 4"), "{e}");
    }
}
