//! The OpenAPI 3.1 document served at `GET /api/v1/openapi.json`, generated from the
//! API's types (`hoist_types::api`, which derive `utoipa::ToSchema`) and the
//! operations declared below: every route, its parameters, request bodies and
//! responses (with the error shape), so a client or a schema-driven fuzzer
//! (tests/api/run.sh runs Schemathesis against it) knows exactly what each call takes
//! and answers. What depends on the daemon (its model's name, its environments) is
//! filled in by [`document`].

use hoist_types::api::{
    Abort, CreateRelease, Promote, Release, ReleaseDetail, ReleaseList, Rollback, StatusView,
};
use hoist_types::error::ErrorBody;
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hoist daemon API",
        version = "1",
        description = "Reads are open when the API listens on loopback; every call that changes something needs `Authorization: Bearer <token>`. Bodies are JSON; an empty body counts as `{}`. Every error is `{\"error\": {\"code\", \"message\"}}`; the codes are hoist_types::ErrorCode's."
    ),
    paths(status, list_releases, create_release, get_release, promote_release, approve_release, abort_release, rollback, metrics, versions,
        models, model_status, model_list_releases, model_create_release, model_get_release, model_promote_release, model_approve_release, model_abort_release, model_rollback),
    modifiers(&Common)
)]
struct ApiDoc;

/// The answers every call may give besides its own, and the token's scheme.
struct Common;

impl utoipa::Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            let ops: [(HttpMethod, &mut Option<Operation>); 2] = [
                (HttpMethod::Get, &mut item.get),
                (HttpMethod::Post, &mut item.post),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                let write = method == HttpMethod::Post;
                let r = &mut op.responses.responses;
                r.insert(
                    "401".into(),
                    error(if write {
                        "No or a wrong `Authorization: Bearer <token>`"
                    } else {
                        "No or a wrong token, when the API listens beyond loopback (reads need it then)"
                    })
                    .into(),
                );
                if write {
                    r.insert("413".into(), error("The body is larger than 2 MiB").into());
                }
                r.insert(
                    "503".into(),
                    error("The daemon is stopping (`shutting_down`)").into(),
                );
            }
        }
    }
}

/// Environments (stable, candidate, weight, live metrics) and active releases
#[utoipa::path(get, path = "/api/v1/status", operation_id = "status",
    responses((status = 200, description = "Status", body = StatusView)))]
#[allow(dead_code)]
fn status() {}

/// Releases, newest first
#[utoipa::path(get, path = "/api/v1/releases", operation_id = "listReleases",
    params(
        ("env" = Option<String>, Query, description = "only releases that go through this environment"),
        ("limit" = Option<u64>, Query, description = "at most this many (default 50)", minimum = 0)
    ),
    responses(
        (status = 200, description = "The releases", body = ReleaseList),
        (status = 400, description = "No such environment, or a bad query", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn list_releases() {}

/// Start a release
#[utoipa::path(post, path = "/api/v1/releases", operation_id = "createRelease",
    request_body(content = CreateRelease, content_type = "application/json"),
    security(("token" = [])),
    responses(
        (status = 201, description = "The new release", body = Release, links(
            ("GetRelease" = (operation_id = "getRelease", parameters(("id" = "$response.body#/id")))),
            ("PromoteRelease" = (operation_id = "promoteRelease", parameters(("id" = "$response.body#/id")))),
            ("ApproveRelease" = (operation_id = "approveRelease", parameters(("id" = "$response.body#/id")))),
            ("AbortRelease" = (operation_id = "abortRelease", parameters(("id" = "$response.body#/id"))))
        )),
        (status = 400, description = "A bad body, another model, or no such environment", body = ErrorBody),
        (status = 404, description = "The registry has no such version", body = ErrorBody),
        (status = 409, description = "Another release is mid-rollout, or the version is already live", body = ErrorBody),
        (status = 502, description = "The registry cannot be reached", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn create_release() {}

/// One release with every transition
#[utoipa::path(get, path = "/api/v1/releases/{id}", operation_id = "getRelease",
    params(("id" = u64, Path, description = "A release id", minimum = 1, example = 1)),
    responses(
        (status = 200, description = "The release", body = ReleaseDetail),
        (status = 400, description = "Not a release id", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn get_release() {}

/// End the current pause (full: skip to 100%)
#[utoipa::path(post, path = "/api/v1/releases/{id}/promote", operation_id = "promoteRelease",
    params(("id" = u64, Path, description = "A release id", minimum = 1, example = 1)),
    request_body(content = Promote, content_type = "application/json"),
    security(("token" = [])),
    responses(
        (status = 200, description = "The release after the event", body = Release),
        (status = 400, description = "Not a release id, or a bad body", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
        (status = 409, description = "The release is not where this event applies (finished, not paused, not waiting for approval)", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn promote_release() {}

/// Approve a release waiting for approval
#[utoipa::path(post, path = "/api/v1/releases/{id}/approve", operation_id = "approveRelease",
    params(("id" = u64, Path, description = "A release id", minimum = 1, example = 1)),
    security(("token" = [])),
    responses(
        (status = 200, description = "The release after the event", body = Release),
        (status = 400, description = "Not a release id, or a bad body", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
        (status = 409, description = "The release is not where this event applies (finished, not paused, not waiting for approval)", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn approve_release() {}

/// Abort and roll back
#[utoipa::path(post, path = "/api/v1/releases/{id}/abort", operation_id = "abortRelease",
    params(("id" = u64, Path, description = "A release id", minimum = 1, example = 1)),
    request_body(content = Abort, content_type = "application/json"),
    security(("token" = [])),
    responses(
        (status = 200, description = "The release after the event", body = Release),
        (status = 400, description = "Not a release id, or a bad body", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
        (status = 409, description = "The release is not where this event applies (finished, not paused, not waiting for approval)", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn abort_release() {}

/// Roll an environment back: abort its release, or bring back the previous (or a given) live version
#[utoipa::path(post, path = "/api/v1/rollback", operation_id = "rollback",
    request_body(content = Rollback, content_type = "application/json"),
    security(("token" = [])),
    responses(
        (status = 200, description = "The rollback release", body = Release, links(
            ("GetRelease" = (operation_id = "getRelease", parameters(("id" = "$response.body#/id")))),
            ("PromoteRelease" = (operation_id = "promoteRelease", parameters(("id" = "$response.body#/id")))),
            ("ApproveRelease" = (operation_id = "approveRelease", parameters(("id" = "$response.body#/id")))),
            ("AbortRelease" = (operation_id = "abortRelease", parameters(("id" = "$response.body#/id"))))
        )),
        (status = 400, description = "A bad body, or no such environment", body = ErrorBody),
        (status = 404, description = "No such version to go back to", body = ErrorBody),
        (status = 409, description = "Nothing to roll back to, or a release is in the way", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn rollback() {}

/// A model's traffic in each environment over the last 15 minutes (the dashboard's
/// charts; the live stream `GET /api/v1/events` is not described here: docs/dashboard.md)
#[utoipa::path(get, path = "/api/v1/metrics", operation_id = "metrics",
    params(("model" = Option<String>, Query, description = "which model's traffic (default: the first model's)")),
    responses(
        (status = 200, description = "`{model, every_ms, samples: [{model, at_ms, envs: [{env, weight, stable, candidate}]}]}`", body = Object),
        (status = 400, description = "A bad query (an unknown parameter)", body = ErrorBody),
        (status = 404, description = "The daemon delivers no such model", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn metrics() {}

/// The registry's versions of the model, newest first, with digests, aliases and tags
#[utoipa::path(get, path = "/api/v1/versions", operation_id = "versions",
    params(("model" = Option<String>, Query, description = "which model's versions (default: the first model's)")),
    responses(
        (status = 200, description = "`{model, versions: [{version, digest, aliases, stage, tags, created_at_ms}]}`", body = Object),
        (status = 400, description = "A bad query (an unknown parameter)", body = ErrorBody),
        (status = 404, description = "The daemon delivers no such model, or the registry has none", body = ErrorBody),
        (status = 502, description = "The registry cannot be reached", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn versions() {}

/// Every model the daemon delivers: its trigger, environments, live versions and
/// unfinished releases
#[utoipa::path(get, path = "/api/v1/models", operation_id = "models",
    responses((status = 200, description = "`{models: [{name, trigger, environments: [{name, live}], active: [Release]}]}`", body = Object)))]
#[allow(dead_code)]
fn models() {}

/// One model's status (`GET /api/v1/status` answers only while the daemon delivers one model)
#[utoipa::path(get, path = "/api/v1/models/{model}/status", operation_id = "modelStatus",
    params(("model" = String, Path, description = "A model the daemon delivers")),
    responses(
        (status = 200, description = "Status", body = StatusView),
        (status = 404, description = "No such model (the message names the models)", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn model_status() {}

/// One model's releases, newest first (`GET /api/v1/releases` lists every model's)
#[utoipa::path(get, path = "/api/v1/models/{model}/releases", operation_id = "modelListReleases",
    params(
        ("model" = String, Path, description = "A model the daemon delivers"),
        ("env" = Option<String>, Query, description = "only releases that go through this environment"),
        ("limit" = Option<u64>, Query, description = "at most this many (default 50)", minimum = 0)
    ),
    responses(
        (status = 200, description = "The releases", body = ReleaseList),
        (status = 400, description = "No such environment, or a bad query", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn model_list_releases() {}

/// Start a release of this model (the body's `model` must name it)
#[utoipa::path(post, path = "/api/v1/models/{model}/releases", operation_id = "modelCreateRelease",
    params(("model" = String, Path, description = "A model the daemon delivers")),
    request_body(content = CreateRelease, content_type = "application/json"),
    security(("token" = [])),
    responses(
        (status = 201, description = "The new release", body = Release),
        (status = 400, description = "A bad body, another model, or no such environment", body = ErrorBody),
        (status = 404, description = "No such model, or the registry has no such version", body = ErrorBody),
        (status = 409, description = "Another release of this model is mid-rollout, or the version is already live", body = ErrorBody),
        (status = 502, description = "The registry cannot be reached", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn model_create_release() {}

/// One release of this model with every transition
#[utoipa::path(get, path = "/api/v1/models/{model}/releases/{id}", operation_id = "modelGetRelease",
    params(("model" = String, Path, description = "A model the daemon delivers"),
        ("id" = u64, Path, description = "A release id", minimum = 1, example = 1)),
    responses(
        (status = 200, description = "The release", body = ReleaseDetail),
        (status = 400, description = "Not a release id", body = ErrorBody),
        (status = 404, description = "No such model, or no such release of it", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn model_get_release() {}

/// Promote a release of this model (as `POST /api/v1/releases/{id}/promote`)
#[utoipa::path(post, path = "/api/v1/models/{model}/releases/{id}/promote", operation_id = "modelPromoteRelease",
    params(("model" = String, Path, description = "A model the daemon delivers"),
        ("id" = u64, Path, description = "A release id", minimum = 1, example = 1)),
    request_body(content = Promote, content_type = "application/json"),
    security(("token" = [])),
    responses(
        (status = 200, description = "The release", body = Release),
        (status = 400, description = "A bad body or id", body = ErrorBody),
        (status = 404, description = "No such model, or no such release of it", body = ErrorBody),
        (status = 409, description = "The release cannot be promoted now", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn model_promote_release() {}

/// Approve a release of this model waiting for approval
#[utoipa::path(post, path = "/api/v1/models/{model}/releases/{id}/approve", operation_id = "modelApproveRelease",
    params(("model" = String, Path, description = "A model the daemon delivers"),
        ("id" = u64, Path, description = "A release id", minimum = 1, example = 1)),
    security(("token" = [])),
    responses(
        (status = 200, description = "The release", body = Release),
        (status = 400, description = "Not a release id", body = ErrorBody),
        (status = 404, description = "No such model, or no such release of it", body = ErrorBody),
        (status = 409, description = "The release is not waiting for approval", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn model_approve_release() {}

/// Abort a release of this model (back to 100% stable)
#[utoipa::path(post, path = "/api/v1/models/{model}/releases/{id}/abort", operation_id = "modelAbortRelease",
    params(("model" = String, Path, description = "A model the daemon delivers"),
        ("id" = u64, Path, description = "A release id", minimum = 1, example = 1)),
    request_body(content = Abort, content_type = "application/json"),
    security(("token" = [])),
    responses(
        (status = 200, description = "The release", body = Release),
        (status = 400, description = "A bad body or id", body = ErrorBody),
        (status = 404, description = "No such model, or no such release of it", body = ErrorBody),
        (status = 409, description = "The release has finished", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn model_abort_release() {}

/// Roll this model back in an environment (`POST /api/v1/rollback` answers only while
/// the daemon delivers one model)
#[utoipa::path(post, path = "/api/v1/models/{model}/rollback", operation_id = "modelRollback",
    params(("model" = String, Path, description = "A model the daemon delivers")),
    request_body(content = Rollback, content_type = "application/json"),
    security(("token" = [])),
    responses(
        (status = 200, description = "The rollback release", body = Release),
        (status = 400, description = "A bad body, or no such environment", body = ErrorBody),
        (status = 404, description = "No such model, or no such version to go back to", body = ErrorBody),
        (status = 409, description = "Nothing to roll back to, or a release is in the way", body = ErrorBody)
    ))]
#[allow(dead_code)]
fn model_rollback() {}

/// `s` as a regular expression that matches exactly `s`.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An environment's name: one of `envs` (any string when none is named).
fn env_schema(envs: &[String], nullable: bool) -> Value {
    let mut v =
        json!({ "type": if nullable { json!(["string", "null"]) } else { json!("string") } });
    if !envs.is_empty() {
        let mut names: Vec<Value> = envs.iter().map(|e| json!(e)).collect();
        if nullable {
            names.push(Value::Null);
        }
        v["enum"] = names.into();
    }
    v
}

/// The whole document for a daemon that delivers `model` to `envs`: the generated
/// one, with the model's name as the pattern (and examples) of a release's `model`,
/// and the environments as the values an `env` may take.
pub fn document(models: &[String], envs: &[String]) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    let model = models.first().map_or("default", String::as_str);
    let names: Vec<String> = models.iter().map(|m| regex_escape(m)).collect();
    let names = match names.len() {
        1 => names[0].clone(),
        _ => format!("({})", names.join("|")),
    };
    let schemas = &mut doc["components"]["schemas"];
    let create = &mut schemas["CreateRelease"];
    create["properties"]["model"]["pattern"] = format!("^{names}(/[^/@]+|@[^/@]+)?$").into();
    create["examples"] = json!([{ "model": format!("{model}/1") }, { "model": format!("{model}@champion"), "supersede": false }]);
    create["properties"]["env"] = env_schema(envs, true);
    schemas["Rollback"]["properties"]["env"] = env_schema(envs, true);
    schemas["Rollback"]["examples"] = json!([{}, { "to": "1" }]);
    for path in ["/api/v1/releases", "/api/v1/models/{model}/releases"] {
        let params = doc
            .pointer_mut(&format!(
                "/paths/{}/get/parameters",
                path.replace('/', "~1")
            ))
            .and_then(Value::as_array_mut);
        for p in params.into_iter().flatten() {
            if p["name"] == "env" {
                p["schema"] = env_schema(envs, false);
            }
            if p["name"] == "model" {
                p["schema"]["enum"] = json!(models);
            }
        }
    }
    for item in doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            // `get_mut`, not indexing: indexing a missing key would add `"parameters": null`.
            let params = op.get_mut("parameters").and_then(Value::as_array_mut);
            for p in params.into_iter().flatten() {
                if p["name"] == "model" && p["in"] == "path" {
                    p["schema"]["enum"] = json!(models);
                }
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_operation_has_null_parameters() {
        // Schemathesis (and any OpenAPI validator) refuses `"parameters": null`.
        let doc = document(&["a".into(), "b".into()], &["production".into()]);
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if let Some(p) = op.get("parameters") {
                    assert!(p.is_array(), "{method} {path}: parameters {p}");
                }
            }
        }
    }

    #[test]
    fn every_operation_is_described() {
        let doc = document(&["m.x".into()], &["staging".into(), "production".into()]);
        let paths = doc["paths"].as_object().unwrap();
        let mut ops = Vec::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                ops.push(format!("{} {path}", method.to_uppercase()));
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("401"), "{method} {path}");
                for (i, name) in ["model", "id"]
                    .into_iter()
                    .filter(|n| path.contains(&format!("{{{n}}}")))
                    .enumerate()
                {
                    assert_eq!(op["parameters"][i]["name"], name, "{method} {path}");
                    assert_eq!(op["parameters"][i]["in"], "path", "{method} {path}");
                }
                if method == "post" {
                    assert_eq!(op["security"][0]["token"], json!([]), "{method} {path}");
                    assert!(responses.contains_key("400"), "{method} {path}");
                }
            }
        }
        ops.sort();
        assert_eq!(
            ops,
            [
                "GET /api/v1/metrics",
                "GET /api/v1/models",
                "GET /api/v1/models/{model}/releases",
                "GET /api/v1/models/{model}/releases/{id}",
                "GET /api/v1/models/{model}/status",
                "GET /api/v1/releases",
                "GET /api/v1/releases/{id}",
                "GET /api/v1/status",
                "GET /api/v1/versions",
                "POST /api/v1/models/{model}/releases",
                "POST /api/v1/models/{model}/releases/{id}/abort",
                "POST /api/v1/models/{model}/releases/{id}/approve",
                "POST /api/v1/models/{model}/releases/{id}/promote",
                "POST /api/v1/models/{model}/rollback",
                "POST /api/v1/releases",
                "POST /api/v1/releases/{id}/abort",
                "POST /api/v1/releases/{id}/approve",
                "POST /api/v1/releases/{id}/promote",
                "POST /api/v1/rollback",
            ]
        );
        let create = &doc["components"]["schemas"]["CreateRelease"];
        assert_eq!(
            create["properties"]["model"]["pattern"],
            "^m\\.x(/[^/@]+|@[^/@]+)?$"
        );
        assert_eq!(
            create["properties"]["env"]["enum"],
            json!(["staging", "production", null])
        );
        // The schemas are the API types': every one an answer or a body names.
        for name in [
            "StatusView",
            "ReleaseList",
            "ReleaseDetail",
            "Release",
            "CreateRelease",
            "Promote",
            "Abort",
            "Rollback",
            "ErrorBody",
            "ErrorCode",
            "Phase",
            "Outcome",
        ] {
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{name}: {}",
                doc["components"]["schemas"]
            );
        }
        assert_eq!(
            doc["components"]["schemas"]["ErrorCode"]["enum"]
                .as_array()
                .map(Vec::len),
            Some(hoist_types::ErrorCode::ALL.len())
        );
    }

    #[test]
    fn several_models_are_the_model_patterns_and_path_values() {
        let doc = document(&["a".into(), "b.c".into()], &["production".into()]);
        let create = &doc["components"]["schemas"]["CreateRelease"];
        assert_eq!(
            create["properties"]["model"]["pattern"],
            "^(a|b\\.c)(/[^/@]+|@[^/@]+)?$"
        );
        let p = &doc["paths"]["/api/v1/models/{model}/rollback"]["post"]["parameters"][0];
        assert_eq!(p["schema"]["enum"], json!(["a", "b.c"]));
    }
}
