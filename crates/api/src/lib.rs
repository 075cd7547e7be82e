//! The REST API of the corral daemon: request and response types, the OpenAPI schemas and a
//! typed client over the Unix socket (or loopback TCP with a bearer token).
//!
//! Paths are versioned under `/v1`. Every error body is an [`ErrorBody`].

pub mod apps;
pub mod client;
pub mod tty;
pub mod types;

pub use apps::*;
pub use client::{Client, ClientError, Endpoint};
pub use hyper::Method;
pub use tty::{ExecSession, TtySize, TtyStream};
pub use types::*;

/// The API version prefix of every path.
pub const API_PREFIX: &str = "/v1";
