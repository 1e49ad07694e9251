//! Tensors to and from the gRPC messages: typed `InferTensorContents` and
//! `raw_input_contents`/`raw_output_contents` (the same little-endian layout as
//! the REST binary tensor extension, [`TensorData::from_le_bytes`]).
//!
//! Every size here comes from the client, as in [`crate::http::v2::parse_request`]:
//! shapes go through [`shape_from_i64`] and must hold exactly the elements sent,
//! raw byte lengths must match `shape × element size`, and narrow integer types are
//! range-checked. Errors are messages for `INVALID_ARGUMENT`, naming the input.

use super::proto::model_infer_request::InferInputTensor;
use super::proto::{InferTensorContents, ModelInferRequest};
use crate::tensor::{DataType, Tensor, TensorData, byte_size, element_count, shape_from_i64};

/// The request's input tensors. Takes the raw contents out of `req` (no copy of
/// their bytes beyond the decode into typed buffers).
pub fn request_tensors(req: &mut ModelInferRequest) -> Result<Vec<Tensor>, String> {
    let raw = std::mem::take(&mut req.raw_input_contents);
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(format!(
            "raw_input_contents has {} entries but the request has {} inputs; send one per input, in order",
            raw.len(),
            req.inputs.len()
        ));
    }
    let mut tensors = Vec::with_capacity(req.inputs.len());
    for (i, input) in std::mem::take(&mut req.inputs).into_iter().enumerate() {
        let InferInputTensor {
            name,
            datatype,
            shape,
            contents,
            ..
        } = input;
        let dt = DataType::parse(&datatype)
            .ok_or_else(|| format!("input '{name}': unsupported datatype '{datatype}'"))?;
        let shape = shape_from_i64(&shape).map_err(|e| format!("input '{name}': {e}"))?;
        let count = element_count(&shape).map_err(|e| format!("input '{name}': {e}"))?;
        let data = match raw.get(i) {
            Some(bytes) => {
                if contents.as_ref().is_some_and(|c| !used(c).is_empty()) {
                    return Err(format!(
                        "input '{name}' has contents but the request also has raw_input_contents; use one or the other"
                    ));
                }
                if let Some(want) =
                    byte_size(dt, count).map_err(|e| format!("input '{name}': {e}"))?
                    && want != bytes.len()
                {
                    return Err(format!(
                        "input '{name}': shape {shape:?} of {dt} needs {want} bytes but its raw_input_contents has {}",
                        bytes.len()
                    ));
                }
                TensorData::from_le_bytes(dt, bytes).map_err(|e| format!("input '{name}': {e}"))?
            }
            None => typed(&name, dt, count, contents.unwrap_or_default())?,
        };
        tensors.push(Tensor::new(name, shape, data).map_err(|e| e.0)?);
    }
    Ok(tensors)
}

/// The names and lengths of the content fields that hold elements.
fn used(c: &InferTensorContents) -> Vec<(&'static str, usize)> {
    [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect()
}

/// The content field a datatype's elements go in.
fn field_of(dt: DataType) -> &'static str {
    match dt {
        DataType::Bool => "bool_contents",
        DataType::I8 | DataType::I16 | DataType::I32 => "int_contents",
        DataType::I64 => "int64_contents",
        DataType::U8 | DataType::U16 | DataType::U32 => "uint_contents",
        DataType::U64 => "uint64_contents",
        DataType::F32 => "fp32_contents",
        DataType::F64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
    }
}

/// Typed contents as a buffer of `dt`: only `dt`'s field may hold elements, exactly
/// `count` of them, each in range.
fn typed(
    name: &str,
    dt: DataType,
    count: usize,
    c: InferTensorContents,
) -> Result<TensorData, String> {
    let field = field_of(dt);
    if let Some((other, _)) = used(&c).into_iter().find(|(f, _)| *f != field) {
        return Err(format!(
            "input '{name}': a {dt} tensor's elements go in {field}, not {other}"
        ));
    }
    fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
        name: &str,
        dt: DataType,
        v: &[S],
    ) -> Result<Vec<T>, String> {
        v.iter()
            .enumerate()
            .map(|(i, &x)| {
                T::try_from(x)
                    .map_err(|_| format!("input '{name}': element {i} ({x}) does not fit in {dt}"))
            })
            .collect()
    }
    let data = match dt {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::I8 => TensorData::I8(narrow(name, dt, &c.int_contents)?),
        DataType::I16 => TensorData::I16(narrow(name, dt, &c.int_contents)?),
        DataType::I32 => TensorData::I32(c.int_contents),
        DataType::I64 => TensorData::I64(c.int64_contents),
        DataType::U8 => TensorData::U8(narrow(name, dt, &c.uint_contents)?),
        DataType::U16 => TensorData::U16(narrow(name, dt, &c.uint_contents)?),
        DataType::U32 => TensorData::U32(c.uint_contents),
        DataType::U64 => TensorData::U64(c.uint64_contents),
        DataType::F32 => TensorData::F32(c.fp32_contents),
        DataType::F64 => TensorData::F64(c.fp64_contents),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents.iter().map(|b| b.to_vec()).collect()),
    };
    if data.len() != count {
        return Err(format!(
            "input '{name}': its shape holds {count} elements but {} has {}",
            field,
            data.len()
        ));
    }
    Ok(data)
}

/// An output buffer as typed contents.
pub fn contents(data: &TensorData) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v.clone(),
        TensorData::I8(v) => c.int_contents = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I16(v) => c.int_contents = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::I32(v) => c.int_contents = v.clone(),
        TensorData::I64(v) => c.int64_contents = v.clone(),
        TensorData::U8(v) => c.uint_contents = v.iter().map(|&x| u32::from(x)).collect(),
        TensorData::U16(v) => c.uint_contents = v.iter().map(|&x| u32::from(x)).collect(),
        TensorData::U32(v) => c.uint_contents = v.clone(),
        TensorData::U64(v) => c.uint64_contents = v.clone(),
        TensorData::F32(v) => c.fp32_contents = v.clone(),
        TensorData::F64(v) => c.fp64_contents = v.clone(),
        TensorData::Bytes(v) => {
            c.bytes_contents = v.iter().map(|b| bytes::Bytes::copy_from_slice(b)).collect()
        }
    }
    c
}

/// An output buffer as raw little-endian bytes.
pub fn raw(data: &TensorData) -> bytes::Bytes {
    let mut out = Vec::with_capacity(
        byte_size(data.datatype(), data.len())
            .ok()
            .flatten()
            .unwrap_or(0),
    );
    data.to_le_bytes(&mut out);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::proto::model_infer_request::InferInputTensor;

    fn input(
        name: &str,
        dt: &str,
        shape: &[i64],
        contents: Option<InferTensorContents>,
    ) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: dt.into(),
            shape: shape.to_vec(),
            parameters: Default::default(),
            contents,
        }
    }

    #[test]
    fn raw_and_typed_contents_decode_to_the_same_tensor() {
        let x = TensorData::F32(vec![1.5, -2.0, 3.25, 0.0]);
        let mut raw_req = ModelInferRequest {
            inputs: vec![input("x", "FP32", &[2, 2], None)],
            raw_input_contents: vec![raw(&x)],
            ..Default::default()
        };
        let mut typed_req = ModelInferRequest {
            inputs: vec![input("x", "FP32", &[2, 2], Some(contents(&x)))],
            ..Default::default()
        };
        let a = request_tensors(&mut raw_req).unwrap();
        let b = request_tensors(&mut typed_req).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].data, x);
        assert_eq!(a[0].shape, vec![2, 2]);
    }

    #[test]
    fn hostile_sizes_and_fields_are_refused_with_the_input_named() {
        let cases: Vec<(ModelInferRequest, &str)> = vec![
            (
                ModelInferRequest {
                    inputs: vec![input("x", "FP32", &[3], None)],
                    raw_input_contents: vec![vec![0u8; 8].into()],
                    ..Default::default()
                },
                "needs 12 bytes",
            ),
            (
                ModelInferRequest {
                    inputs: vec![input("x", "FP32", &[i64::MAX, i64::MAX], None)],
                    raw_input_contents: vec![vec![0u8; 8].into()],
                    ..Default::default()
                },
                "overflows",
            ),
            (
                ModelInferRequest {
                    inputs: vec![input("x", "FP32", &[-1, 2], None)],
                    ..Default::default()
                },
                "negative",
            ),
            (
                ModelInferRequest {
                    inputs: vec![
                        input("x", "FP32", &[1], None),
                        input("y", "FP32", &[1], None),
                    ],
                    raw_input_contents: vec![vec![0u8; 4].into()],
                    ..Default::default()
                },
                "one per input",
            ),
            (
                ModelInferRequest {
                    inputs: vec![input(
                        "x",
                        "INT8",
                        &[1],
                        Some(InferTensorContents {
                            int_contents: vec![300],
                            ..Default::default()
                        }),
                    )],
                    ..Default::default()
                },
                "does not fit in INT8",
            ),
            (
                ModelInferRequest {
                    inputs: vec![input(
                        "x",
                        "FP32",
                        &[1],
                        Some(InferTensorContents {
                            fp64_contents: vec![1.0],
                            ..Default::default()
                        }),
                    )],
                    ..Default::default()
                },
                "not fp64_contents",
            ),
            (
                ModelInferRequest {
                    inputs: vec![input(
                        "x",
                        "FP32",
                        &[2],
                        Some(InferTensorContents {
                            fp32_contents: vec![1.0],
                            ..Default::default()
                        }),
                    )],
                    ..Default::default()
                },
                "holds 2 elements",
            ),
            (
                ModelInferRequest {
                    inputs: vec![input("x", "FP16", &[1], None)],
                    raw_input_contents: vec![vec![0u8; 2].into()],
                    ..Default::default()
                },
                "unsupported datatype 'FP16'",
            ),
            (
                ModelInferRequest {
                    inputs: vec![input("x", "BYTES", &[1], None)],
                    raw_input_contents: vec![vec![9u8, 0, 0, 0, b'a'].into()],
                    ..Default::default()
                },
                "BYTES element longer",
            ),
        ];
        for (mut req, want) in cases {
            let err = request_tensors(&mut req).unwrap_err();
            assert!(err.contains(want), "{err:?} should say {want:?}");
        }
    }
}
