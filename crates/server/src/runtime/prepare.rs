//! What hoist does to an ONNX model before either runtime sees it.
//!
//! scikit-learn classifiers converted with skl2onnx's defaults (and LightGBM's with
//! onnxmltools') end in an ONNX-ML `ZipMap`: the probability matrix becomes a
//! sequence of maps, class label → probability, one map per row. Neither runtime
//! hands such a value over as a tensor, and no protocol hoist speaks has a datatype
//! for it. So, on the protobuf, before loading: a `ZipMap` whose output is a graph
//! output is removed, its input (the `[n, classes]` FP32 probabilities) is renamed to
//! the graph output's name and typed as that tensor, and its class labels (int64 or
//! string) are remembered ([`ZipMapOutput`]). The MLflow protocol turns the tensor
//! back into MLflow's list of maps; the Open Inference Protocol answers the tensor
//! with the labels in the output's `parameters`.
//!
//! A model without such a `ZipMap` is not rewritten: the runtimes load the file as it
//! is. The check reads only the model's header, opsets and node types (initializers
//! are skipped unread). A rewritten model is re-encoded with tract's `onnx.proto`
//! (fields newer than it are dropped) with any external data inlined, and loaded
//! from memory.

use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb;

use super::RuntimeError;

/// The class labels of a `ZipMap` output, in the order of the probability columns.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassLabels {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl ClassLabels {
    pub fn len(&self) -> usize {
        match self {
            ClassLabels::Int(v) => v.len(),
            ClassLabels::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The labels as a JSON array (numbers or strings).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ClassLabels::Int(v) => v.iter().copied().collect(),
            ClassLabels::Str(v) => v.iter().cloned().collect(),
        }
    }

    /// Column `i`'s label as MLflow writes a map key: always a string.
    pub fn key(&self, i: usize) -> String {
        match self {
            ClassLabels::Int(v) => v[i].to_string(),
            ClassLabels::Str(v) => v[i].clone(),
        }
    }

    /// The column of a string label (for counting string predictions by class).
    pub fn index_of_str(&self, label: &[u8]) -> Option<usize> {
        match self {
            ClassLabels::Str(v) => v.iter().position(|l| l.as_bytes() == label),
            ClassLabels::Int(_) => None,
        }
    }
}

/// A graph output that was a `ZipMap` and is now its probability tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct ZipMapOutput {
    pub output: String,
    pub labels: ClassLabels,
}

/// A model ready for a runtime: the file, and the rewritten model when hoist changed it.
pub struct Prepared {
    pub path: PathBuf,
    /// `Some` when a `ZipMap` was removed (external data already inlined).
    pub rewritten: Option<pb::ModelProto>,
    pub zipmaps: Vec<ZipMapOutput>,
    /// The model's IR version and opsets (domain, version; `ai.onnx` for the default).
    pub ir_version: i64,
    pub opsets: Vec<(String, i64)>,
}

impl Prepared {
    /// The model's IR version and opsets for messages: `IR 10, ai.onnx 21, ai.onnx.ml 1`.
    pub fn versions(&self) -> String {
        let mut s = format!("IR {}", self.ir_version);
        for (d, v) in &self.opsets {
            s.push_str(&format!(", {d} {v}"));
        }
        s
    }

    /// The rewritten model's bytes, for a runtime that loads from memory.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        self.rewritten.as_ref().map(Message::encode_to_vec)
    }
}

// The few fields of a model the check reads; prost skips the rest (initializers,
// attributes) without copying them.
#[derive(Clone, PartialEq, Message)]
struct HeadModel {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(message, optional, tag = "7")]
    graph: Option<HeadGraph>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<pb::OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, Message)]
struct HeadGraph {
    #[prost(message, repeated, tag = "1")]
    node: Vec<HeadNode>,
}

#[derive(Clone, PartialEq, Message)]
struct HeadNode {
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(string, tag = "7")]
    domain: String,
}

fn is_zipmap(op_type: &str, domain: &str) -> bool {
    op_type == "ZipMap" && domain == "ai.onnx.ml"
}

/// Reads `path` and rewrites its `ZipMap` outputs (see the module docs).
pub fn prepare(path: &Path) -> Result<Prepared, RuntimeError> {
    let bad = |message: String| RuntimeError::Load {
        runtime: "hoist",
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read the model: {e}")))?;
    let head = HeadModel::decode(bytes.as_slice())
        .map_err(|e| bad(format!("not a well-formed ONNX model: {e}")))?;
    let opsets = head
        .opset_import
        .iter()
        .map(|o| {
            let d = if o.domain.is_empty() {
                "ai.onnx"
            } else {
                o.domain.as_str()
            };
            (d.to_string(), o.version)
        })
        .collect();
    let mut prepared = Prepared {
        path: path.to_path_buf(),
        rewritten: None,
        zipmaps: Vec::new(),
        ir_version: head.ir_version,
        opsets,
    };
    let has_zipmap = head
        .graph
        .iter()
        .flat_map(|g| &g.node)
        .any(|n| is_zipmap(&n.op_type, &n.domain));
    if !has_zipmap {
        return Ok(prepared);
    }
    let mut model = decode(&bytes).map_err(bad)?;
    drop(bytes);
    let zipmaps = rewrite_zipmaps(&mut model).map_err(bad)?;
    if zipmaps.is_empty() {
        return Ok(prepared);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    inline_external_data(&mut model, dir).map_err(bad)?;
    prepared.rewritten = Some(model);
    prepared.zipmaps = zipmaps;
    Ok(prepared)
}

/// Decodes a whole model (tract's `onnx.proto`).
pub fn decode(bytes: &[u8]) -> Result<pb::ModelProto, String> {
    pb::ModelProto::decode(bytes).map_err(|e| format!("not a well-formed ONNX model: {e}"))
}

/// Encodes a model.
pub fn encode(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Removes every `ZipMap` that feeds a graph output (see the module docs).
pub fn rewrite_zipmaps(model: &mut pb::ModelProto) -> Result<Vec<ZipMapOutput>, String> {
    let Some(graph) = model.graph.as_mut() else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    while let Some(pos) = graph.node.iter().position(|n| {
        is_zipmap(&n.op_type, &n.domain)
            && n.output.len() == 1
            && graph.output.iter().any(|o| o.name == n.output[0])
    }) {
        let node = graph.node.remove(pos);
        let (Some(input), Some(output)) = (node.input.first(), node.output.first()) else {
            return Err("a ZipMap node without an input".into());
        };
        let labels = zipmap_labels(&node)?;
        let fixed = |name: &str| {
            graph.input.iter().any(|i| i.name == name)
                || graph.initializer.iter().any(|t| t.name == name)
                || graph.output.iter().any(|o| o.name == name)
        };
        if fixed(input) {
            return Err(format!(
                "the ZipMap feeding output '{output}' reads '{input}', a graph input, initializer or output; hoist cannot serve its probabilities as a tensor"
            ));
        }
        // The batch dimension as the probabilities' own type declares it, if it does.
        let batch = graph
            .value_info
            .iter()
            .find(|v| &v.name == input)
            .and_then(tensor_dims)
            .and_then(|d| d.into_iter().next())
            .unwrap_or_else(|| dim_param("N"));
        rename_in_graph(graph, input, output);
        graph.value_info.retain(|v| &v.name != output);
        let k = labels.len() as i64;
        if let Some(o) = graph.output.iter_mut().find(|o| &o.name == output) {
            o.r#type = Some(pb::TypeProto {
                denotation: String::new(),
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: pb::tensor_proto::DataType::Float as i32,
                    shape: Some(pb::TensorShapeProto {
                        dim: vec![batch, dim_value(k)],
                    }),
                })),
            });
        }
        found.push(ZipMapOutput {
            output: output.clone(),
            labels,
        });
    }
    Ok(found)
}

fn zipmap_labels(node: &pb::NodeProto) -> Result<ClassLabels, String> {
    for a in &node.attribute {
        match a.name.as_str() {
            "classlabels_int64s" => return Ok(ClassLabels::Int(a.ints.clone())),
            "classlabels_strings" => {
                return a
                    .strings
                    .iter()
                    .map(|s| String::from_utf8(s.clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map(ClassLabels::Str)
                    .map_err(|_| "a ZipMap class label is not UTF-8".to_string());
            }
            _ => {}
        }
    }
    Err("a ZipMap without classlabels_int64s or classlabels_strings".into())
}

fn tensor_dims(v: &pb::ValueInfoProto) -> Option<Vec<pb::tensor_shape_proto::Dimension>> {
    // tract's onnx.proto knows tensor types only.
    let pb::type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    Some(t.shape.as_ref()?.dim.clone())
}

fn dim_param(name: &str) -> pb::tensor_shape_proto::Dimension {
    pb::tensor_shape_proto::Dimension {
        denotation: String::new(),
        value: Some(pb::tensor_shape_proto::dimension::Value::DimParam(
            name.into(),
        )),
    }
}

fn dim_value(n: i64) -> pb::tensor_shape_proto::Dimension {
    pb::tensor_shape_proto::Dimension {
        denotation: String::new(),
        value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)),
    }
}

/// Renames the value `from` to `to` wherever a node of `graph` (or of a subgraph in
/// an attribute) produces or reads it, and in `value_info`.
fn rename_in_graph(graph: &mut pb::GraphProto, from: &str, to: &str) {
    for node in &mut graph.node {
        for name in node.input.iter_mut().chain(node.output.iter_mut()) {
            if name == from {
                *name = to.to_string();
            }
        }
        for a in &mut node.attribute {
            for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                rename_in_graph(g, from, to);
            }
        }
    }
    for v in &mut graph.value_info {
        if v.name == from {
            v.name = to.to_string();
        }
    }
}

/// Every tensor of `g` (initializers, attribute tensors, subgraphs), to `f`.
fn each_tensor(
    g: &mut pb::GraphProto,
    f: &mut dyn FnMut(&mut pb::TensorProto) -> Result<(), String>,
) -> Result<(), String> {
    for t in &mut g.initializer {
        f(t)?;
    }
    for n in &mut g.node {
        for a in &mut n.attribute {
            if let Some(t) = a.t.as_mut() {
                f(t)?;
            }
            for t in &mut a.tensors {
                f(t)?;
            }
            for sub in a.g.iter_mut().chain(a.graphs.iter_mut()) {
                each_tensor(sub, f)?;
            }
        }
    }
    Ok(())
}

/// Moves external tensor data into the model, so it can be loaded from memory.
fn inline_external_data(model: &mut pb::ModelProto, dir: &Path) -> Result<(), String> {
    let Some(graph) = model.graph.as_mut() else {
        return Ok(());
    };
    each_tensor(graph, &mut |t| {
        if t.data_location != Some(pb::tensor_proto::DataLocation::External as i32) {
            return Ok(());
        }
        let get = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.value.clone())
        };
        let location = get("location")
            .ok_or_else(|| format!("tensor '{}' has external data without a location", t.name))?;
        let offset: u64 = get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        let length: Option<u64> = get("length").and_then(|v| v.parse().ok());
        // The package check has already refused locations outside the model's directory.
        let file = dir.join(&location);
        let data = std::fs::read(&file)
            .map_err(|e| format!("cannot read external data {}: {e}", file.display()))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = match length {
            Some(n) => start.saturating_add(usize::try_from(n).unwrap_or(usize::MAX)),
            None => data.len(),
        };
        let slice = data.get(start..end).ok_or_else(|| {
            format!(
                "tensor '{}': external data {location} is shorter than its offset and length",
                t.name
            )
        })?;
        t.raw_data = slice.to_vec();
        t.external_data.clear();
        t.data_location = None;
        Ok(())
    })
}
