//! Element-wise and layout ONNX-ML operators, as ORT 1.31 computes them:
//! `Normalizer`, `Binarizer`, `Imputer`, `OneHotEncoder`,
//! `ArrayFeatureExtractor`, `FeatureVectorizer`.

use super::kernel::*;
use super::*;

fn shape_usize(t: &Tensor) -> Vec<usize> {
    t.shape().to_vec()
}

// --- Normalizer --------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Norm {
    Max,
    L1,
    L2,
}

#[derive(Debug)]
pub(super) struct Normalizer(Norm);

pub(super) fn parse_normalizer(_ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let norm = match node.get_attr_opt::<&str>("norm")?.unwrap_or("MAX") {
        "MAX" => Norm::Max,
        "L1" => Norm::L1,
        "L2" => Norm::L2,
        other => bail!("Invalid Normalizer norm {other}"),
    };
    parsed(Normalizer(norm))
}

impl Kernel for Normalizer {
    fn name(&self) -> &'static str {
        "Normalizer"
    }

    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let (_, shape) = only_input(inputs, self.name())?;
        fact_rows(&shape, self.name())?;
        Ok(tvec!((f32::datum_type(), shape.into())))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let (_, width) = rows_features(x, self.name())?;
        // ORT squares in the input type (f64 stays f64) before casting to f32.
        let x64 = x.cast_to::<f64>()?;
        let x64 = x64.try_as_plain_ram()?.as_slice::<f64>()?.to_vec();
        let is_f32 = x.datum_type() == f32::datum_type();
        let xs = as_f32(x)?;
        let mut y = vec![0f32; xs.len()];
        for (r, row) in xs.chunks(width.max(1)).enumerate() {
            let out = &mut y[r * width..][..width];
            match self.0 {
                Norm::Max => {
                    let max = row.iter().fold(f32::MIN, |m, &v| if m < v { v } else { m });
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o = if max != 0.0 { v / max } else { v };
                    }
                }
                Norm::L1 => {
                    let sum: f32 = row.iter().fold(0.0, |s, v| s + v.abs());
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o = if sum != 0.0 { v / sum } else { v };
                    }
                }
                Norm::L2 => {
                    let row64 = &x64[r * width..][..width];
                    let mut sum = 0f32;
                    for (o, (&v, &v64)) in out.iter_mut().zip(row.iter().zip(row64)) {
                        *o = if is_f32 { v * v } else { (v64 * v64) as f32 };
                        sum += *o;
                    }
                    for (o, &v) in out.iter_mut().zip(row) {
                        *o = if sum != 0.0 {
                            let s = (*o / sum).sqrt();
                            if v < 0.0 { -s } else { s }
                        } else {
                            v
                        };
                    }
                }
            }
        }
        Ok(tvec!(f32_tensor(&shape_usize(x), y)?))
    }
}

// --- Binarizer ---------------------------------------------------------------

#[derive(Debug)]
pub(super) struct Binarizer(f32);

pub(super) fn parse_binarizer(_ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    parsed(Binarizer(
        node.get_attr_opt::<f32>("threshold")?.unwrap_or(0.0),
    ))
}

impl Kernel for Binarizer {
    fn name(&self) -> &'static str {
        "Binarizer"
    }

    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let (dt, shape) = only_input(inputs, self.name())?;
        Ok(tvec!((dt, shape.into())))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let t = self.0 as f64;
        // ORT refuses NaN input; the comparison is in the input type.
        let v = x.cast_to::<f64>()?;
        let v = v.try_as_plain_ram()?.as_slice::<f64>()?;
        if let Some(i) = v.iter().position(|v| v.is_nan()) {
            bail!("Binarizer: input value {i} is NaN");
        }
        let y: Vec<f64> = v.iter().map(|&v| if v > t { 1.0 } else { 0.0 }).collect();
        let out = Tensor::from_shape(x.shape(), &y)?
            .cast_to_dt(x.datum_type())?
            .into_owned();
        Ok(tvec!(out.into_tvalue()))
    }
}

// --- Imputer -----------------------------------------------------------------

#[derive(Debug)]
pub(super) enum Imputer {
    Float { imputed: Vec<f32>, replaced: f32 },
    Int { imputed: Vec<i64>, replaced: i64 },
}

pub(super) fn parse_imputer(_ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let floats: Vec<f32> = node
        .get_attr_opt_vec("imputed_value_floats")?
        .unwrap_or_default();
    let ints: Vec<i64> = node
        .get_attr_opt_vec("imputed_value_int64s")?
        .unwrap_or_default();
    node.expect(
        floats.is_empty() != ints.is_empty(),
        "exactly one of imputed_value_floats and imputed_value_int64s",
    )?;
    if !floats.is_empty() {
        let replaced = node
            .get_attr_opt::<f32>("replaced_value_float")?
            .unwrap_or(0.0);
        parsed(Imputer::Float {
            imputed: floats,
            replaced,
        })
    } else {
        let replaced = node
            .get_attr_opt::<i64>("replaced_value_int64")?
            .unwrap_or(0);
        parsed(Imputer::Int {
            imputed: ints,
            replaced,
        })
    }
}

impl Kernel for Imputer {
    fn name(&self) -> &'static str {
        "Imputer"
    }

    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let (dt, shape) = only_input(inputs, self.name())?;
        let want = match self {
            Imputer::Float { .. } => f32::datum_type(),
            Imputer::Int { .. } => i64::datum_type(),
        };
        ensure!(
            dt == want,
            "Imputer with these attributes takes {want:?} input, got {dt:?}"
        );
        Ok(tvec!((dt, shape.into())))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        ensure!(x.rank() >= 1, "Imputer expects an input of rank 1 or more");
        let width = *x.shape().last().unwrap();
        fn fill<T: Copy + Datum>(
            x: &Tensor,
            imputed: &[T],
            width: usize,
            is_missing: impl Fn(T) -> bool,
        ) -> TractResult<Tensor> {
            ensure!(
                imputed.len() == 1 || imputed.len() == width,
                "Imputer has {} imputed values, the input has {width} features",
                imputed.len()
            );
            let v = x.try_as_plain_ram()?.as_slice::<T>()?;
            let y: Vec<T> = v
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    if is_missing(v) {
                        imputed[if imputed.len() == 1 { 0 } else { i % width }]
                    } else {
                        v
                    }
                })
                .collect();
            Tensor::from_shape(x.shape(), &y)
        }
        let y = match self {
            Imputer::Float { imputed, replaced } => {
                let r = *replaced;
                fill(x, imputed, width, |v: f32| {
                    if r.is_nan() { v.is_nan() } else { v == r }
                })?
            }
            Imputer::Int { imputed, replaced } => fill(x, imputed, width, |v: i64| v == *replaced)?,
        };
        Ok(tvec!(y.into_tvalue()))
    }
}

// --- OneHotEncoder -----------------------------------------------------------

#[derive(Debug)]
pub(super) enum Categories {
    Int(HashMap<i64, usize>),
    Str(HashMap<String, usize>),
}

#[derive(Debug)]
pub(super) struct OneHotEncoder {
    cats: Categories,
    n: usize,
    zeros: bool,
}

pub(super) fn parse_one_hot_encoder(_ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let ints: Vec<i64> = node.get_attr_opt_vec("cats_int64s")?.unwrap_or_default();
    let strs: Vec<String> = node.get_attr_opt_vec("cats_strings")?.unwrap_or_default();
    node.expect(
        ints.is_empty() || strs.is_empty(),
        "only one of cats_int64s and cats_strings",
    )?;
    let zeros = node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) != 0;
    // Like ORT's map: a repeated category keeps its last index.
    let (cats, n) = if !ints.is_empty() {
        (
            Categories::Int(ints.iter().enumerate().map(|(i, &c)| (c, i)).collect()),
            ints.len(),
        )
    } else {
        (
            Categories::Str(
                strs.iter()
                    .enumerate()
                    .map(|(i, c)| (c.clone(), i))
                    .collect(),
            ),
            strs.len(),
        )
    };
    node.expect(n > 0, "at least one category")?;
    parsed(OneHotEncoder { cats, n, zeros })
}

impl Kernel for OneHotEncoder {
    fn name(&self) -> &'static str {
        "OneHotEncoder"
    }

    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        let (dt, shape) = only_input(inputs, self.name())?;
        ensure!(
            shape.len() <= 2,
            "OneHotEncoder expects an input of rank 2 at most"
        );
        match self.cats {
            Categories::Str(_) => ensure!(
                dt == String::datum_type(),
                "OneHotEncoder with cats_strings takes strings, got {dt:?}"
            ),
            Categories::Int(_) => ensure!(
                dt != String::datum_type(),
                "OneHotEncoder with cats_int64s takes numbers, got strings"
            ),
        }
        let mut out: TVec<TDim> = shape.into();
        out.push(self.n.to_dim());
        Ok(tvec!((f32::datum_type(), out)))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let len = x.len();
        let mut y = vec![0f32; len * self.n];
        let idx: Vec<Option<usize>> = match &self.cats {
            Categories::Str(m) => x
                .try_as_plain_ram()?
                .as_slice::<String>()?
                .iter()
                .map(|s| m.get(s).copied())
                .collect(),
            Categories::Int(m) => {
                // ORT casts float/double inputs to int64 (truncation).
                let v =
                    if x.datum_type() == f32::datum_type() || x.datum_type() == f64::datum_type() {
                        x.cast_to::<f64>()?
                            .try_as_plain_ram()?
                            .as_slice::<f64>()?
                            .iter()
                            .map(|&v| v as i64)
                            .collect()
                    } else {
                        x.cast_to::<i64>()?
                            .try_as_plain_ram()?
                            .as_slice::<i64>()?
                            .to_vec()
                    };
                v.iter().map(|c| m.get(c).copied()).collect()
            }
        };
        for (i, k) in idx.iter().enumerate() {
            match k {
                Some(k) => y[i * self.n + k] = 1.0,
                None if !self.zeros => bail!("OneHotEncoder: unknown category and zeros = 0"),
                None => (),
            }
        }
        let mut shape = shape_usize(x);
        shape.push(self.n);
        Ok(tvec!(f32_tensor(&shape, y)?))
    }
}

// --- ArrayFeatureExtractor ---------------------------------------------------

#[derive(Debug)]
pub(super) struct ArrayFeatureExtractor;

pub(super) fn parse_array_feature_extractor(_ctx: &ParsingContext, _node: &NodeProto) -> ParsedOp {
    parsed(ArrayFeatureExtractor)
}

impl Kernel for ArrayFeatureExtractor {
    fn name(&self) -> &'static str {
        "ArrayFeatureExtractor"
    }

    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        ensure!(inputs.len() == 2, "ArrayFeatureExtractor takes two inputs");
        let (dt, x) = inputs[0];
        let n: TDim = inputs[1].1.iter().product();
        let out: TVec<TDim> = if x.len() == 1 {
            tvec![1.to_dim(), n]
        } else {
            ensure!(
                !x.is_empty(),
                "ArrayFeatureExtractor expects an input of rank 1 or more"
            );
            x[..x.len() - 1].iter().cloned().chain([n]).collect()
        };
        Ok(tvec!((dt, out)))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, idx) = (&inputs[0], &inputs[1]);
        ensure!(
            x.rank() >= 1,
            "ArrayFeatureExtractor expects an input of rank 1 or more"
        );
        let idx = idx.cast_to::<i64>()?;
        let idx = idx.try_as_plain_ram()?.as_slice::<i64>()?;
        let width = *x.shape().last().unwrap();
        for &i in idx {
            ensure!(
                i >= 0 && (i as usize) < width,
                "ArrayFeatureExtractor: index {i} out of range (the input has {width} features)"
            );
        }
        let outer = x.len() / width.max(1);
        let mut shape: Vec<usize> = if x.rank() == 1 {
            vec![1]
        } else {
            x.shape()[..x.rank() - 1].to_vec()
        };
        shape.push(idx.len());
        // A gather along the last axis.
        let x2 = x.clone().into_tensor().into_shape(&[outer, width])?;
        let mut cols = Vec::with_capacity(idx.len());
        for &i in idx {
            cols.push(x2.slice(1, i as usize, i as usize + 1)?);
        }
        let y = Tensor::stack_tensors(1, &cols)?.into_shape(&shape)?;
        Ok(tvec!(y.into_tvalue()))
    }
}

// --- FeatureVectorizer -------------------------------------------------------

#[derive(Debug)]
pub(super) struct FeatureVectorizer(Vec<usize>);

pub(super) fn parse_feature_vectorizer(_ctx: &ParsingContext, node: &NodeProto) -> ParsedOp {
    let dims: Vec<i64> = node.get_attr_vec("inputdimensions")?;
    node.expect_attr(
        "inputdimensions",
        dims.iter().all(|&d| d >= 0),
        "non-negative sizes",
    )?;
    parsed(FeatureVectorizer(
        dims.iter().map(|&d| d as usize).collect(),
    ))
}

impl Kernel for FeatureVectorizer {
    fn name(&self) -> &'static str {
        "FeatureVectorizer"
    }

    fn facts(&self, inputs: &[(DatumType, &[TDim])]) -> TractResult<TVec<(DatumType, TVec<TDim>)>> {
        ensure!(
            inputs.len() == self.0.len(),
            "FeatureVectorizer has {} inputdimensions for {} inputs",
            self.0.len(),
            inputs.len()
        );
        let rows = match inputs[0].1.len() {
            0 | 1 => 1.to_dim(),
            _ => inputs[0].1[0].clone(),
        };
        Ok(tvec!((
            f32::datum_type(),
            tvec![rows, self.0.iter().sum::<usize>().to_dim()]
        )))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let total: usize = self.0.iter().sum();
        let rows = if inputs[0].rank() <= 1 {
            1
        } else {
            inputs[0].shape()[0]
        };
        let mut y = vec![0f32; rows * total];
        let mut offset = 0;
        for (x, &want) in inputs.iter().zip(&self.0) {
            let v = as_f32(x)?;
            let stride = if x.rank() <= 1 {
                v.len()
            } else {
                x.len() / x.shape()[0].max(1)
            };
            let xr = if x.rank() <= 1 { 1 } else { x.shape()[0] };
            ensure!(
                xr == rows,
                "FeatureVectorizer inputs have different row counts ({xr} and {rows})"
            );
            // Fewer features than declared: zero padding; more: truncated (as ORT).
            for r in 0..rows {
                let n = stride.min(want);
                y[r * total + offset..][..n].copy_from_slice(&v[r * stride..][..n]);
            }
            offset += want;
        }
        Ok(tvec!(f32_tensor(&[rows, total], y)?))
    }
}
