//! Every failure the daemon's API answers with: its name on the wire (the `code` of
//! `{"error": {"code", "message"}}`), its HTTP status, and the exit code the CLI
//! gives a command the daemon refused this way.
//!
//! One name per failure, used by both sides: a 409 is [`ErrorCode::Conflict`]
//! (`"conflict"`) in the API's body and in the CLI's `--json` errors alike (the CLI
//! used to call it `refused`); its exit code stays 6 ("refused by the daemon").

use serde::{Deserialize, Serialize};

/// A failure of an API call. Serialized as its [`name`](ErrorCode::name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a bad id, query or body, an unknown environment, another model.
    BadRequest,
    /// 401: no or a wrong `Authorization: Bearer <token>`.
    Unauthorized,
    /// 404: no such release, version or endpoint.
    NotFound,
    /// 405: the endpoint does not take that method.
    MethodNotAllowed,
    /// 409: refused in the current state (another release is mid-rollout, the release
    /// is not waiting for that event, the version is already live, nothing to roll
    /// back to).
    Conflict,
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 500: the daemon failed (its journal, a task).
    Internal,
    /// 502: the registry cannot be reached, or refuses the daemon's credentials.
    RegistryUnavailable,
    /// 503: the daemon is stopping.
    ShuttingDown,
}

impl ErrorCode {
    /// Every code, in the order of their statuses.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Internal,
        ErrorCode::RegistryUnavailable,
        ErrorCode::ShuttingDown,
    ];

    /// The name on the wire: `bad_request`, `conflict`, ...
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Internal => "internal",
            ErrorCode::RegistryUnavailable => "registry_unavailable",
            ErrorCode::ShuttingDown => "shutting_down",
        }
    }

    /// The code named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The HTTP status the API answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Internal => 500,
            ErrorCode::RegistryUnavailable => 502,
            ErrorCode::ShuttingDown => 503,
        }
    }

    /// The code for an answer whose body names none (not JSON, from a proxy): by its
    /// status; 422 counts as a bad request, anything unknown as an internal failure.
    pub fn from_status(status: u16) -> ErrorCode {
        match status {
            400 | 422 => ErrorCode::BadRequest,
            401 => ErrorCode::Unauthorized,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::PayloadTooLarge,
            502 => ErrorCode::RegistryUnavailable,
            503 => ErrorCode::ShuttingDown,
            _ => ErrorCode::Internal,
        }
    }

    /// The exit code of a CLI command the daemon answered with this (see `hoist
    /// --help`): 2 bad input, 3 not found, 6 refused by the daemon, 1 anything else.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorCode::BadRequest => 2,
            ErrorCode::NotFound => 3,
            ErrorCode::Conflict => 6,
            ErrorCode::Unauthorized
            | ErrorCode::MethodNotAllowed
            | ErrorCode::PayloadTooLarge
            | ErrorCode::Internal
            | ErrorCode::RegistryUnavailable
            | ErrorCode::ShuttingDown => 1,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The body of every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_its_status_exit_code_and_name() {
        let table: Vec<(ErrorCode, &str, u16, u8)> = ErrorCode::ALL
            .iter()
            .map(|c| (*c, c.name(), c.status(), c.exit_code()))
            .collect();
        assert_eq!(
            table,
            [
                (ErrorCode::BadRequest, "bad_request", 400, 2),
                (ErrorCode::Unauthorized, "unauthorized", 401, 1),
                (ErrorCode::NotFound, "not_found", 404, 3),
                (ErrorCode::MethodNotAllowed, "method_not_allowed", 405, 1),
                (ErrorCode::Conflict, "conflict", 409, 6),
                (ErrorCode::PayloadTooLarge, "payload_too_large", 413, 1),
                (ErrorCode::Internal, "internal", 500, 1),
                (
                    ErrorCode::RegistryUnavailable,
                    "registry_unavailable",
                    502,
                    1
                ),
                (ErrorCode::ShuttingDown, "shutting_down", 503, 1),
            ]
        );
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_name(c.name()), Some(c));
            assert_eq!(ErrorCode::from_status(c.status()), c);
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
        assert_eq!(ErrorCode::from_name("refused"), None);
        assert_eq!(ErrorCode::from_status(422), ErrorCode::BadRequest);
        assert_eq!(ErrorCode::from_status(418), ErrorCode::Internal);
    }

    #[test]
    fn the_error_body_reads_as_the_daemon_writes_it() {
        let text = r#"{"error":{"code":"conflict","message":"release 3 is mid-rollout"}}"#;
        let b: ErrorBody = serde_json::from_str(text).unwrap();
        assert_eq!(b.error.code, ErrorCode::Conflict);
        assert_eq!(serde_json::to_string(&b).unwrap(), text);
    }
}
