//! Errors from reading manifests.

use crate::interp::InterpError;

/// Why a Compose file or Kubernetes manifest was rejected. Every variant names the file, and
/// where known the key path and line.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not valid YAML.
    #[error("{file}{}: invalid YAML: {message}", line_suffix(*line))]
    Syntax {
        /// The file.
        file: String,
        /// The line, when the parser knows it.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// Valid YAML with a wrong value.
    #[error("{file}{}: {path}: {message}", line_suffix(*line))]
    Invalid {
        /// The file.
        file: String,
        /// The key path, e.g. `services.web.ports.0`.
        path: String,
        /// The line.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A `${VAR}` could not be expanded.
    #[error("{file}{}: {path}: {source}", line_suffix(*line))]
    Interpolation {
        /// The file.
        file: String,
        /// The key path.
        path: String,
        /// The line.
        line: Option<usize>,
        /// The interpolation error.
        source: InterpError,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}
