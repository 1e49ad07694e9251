//! tract: the pure-Rust runtime, used when no ONNX Runtime library is present.
//!
//! The graph is parsed with hoist's ONNX-ML operators registered on top of tract's
//! ([`super::tract_ops`]), every variable input dimension becomes one symbol (the
//! batch), and the model is optimised once at load. A model using an operator that
//! neither tract nor hoist implements fails here, with the operator's name.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb::tensor_proto::DataType as PbType;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as PbDim;
use tract_onnx::pb::type_proto::Value as PbTypeValue;
use tract_onnx::prelude::*;

use super::{IoSpec, Runtime, RuntimeError, RuntimeKind};
use crate::tensor::{DataType, Tensor as HTensor, TensorData};

type Plan = Arc<TypedRunnableModel>;

/// Models with more weights than this get no second, single-row plan (it would
/// double their memory).
const SINGLE_ROW_PLAN_MAX_WEIGHTS: usize = 32 << 20;

/// The bytes of the graph's initializers (the weights a plan packs).
fn weight_bytes(graph: &tract_onnx::pb::GraphProto) -> usize {
    graph
        .initializer
        .iter()
        .map(|t| {
            t.raw_data.len()
                + 4 * (t.float_data.len() + t.int32_data.len())
                + 8 * (t.double_data.len() + t.int64_data.len() + t.uint64_data.len())
                + t.string_data.iter().map(Vec::len).sum::<usize>()
        })
        .sum()
}

/// A model loaded into tract.
pub struct TractRuntime {
    plan: Plan,
    /// The plan with the batch dimension fixed at 1, for single-row requests.
    single_row: Option<Plan>,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
}

impl TractRuntime {
    pub fn load(path: &Path) -> Result<Self, RuntimeError> {
        Self::load_from(path, None)
    }

    /// Loads `path`, or `rewritten` when given (a model hoist rewrote; external data is
    /// still read beside `path`).
    pub fn load_from(
        path: &Path,
        rewritten: Option<&tract_onnx::pb::ModelProto>,
    ) -> Result<Self, RuntimeError> {
        let err = |e: TractError| RuntimeError::Load {
            runtime: "tract",
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        };
        let mut onnx = tract_onnx::onnx();
        super::tract_ops::register(&mut onnx);
        let owned;
        let proto = match rewritten {
            Some(p) if !has_symbolic_value_info(p) => p,
            Some(p) => {
                let mut p = p.clone();
                forget_symbolic_value_info(&mut p);
                owned = p;
                &owned
            }
            None => {
                let mut p = onnx.proto_model_for_path(path).map_err(err)?;
                forget_symbolic_value_info(&mut p);
                owned = p;
                &owned
            }
        };
        let graph = proto.graph.as_ref().ok_or_else(|| RuntimeError::Load {
            runtime: "tract",
            path: path.to_path_buf(),
            message: "the file holds no graph".into(),
        })?;
        let initializers: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let spec = |v: &tract_onnx::pb::ValueInfoProto| -> Result<IoSpec, RuntimeError> {
            let bad = |m: String| RuntimeError::Load {
                runtime: "tract",
                path: path.to_path_buf(),
                message: m,
            };
            let Some(PbTypeValue::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                return Err(bad(format!(
                    "'{}' is not a tensor; hoist serves tensors and ZipMap outputs",
                    v.name
                )));
            };
            let datatype = PbType::try_from(t.elem_type)
                .ok()
                .and_then(from_pb)
                .ok_or_else(|| {
                    bad(format!(
                        "'{}' has unsupported element type {}",
                        v.name, t.elem_type
                    ))
                })?;
            let shape = t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(PbDim::DimValue(n)) if n > 0 => n,
                            _ => -1,
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(IoSpec {
                name: v.name.clone(),
                datatype,
                shape,
            })
        };
        let inputs = graph
            .input
            .iter()
            .filter(|v| !initializers.contains(v.name.as_str()))
            .map(spec)
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = graph
            .output
            .iter()
            .map(spec)
            .collect::<Result<Vec<_>, _>>()?;

        let dir = path.parent().and_then(Path::to_str);
        let parsed = onnx.parse(proto, dir).map_err(err)?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(err(anyhow::anyhow!(
                "could not resolve inputs at top level: {:?}",
                parsed.unresolved_inputs
            )));
        }
        // The plan for any batch size, and one specialised for a single row (what most
        // online requests are): with every dimension known, tract picks its fixed-size
        // kernels (a small CNN runs several times faster).
        let plan = optimise(&inputs, parsed.model.clone(), None).map_err(err)?;
        let single_row = if inputs.iter().any(|i| i.shape.first() == Some(&-1))
            && weight_bytes(graph) <= SINGLE_ROW_PLAN_MAX_WEIGHTS
        {
            Some(optimise(&inputs, parsed.model, Some(1)).map_err(err)?)
        } else {
            None
        };
        Ok(TractRuntime {
            plan,
            single_row,
            inputs,
            outputs,
        })
    }
}

/// Whether the graph's `value_info` names a dimension by a symbol.
fn has_symbolic_value_info(proto: &tract_onnx::pb::ModelProto) -> bool {
    proto.graph.as_ref().is_some_and(|g| {
        g.value_info.iter().any(|v| {
            value_info_dims(v).is_some_and(|dims| {
                dims.iter()
                    .any(|d| matches!(d.value, Some(PbDim::DimParam(_))))
            })
        })
    })
}

fn value_info_dims(
    v: &tract_onnx::pb::ValueInfoProto,
) -> Option<&Vec<tract_onnx::pb::tensor_shape_proto::Dimension>> {
    match v.r#type.as_ref()?.value.as_ref()? {
        PbTypeValue::TensorType(t) => Some(&t.shape.as_ref()?.dim),
    }
}

/// Makes every symbolic dimension of the graph's `value_info` (the shapes an exporter
/// recorded for intermediate values) unknown; fixed dimensions and element types stay.
///
/// hoist gives the inputs' variable dimensions its own symbol (N, or 1 for the
/// single-row plan; see [`optimise`]), and tract takes `value_info` as facts, so an
/// exporter's own symbol there cannot unify with them: torch's dynamo exporter
/// records `batch_size` on every intermediate value, and tract failed with "Impossible
/// to unify Sym(batch_size) with Sym(N)". tract infers those dimensions itself.
fn forget_symbolic_value_info(proto: &mut tract_onnx::pb::ModelProto) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    for v in &mut graph.value_info {
        if let Some(PbTypeValue::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut())
            && let Some(shape) = t.shape.as_mut()
        {
            for d in &mut shape.dim {
                if matches!(d.value, Some(PbDim::DimParam(_))) {
                    d.value = None;
                }
            }
        }
    }
}

/// Sets the inputs' facts (a variable first dimension is `batch` when given, else the
/// symbol N like every other variable dimension), then types and optimises the model.
fn optimise(
    inputs: &[IoSpec],
    mut model: InferenceModel,
    batch: Option<usize>,
) -> TractResult<Plan> {
    let n = model.symbols.sym("N");
    for (i, input) in inputs.iter().enumerate() {
        let dims: TVec<TDim> = input
            .shape
            .iter()
            .enumerate()
            .map(|(axis, &d)| match (d, batch) {
                (d, _) if d >= 0 => (d as usize).to_dim(),
                (_, Some(b)) if axis == 0 => b.to_dim(),
                _ => n.to_dim(),
            })
            .collect();
        model.set_input_fact(i, InferenceFact::dt_shape(to_datum(input.datatype), dims))?;
    }
    let mut typed = model.into_typed()?;
    super::tract_ops::guard::keep_broadcasts_before_einsum(&mut typed)?;
    typed.into_optimized()?.into_runnable()
}

impl Runtime for TractRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Tract
    }

    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn run(&self, inputs: &[HTensor]) -> Result<Vec<HTensor>, RuntimeError> {
        let err = |e: TractError| RuntimeError::Run(format!("{e:#}"));
        let values: TVec<TValue> = inputs
            .iter()
            .map(|t| to_tract(t).map(|t| t.into_tvalue()))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let plan = match &self.single_row {
            Some(one) if inputs.iter().all(|t| t.shape.first() == Some(&1)) => one,
            _ => &self.plan,
        };
        let outs = plan.run(values).map_err(err)?;
        outs.iter()
            .zip(&self.outputs)
            .map(|(v, spec)| from_tract(&spec.name, v))
            .collect()
    }
}

fn from_pb(t: PbType) -> Option<DataType> {
    Some(match t {
        PbType::Float => DataType::F32,
        PbType::Double => DataType::F64,
        PbType::Uint8 => DataType::U8,
        PbType::Uint16 => DataType::U16,
        PbType::Uint32 => DataType::U32,
        PbType::Uint64 => DataType::U64,
        PbType::Int8 => DataType::I8,
        PbType::Int16 => DataType::I16,
        PbType::Int32 => DataType::I32,
        PbType::Int64 => DataType::I64,
        PbType::Bool => DataType::Bool,
        PbType::String => DataType::Bytes,
        _ => return None,
    })
}

fn to_datum(dt: DataType) -> DatumType {
    match dt {
        DataType::Bool => DatumType::Bool,
        DataType::U8 => DatumType::U8,
        DataType::U16 => DatumType::U16,
        DataType::U32 => DatumType::U32,
        DataType::U64 => DatumType::U64,
        DataType::I8 => DatumType::I8,
        DataType::I16 => DatumType::I16,
        DataType::I32 => DatumType::I32,
        DataType::I64 => DatumType::I64,
        DataType::F32 => DatumType::F32,
        DataType::F64 => DatumType::F64,
        DataType::Bytes => DatumType::String,
    }
}

fn to_tract(t: &HTensor) -> TractResult<Tensor> {
    let shape = &t.shape;
    Ok(match &t.data {
        TensorData::Bool(v) => Tensor::from_shape(shape, v)?,
        TensorData::U8(v) => Tensor::from_shape(shape, v)?,
        TensorData::U16(v) => Tensor::from_shape(shape, v)?,
        TensorData::U32(v) => Tensor::from_shape(shape, v)?,
        TensorData::U64(v) => Tensor::from_shape(shape, v)?,
        TensorData::I8(v) => Tensor::from_shape(shape, v)?,
        TensorData::I16(v) => Tensor::from_shape(shape, v)?,
        TensorData::I32(v) => Tensor::from_shape(shape, v)?,
        TensorData::I64(v) => Tensor::from_shape(shape, v)?,
        TensorData::F32(v) => Tensor::from_shape(shape, v)?,
        TensorData::F64(v) => Tensor::from_shape(shape, v)?,
        TensorData::Bytes(v) => {
            let strings: Vec<String> = v
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            tract_ndarray::ArrayD::from_shape_vec(shape.as_slice(), strings)?.into_tensor()
        }
    })
}

fn from_tract(name: &str, v: &TValue) -> Result<HTensor, RuntimeError> {
    let err = |e: TractError| RuntimeError::Run(format!("output '{name}': {e:#}"));
    let shape = v.shape().to_vec();
    // Shape arithmetic (e.g. ArgMax over a symbolic batch) can yield TDim: plain i64.
    let cast;
    let v: &Tensor = if v.datum_type() == DatumType::TDim {
        cast = v.cast_to::<i64>().map_err(err)?.into_owned();
        &cast
    } else {
        v
    };
    let plain = v.try_as_plain_ram().map_err(err)?;
    macro_rules! sl {
        ($t:ty, $var:ident) => {
            TensorData::$var(plain.as_slice::<$t>().map_err(err)?.to_vec())
        };
    }
    let data = match v.datum_type() {
        DatumType::Bool => sl!(bool, Bool),
        DatumType::U8 => sl!(u8, U8),
        DatumType::U16 => sl!(u16, U16),
        DatumType::U32 => sl!(u32, U32),
        DatumType::U64 => sl!(u64, U64),
        DatumType::I8 => sl!(i8, I8),
        DatumType::I16 => sl!(i16, I16),
        DatumType::I32 => sl!(i32, I32),
        DatumType::I64 => sl!(i64, I64),
        DatumType::F32 => sl!(f32, F32),
        DatumType::F64 => sl!(f64, F64),
        DatumType::String => TensorData::Bytes(
            plain
                .as_slice::<String>()
                .map_err(err)?
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
        ),
        other => {
            return Err(RuntimeError::Run(format!(
                "output '{name}' has unsupported type {other:?}"
            )));
        }
    };
    HTensor::new(name, shape, data).map_err(|e| RuntimeError::Run(e.to_string()))
}
