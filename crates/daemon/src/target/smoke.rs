//! The smoke test every target runs against a new candidate before any user traffic.

use std::path::Path;

/// Requests per candidate replica in the smoke test (the first checks the answer's
/// shape; all warm the server up).
const SMOKE_ROUNDS: usize = 10;

/// Send the model's input example through the gateway to the candidate (forced by
/// header), once per replica: each must answer 200 with one prediction per example
/// row. Without an example, the candidate's readiness is checked instead. An empty
/// `force_header` means `url` is the candidate itself (a cluster's Service). With
/// `model`, `url` is a gateway serving several models: the requests name it
/// (`/models/{model}/invocations`, `/v2/models/{model}/ready`).
pub async fn smoke_test(
    http: &reqwest::Client,
    url: &str,
    model: Option<&str>,
    force_header: &str,
    path: Option<&str>,
    replicas: usize,
) -> Result<(), String> {
    let example = path.and_then(|p| read_example(Path::new(p)));
    let (invocations, ready) = match model {
        Some(m) => (
            format!("{url}/models/{m}/invocations"),
            format!("{url}/v2/models/{m}/ready"),
        ),
        None => (
            format!("{url}/invocations"),
            format!("{url}/v2/health/ready"),
        ),
    };
    // A few rounds per replica: the smoke test, and a warm-up so a cold candidate's
    // first requests do not count against it in the analysis that follows.
    for _ in 0..replicas.max(1) * SMOKE_ROUNDS {
        match &example {
            Some((body, rows)) => {
                let mut req = http.post(&invocations);
                if !force_header.is_empty() {
                    req = req.header(force_header, "candidate");
                }
                let resp = req
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| format!("POST /invocations: {e}"))?;
                let status = resp.status();
                let variant = resp
                    .headers()
                    .get(hoist_types::wire::headers::VARIANT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let text = resp.text().await.unwrap_or_default();
                if !status.is_success() {
                    return Err(format!(
                        "POST /invocations with the input example answered {status}: {}",
                        text.chars().take(300).collect::<String>()
                    ));
                }
                if !force_header.is_empty() && variant != "candidate" {
                    return Err(format!(
                        "the gateway sent the smoke test to `{variant}`, not the candidate"
                    ));
                }
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| format!("the answer to the input example is not JSON: {e}"))?;
                let got = prediction_rows(&v);
                if let (Some(want), Some(got)) = (rows, got)
                    && *want != got
                {
                    return Err(format!(
                        "the input example has {want} rows but {got} predictions came back"
                    ));
                }
                if got.is_none() {
                    return Err(format!(
                        "the answer has no predictions: {}",
                        text.chars().take(300).collect::<String>()
                    ));
                }
            }
            None => {
                let mut req = http.get(&ready);
                if !force_header.is_empty() {
                    req = req.header(force_header, "candidate");
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| format!("GET /v2/health/ready: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("GET /v2/health/ready answered {}", resp.status()));
                }
            }
        }
    }
    Ok(())
}

/// The MLflow input example of a package as an `/invocations` body, and its row count.
fn read_example(dir: &Path) -> Option<(String, Option<usize>)> {
    let text = std::fs::read_to_string(dir.join("input_example.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let (body, rows) = match &v {
        serde_json::Value::Array(a) => (serde_json::json!({ "inputs": v }), Some(a.len())),
        serde_json::Value::Object(o) if o.contains_key("columns") && o.contains_key("data") => (
            serde_json::json!({ "dataframe_split": v }),
            o.get("data").and_then(|d| d.as_array()).map(|d| d.len()),
        ),
        serde_json::Value::Object(o)
            if o.contains_key("inputs")
                || o.contains_key("dataframe_split")
                || o.contains_key("instances") =>
        {
            (v.clone(), None)
        }
        _ => (serde_json::json!({ "inputs": v }), None),
    };
    Some((body.to_string(), rows))
}

fn prediction_rows(v: &serde_json::Value) -> Option<usize> {
    match v.get("predictions")? {
        serde_json::Value::Array(a) => Some(a.len()),
        serde_json::Value::Object(o) => o
            .values()
            .next()
            .and_then(|c| c.as_array())
            .map(|a| a.len()),
        _ => None,
    }
}
