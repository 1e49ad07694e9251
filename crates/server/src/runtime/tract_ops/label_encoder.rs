//! `LabelEncoder` (ai.onnx.ml opsets 1, 2 and 4) as ORT 1.31 computes it: a
//! key → value map between strings, int64 and floats, with list or tensor
//! attributes, the first of repeated keys winning (opset 1: the last), NaN
//! keys matching NaN, and ORT's defaults (`-1`, `"_Unused"`, `-0.0`).

use super::kernel::*;
use super::*;

/// A hashable key: floats by canonical bits (NaN one key, 0.0 == -0.0).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    S(String),
    I(i64),
    F(u64),
}

fn float_key(v: f64) -> Key {
    if v.is_nan() {
        Key::F(u64::MAX)
    } else if v == 0.0 {
        Key::F(0)
    } else {
        Key::F(v.to_bits())
    }
}

/// A typed column of keys or values.
#[derive(Clone, Debug)]
enum Column {
    S(Vec<String>),
    I(Vec<i64>),
    F(Vec<f32>),
    D(Vec<f64>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::S(v) => v.len(),
            Column::I(v) => v.len(),
            Column::F(v) => v.len(),
            Column::D(v) => v.len(),
        }
    }

    fn datum_type(&self) -> DatumType {
        match self {
            Column::S(_) => String::datum_type(),
            Column::I(_) => i64::datum_type(),
            Column::F(_) => f32::datum_type(),
            Column::D(_) => f64::datum_type(),
        }
    }

    fn key(&self, i: usize) -> Key {
        match self {
            Column::S(v) => Key::S(v[i].clone()),
            Column::I(v) => Key::I(v[i]),
            Column::F(v) => float_key(v[i] as f64),
            Column::D(v) => float_key(v[i]),
        }
    }

    fn from_tensor(t: &Tensor) -> TractResult<Column> {
        let p = t.try_as_plain_ram()?;
        Ok(match t.datum_type() {
            DatumType::String => Column::S(p.as_slice::<String>()?.to_vec()),
            DatumType::I64 => Column::I(p.as_slice::<i64>()?.to_vec()),
            DatumType::F32 => Column::F(p.as_slice::<f32>()?.to_vec()),
            DatumType::F64 => Column::D(p.as_slice::<f64>()?.to_vec()),
            dt => bail!("LabelEncoder does not support {dt:?} keys or values"),
        })
    }
}

#[derive(Debug)]
pub(super) struct LabelEncoder {
    keys: Column,
    values: Column,
    /// Key → index into `values`.
    map: HashMap<Key, usize>,
    /// The default value: a one-element column.
    default: Column,
    /// Opset 1: strings ↔ int64 by input type (the key column is the classes).
    opset1: bool,
    default_int: i64,
    default_string: String,
}

fn column_attr(ctx: &ParsingContext, node: &NodeProto, what: &str) -> TractResult<Option<Column>> {
    if let Some(v) = node.get_attr_opt_vec::<String>(&format!("{what}_strings"))? {
        return Ok(Some(Column::S(v)));
    }
    if let Some(v) = node.get_attr_opt_vec::<i64>(&format!("{what}_int64s"))? {
        return Ok(Some(Column::I(v)));
    }
    if let Some(v) = node.get_attr_opt_vec::<f32>(&format!("{what}_floats"))? {
        return Ok(Some(Column::F(v)));
    }
    if let Some(p) = node.get_attr_opt::<&tract_onnx::pb::TensorProto>(&format!("{what}_tensor"))? {
        return Ok(Some(Column::from_tensor(&ctx.load_tensor(p)?)?));
    }
    Ok(None)
}

pub(super) fn parse_label_encoder(ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let default_int = node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1);
    let default_string = node
        .get_attr_opt::<String>("default_string")?
        .unwrap_or_else(|| "_Unused".into());
    if let Some(classes) = node.get_attr_opt_vec::<String>("classes_strings")? {
        let keys = Column::S(classes.clone());
        let map = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (Key::S(c.clone()), i))
            .collect();
        return parsed(LabelEncoder {
            keys,
            values: Column::S(classes),
            map,
            default: Column::I(vec![default_int]),
            opset1: true,
            default_int,
            default_string,
        });
    }
    let keys =
        column_attr(ctx, node, "keys")?.ok_or_else(|| format_err!("LabelEncoder has no keys"))?;
    let values = column_attr(ctx, node, "values")?
        .ok_or_else(|| format_err!("LabelEncoder has no values"))?;
    node.expect(keys.len() == values.len(), || {
        format!(
            "as many keys as values ({} and {})",
            keys.len(),
            values.len()
        )
    })?;
    let mut map = HashMap::with_capacity(keys.len());
    for i in 0..keys.len() {
        map.entry(keys.key(i)).or_insert(i);
    }
    let default = match node.get_attr_opt::<&tract_onnx::pb::TensorProto>("default_tensor")? {
        Some(p) => {
            let t = ctx.load_tensor(p)?;
            let t = t.cast_to_dt(values.datum_type())?;
            Column::from_tensor(&t)?
        }
        None => match values {
            Column::S(_) => Column::S(vec![default_string.clone()]),
            Column::I(_) => Column::I(vec![default_int]),
            Column::F(_) => Column::F(vec![
                node.get_attr_opt::<f32>("default_float")?.unwrap_or(-0.0),
            ]),
            Column::D(_) => Column::D(vec![-0.0]),
        },
    };
    node.expect(default.len() >= 1, "a default value")?;
    parsed(LabelEncoder {
        keys,
        values,
        map,
        default,
        opset1: false,
        default_int,
        default_string,
    })
}

impl LabelEncoder {
    fn out_type(&self, input: DatumType) -> TractResult<DatumType> {
        if self.opset1 {
            return Ok(if input == String::datum_type() {
                i64::datum_type()
            } else {
                String::datum_type()
            });
        }
        ensure!(
            input == self.keys.datum_type(),
            "LabelEncoder maps {:?} keys, got {input:?} input",
            self.keys.datum_type()
        );
        Ok(self.values.datum_type())
    }
}

impl Kernel for LabelEncoder {
    fn name(&self) -> &'static str {
        "LabelEncoder"
    }

    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let (dt, shape) = only_input(inputs, self.name())?;
        Ok(tvec!((self.out_type(dt)?, shape.into())))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let shape = x.shape().to_vec();
        let p = x.try_as_plain_ram()?;
        if self.opset1 {
            let Column::S(classes) = &self.values else {
                unreachable!()
            };
            if x.datum_type() == String::datum_type() {
                // Opset 1 keeps the last index of a repeated class.
                let last: HashMap<&str, i64> = classes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.as_str(), i as i64))
                    .collect();
                let y: Vec<i64> = p
                    .as_slice::<String>()?
                    .iter()
                    .map(|s| *last.get(s.as_str()).unwrap_or(&self.default_int))
                    .collect();
                return Ok(tvec!(Tensor::from_shape(&shape, &y)?.into_tvalue()));
            }
            let v = x.cast_to::<i64>()?;
            let y: Vec<String> = v
                .try_as_plain_ram()?
                .as_slice::<i64>()?
                .iter()
                .map(|&i| {
                    if i >= 0 && (i as usize) < classes.len() {
                        classes[i as usize].clone()
                    } else {
                        self.default_string.clone()
                    }
                })
                .collect();
            return Ok(tvec!(
                tract_ndarray::ArrayD::from_shape_vec(shape, y)?
                    .into_tensor()
                    .into_tvalue()
            ));
        }
        let keys: Vec<Key> = match x.datum_type() {
            DatumType::String => p
                .as_slice::<String>()?
                .iter()
                .map(|s| Key::S(s.clone()))
                .collect(),
            DatumType::I64 => p.as_slice::<i64>()?.iter().map(|&v| Key::I(v)).collect(),
            DatumType::F32 => p
                .as_slice::<f32>()?
                .iter()
                .map(|&v| float_key(v as f64))
                .collect(),
            DatumType::F64 => p.as_slice::<f64>()?.iter().map(|&v| float_key(v)).collect(),
            dt => bail!("LabelEncoder does not take {dt:?} input"),
        };
        let idx: Vec<Option<usize>> = keys.iter().map(|k| self.map.get(k).copied()).collect();
        macro_rules! pick {
            ($vals:expr, $def:expr) => {
                idx.iter()
                    .map(|i| i.map_or_else(|| $def.clone(), |i| $vals[i].clone()))
                    .collect::<Vec<_>>()
            };
        }
        let y = match (&self.values, &self.default) {
            (Column::S(v), Column::S(d)) => {
                tract_ndarray::ArrayD::from_shape_vec(shape, pick!(v, d[0]))?.into_tensor()
            }
            (Column::I(v), Column::I(d)) => Tensor::from_shape(&shape, &pick!(v, d[0]))?,
            (Column::F(v), Column::F(d)) => Tensor::from_shape(&shape, &pick!(v, d[0]))?,
            (Column::D(v), Column::D(d)) => Tensor::from_shape(&shape, &pick!(v, d[0]))?,
            _ => bail!("LabelEncoder default has the wrong type"),
        };
        Ok(tvec!(y.into_tvalue()))
    }
}
