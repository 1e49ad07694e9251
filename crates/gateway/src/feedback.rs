//! Feedback labels: while an environment records predictions, the gateway remembers
//! the predicted classes of each answer by its `x-request-id`; `POST /feedback` with
//! that id and the true label(s) counts, per variant and version, the labelled rows
//! and those predicted right (the accuracy the release engine judges).
//!
//! ```text
//! POST /feedback
//! {"request_id": "0000018c-…", "label": 1}          one row
//! {"request_id": "…", "labels": [1, 0, 1]}           a batch, in request order
//! ```
//! The request id may come in the `x-request-id` header instead. Answers: 200 with
//! what was counted; 400 for a body that says no id or no label, or a label count
//! that does not match the answer's rows; 404 for an id not remembered (not served
//! here while recording, or older than the last [`CAPACITY`] answers); 409 for an id
//! labelled already (each answer counts once).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::gateway::{Backend, Gateway};
use crate::inspect;
use crate::metrics::Counters;
use crate::split::Variant;

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers remembered at most; the oldest are forgotten first.
pub const CAPACITY: usize = 100_000;

struct Entry {
    variant: Variant,
    version: String,
    counters: Arc<Counters>,
    labels: Vec<String>,
    labelled: bool,
}

/// Predictions by request id, oldest first out.
#[derive(Default)]
pub(crate) struct Store {
    map: HashMap<Box<[u8]>, Entry>,
    order: VecDeque<Box<[u8]>>,
}

impl Store {
    fn insert(&mut self, id: &[u8], entry: Entry) {
        if self.map.contains_key(id) {
            // A client reusing a request id: the newest answer is the one labelled.
            self.map.insert(id.into(), entry);
            return;
        }
        while self.order.len() >= CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.order.push_back(id.into());
        self.map.insert(id.into(), entry);
    }
}

impl Gateway {
    /// Remembers an answer's predicted classes for later feedback.
    pub(crate) fn remember(&self, request_id: &[u8], backend: &Backend, labels: Vec<String>) {
        let entry = Entry {
            variant: backend.variant,
            version: backend.version.to_str().unwrap_or("invalid").to_string(),
            counters: backend.counters.clone(),
            labels,
            labelled: false,
        };
        self.feedback_store().insert(request_id, entry);
    }

    fn feedback_store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.inner
            .feedback
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Handles one `POST /feedback`: the status and the JSON body of the answer.
    /// `authorization` is the request's `Authorization` header, checked against
    /// [`crate::GatewayConfig::feedback_token`] when one is configured.
    pub(crate) fn feedback(
        &self,
        header_id: Option<&[u8]>,
        authorization: Option<&[u8]>,
        body: &[u8],
    ) -> (u16, String) {
        let bad = |status: u16, message: String| (status, json!({ "error": message }).to_string());
        if let Some(token) = &self.inner.config.feedback_token {
            let given = authorization
                .and_then(|a| a.strip_prefix(b"Bearer "))
                .unwrap_or(b"");
            if given.is_empty() || !constant_time_eq(given, token.get().as_bytes()) {
                return bad(
                    401,
                    "feedback labels need the environment's feedback token: \
                     `Authorization: Bearer <token>`"
                        .into(),
                );
            }
        }
        let v: Value = match serde_json::from_slice(body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return bad(400, "the body must be a JSON object".into()),
            Err(e) => return bad(400, format!("the body is not valid JSON: {e}")),
        };
        let id: Vec<u8> = match (v.get("request_id"), header_id) {
            (Some(Value::String(s)), _) => s.as_bytes().to_vec(),
            (Some(_), _) => return bad(400, "request_id must be a string".into()),
            (None, Some(h)) => h.to_vec(),
            (None, None) => {
                return bad(
                    400,
                    "no request id: give `request_id` in the body or the x-request-id header \
                     (the gateway returns it with every answer)"
                        .into(),
                );
            }
        };
        let shown = String::from_utf8_lossy(&id).into_owned();
        let truth: Vec<String> = match (v.get("label"), v.get("labels")) {
            (Some(l), None) => match inspect::label(l) {
                Some(l) => vec![l],
                None => return bad(400, "label must be a number, string or boolean".into()),
            },
            (None, Some(Value::Array(ls))) => {
                match ls.iter().map(inspect::label).collect::<Option<Vec<_>>>() {
                    Some(ls) if !ls.is_empty() => ls,
                    _ => {
                        return bad(
                            400,
                            "labels must be a non-empty list of numbers, strings or booleans"
                                .into(),
                        );
                    }
                }
            }
            (Some(_), Some(_)) => return bad(400, "give `label` or `labels`, not both".into()),
            _ => {
                return bad(
                    400,
                    "no label: give `label` (one row) or `labels` (one per row)".into(),
                );
            }
        };
        let mut store = self.feedback_store();
        let Some(entry) = store.map.get_mut(id.as_slice()) else {
            return bad(
                404,
                format!(
                    "no prediction is remembered for request id {shown}: it was not answered \
                     by environment {} while feedback was on, or it is older than the last \
                     {CAPACITY} answers",
                    self.inner.config.name
                ),
            );
        };
        if entry.labelled {
            return bad(409, format!("request id {shown} was labelled already"));
        }
        if truth.len() != entry.labels.len() {
            return bad(
                400,
                format!(
                    "{} label(s) given, but the answer to request id {shown} had {} row(s)",
                    truth.len(),
                    entry.labels.len()
                ),
            );
        }
        let correct = truth
            .iter()
            .zip(&entry.labels)
            .filter(|(t, p)| t == p)
            .count();
        entry.labelled = true;
        entry
            .counters
            .record_labels(truth.len() as u64, correct as u64);
        let answer = json!({
            "request_id": shown,
            "variant": entry.variant.as_str(),
            "version": entry.version,
            "rows": truth.len(),
            "correct": correct,
            "predicted": entry.labels,
        });
        (200, answer.to_string())
    }
}
