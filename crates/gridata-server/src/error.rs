//! API errors: a status, a stable code and a message, as JSON.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `bad_request`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict` or `internal`.
    pub code: String,
    /// What went wrong, naming the run, task, table or field.
    pub message: String,
}

/// An error with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code.into(),
                message: message.into(),
            },
        }
    }

    /// 400.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", m)
    }
    /// 401.
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }
    /// 403.
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }
    /// 409.
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", m)
    }
    /// 500.
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(message = %self.body.message, "request failed");
        }
        (self.status, Json(self.body)).into_response()
    }
}

impl From<gridata_state::Error> for ApiError {
    fn from(e: gridata_state::Error) -> Self {
        use gridata_state::Error as E;
        match e {
            E::RunNotFound(_) | E::NotFound { .. } => Self::not_found(e.to_string()),
            E::Conflict(_) => Self::conflict(e.to_string()),
            _ => Self::internal(e.to_string()),
        }
    }
}

impl From<gridata_pipeline::Error> for ApiError {
    fn from(e: gridata_pipeline::Error) -> Self {
        use gridata_pipeline::Error as E;
        match e {
            E::Invalid { .. } | E::Param { .. } => Self::bad_request(e.to_string()),
            E::NotFound { .. } => Self::not_found(e.to_string()),
            E::State(s) => s.into(),
            _ => Self::internal(e.to_string()),
        }
    }
}

impl From<gridata_scheduler::Error> for ApiError {
    fn from(e: gridata_scheduler::Error) -> Self {
        use gridata_scheduler::Error as E;
        match e {
            E::PipelineNotFound(_) => Self::not_found(e.to_string()),
            E::Invalid(_) => Self::bad_request(e.to_string()),
            E::State(s) => s.into(),
            E::Pipeline(p) => p.into(),
        }
    }
}

impl From<gridata_lake::Error> for ApiError {
    fn from(e: gridata_lake::Error) -> Self {
        use gridata_lake::Error as E;
        match e {
            E::NoSuchTable { .. } | E::NoSuchSnapshot { .. } | E::NoSuchNamespace { .. } => {
                Self::not_found(e.to_string())
            }
            E::ConcurrentChange { .. } | E::CommitConflict { .. } | E::TableExists { .. } => {
                Self::conflict(e.to_string())
            }
            _ => Self::internal(e.to_string()),
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
