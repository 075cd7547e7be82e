//! The corral daemon: REST server over a Unix socket, instance manager, event stream,
//! Prometheus metrics and the dashboard assets.
