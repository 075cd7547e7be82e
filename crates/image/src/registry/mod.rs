//! Registry client for the OCI distribution spec: pull (manifest lists resolved to
//! linux/amd64, resumable blob downloads verified against their digests), push (existing blobs
//! skipped, cross-repository mount, monolithic or chunked uploads), token and basic auth.

pub mod auth;
mod client;
mod pull;
mod push;

pub use auth::{load_credentials, login, save_credentials, Credentials};
pub use client::{Client, ClientOptions};
pub use pull::pull;
pub use push::push;

use crate::store::StoreError;

/// Failures talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request could not be sent or its body not read.
    #[error("{url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The error.
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body (the registry's error JSON).
        body: String,
    },
    /// Authentication failed or the challenge was not understood.
    #[error("authentication with {registry} failed: {message}")]
    Auth {
        /// The registry host.
        registry: String,
        /// Why.
        message: String,
    },
    /// The store refused what arrived (digest mismatch, bad media type …).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A reference or manifest that cannot be pulled or pushed.
    #[error("{0}")]
    Invalid(String),
    /// Local file I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Per-layer progress reporting (the CLI draws indicatif bars).
pub trait TransferProgress: Sync {
    /// A transfer of `total` bytes (0 if unknown) of blob `digest` starts.
    fn start(&self, digest: &str, total: u64) -> Box<dyn LayerProgress + '_>;
}

/// Progress of one blob.
pub trait LayerProgress: Send {
    /// `n` more bytes moved (or `n` already present when resuming).
    fn advance(&self, n: u64);
    /// Finished, with a short status ("Pull complete", "Already exists", "Mounted").
    fn finish(&self, status: &str);
}

/// A progress reporter that reports nothing.
#[derive(Debug, Default)]
pub struct NoProgress;

struct NoLayer;

impl LayerProgress for NoLayer {
    fn advance(&self, _n: u64) {}
    fn finish(&self, _status: &str) {}
}

impl TransferProgress for NoProgress {
    fn start(&self, _digest: &str, _total: u64) -> Box<dyn LayerProgress + '_> {
        Box::new(NoLayer)
    }
}
