//! Bringing the daemon up: directories, the root dir lock, the token, the store, recovery,
//! the listeners, the readiness signal; and down on SIGTERM/SIGINT.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use crate::config::DaemonConfig;
use crate::error::DaemonError;
use crate::state::AppState;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DaemonError + 'a {
    move |source| DaemonError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Read the bearer token, creating it (mode 0600) at first start.
fn token(path: &Path) -> Result<String, DaemonError> {
    if let Ok(t) = fs::read_to_string(path) {
        if t.trim().len() >= 32 {
            return Ok(t.trim().to_string());
        }
    }
    let t = crate::ids::new_token();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io("create", path))?;
    f.write_all(t.as_bytes()).map_err(io("write", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io("chmod", path))?;
    Ok(t)
}

/// Hold an exclusive lock on the root dir for the daemon's lifetime.
fn lock_root(root: &Path) -> Result<fs::File, DaemonError> {
    let path = root.join("daemon.lock");
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io("open", &path))?;
    // SAFETY: flock on an fd we own; no pointers. The lock lives as long as the file.
    let rc = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    if rc != 0 {
        return Err(DaemonError::AlreadyRunning(root.to_path_buf()));
    }
    Ok(f)
}

/// Run the daemon until SIGTERM or SIGINT.
pub async fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    for d in [
        config.root.clone(),
        config.root.join("containers"),
        config.root.join("vms"),
        config.run.clone(),
        config.oci_root(),
    ] {
        fs::create_dir_all(&d).map_err(io("create", &d))?;
    }
    fs::set_permissions(&config.root, fs::Permissions::from_mode(0o700))
        .map_err(io("chmod", &config.root))?;
    let _lock = lock_root(&config.root)?;
    let token = token(&config.token_file())?;
    let db = config.root.join("state.db");
    let store = corral_store::Store::open(&db)?;
    let listen = config.listen.clone();
    let ready_fd = config.ready_fd;
    let socket = config.socket();
    let net = crate::network::Networking::new(&config, &db).map_err(DaemonError::Net)?;
    let state = Arc::new(AppState::new(config, store, token, net));

    crate::recover::recover(&state).await;
    let known = state
        .store()
        .list_instances(None)?
        .into_iter()
        .map(|r| r.id)
        .collect();
    state.net.startup(&known).await;
    crate::apps::resume(&state).await;

    let _ = fs::remove_file(&socket);
    let unix = tokio::net::UnixListener::bind(&socket).map_err(io("bind", &socket))?;
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o600))
        .map_err(io("chmod", &socket))?;
    let app = crate::http::router(state.clone());
    let unix_server = axum::serve(unix, app.clone());

    let tcp_server = match listen {
        Some(addr) => {
            let sa: std::net::SocketAddr = addr
                .parse()
                .map_err(|_| DaemonError::Listen(addr.clone()))?;
            if !sa.ip().is_loopback() {
                return Err(DaemonError::Listen(addr));
            }
            let tcp = tokio::net::TcpListener::bind(sa)
                .await
                .map_err(io("bind", Path::new(&addr)))?;
            let app = app.layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::http::require_token,
            ));
            Some(tokio::spawn(async move { axum::serve(tcp, app).await }))
        }
        None => None,
    };

    let pid_path = state.config.run.join("corral.pid");
    let _ = fs::write(&pid_path, std::process::id().to_string());
    if let Some(fd) = ready_fd {
        // SAFETY: the fd was handed to us by our parent for this one message; we own it.
        let mut f = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let _ = f.write_all(b"ready\n");
    }
    tracing::info!(socket = %socket.display(), "corral daemon ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io("signal", Path::new("SIGTERM")))?;
    tokio::select! {
        r = unix_server => {
            if let Err(e) = r {
                tracing::error!(error = %e, "server stopped");
            }
        }
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
    if let Some(t) = tcp_server {
        t.abort();
    }
    let _ = fs::remove_file(&socket);
    let _ = fs::remove_file(&pid_path);
    Ok(())
}
