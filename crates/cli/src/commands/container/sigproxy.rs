//! Docker's `--sig-proxy` (on by default for a container attached without a terminal): the
//! signals this process gets while attached (Ctrl-C's SIGINT, SIGTERM, SIGHUP, SIGQUIT,
//! SIGUSR1, SIGUSR2) go to the container's process instead of ending this one, which keeps
//! following the container until it ends.

use corral_api::Client;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

/// The signals passed on, with the names the API takes.
const PROXIED: [(SignalKind, &str); 6] = [
    (SignalKind::interrupt(), "SIGINT"),
    (SignalKind::terminate(), "SIGTERM"),
    (SignalKind::hangup(), "SIGHUP"),
    (SignalKind::quit(), "SIGQUIT"),
    (SignalKind::user_defined1(), "SIGUSR1"),
    (SignalKind::user_defined2(), "SIGUSR2"),
];

/// Passes signals on while alive; dropping it stops (the signals stay caught, as the command
/// is about to end anyway).
pub(super) struct SigProxy {
    _tasks: JoinSet<()>,
}

/// From now on, pass the signals this process gets to container `id` (needs a tokio runtime).
pub(super) fn start(client: &Client, id: &str) -> anyhow::Result<SigProxy> {
    let mut tasks = JoinSet::new();
    for (kind, name) in PROXIED {
        let mut stream = signal(kind)?;
        let (client, id) = (client.clone(), id.to_string());
        tasks.spawn(async move {
            while stream.recv().await.is_some() {
                // A container that is not running (yet, or any more) has nothing to signal.
                if let Err(e) = client.kill_container(&id, name).await {
                    tracing::debug!(%id, signal = name, error = %e, "signal not passed on");
                }
            }
        });
    }
    Ok(SigProxy { _tasks: tasks })
}
