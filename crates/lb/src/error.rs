//! The load balancer's error type.

use std::net::SocketAddr;

/// What went wrong in the load balancer.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// A service could not bind its listening address.
    #[error("service {service}: cannot listen on {addr}: {source}")]
    Bind {
        /// The service's name.
        service: String,
        /// The address it tried.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// An algorithm name or option is not known.
    #[error("unknown load-balancing algorithm {0:?} (expected round_robin, random, random:two_choices, least_connections, least_load, hash, hash:header=NAME, sticky, sticky:cookie=NAME)")]
    UnknownAlgorithm(String),
    /// A configuration file could not be read or parsed.
    #[error("load balancer config {path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A backend address is not a socket address.
    #[error("backend {0:?} is not an IP:PORT address")]
    BadBackend(String),
}
