//! The OpenAPI 3.1 document served at `GET /api/v1/openapi.json`: every route, its
//! parameters, request bodies and responses (with the error shape), so a client or a
//! schema-driven fuzzer (tests/api/run.sh runs Schemathesis against it) knows exactly
//! what each call takes and answers. Hand-written next to the handlers in `api.rs`;
//! keep the two in step.

use serde_json::{Value, json};

/// `{"$ref": "#/components/schemas/NAME"}`.
fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A JSON response with the schema `name`.
fn body(description: &str, name: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": schema_ref(name) } }
    })
}

fn links(mut response: Value) -> Value {
    response["links"] = release_links();
    response
}

fn error(description: &str) -> Value {
    body(description, "Error")
}

/// The answers every call may give besides its own.
fn common(mut responses: Value, write: bool) -> Value {
    let r = responses.as_object_mut().expect("responses object");
    r.insert(
        "401".into(),
        error(if write {
            "No or a wrong `Authorization: Bearer <token>`"
        } else {
            "No or a wrong token, when the API listens beyond loopback (reads need it then)"
        }),
    );
    if write {
        r.insert("413".into(), error("The body is larger than 2 MiB"));
    }
    r.insert(
        "503".into(),
        error("The daemon is stopping (`shutting_down`)"),
    );
    responses
}

fn id_param() -> Value {
    json!({
        "name": "id", "in": "path", "required": true,
        "description": "A release id",
        "schema": { "type": "integer", "minimum": 1, "format": "int64", "examples": [1] }
    })
}

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

/// Where a new release can be looked at and acted on (OpenAPI links, so a stateful
/// client can follow a created release).
fn release_links() -> Value {
    let link =
        |op: &str| json!({ "operationId": op, "parameters": { "id": "$response.body#/id" } });
    json!({
        "GetRelease": link("getRelease"),
        "PromoteRelease": link("promoteRelease"),
        "ApproveRelease": link("approveRelease"),
        "AbortRelease": link("abortRelease")
    })
}

/// An environment's name: one of this daemon's.
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

/// A JSON request body (optional: an empty body means `{}`).
fn request(schema: Value) -> Value {
    json!({
        "required": false,
        "content": { "application/json": { "schema": schema } }
    })
}

/// A write: needs the token.
fn write_op(summary: &str, op_id: &str, request_body: Option<Value>, responses: Value) -> Value {
    let mut op = json!({
        "summary": summary,
        "operationId": op_id,
        "security": [ { "token": [] } ],
        "responses": common(responses, true),
    });
    if let Some(b) = request_body {
        op["requestBody"] = b;
    }
    op
}

fn read_op(summary: &str, op_id: &str, parameters: Value, responses: Value) -> Value {
    json!({
        "summary": summary,
        "operationId": op_id,
        "parameters": parameters,
        "responses": common(responses, false),
    })
}

fn schemas(model: &str, envs: &[String]) -> Value {
    let window = json!({
        "type": "object",
        "required": ["requests", "errors", "error_rate", "p50_ms", "p99_ms"],
        "properties": {
            "requests": { "type": "integer", "minimum": 0 },
            "errors": { "type": "integer", "minimum": 0 },
            "error_rate": { "type": "number" },
            "p50_ms": { "type": ["number", "null"] },
            "p99_ms": { "type": ["number", "null"] },
            "labelled": { "type": "integer", "minimum": 0 },
            "correct": { "type": "integer", "minimum": 0 }
        }
    });
    let deployment = json!({
        "type": ["object", "null"],
        "required": ["version", "digest", "release_id", "servers"],
        "properties": {
            "version": { "type": "string" },
            "digest": { "type": "string" },
            "release_id": { "type": "integer" },
            "servers": { "type": "array", "items": {
                "type": "object",
                "required": ["addr", "pid", "restarts", "status"],
                "properties": {
                    "addr": { "type": "string" },
                    "pid": { "type": ["integer", "null"] },
                    "restarts": { "type": "integer" },
                    "status": { "type": "string" }
                }
            } }
        }
    });
    json!({
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": { "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": { "type": "string", "description": "bad_request, unauthorized, not_found, conflict, method_not_allowed, payload_too_large, registry_unavailable, shutting_down" },
                    "message": { "type": "string" }
                }
            } }
        },
        "Release": {
            "type": "object",
            "description": "A release as journaled",
            "required": ["id", "model", "version", "plan", "phase", "env", "weight", "outcome", "digest", "path", "trigger", "created_ms", "updated_ms"],
            "properties": {
                "id": { "type": "integer", "minimum": 1 },
                "model": { "type": "string" },
                "version": { "type": "string" },
                "plan": { "type": "object" },
                "phase": { "type": "object", "required": ["phase"], "properties": { "phase": { "type": "string" } } },
                "env": { "type": "integer", "minimum": 0, "description": "index into plan.envs" },
                "weight": { "type": "integer", "minimum": 0 },
                "shadow": { "type": "integer", "minimum": 0 },
                "candidate_up": { "type": "boolean" },
                "has_stable": { "type": "boolean" },
                "outcome": { "type": ["object", "null"] },
                "digest": { "type": ["string", "null"] },
                "path": { "type": ["string", "null"] },
                "trigger": { "type": "string" },
                "created_ms": { "type": "integer" },
                "updated_ms": { "type": "integer" }
            }
        },
        "ReleaseSummary": {
            "allOf": [ schema_ref("Release"), {
                "type": "object",
                "required": ["summary"],
                "properties": { "summary": { "type": "string" } }
            } ]
        },
        "ReleaseDetail": {
            "allOf": [ schema_ref("Release"), {
                "type": "object",
                "required": ["summary", "progress", "transitions"],
                "properties": {
                    "summary": { "type": "string" },
                    "progress": { "type": "number", "minimum": 0, "maximum": 1 },
                    "transitions": { "type": "array", "items": {
                        "type": "object",
                        "required": ["seq", "at_ms", "event", "actions", "phase"],
                        "properties": {
                            "seq": { "type": "integer" },
                            "at_ms": { "type": "integer" },
                            "event": {},
                            "actions": { "type": "array" },
                            "phase": { "type": "string" }
                        }
                    } }
                }
            } ]
        },
        "ReleaseList": {
            "type": "object",
            "required": ["releases"],
            "properties": { "releases": { "type": "array", "items": schema_ref("ReleaseSummary") } }
        },
        "Status": {
            "type": "object",
            "required": ["model", "registry", "environments", "active", "notifications"],
            "properties": {
                "model": { "type": "string" },
                "registry": { "type": "string" },
                "environments": { "type": "array", "items": {
                    "type": "object",
                    "required": ["name", "url", "strategy", "weight", "stable", "candidate", "stable_metrics", "candidate_metrics", "target"],
                    "properties": {
                        "name": { "type": "string" },
                        "url": { "type": "string" },
                        "strategy": { "type": "string", "enum": ["canary", "blue-green"] },
                        "weight": { "type": "integer", "minimum": 0 },
                        "stable": deployment,
                        "candidate": deployment,
                        "stable_metrics": window,
                        "candidate_metrics": window,
                        "target": { "type": "string", "enum": ["local", "kubernetes"] },
                        "split": { "type": "string" }
                    }
                } },
                "active": { "type": "array", "items": schema_ref("ReleaseSummary") },
                "notifications": { "type": "object" }
            }
        },
        "CreateRelease": {
            "type": "object",
            "description": "`env`: start in this environment (default: the first)",
            "examples": [ { "model": format!("{model}/1") }, { "model": format!("{model}@champion"), "supersede": false } ],
            "additionalProperties": false,
            "required": ["model"],
            "properties": {
                "model": {
                    "type": "string",
                    "pattern": format!("^{}(/[^/@]+|@[^/@]+)?$", regex_escape(model)),
                    "description": "NAME, NAME/VERSION, NAME@ALIAS or NAME/STAGE; NAME must be the daemon's model"
                },
                "env": env_schema(envs, true),
                "supersede": { "type": "boolean", "description": "abort a release in progress for this one" },
                "breaking_change": { "type": "boolean", "description": "the version may change inputs or outputs: the signature gate passes a difference" }
            }
        },
        "Promote": {
            "type": "object",
            "additionalProperties": false,
            "properties": { "full": { "type": "boolean", "description": "skip to 100%" } }
        },
        "Abort": {
            "type": "object",
            "additionalProperties": false,
            "properties": { "reason": { "type": ["string", "null"] } }
        },
        "Rollback": {
            "type": "object",
            "description": "`env`: the environment (default: the last)",
            "examples": [ {}, { "to": "1" } ],
            "additionalProperties": false,
            "properties": {
                "env": env_schema(envs, true),
                "to": { "type": ["string", "null"], "description": "a version to bring back (default: the previous live one)" }
            }
        }
    })
}

/// The whole document for a daemon that delivers `model` to `envs`.
pub fn document(model: &str, envs: &[String]) -> Value {
    let operator = |summary: &str, op_id: &str, schema: Option<&str>| {
        let mut op = write_op(
            summary,
            op_id,
            schema.map(|s| request(schema_ref(s))),
            json!({
                "200": body("The release after the event", "Release"),
                "400": error("Not a release id, or a bad body"),
                "404": error("No such release"),
                "409": error("The release is not where this event applies (finished, not paused, not waiting for approval)")
            }),
        );
        op["parameters"] = json!([id_param()]);
        json!({ "post": op })
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "hoist daemon API",
            "version": "1",
            "description": "Reads are open when the API listens on loopback; every call that changes something needs `Authorization: Bearer <token>`. Bodies are JSON; an empty body counts as `{}`. Every error is `{\"error\": {\"code\", \"message\"}}`."
        },
        "components": {
            "securitySchemes": { "token": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas(model, envs)
        },
        "paths": {
            "/api/v1/status": { "get": read_op(
                "Environments (stable, candidate, weight, live metrics) and active releases",
                "status",
                json!([]),
                json!({ "200": body("Status", "Status") }),
            ) },
            "/api/v1/releases": {
                "get": read_op(
                    "Releases, newest first",
                    "listReleases",
                    json!([
                        { "name": "env", "in": "query", "required": false, "description": "only releases that go through this environment", "schema": env_schema(envs, false) },
                        { "name": "limit", "in": "query", "required": false, "description": "at most this many (default 50)", "schema": { "type": "integer", "minimum": 0, "format": "int64" } }
                    ]),
                    json!({
                        "200": body("The releases", "ReleaseList"),
                        "400": error("No such environment, or a bad query")
                    }),
                ),
                "post": write_op(
                    "Start a release",
                    "createRelease",
                    Some(request(schema_ref("CreateRelease"))),
                    json!({
                        "201": links(body("The new release", "Release")),
                        "400": error("A bad body, another model, or no such environment"),
                        "404": error("The registry has no such version"),
                        "409": error("Another release is mid-rollout, or the version is already live"),
                        "502": error("The registry cannot be reached")
                    }),
                )
            },
            "/api/v1/releases/{id}": { "get": read_op(
                "One release with every transition",
                "getRelease",
                json!([id_param()]),
                json!({
                    "200": body("The release", "ReleaseDetail"),
                    "400": error("Not a release id"),
                    "404": error("No such release")
                }),
            ) },
            "/api/v1/releases/{id}/promote": operator("End the current pause (full: skip to 100%)", "promoteRelease", Some("Promote")),
            "/api/v1/releases/{id}/approve": operator("Approve a release waiting for approval", "approveRelease", None),
            "/api/v1/releases/{id}/abort": operator("Abort and roll back", "abortRelease", Some("Abort")),
            "/api/v1/rollback": { "post": write_op(
                "Roll an environment back: abort its release, or bring back the previous (or a given) live version",
                "rollback",
                Some(request(schema_ref("Rollback"))),
                json!({
                    "200": links(body("The rollback release", "Release")),
                    "400": error("A bad body, or no such environment"),
                    "404": error("No such version to go back to"),
                    "409": error("Nothing to roll back to, or a release is in the way")
                }),
            ) }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_described() {
        let doc = document("m.x", &["staging".into(), "production".into()]);
        let paths = doc["paths"].as_object().unwrap();
        let mut ops = Vec::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                ops.push(format!("{} {path}", method.to_uppercase()));
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("401"), "{method} {path}");
                if path.contains("{id}") {
                    assert_eq!(op["parameters"][0]["name"], "id", "{method} {path}");
                    assert_eq!(op["parameters"][0]["in"], "path", "{method} {path}");
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
                "GET /api/v1/releases",
                "GET /api/v1/releases/{id}",
                "GET /api/v1/status",
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
    }
}
