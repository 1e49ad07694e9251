//! Open Inference Protocol v2 (KServe, Triton, MLServer), REST, with the binary
//! tensor data extension (`Inference-Header-Content-Length`, `binary_data_size`,
//! `binary_data`, `binary_data_output`), so `tritonclient` works unchanged in both
//! its binary (default) and JSON modes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Shared, body_or_error, infer_status, json_error};
use crate::model::Model;
use crate::tensor::{
    DataType, FlatJson, FlatSer, Tensor, TensorData, byte_size, element_count, shape_from_i64,
};

/// The header that carries the JSON length when binary tensors follow it.
pub const HEADER_LEN: &str = "inference-header-content-length";

pub async fn server_metadata() -> Response {
    axum::Json(json!({
        "name": "hoist-server",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_repository"],
    }))
    .into_response()
}

pub async fn live() -> Response {
    axum::Json(json!({ "live": true })).into_response()
}

pub async fn ready(State(state): State<Shared>) -> Response {
    let ready = state.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({ "ready": ready }))).into_response()
}

/// Finds the served model by name (and version), or the 404 a client sees.
fn lookup(state: &Shared, name: &str, version: Option<&str>) -> Result<Arc<Model>, Response> {
    state
        .models
        .find(name, version)
        .map_err(|e| super::lookup_error(&e))
}

fn metadata(state: &Shared, name: &str, version: Option<&str>) -> Response {
    let model = match lookup(state, name, version) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let io = |specs: &[crate::runtime::IoSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|s| json!({"name": s.name, "datatype": s.datatype.as_str(), "shape": s.shape}))
            .collect()
    };
    axum::Json(json!({
        "name": model.package.name,
        "versions": [model.package.version],
        "platform": model.runtime.platform(),
        "inputs": io(&model.inputs),
        "outputs": model
            .outputs
            .iter()
            .zip(io(&model.outputs))
            .map(|(spec, mut o)| {
                if let Some(l) = model.class_labels(&spec.name) {
                    o["parameters"] = json!({"class_labels": l.to_json()});
                }
                o
            })
            .collect::<Vec<_>>(),
        "parameters": {
            "runtime": model.runtime.as_str(),
            "runtime_selection": model.runtime_selection,
            "digest": model.package.digest,
            "labels": model.package.labels,
        },
    }))
    .into_response()
}

pub async fn model_metadata(State(state): State<Shared>, Path(model): Path<String>) -> Response {
    metadata(&state, &model, None)
}

pub async fn model_metadata_v(
    State(state): State<Shared>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    metadata(&state, &model, Some(&version))
}

fn model_ready_inner(state: &Shared, name: &str, version: Option<&str>) -> Response {
    match lookup(state, name, version) {
        Ok(m) if state.ready.load(std::sync::atomic::Ordering::Acquire) => {
            axum::Json(json!({"name": m.package.name, "ready": true})).into_response()
        }
        Ok(m) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"name": m.package.name, "ready": false})),
        )
            .into_response(),
        Err(r) => r,
    }
}

pub async fn model_ready(State(state): State<Shared>, Path(model): Path<String>) -> Response {
    model_ready_inner(&state, &model, None)
}

pub async fn model_ready_v(
    State(state): State<Shared>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    model_ready_inner(&state, &model, Some(&version))
}

/// `POST /v2/repository/index` body: `{"repository_name": "", "ready": bool}`, all
/// optional (Triton's model repository extension).
#[derive(Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    repository_name: Option<String>,
    #[serde(default)]
    ready: Option<bool>,
}

/// `POST /v2/repository/index`: every model the server knows or its repository
/// directory holds, as `[{"name", "version", "state", "reason"}]`.
pub async fn repository_index(State(state): State<Shared>, body: Bytes) -> Response {
    let req: IndexRequest = if body.iter().all(u8::is_ascii_whitespace) {
        IndexRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("index body must be {{\"ready\": true|false}}: {e}"),
                );
            }
        }
    };
    if let Some(r) = req.repository_name.filter(|r| !r.is_empty()) {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "unknown repository '{r}'; this server has one repository (name it \"\" or leave it out)"
            ),
        );
    }
    axum::Json(state.models.index(req.ready.unwrap_or(false))).into_response()
}

/// `POST /v2/repository/models/{model}/load`: loads (or reloads) the model; 200
/// once it serves, 400 with the reason when it did not load (it is then
/// `UNAVAILABLE` in the index; a loaded model keeps serving), 404 for a model the
/// server and its repository do not have. Admin token rules apply.
pub async fn repository_load(
    State(state): State<Shared>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = super::admin::authorize(&state, &headers, "load") {
        return r;
    }
    // Triton's body is optional `{"parameters": {...}}`; none are taken here.
    if !body.iter().all(u8::is_ascii_whitespace) {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(o)) if o.keys().all(|k| k == "parameters") => {
                if let Some(p) = o.get("parameters").and_then(Value::as_object)
                    && let Some(k) = p.keys().next()
                {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        &format!("load parameter '{k}' is not supported; send none"),
                    );
                }
            }
            _ => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "load body must be empty or {\"parameters\": {}}",
                );
            }
        }
    }
    match state.models.load(&model, None, None).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(crate::repository::LoadFailure::NotFound(m)) => json_error(StatusCode::NOT_FOUND, &m),
        Err(crate::repository::LoadFailure::Failed(m)) => json_error(StatusCode::BAD_REQUEST, &m),
    }
}

/// `POST /v2/repository/models/{model}/unload`: new requests to the model get 404,
/// requests in flight finish. Admin token rules apply.
pub async fn repository_unload(
    State(state): State<Shared>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = super::admin::authorize(&state, &headers, "unload") {
        return r;
    }
    match state.models.unload(&model).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => super::lookup_error(&e),
    }
}

/// An inference request's JSON part.
#[doc(hidden)]
#[derive(Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de>"))]
pub struct InferRequest<D = FlatJson> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<RequestInput<D>>,
    #[serde(default)]
    outputs: Option<Vec<RequestOutput>>,
}

/// One input; `D` is how its `data` is read: serde values ([`FlatJson`]), or its
/// text, for [`numeric_request`].
#[derive(Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de>"))]
pub struct RequestInput<D = FlatJson> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<D>,
}

/// The request and its tensors when the body is JSON only, and every input is FP32 or
/// FP64 with `data` of numbers alone (what clients send for tabular and image
/// models): those numbers are read by `super::numbers` without serde's values.
/// `None` for any other request, which [`parse_request`] then reads as before, so
/// its answers and errors do not change.
fn numeric_request(body: &[u8]) -> Option<(InferRequest, Vec<Tensor>)> {
    let req: InferRequest<Box<serde_json::value::RawValue>> = serde_json::from_slice(body).ok()?;
    let mut tensors = Vec::with_capacity(req.inputs.len());
    for input in &req.inputs {
        let dt = DataType::parse(&input.datatype)?;
        if !matches!(dt, DataType::F32 | DataType::F64)
            || input.parameters.as_ref().is_some_and(|p| !p.is_empty())
        {
            return None;
        }
        let shape = shape_from_i64(&input.shape).ok()?;
        let (_, values) = super::numbers::numeric_array(input.data.as_ref()?.get().as_bytes())?;
        if element_count(&shape).ok()? != values.len() {
            return None;
        }
        let data = match dt {
            DataType::F32 => TensorData::F32(values.iter().map(|&v| v as f32).collect()),
            _ => TensorData::F64(values),
        };
        tensors.push(Tensor::new(input.name.clone(), shape, data).ok()?);
    }
    let req = InferRequest {
        id: req.id,
        parameters: req.parameters,
        inputs: Vec::new(),
        outputs: req.outputs,
    };
    Some((req, tensors))
}

#[derive(Deserialize)]
pub struct RequestOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

fn flag(params: &Option<Map<String, Value>>, key: &str) -> bool {
    params
        .as_ref()
        .and_then(|p| p.get(key))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub async fn infer(
    State(state): State<Shared>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    infer_inner(state, &model, None, headers, body).await
}

pub async fn infer_v(
    State(state): State<Shared>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    infer_inner(state, &model, Some(&version), headers, body).await
}

async fn infer_inner(
    state: Shared,
    name: &str,
    version: Option<&str>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_or_error(body, state.max_body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    infer_body(&state, name, version, &headers, &body).await
}

/// The answer to an inference request with `headers` and `body` for model `name`
/// (at `version`, if given). Shared by the routes above and the fast path
/// (`super::fast`).
pub(crate) async fn infer_body(
    state: &Shared,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let model = match lookup(state, name, version) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let (req, inputs) = match parse_request(headers, body) {
        Ok(x) => x,
        Err(msg) => return json_error(StatusCode::BAD_REQUEST, &msg),
    };
    // Requested outputs must exist before any work is done.
    if let Some(outs) = &req.outputs
        && let Some(bad) = outs
            .iter()
            .find(|o| !model.outputs.iter().any(|s| s.name == o.name))
    {
        let names: Vec<&str> = model.outputs.iter().map(|s| s.name.as_str()).collect();
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "unknown output '{}'; the model's outputs are {names:?}",
                bad.name
            ),
        );
    }
    let outputs = match model.infer(inputs).await {
        Ok(o) => o,
        Err(e) => return json_error(infer_status(&e), &e.to_string()),
    };
    respond(&model, req, outputs)
}

/// Splits the body into the JSON request and its tensors.
///
/// Every size here comes from the client: the header length, each input's shape and
/// `binary_data_size`. Shapes go through [`shape_from_i64`] (no negative dimension, no
/// overflowing element count) and must hold exactly the elements sent; byte sizes go
/// through [`byte_size`]; nothing is allocated from a claimed size, only from data
/// that is in the body.
#[doc(hidden)]
pub fn parse_request(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(InferRequest, Vec<Tensor>), String> {
    let mut header_len = headers.get_all(HEADER_LEN).iter();
    let (json_part, binary) = match (header_len.next(), header_len.next()) {
        (Some(_), Some(_)) => {
            return Err("Inference-Header-Content-Length is sent more than once".into());
        }
        (Some(v), None) => {
            let n: usize = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or("Inference-Header-Content-Length must be a non-negative integer")?;
            if n > body.len() {
                return Err(format!(
                    "Inference-Header-Content-Length is {n} but the body has {} bytes",
                    body.len()
                ));
            }
            body.split_at(n)
        }
        (None, _) => match numeric_request(body) {
            Some(parsed) => return Ok(parsed),
            None => (body, &[][..]),
        },
    };
    parse_json(json_part, binary)
}

/// The request in `json_part`, its inputs' data in it or in `binary` (in order).
fn parse_json(json_part: &[u8], mut binary: &[u8]) -> Result<(InferRequest, Vec<Tensor>), String> {
    let mut req: InferRequest = serde_json::from_slice(json_part)
        .map_err(|e| format!("invalid inference request JSON: {e}"))?;
    let mut tensors = Vec::with_capacity(req.inputs.len());
    for input in std::mem::take(&mut req.inputs) {
        let name = input.name;
        let dt = DataType::parse(&input.datatype)
            .ok_or_else(|| format!("input '{name}': unsupported datatype '{}'", input.datatype))?;
        let shape = shape_from_i64(&input.shape).map_err(|e| format!("input '{name}': {e}"))?;
        let count = element_count(&shape).map_err(|e| format!("input '{name}': {e}"))?;
        let binary_size = input
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_size"))
            .map(|v| {
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        format!(
                            "input '{name}': binary_data_size must be a non-negative integer, got {v}"
                        )
                    })
            })
            .transpose()?;
        let data = match (binary_size, &input.data) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "input '{name}' has both data and binary_data_size; send one"
                ));
            }
            (Some(n), None) => {
                if n > binary.len() {
                    return Err(format!(
                        "input '{name}': binary_data_size is {n} but only {} bytes of binary data remain",
                        binary.len()
                    ));
                }
                if let Some(want) =
                    byte_size(dt, count).map_err(|e| format!("input '{name}': {e}"))?
                    && want != n
                {
                    return Err(format!(
                        "input '{name}': shape {shape:?} of {dt} needs {want} bytes but binary_data_size is {n}"
                    ));
                }
                let (mine, rest) = binary.split_at(n);
                binary = rest;
                TensorData::from_le_bytes(dt, mine).map_err(|e| format!("input '{name}': {e}"))?
            }
            (None, Some(flat)) => {
                if flat.values.len() != count {
                    return Err(format!(
                        "input '{name}': shape {shape:?} holds {count} elements but {} were sent",
                        flat.values.len()
                    ));
                }
                TensorData::from_json_scalars(dt, &flat.values)
                    .map_err(|e| format!("input '{name}': {e}"))?
            }
            (None, None) => {
                return Err(format!(
                    "input '{name}' has neither data nor binary_data_size"
                ));
            }
        };
        tensors.push(Tensor::new(name, shape, data).map_err(|e| e.0)?);
    }
    if !binary.is_empty() {
        return Err(format!(
            "{} bytes of binary data follow the JSON header but no input claims them",
            binary.len()
        ));
    }
    Ok((req, tensors))
}

#[derive(serde::Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Value>,
    outputs: Vec<ResponseOutput<'a>>,
}

#[derive(serde::Serialize)]
struct ResponseOutput<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<OutputParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<FlatSer<'a>>,
}

#[derive(serde::Serialize)]
struct OutputParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_data_size: Option<usize>,
    /// For an output that was a `ZipMap`: the class label of each probability column.
    #[serde(skip_serializing_if = "Option::is_none")]
    class_labels: Option<Value>,
}

/// Builds the response, binary where the client asked for it.
fn respond(model: &Model, req: InferRequest, outputs: Vec<Tensor>) -> Response {
    let all_binary = flag(&req.parameters, "binary_data_output");
    // (tensor, binary?) in the order requested, or every output in model order.
    let selected: Vec<(&Tensor, bool)> = match &req.outputs {
        Some(wanted) if !wanted.is_empty() => wanted
            .iter()
            .filter_map(|w| {
                let t = outputs.iter().find(|o| o.name == w.name)?;
                Some((t, all_binary || flag(&w.parameters, "binary_data")))
            })
            .collect(),
        _ => outputs.iter().map(|o| (o, all_binary)).collect(),
    };
    let mut binary = Vec::new();
    let outs: Vec<ResponseOutput> = selected
        .into_iter()
        .map(|(t, as_binary)| {
            let (binary_data_size, data) = if as_binary {
                let before = binary.len();
                t.data.to_le_bytes(&mut binary);
                (Some(binary.len() - before), None)
            } else {
                (None, Some(FlatSer(&t.data)))
            };
            let class_labels = model.class_labels(&t.name).map(|l| l.to_json());
            let parameters =
                (binary_data_size.is_some() || class_labels.is_some()).then_some(OutputParams {
                    binary_data_size,
                    class_labels,
                });
            ResponseOutput {
                name: &t.name,
                datatype: t.data.datatype().as_str(),
                shape: &t.shape,
                parameters,
                data,
            }
        })
        .collect();
    let body = InferResponse {
        model_name: &model.package.name,
        model_version: &model.package.version,
        id: req.id,
        outputs: outs,
    };
    let mut all = Vec::with_capacity(256 + binary.len());
    serde_json::to_writer(&mut all, &body).expect("responses serialize");
    if binary.is_empty() {
        return (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            all,
        )
            .into_response();
    }
    let json_len = all.len();
    all.extend_from_slice(&binary);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LEN),
                HeaderValue::from(json_len),
            ),
        ],
        all,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_requests_read_as_the_general_parser_reads_them() {
        let same = [
            r#"{"id": "a", "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2.5, -3e-2], [4, 5, 6]]}], "outputs": [{"name": "y"}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [3], "datatype": "FP64", "data": [0.1, 0.30000000000000004, 1e300]}, {"name": "z", "shape": [1, 1], "datatype": "FP32", "data": [7]}], "parameters": {"k": 1}}"#,
            r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2], "parameters": {}}]}"#,
        ];
        for body in same {
            let (fast_req, fast) = numeric_request(body.as_bytes()).expect(body);
            let (req, general) = parse_json(body.as_bytes(), &[]).unwrap();
            assert_eq!(fast, general, "{body}");
            assert_eq!(fast_req.id, req.id);
            assert_eq!(fast_req.parameters, req.parameters);
            let names = |r: &InferRequest| {
                r.outputs
                    .as_ref()
                    .map(|o| o.iter().map(|o| o.name.clone()).collect::<Vec<_>>())
            };
            assert_eq!(names(&fast_req), names(&req));
        }
        // Everything else is left to the general parser, errors included.
        for body in [
            r#"{"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [1, 2]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, null]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": null}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "data": [2]}]}"#,
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]"#,
        ] {
            assert!(numeric_request(body.as_bytes()).is_none(), "{body}");
        }
    }

    #[test]
    fn binary_inputs_are_split_by_the_header_length() {
        let json = br#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
        let mut body = json.to_vec();
        body.extend_from_slice(&1.5f32.to_le_bytes());
        body.extend_from_slice(&(-2.0f32).to_le_bytes());
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_LEN, HeaderValue::from(json.len()));
        let (_, tensors) = parse_request(&headers, &body).unwrap();
        assert_eq!(tensors[0].data, TensorData::F32(vec![1.5, -2.0]));
        assert_eq!(tensors[0].shape, vec![1, 2]);
    }

    #[test]
    fn leftover_or_missing_binary_data_is_refused() {
        let json = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":8}}]}"#;
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_LEN, HeaderValue::from(json.len()));
        let mut body = json.to_vec();
        body.extend_from_slice(&[0; 4]);
        let err = parse_request(&headers, &body).err().unwrap();
        assert!(err.contains("only 4 bytes"), "{err}");
        let json = br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
        headers.insert(HEADER_LEN, HeaderValue::from(json.len()));
        let mut body = json.to_vec();
        body.extend_from_slice(&[0; 4]);
        let err = parse_request(&headers, &body).err().unwrap();
        assert!(err.contains("no input claims them"), "{err}");
    }

    #[test]
    fn json_errors_name_the_input() {
        let headers = HeaderMap::new();
        let err = parse_request(
            &headers,
            br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,"a"]}]}"#,
        )
        .err()
        .unwrap();
        assert!(err.starts_with("input 'x'"), "{err}");
        let err = parse_request(
            &headers,
            br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
        )
        .err()
        .unwrap();
        assert!(err.contains("input 'x'") && err.contains("[3]"), "{err}");
        let err = parse_request(&headers, b"{not json").err().unwrap();
        assert!(err.contains("invalid inference request JSON"), "{err}");
    }
}
