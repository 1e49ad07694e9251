//! The smoke test every target runs against a new candidate before any user traffic.

use std::path::Path;

/// Requests per candidate replica in the smoke test (the first checks the answer's
/// shape; all warm the server up).
const SMOKE_ROUNDS: usize = 10;

/// Send the model's input example through the gateway to the candidate (forced by
/// header), once per replica: each must answer 200 with one prediction per example
/// row. Without an example, the candidate's readiness is checked instead
/// (`/v2/.../ready`; where that path is a 404, as on MLflow's scoring server, its
/// `/ping`). An empty
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
    let (invocations, ready, ping) = match model {
        Some(m) => (
            format!("{url}/models/{m}/invocations"),
            format!("{url}/v2/models/{m}/ready"),
            format!("{url}/models/{m}/ping"),
        ),
        None => (
            format!("{url}/invocations"),
            format!("{url}/v2/health/ready"),
            format!("{url}/ping"),
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
                let get = |u: &str| {
                    let req = http.get(u);
                    if force_header.is_empty() {
                        req
                    } else {
                        req.header(force_header, "candidate")
                    }
                };
                let what = if model.is_some() {
                    "/v2/models/{name}/ready"
                } else {
                    "/v2/health/ready"
                };
                let mut status = get(&ready)
                    .send()
                    .await
                    .map_err(|e| format!("GET {what}: {e}"))?
                    .status();
                // MLflow's scoring server has no Open Inference Protocol paths; its
                // readiness is /ping (200 once the model loaded).
                if status == reqwest::StatusCode::NOT_FOUND {
                    let answer = get(&ping)
                        .send()
                        .await
                        .map_err(|e| format!("GET /ping: {e}"))?
                        .status();
                    if !answer.is_success() {
                        return Err(format!(
                            "GET {what} answered {status} and GET /ping {answer}"
                        ));
                    }
                    status = answer;
                }
                if !status.is_success() {
                    return Err(format!("GET {what} answered {status}"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;

    /// A server answering like MLflow's scoring server (no `/v2` paths; `/ping` as
    /// given), or like hoist-server (`/v2/models/m/ready` as given), and counting
    /// what reached it without the force header.
    async fn server(v2: Option<u16>, ping: u16) -> String {
        let mut app = axum::Router::new().route(
            "/models/m/ping",
            get(move |h: HeaderMap| async move {
                assert_eq!(h["x-force"], "candidate");
                StatusCode::from_u16(ping).unwrap()
            }),
        );
        if let Some(code) = v2 {
            app = app.route(
                "/v2/models/m/ready",
                get(move || async move { StatusCode::from_u16(code).unwrap() }),
            );
        }
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}")
    }

    async fn smoke(url: &str) -> Result<(), String> {
        let http = reqwest::Client::new();
        smoke_test(&http, url, Some("m"), "x-force", None, 1).await
    }

    #[tokio::test]
    async fn without_an_example_readiness_falls_back_to_ping_where_v2_is_missing() {
        // MLflow's scoring server: no /v2 paths, /ping says ready.
        assert_eq!(smoke(&server(None, 200).await).await, Ok(()));
        // ... and /ping says not ready.
        let err = smoke(&server(None, 503).await).await.unwrap_err();
        assert!(err.contains("/ping 503"), "{err}");
        // hoist-server: its own readiness counts; /ping is not asked.
        assert_eq!(smoke(&server(Some(200), 500).await).await, Ok(()));
        let err = smoke(&server(Some(503), 200).await).await.unwrap_err();
        assert!(err.contains("answered 503"), "{err}");
    }
}
