//! The signature an MLflow model was logged with (`signature:` in its MLmodel):
//! what the signature gate compares when the model's server does not describe its
//! inputs and outputs itself (any MLflow flavor served by `mlflow models serve`).

use std::path::Path;

/// One input or output: (name, type, shape as JSON). Column-based signatures give
/// each column's name and type and the shape `[-1]`; tensor-based ones their
/// `tensor-spec`'s dtype and shape (and a name when the model has several).
pub type Tensor = (String, String, String);

/// The logged signature of the MLflow model in `dir`: `Ok(None)` when the directory
/// has no MLmodel or the MLmodel no signature; `Err` naming the field when it is
/// malformed.
#[allow(clippy::type_complexity)]
pub fn logged(dir: &Path) -> Result<Option<(Vec<Tensor>, Vec<Tensor>)>, String> {
    let path = dir.join("MLmodel");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// [`logged`] of an MLmodel's text.
#[allow(clippy::type_complexity)]
pub fn parse(mlmodel: &str) -> Result<Option<(Vec<Tensor>, Vec<Tensor>)>, String> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(mlmodel).map_err(|e| format!("not valid YAML: {e}"))?;
    let Some(sig) = doc.get("signature").filter(|s| !s.is_null()) else {
        return Ok(None);
    };
    let side = |key: &str| -> Result<Vec<Tensor>, String> {
        match sig.get(key) {
            None | Some(serde_yaml::Value::Null) => Ok(Vec::new()),
            Some(serde_yaml::Value::String(s)) => {
                specs(s).map_err(|e| format!("signature.{key}: {e}"))
            }
            Some(_) => Err(format!("signature.{key}: not a JSON string")),
        }
    };
    Ok(Some((side("inputs")?, side("outputs")?)))
}

fn specs(json: &str) -> Result<Vec<Tensor>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let items = v.as_array().ok_or("not a JSON array")?;
    items
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let name = t["name"].as_str().unwrap_or_default().to_string();
            let ty = t["type"]
                .as_str()
                .ok_or_else(|| format!("[{i}]: no type"))?;
            if ty == "tensor" {
                let spec = &t["tensor-spec"];
                let dtype = spec["dtype"]
                    .as_str()
                    .ok_or_else(|| format!("[{i}]: a tensor without tensor-spec.dtype"))?;
                Ok((name, dtype.to_string(), spec["shape"].to_string()))
            } else {
                // A column: one value per row. Objects, arrays and maps keep their
                // whole description as the type, so any change in them shows.
                let ty = if matches!(ty, "object" | "array" | "map" | "sparkml_vector") {
                    let mut d = t.clone();
                    if let Some(o) = d.as_object_mut() {
                        o.remove("name");
                        o.remove("required");
                    }
                    d.to_string()
                } else {
                    ty.to_string()
                };
                Ok((name, ty, "[-1]".to_string()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: &str, ty: &str, shape: &str) -> Tensor {
        (n.into(), ty.into(), shape.into())
    }

    #[test]
    fn tensor_and_column_signatures_read_as_mlflow_logs_them() {
        let tensor = r#"
flavors: {}
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 30]}}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
  params: null
"#;
        assert_eq!(
            parse(tensor).unwrap(),
            Some((
                vec![t("", "float64", "[-1,30]")],
                vec![t("", "int64", "[-1]")]
            ))
        );
        let columns = r#"
signature:
  inputs: '[{"type": "double", "name": "age", "required": true}, {"type": "string", "name": "city", "required": false}]'
  outputs: '[{"type": "long", "required": true}]'
"#;
        assert_eq!(
            parse(columns).unwrap(),
            Some((
                vec![t("age", "double", "[-1]"), t("city", "string", "[-1]")],
                vec![t("", "long", "[-1]")]
            ))
        );
        let object = r#"
signature:
  inputs: '[{"type": "object", "name": "doc", "properties": {"a": {"type": "long", "required": true}}, "required": true}]'
"#;
        let (inputs, outputs) = parse(object).unwrap().unwrap();
        assert!(inputs[0].1.contains("\"properties\""), "{inputs:?}");
        assert!(outputs.is_empty());
    }

    #[test]
    fn no_signature_is_none_and_a_malformed_one_names_its_field() {
        assert_eq!(parse("flavors: {}\n").unwrap(), None);
        assert_eq!(parse("signature: null\n").unwrap(), None);
        let e = parse("signature:\n  inputs: '[{\"name\": \"x\"}]'\n").unwrap_err();
        assert!(e.contains("signature.inputs: [0]: no type"), "{e}");
        let e = parse("signature:\n  inputs: 'oops'\n").unwrap_err();
        assert!(e.contains("signature.inputs: not JSON"), "{e}");
        let e = parse("signature: [\n").unwrap_err();
        assert!(e.contains("not valid YAML"), "{e}");
        let dir = std::env::temp_dir().join(format!("hoist-sig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(logged(&dir).unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
