//! The MLflow scoring protocol, as `mlflow models serve` speaks it: `POST /invocations`
//! with JSON (`dataframe_split`, `dataframe_records`, `instances` or `inputs`, plus
//! optional `params`) or `text/csv`, answering `{"predictions": ...}`; `GET /ping`,
//! `GET /version`. Errors are `{"error_code", "message"}` as MLflow sends them.
//!
//! Answers are what MLflow's onnx flavor gives (checked against `mlflow models serve`
//! by tests/conformance): `{"predictions": {output: [...], ...}}`, one entry per output
//! even for a one-output model; but a dataframe request (`dataframe_split`,
//! `dataframe_records`, CSV) to a model without a tensor signature is answered as
//! pandas records, `{"predictions": [{output: value, ...}, ...]}`, one per row, as the
//! flavor returns a DataFrame for a DataFrame. docs/mlflow.md lists the differences.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{Shared, body_or_error, infer_status};
use crate::model::{InferError, Model};
use crate::runtime::IoSpec;
use crate::runtime::prepare::ClassLabels;
use crate::tensor::{DataType, FlatJson, NestedSer, Tensor, TensorData, TensorError, flatten_json};

pub async fn ping() -> Response {
    (StatusCode::OK, "\n").into_response()
}

pub async fn version() -> Response {
    (StatusCode::OK, env!("CARGO_PKG_VERSION")).into_response()
}

fn mlflow_error(status: StatusCode, message: &str) -> Response {
    let code = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => "BAD_REQUEST",
        StatusCode::PAYLOAD_TOO_LARGE => "REQUEST_LIMIT_EXCEEDED",
        StatusCode::SERVICE_UNAVAILABLE => "TEMPORARILY_UNAVAILABLE",
        StatusCode::NOT_FOUND => "RESOURCE_DOES_NOT_EXIST",
        _ => "INTERNAL_ERROR",
    };
    let mut resp = (
        status,
        // `error` too: the key every other hoist-server error uses.
        axum::Json(json!({"error_code": code, "message": message, "error": message})),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    resp
}

/// `POST /invocations`: the one model this server serves (with several loaded, a
/// 404 naming them and `/models/{name}/invocations`).
pub async fn invocations(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    invocations_inner(state, None, headers, body).await
}

/// `POST /models/{model}/invocations`: the MLflow protocol to one of the models.
pub async fn invocations_named(
    State(state): State<Shared>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    invocations_inner(state, Some(model), headers, body).await
}

async fn invocations_inner(
    state: Shared,
    name: Option<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_or_error(body, state.max_body) {
        Ok(b) => b,
        Err(_) => {
            return mlflow_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "request body is larger than the limit of {} bytes",
                    state.max_body
                ),
            );
        }
    };
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    invocations_body(&state, name.as_deref(), content_type, &body).await
}

/// The answer to an MLflow scoring request whose body is `body`, for the model `name`
/// (none: the one model served); `content_type` is the request's header, if any.
/// Shared by the routes above and the fast path (`super::fast`).
pub(crate) async fn invocations_body(
    state: &Shared,
    name: Option<&str>,
    content_type: Option<&[u8]>,
    body: &[u8],
) -> Response {
    let model = match name.map_or_else(|| state.models.sole(), |n| state.models.find(n, None)) {
        Ok(m) => m,
        Err(e) => return mlflow_error(super::lookup_status(&e), &e.to_string()),
    };
    let content_type = content_type
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let parsed = match content_type.as_str() {
        "text/csv" | "application/json" | "" => {
            parse_request(&Signature::of(&model), &content_type, body)
        }
        other => {
            return mlflow_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!(
                    "This predictor only supports the following content types: application/json, text/csv. Got '{other}'."
                ),
            );
        }
    };
    let (inputs, frame) = match parsed {
        Ok(x) => x,
        Err(msg) => return mlflow_error(StatusCode::BAD_REQUEST, &msg),
    };
    // MLflow's onnx flavor answers a DataFrame with a DataFrame (records), unless a
    // tensor signature made the request tensors first.
    let records = frame && !model.package.tensor_signature;
    match model.infer(inputs).await {
        Ok(outputs) => predictions_response(&model, &outputs, records),
        Err(e) => mlflow_error(infer_status(&e), &e.to_string()),
    }
}

/// What the MLflow body parsers need to know of a model: its inputs, and the column
/// names of its signature.
#[derive(Clone, Copy)]
pub struct Signature<'a> {
    pub inputs: &'a [IoSpec],
    pub columns: Option<&'a [String]>,
}

impl<'a> Signature<'a> {
    pub fn of(model: &'a Model) -> Self {
        Signature {
            inputs: &model.inputs,
            columns: model.package.columns.as_deref(),
        }
    }
}

/// The tensors an MLflow request body stands for, by content type (`text/csv`, else
/// JSON), before they are checked against the model's shapes.
pub fn parse_body(sig: &Signature, content_type: &str, body: &[u8]) -> Result<Vec<Tensor>, String> {
    parse_request(sig, content_type, body).map(|(tensors, _)| tensors)
}

/// [`parse_body`], and whether the body was a dataframe (`dataframe_split`,
/// `dataframe_records` or CSV), which MLflow answers as records.
fn parse_request(
    sig: &Signature,
    content_type: &str,
    body: &[u8],
) -> Result<(Vec<Tensor>, bool), String> {
    if content_type == "text/csv" {
        return std::str::from_utf8(body)
            .map_err(|_| "CSV body is not UTF-8".to_string())
            .and_then(|text| csv_inputs(sig, text).map_err(|e| e.0))
            .map(|t| (t, true));
    }
    match fast_tensor_body(sig, body) {
        Some(parsed) => parsed.map(|t| (t, false)).map_err(|e| e.0),
        None => match serde_json::from_slice::<Value>(body) {
            Ok(v) => {
                let frame = ["dataframe_split", "dataframe_records"]
                    .iter()
                    .any(|k| v.get(k).is_some());
                json_inputs(sig, &v).map(|t| (t, frame)).map_err(|e| e.0)
            }
            Err(e) => Err(format!("Invalid input. The body is not valid JSON: {e}")),
        },
    }
}

/// The tensors an MLflow input example stands for (used to check a model at load).
pub fn example_inputs(model: &Model, example: &Value) -> Result<Vec<Tensor>, InferError> {
    Ok(example_tensors(&Signature::of(model), example)?)
}

/// The tensors an input example stands for, by the shape MLflow saved it in: a
/// DataFrame (`{columns, data}`), a serving body, a dict of arrays by input name, or an
/// array.
fn example_tensors(model: &Signature, example: &Value) -> Result<Vec<Tensor>, TensorError> {
    let inputs = match example {
        Value::Object(o) if o.contains_key("columns") && o.contains_key("data") => {
            dataframe_split(model, example)?
        }
        Value::Object(o)
            if [
                "inputs",
                "instances",
                "dataframe_split",
                "dataframe_records",
            ]
            .iter()
            .any(|k| o.contains_key(*k)) =>
        {
            json_inputs(model, example)?
        }
        other => tensor_inputs(model, other)?,
    };
    Ok(inputs)
}

fn json_inputs(model: &Signature, v: &Value) -> Result<Vec<Tensor>, TensorError> {
    let Value::Object(obj) = v else {
        return Err(TensorError::new(
            "Invalid input. The body must be a JSON object with one of the keys dataframe_split, dataframe_records, instances or inputs",
        ));
    };
    let keys: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "params")
        .collect();
    match keys.as_slice() {
        ["dataframe_split"] => dataframe_split(model, &obj["dataframe_split"]),
        ["dataframe_records"] => dataframe_records(model, &obj["dataframe_records"]),
        ["instances"] => instances(model, &obj["instances"]),
        ["inputs"] => tensor_inputs(model, &obj["inputs"]),
        _ => Err(TensorError::new(format!(
            "Invalid input. The body must have exactly one of the keys dataframe_split, dataframe_records, instances or inputs (plus optional params); got {keys:?}"
        ))),
    }
}

/// `{"inputs": [[...], ...]}` or `{"instances": [[...], ...]}` for a one-input model,
/// the commonest bodies, read straight into the tensor without a JSON tree. `None`
/// when the body has another form (the general path then reads it).
fn fast_tensor_body(model: &Signature, body: &[u8]) -> Option<Result<Vec<Tensor>, TensorError>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(alias = "instances")]
        inputs: FlatJson,
        #[serde(default, rename = "params")]
        _params: Option<serde::de::IgnoredAny>,
    }
    let [spec] = model.inputs else {
        return None;
    };
    if matches!(spec.datatype, DataType::F32 | DataType::F64)
        && let Some((shape, values)) = super::numbers::numeric_inputs(body)
    {
        let data = match spec.datatype {
            DataType::F32 => TensorData::F32(values.iter().map(|&v| v as f32).collect()),
            _ => TensorData::F64(values),
        };
        return Some(tensor_with_shape(spec, shape, data).map(|t| vec![t]));
    }
    // Derived structs also read JSON arrays; MLflow's bodies are objects only.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let body: Body = serde_json::from_slice(body).ok()?;
    Some(tensor_from_flat(spec, body.inputs.shape, &body.inputs.values).map(|t| vec![t]))
}

/// One tensor for `spec` from nested JSON, converted to the model's datatype.
fn tensor_for(spec: &IoSpec, v: &Value) -> Result<Tensor, TensorError> {
    let (shape, flat) =
        flatten_json(v).map_err(|e| TensorError::new(format!("input '{}': {e}", spec.name)))?;
    tensor_from_flat(spec, shape, &flat)
}

/// A tensor for `spec` from flat scalars and their shape. A single row without its
/// batch dimension (`[1, 2, 3]` for `[-1, 3]`) gets one.
fn tensor_from_flat<V: std::borrow::Borrow<Value>>(
    spec: &IoSpec,
    shape: Vec<usize>,
    flat: &[V],
) -> Result<Tensor, TensorError> {
    let data = TensorData::from_json_scalars(spec.datatype, flat)
        .map_err(|e| TensorError::new(format!("input '{}': {e}", spec.name)))?;
    tensor_with_shape(spec, shape, data)
}

/// The tensor for `spec` from a body's nested arrays: one row's array gets the
/// batch dimension the input declares.
fn tensor_with_shape(
    spec: &IoSpec,
    mut shape: Vec<usize>,
    data: TensorData,
) -> Result<Tensor, TensorError> {
    if shape.len() + 1 == spec.shape.len() && spec.shape[0] < 0 {
        shape.insert(0, 1);
    }
    Tensor::new(spec.name.clone(), shape, data)
}

fn only_input<'m>(model: &Signature<'m>) -> Result<&'m IoSpec, TensorError> {
    match model.inputs {
        [one] => Ok(one),
        many => Err(TensorError::new(format!(
            "the model has {} inputs ({}); send them as an object keyed by input name",
            many.len(),
            many.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn spec_for<'m>(model: &Signature<'m>, name: &str) -> Result<&'m IoSpec, TensorError> {
    model.inputs.iter().find(|s| s.name == name).ok_or_else(|| {
        TensorError::new(format!(
            "unknown input '{name}'; the model takes {}",
            model
                .inputs
                .iter()
                .map(|s| format!("'{}'", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// `inputs`: an array for a one-input model, or an object of arrays by input name.
fn tensor_inputs(model: &Signature, v: &Value) -> Result<Vec<Tensor>, TensorError> {
    match v {
        Value::Object(named) => named
            .iter()
            .map(|(name, value)| tensor_for(spec_for(model, name)?, value))
            .collect(),
        other => Ok(vec![tensor_for(only_input(model)?, other)?]),
    }
}

/// `instances`: a list of rows; rows are values (one input) or objects by input name.
fn instances(model: &Signature, v: &Value) -> Result<Vec<Tensor>, TensorError> {
    let Value::Array(rows) = v else {
        return Err(TensorError::new("instances must be a list"));
    };
    if rows.first().is_some_and(Value::is_object) {
        let mut columns: Map<String, Value> = Map::new();
        for row in rows {
            let Value::Object(o) = row else {
                return Err(TensorError::new(
                    "instances: every row must be an object like the first",
                ));
            };
            for (k, x) in o {
                match columns
                    .entry(k.clone())
                    .or_insert_with(|| Value::Array(vec![]))
                {
                    Value::Array(a) => a.push(x.clone()),
                    _ => unreachable!("inserted arrays only"),
                }
            }
        }
        tensor_inputs(model, &Value::Object(columns))
    } else {
        Ok(vec![tensor_for(only_input(model)?, v)?])
    }
}

/// `dataframe_split`: `{columns?, data, index?}`.
fn dataframe_split(model: &Signature, v: &Value) -> Result<Vec<Tensor>, TensorError> {
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| TensorError::new("dataframe_split must have a 'data' list of rows"))?;
    let columns: Option<Vec<String>> =
        match v.get("columns") {
            None | Some(Value::Null) => None,
            Some(c) => Some(serde_json::from_value(c.clone()).map_err(|_| {
                TensorError::new("dataframe_split 'columns' must be a list of names")
            })?),
        };
    let rows: Vec<&Vec<Value>> = data
        .iter()
        .map(|r| {
            r.as_array().ok_or_else(|| {
                TensorError::new("dataframe_split 'data' must be a list of rows (lists)")
            })
        })
        .collect::<Result<_, _>>()?;
    frame_inputs(model, columns.as_deref(), &rows)
}

/// `dataframe_records`: a list of `{column: value}` objects.
fn dataframe_records(model: &Signature, v: &Value) -> Result<Vec<Tensor>, TensorError> {
    let records = v
        .as_array()
        .ok_or_else(|| TensorError::new("dataframe_records must be a list of objects"))?;
    let first = records
        .first()
        .and_then(Value::as_object)
        .ok_or_else(|| TensorError::new("dataframe_records must be a non-empty list of objects"))?;
    let columns: Vec<String> = match model.columns {
        Some(sig) => sig.to_vec(),
        None if model.inputs.len() > 1 => model.inputs.iter().map(|s| s.name.clone()).collect(),
        None => first.keys().cloned().collect(),
    };
    let mut owned_rows = Vec::with_capacity(records.len());
    for (i, rec) in records.iter().enumerate() {
        let rec = rec.as_object().ok_or_else(|| {
            TensorError::new(format!("dataframe_records: record {i} is not an object"))
        })?;
        let row: Vec<Value> = columns
            .iter()
            .map(|c| {
                rec.get(c).cloned().ok_or_else(|| {
                    TensorError::new(format!("dataframe_records: record {i} has no column '{c}'"))
                })
            })
            .collect::<Result<_, _>>()?;
        owned_rows.push(row);
    }
    let rows: Vec<&Vec<Value>> = owned_rows.iter().collect();
    frame_inputs(model, Some(&columns), &rows)
}

/// Turns a table into tensors. One input: the rows are its rows, with columns put in
/// the signature's order when it names them. Several inputs: each column is the input
/// of the same name.
fn frame_inputs(
    model: &Signature,
    columns: Option<&[String]>,
    rows: &[&Vec<Value>],
) -> Result<Vec<Tensor>, TensorError> {
    if rows.is_empty() {
        return Err(TensorError::new("the dataframe has no rows"));
    }
    let width = rows[0].len();
    if let Some(bad) = rows.iter().position(|r| r.len() != width) {
        return Err(TensorError::new(format!(
            "row {bad} has {} values, row 0 has {width}",
            rows[bad].len()
        )));
    }
    if let Some(cols) = columns
        && cols.len() != width
    {
        return Err(TensorError::new(format!(
            "{} columns named but rows have {width} values",
            cols.len()
        )));
    }
    // Columns named after the model's inputs carry those inputs, a cell per row (for a
    // tensor input, a cell holds the whole row: MLflow's form for tensor signatures).
    let named_inputs = columns.is_some_and(|cols| {
        cols.iter()
            .all(|c| model.inputs.iter().any(|s| &s.name == c))
    });
    if model.inputs.len() == 1 && !named_inputs {
        let spec = &model.inputs[0];
        // Reorder to the signature's column order when both sides name columns.
        let order: Vec<usize> = match (columns, model.columns) {
            (Some(cols), Some(sig)) => sig
                .iter()
                .map(|want| {
                    cols.iter().position(|c| c == want).ok_or_else(|| {
                        TensorError::new(format!(
                            "missing column '{want}' (the model's signature names {sig:?})"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
            _ => (0..width).collect(),
        };
        let flat: Vec<&Value> = rows
            .iter()
            .flat_map(|r| order.iter().map(|&i| &r[i]))
            .collect();
        let data = TensorData::from_json_scalars(spec.datatype, &flat)
            .map_err(|e| TensorError::new(format!("input '{}': {e}", spec.name)))?;
        let mut shape = vec![rows.len(), order.len()];
        if spec.shape.len() == 1 && order.len() == 1 {
            shape.pop();
        }
        return Tensor::new(spec.name.clone(), shape, data).map(|t| vec![t]);
    }
    let cols = columns.ok_or_else(|| {
        TensorError::new("the model has several inputs: name the dataframe's columns after them")
    })?;
    cols.iter()
        .enumerate()
        .map(|(i, name)| {
            let spec = spec_for(model, name)?;
            if rows.iter().all(|r| !r[i].is_array()) {
                // A column of scalars is the input's n rows: [n, 1] for an input of
                // rank 2 (what skl2onnx gives each DataFrame column), [n] for rank 1.
                let cells: Vec<&Value> = rows.iter().map(|r| &r[i]).collect();
                let data = TensorData::from_json_scalars(spec.datatype, &cells)
                    .map_err(|e| TensorError::new(format!("input '{}': {e}", spec.name)))?;
                let shape = match spec.shape.len() {
                    1 => vec![rows.len()],
                    _ => vec![rows.len(), 1],
                };
                return Tensor::new(spec.name.clone(), shape, data);
            }
            // Cells holding arrays: each cell is one row of the input.
            let column = Value::Array(rows.iter().map(|r| r[i].clone()).collect());
            tensor_for(spec, &column)
        })
        .collect()
}

/// `text/csv`: a header line of column names, then one row per line (as pandas, and so
/// MLflow, reads it).
fn csv_inputs(model: &Signature, text: &str) -> Result<Vec<Tensor>, TensorError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines
        .next()
        .ok_or_else(|| TensorError::new("the CSV body is empty"))?;
    let columns = Some(csv_fields(first, 0)?);
    let mut owned: Vec<Vec<Value>> = Vec::new();
    let to_values = |fields: Vec<String>| -> Vec<Value> {
        fields
            .into_iter()
            .map(|f| match f.parse::<f64>() {
                Ok(x) => json!(x),
                Err(_) if f.is_empty() => Value::Null,
                Err(_) => Value::String(f),
            })
            .collect()
    };
    for (i, l) in lines.enumerate() {
        owned.push(to_values(csv_fields(l, i + 1)?));
    }
    let rows: Vec<&Vec<Value>> = owned.iter().collect();
    frame_inputs(model, columns.as_deref(), &rows)
}

/// The fields of one CSV line, with RFC 4180 quoting: a quoted field may hold commas,
/// and `""` inside it is a quote. A quote left open is an error naming the line.
fn csv_fields(line: &str, index: usize) -> Result<Vec<String>, TensorError> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut field).trim().to_string()),
            (_, c) => field.push(c),
        }
    }
    if quoted {
        return Err(TensorError::new(format!(
            "CSV line {} has a quoted field that is never closed",
            index + 1
        )));
    }
    fields.push(field.trim().to_string());
    Ok(fields)
}

/// `{"predictions": ...}`: an object of outputs by name (what MLflow's onnx flavor
/// answers for tensors), or records (what it answers for a DataFrame). Serialized
/// straight from the tensors.
#[derive(serde::Serialize)]
struct Predictions<'a> {
    predictions: PredictionsBody<'a>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum PredictionsBody<'a> {
    Named(NamedOutputs<'a>),
    Records(Records<'a>),
}

/// The outputs of one answer, each with its class labels when it was a `ZipMap`.
struct Outputs<'a> {
    tensors: &'a [Tensor],
    labels: Vec<Option<&'a ClassLabels>>,
}

impl<'a> Outputs<'a> {
    fn of(model: &'a Model, tensors: &'a [Tensor]) -> Self {
        Outputs {
            tensors,
            labels: tensors
                .iter()
                .map(|t| model.class_labels(&t.name))
                .collect(),
        }
    }

    fn each(&self) -> impl Iterator<Item = OutputSer<'_>> {
        self.tensors
            .iter()
            .zip(&self.labels)
            .map(|(tensor, labels)| OutputSer {
                tensor,
                labels: *labels,
            })
    }
}

/// `{output: [...], ...}`, what MLflow's onnx flavor answers for tensors.
struct NamedOutputs<'a>(Outputs<'a>);

impl serde::Serialize for NamedOutputs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.tensors.len()))?;
        for o in self.0.each() {
            map.serialize_entry(&o.tensor.name, &o)?;
        }
        map.end()
    }
}

/// pandas' `orient="records"`: one object per row, each output's value for that row
/// (a scalar where the row holds one value, as MLflow flattens `[n, 1]` outputs; a
/// `ZipMap` output's map of label → probability).
struct Records<'a>(Outputs<'a>);

impl serde::Serialize for Records<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Row<'a>(&'a Outputs<'a>, usize);
        impl serde::Serialize for Row<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(self.0.tensors.len()))?;
                for o in self.0.each() {
                    if let (Some(labels), TensorData::F32(v)) = (o.labels, &o.tensor.data) {
                        let k = labels.len().max(1);
                        let row = v.chunks(k).nth(self.1).unwrap_or(&[]);
                        map.serialize_entry(&o.tensor.name, &ZipMapRow { labels, row })?;
                        continue;
                    }
                    let v = match o.tensor.row_json(self.1) {
                        Value::Array(mut one) if one.len() == 1 => one.pop().unwrap_or_default(),
                        v => v,
                    };
                    map.serialize_entry(&o.tensor.name, &v)?;
                }
                map.end()
            }
        }
        let rows = self.0.tensors.iter().map(Tensor::rows).max().unwrap_or(0);
        let mut seq = s.serialize_seq(Some(rows))?;
        for i in 0..rows {
            seq.serialize_element(&Row(&self.0, i))?;
        }
        seq.end()
    }
}

/// One output as MLflow answers it: nested arrays, or for a `ZipMap` output one map
/// per row, class label (as a string key) → probability, as MLflow's onnx flavor
/// serializes ONNX Runtime's list of dicts.
pub struct OutputSer<'a> {
    pub tensor: &'a Tensor,
    pub labels: Option<&'a ClassLabels>,
}

impl<'a> OutputSer<'a> {
    pub fn of(model: &'a Model, tensor: &'a Tensor) -> Self {
        OutputSer {
            tensor,
            labels: model.class_labels(&tensor.name),
        }
    }
}

impl serde::Serialize for OutputSer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let (Some(labels), TensorData::F32(v)) = (self.labels, &self.tensor.data) else {
            return NestedSer::new(self.tensor).serialize(s);
        };
        let k = labels.len().max(1);
        let mut seq = s.serialize_seq(Some(v.len() / k))?;
        for row in v.chunks(k) {
            seq.serialize_element(&ZipMapRow { labels, row })?;
        }
        seq.end()
    }
}

/// One row of a `ZipMap` output: `{"<label>": probability, ...}`.
pub struct ZipMapRow<'a> {
    pub labels: &'a ClassLabels,
    pub row: &'a [f32],
}

impl serde::Serialize for ZipMapRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.row.len()))?;
        for (i, p) in self.row.iter().enumerate() {
            map.serialize_entry(&self.labels.key(i), &f64::from(*p))?;
        }
        map.end()
    }
}

fn predictions_response(model: &Model, outputs: &[Tensor], records: bool) -> Response {
    let outputs = Outputs::of(model, outputs);
    let predictions = if records {
        PredictionsBody::Records(Records(outputs))
    } else {
        PredictionsBody::Named(NamedOutputs(outputs))
    };
    let body = serde_json::to_vec(&Predictions { predictions }).expect("responses serialize");
    (
        [(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DataType;

    fn spec(name: &str, datatype: DataType, shape: &[i64]) -> IoSpec {
        IoSpec {
            name: name.into(),
            datatype,
            shape: shape.to_vec(),
        }
    }

    /// skl2onnx's inputs for a DataFrame: one per column, `[n, 1]` (here also a 1-D
    /// one, `[n]`).
    fn three_inputs() -> Vec<IoSpec> {
        vec![
            spec("city", DataType::Bytes, &[-1, 1]),
            spec("size", DataType::F32, &[-1, 1]),
            spec("age", DataType::I64, &[-1]),
        ]
    }

    #[test]
    fn dataframe_columns_named_after_inputs_are_n_by_1_columns() {
        let inputs = three_inputs();
        let sig = Signature {
            inputs: &inputs,
            columns: None,
        };
        let body = json!({"dataframe_split": {
            "columns": ["city", "size", "age"],
            "data": [["paris", 1.5, 3], ["rome", null, 4], ["oslo", 2.0, 5]]
        }});
        let (tensors, frame) =
            parse_request(&sig, "application/json", body.to_string().as_bytes()).unwrap();
        assert!(frame);
        let shapes: Vec<(&str, Vec<usize>)> = tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.clone()))
            .collect();
        assert_eq!(
            shapes,
            [("city", vec![3, 1]), ("size", vec![3, 1]), ("age", vec![3])]
        );
        // A missing value is NaN, as pandas reads it.
        match &tensors[1].data {
            TensorData::F32(v) => assert!(v[1].is_nan() && v[0] == 1.5, "{v:?}"),
            other => panic!("size is {}", other.datatype()),
        }
        // The same table as CSV, and a one-row DataFrame: [1, 1], not [1, n].
        let csv = "city,size,age\nparis,1.5,3\n";
        let (tensors, frame) = parse_request(&sig, "text/csv", csv.as_bytes()).unwrap();
        assert!(frame);
        assert_eq!(tensors[0].shape, [1, 1]);
        assert_eq!(tensors[1].shape, [1, 1]);
        assert_eq!(tensors[2].shape, [1]);
    }

    #[test]
    fn a_dataframe_input_example_checks_as_n_by_1_columns() {
        // What MLflow saves for `input_example=df[:2]`.
        let example = json!({"columns": ["city", "size", "age"],
            "data": [["paris", 1.5, 3], ["rome", 2.5, 4]]});
        let inputs = three_inputs();
        let sig = Signature {
            inputs: &inputs,
            columns: None,
        };
        let tensors = example_tensors(&sig, &example).unwrap();
        assert_eq!(tensors[0].shape, [2, 1]);
        assert_eq!(tensors[2].shape, [2]);
        // A dict of arrays (MLflow's form for a dict example) reads the same.
        let example = json!({"city": [["paris"], ["rome"]], "size": [[1.5], [2.5]], "age": [3, 4]});
        let tensors = example_tensors(&sig, &example).unwrap();
        assert_eq!(tensors[0].shape, [2, 1]);
        assert_eq!(tensors[1].shape, [2, 1]);
    }

    #[test]
    fn records_give_each_row_its_outputs_with_n_by_1_flattened() {
        let label = Tensor::new("label", vec![2], TensorData::I64(vec![1, 0])).unwrap();
        let probs = Tensor::new(
            "probabilities",
            vec![2, 2],
            TensorData::F32(vec![0.25, 0.75, 0.5, 0.5]),
        )
        .unwrap();
        let variable =
            Tensor::new("variable", vec![2, 1], TensorData::F32(vec![1.5, 2.5])).unwrap();
        let outputs = [label, probs, variable];
        let all = |tensors| Outputs {
            tensors,
            labels: vec![None; 3],
        };
        let records = serde_json::to_value(Records(all(&outputs))).unwrap();
        assert_eq!(
            records,
            json!([
                {"label": 1, "probabilities": [0.25, 0.75], "variable": 1.5},
                {"label": 0, "probabilities": [0.5, 0.5], "variable": 2.5}
            ])
        );
        let named = serde_json::to_value(NamedOutputs(Outputs {
            tensors: &outputs[2..],
            labels: vec![None],
        }))
        .unwrap();
        assert_eq!(named, json!({"variable": [[1.5], [2.5]]}));
    }

    #[test]
    fn csv_fields_follow_rfc_4180_quoting() {
        assert_eq!(csv_fields("a, b ,c", 0).unwrap(), ["a", "b", "c"]);
        assert_eq!(
            csv_fields(r#""a,b","say ""hi""",,"""#, 0).unwrap(),
            ["a,b", r#"say "hi""#, "", ""]
        );
        let err = csv_fields(r#"1,"2,3"#, 4).unwrap_err();
        assert!(
            err.0.contains("line 5") && err.0.contains("never closed"),
            "{err}"
        );
        assert_eq!(csv_fields("", 0).unwrap(), [""]);
    }
}
