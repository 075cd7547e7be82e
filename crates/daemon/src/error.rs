//! Errors: `DaemonError` for start-up, `ApiError` for requests, and the one function that maps
//! an `ApiError` to an HTTP status and a `{code, message, details}` body.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use corral_api::ErrorBody;

/// Errors that stop the daemon from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A file or directory operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another daemon holds the root dir.
    #[error("another corral daemon is already running on {0}")]
    AlreadyRunning(PathBuf),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] corral_store::StoreError),
    /// The network layer could not start (netlink).
    #[error("networking: {0}")]
    Net(corral_net::NetError),
    /// A bad `--listen` address.
    #[error("--listen {0}: only loopback addresses are allowed (e.g. 127.0.0.1:7070)")]
    Listen(String),
}

/// A failed API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request field is invalid; `field` is its path (e.g. `volumes[0]`).
    #[error("{field}: {message}")]
    Invalid {
        /// Field path.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The object's state or name conflicts with the request.
    #[error("{0}")]
    Conflict(String),
    /// The feature is not built yet.
    #[error("{0} is not implemented yet")]
    NotImplemented(String),
    /// Bearer token missing or wrong.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// Something failed on the host.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// Shorthand for an invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Shorthand for an internal error with context.
    pub fn internal(context: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        ApiError::Internal(format!("{context}: {err}"))
    }

    /// The HTTP status and the error body.
    pub fn to_parts(&self) -> (StatusCode, ErrorBody) {
        let (status, code, details) = match self {
            ApiError::Invalid { field, .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                serde_json::json!({ "field": field }),
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", serde_json::Value::Null),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", serde_json::Value::Null),
            ApiError::NotImplemented(_) => (
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                serde_json::Value::Null,
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                serde_json::Value::Null,
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                serde_json::Value::Null,
            ),
        };
        (
            status,
            ErrorBody {
                code: code.into(),
                message: self.to_string(),
                details,
            },
        )
    }
}

impl From<corral_store::StoreError> for ApiError {
    fn from(e: corral_store::StoreError) -> Self {
        use corral_store::StoreError as S;
        match e {
            S::NameTaken { .. } => ApiError::Conflict(e.to_string()),
            S::NotFound(_) | S::AppNotFound(_) => ApiError::NotFound(e.to_string()),
            S::BadTransition { .. } => ApiError::Conflict(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.to_parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (status, axum::Json(body)).into_response()
    }
}

/// Handler result type.
pub type ApiResult<T> = Result<T, ApiError>;
