//! Exec sessions on a terminal (`exec -it`), Docker's shape: a session is created with its
//! request, started by an attach (the daemon runs `runtime exec --tty --console-socket`,
//! receives the pty master and splices it with the client), resized, and read back for its
//! exit status. The daemon holds the master: a session ends with the daemon, as the process
//! would lose its terminal anyway.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use corral_api::{ExecRequest, ExecSession, TtySize};
use corral_store::{Kind, State};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// One session.
#[derive(Debug)]
pub struct Session {
    id: String,
    container: String,
    request: ExecRequest,
    inner: Mutex<Inner>,
    exit: watch::Sender<Option<i32>>,
}

#[derive(Debug, Default)]
struct Inner {
    started: bool,
    /// The pty master while the process runs (for resizes).
    master: Option<Arc<OwnedFd>>,
}

/// The sessions of this daemon.
#[derive(Debug, Default)]
pub struct ExecSessions(Mutex<HashMap<String, Arc<Session>>>);

impl ExecSessions {
    fn get(&self, id: &str) -> ApiResult<Arc<Session>> {
        self.0
            .lock()
            .expect("sessions poisoned")
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("no such exec session: {id}")))
    }

    fn forget_later(state: &Arc<AppState>, id: String, after: Duration) {
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            state.execs.0.lock().expect("sessions poisoned").remove(&id);
        });
    }
}

impl Session {
    /// The API's view.
    pub fn wire(&self) -> ExecSession {
        let exit_code = *self.exit.borrow();
        ExecSession {
            id: self.id.clone(),
            container: self.container.clone(),
            running: self.inner.lock().expect("session poisoned").started && exit_code.is_none(),
            exit_code,
        }
    }
}

/// The running container `key`.
fn running(state: &AppState, key: &str) -> ApiResult<corral_store::InstanceRecord> {
    let rec = state.find(Kind::Container, key)?;
    if rec.state != State::Running {
        return Err(ApiError::Conflict(format!(
            "container {} is {}, not running",
            rec.name, rec.state
        )));
    }
    Ok(rec)
}

/// Create a session for `req` in the running container `key`.
pub fn create(state: &Arc<AppState>, key: &str, req: ExecRequest) -> ApiResult<ExecSession> {
    if req.command.is_empty() {
        return Err(ApiError::invalid("command", "a command is required"));
    }
    if !req.tty {
        return Err(ApiError::invalid(
            "tty",
            "sessions run on a terminal; without one use POST /v1/containers/{id}/exec",
        ));
    }
    for (i, e) in req.env.iter().enumerate() {
        if !e.contains('=') {
            return Err(ApiError::invalid(format!("env[{i}]"), "expected K=V"));
        }
    }
    let rec = running(state, key)?;
    let id = crate::ids::new_id()[..32].to_string();
    let session = Arc::new(Session {
        id: id.clone(),
        container: rec.id,
        request: req,
        inner: Mutex::default(),
        exit: watch::channel(None).0,
    });
    let wire = session.wire();
    state
        .execs
        .0
        .lock()
        .expect("sessions poisoned")
        .insert(id.clone(), session);
    // A session nobody starts is dropped after a while.
    ExecSessions::forget_later(state, id, Duration::from_secs(600));
    Ok(wire)
}

/// The session `id`.
pub fn inspect(state: &AppState, id: &str) -> ApiResult<ExecSession> {
    Ok(state.execs.get(id)?.wire())
}

/// Resize the terminal of session `id`.
pub fn resize(state: &AppState, id: &str, size: TtySize) -> ApiResult<()> {
    let s = state.execs.get(id)?;
    let master = s.inner.lock().expect("session poisoned").master.clone();
    let master =
        master.ok_or_else(|| ApiError::Conflict(format!("exec session {id} does not run")))?;
    crate::pty::set_size(master.as_raw_fd(), size)
        .map_err(|e| ApiError::internal("resizing the terminal", e))
}

/// A started session: its terminal, and what to do when the terminal closes.
pub struct Started {
    /// The pty master as a byte stream.
    pub terminal: PtyStream,
    /// Completes shortly after the process ended (its background children may keep the
    /// terminal open).
    pub ended: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// Waits for the exit status; gives the runtime's error text when it failed.
    pub before_close: Pin<Box<dyn std::future::Future<Output = Vec<u8>> + Send>>,
}

/// Start session `id`: run its process on a terminal sized `size`.
pub async fn start(state: &Arc<AppState>, id: &str, size: Option<TtySize>) -> ApiResult<Started> {
    let s = state.execs.get(id)?;
    {
        let mut inner = s.inner.lock().expect("session poisoned");
        if inner.started {
            return Err(ApiError::Conflict(format!(
                "exec session {id} was started already"
            )));
        }
        inner.started = true;
    }
    let rec = running(state, &s.container)?;
    let cfg = &state.config;
    let sock_path = cfg.run.join("execs").join(format!("{id}.sock"));
    let console = crate::pty::ConsoleSocket::bind(&sock_path)
        .map_err(|e| ApiError::internal(format!("binding {}", sock_path.display()), e))?;
    let mut cmd = super::runtime::base_command(cfg);
    cmd.args(["exec", "--tty", "--console-socket"])
        .arg(&sock_path);
    for e in &s.request.env {
        cmd.arg("--env").arg(e);
    }
    if let Some(u) = &s.request.user {
        cmd.arg("--user").arg(u);
    }
    cmd.arg(&rec.id)
        .args(&s.request.command)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| ApiError::internal(format!("running {}", cfg.oci_runtime.display()), e))?;
    let pid = child.id().unwrap_or(0) as i32;
    let received = tokio::task::spawn_blocking(move || {
        console.receive(Duration::from_secs(30), || crate::proc::alive(pid, None))
    })
    .await
    .map_err(|e| ApiError::internal("waiting for the terminal", e))?;
    let mut stderr = child.stderr.take();
    let master = match received {
        Ok(m) => m,
        Err(e) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            let mut text = String::new();
            if let Some(err) = &mut stderr {
                let _ = err.read_to_string(&mut text).await;
            }
            s.exit.send_replace(Some(126));
            ExecSessions::forget_later(state, id.to_string(), Duration::from_secs(60));
            return Err(ApiError::Conflict(format!(
                "cannot exec in container {}: {}",
                rec.name,
                if text.trim().is_empty() {
                    e.to_string()
                } else {
                    text.trim().to_string()
                }
            )));
        }
    };
    if let Some(size) = size {
        crate::pty::set_size(master.as_raw_fd(), size)
            .map_err(|e| ApiError::internal("sizing the terminal", e))?;
    }
    let master = Arc::new(master);
    s.inner.lock().expect("session poisoned").master = Some(master.clone());
    let terminal = PtyStream::new(&master)?;

    // The runtime's stderr (its own errors, not the process's output) and its exit.
    let err_text = tokio::spawn(async move {
        let mut text = Vec::new();
        if let Some(err) = &mut stderr {
            let _ = err.read_to_end(&mut text).await;
        }
        text
    });
    let session = s.clone();
    let state2 = state.clone();
    let sid = id.to_string();
    tokio::spawn(async move {
        let code = match child.wait().await {
            Ok(st) => st.code().unwrap_or(255),
            Err(_) => 255,
        };
        session.inner.lock().expect("session poisoned").master = None;
        session.exit.send_replace(Some(code));
        ExecSessions::forget_later(&state2, sid, Duration::from_secs(60));
    });
    let mut exit_rx = s.exit.subscribe();
    let ended = Box::pin(async move {
        let _ = exit_rx.wait_for(Option::is_some).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    let mut exit_rx = s.exit.subscribe();
    let before_close = Box::pin(async move {
        let code = exit_rx
            .wait_for(Option::is_some)
            .await
            .map(|c| (*c).unwrap_or(0))
            .unwrap_or(0);
        let text = err_text.await.unwrap_or_default();
        if code != 0 && !text.is_empty() {
            let mut t = b"\r\n".to_vec();
            t.extend(text.iter().flat_map(|&b| {
                if b == b'\n' {
                    vec![b'\r', b'\n']
                } else {
                    vec![b]
                }
            }));
            t
        } else {
            Vec::new()
        }
    });
    Ok(Started {
        terminal,
        ended,
        before_close,
    })
}

/// A pty master as an async byte stream; the terminal closing (EIO) reads as the end.
pub struct PtyStream {
    fd: AsyncFd<OwnedFd>,
    /// Keeps the master open while the session may still resize it.
    _master: Arc<OwnedFd>,
}

impl PtyStream {
    fn new(master: &Arc<OwnedFd>) -> ApiResult<PtyStream> {
        let dup = master
            .try_clone()
            .map_err(|e| ApiError::internal("duplicating the terminal", e))?;
        crate::pty::set_nonblocking(dup.as_raw_fd())
            .map_err(|e| ApiError::internal("terminal O_NONBLOCK", e))?;
        // SAFETY: the AsyncFd owns the duplicate, so the descriptor stays open and the same
        // until it is dropped.
        let fd = unsafe { AsyncFd::register(dup) }
            .map_err(|e| ApiError::internal("watching the terminal", e.into_parts().1))?;
        Ok(PtyStream {
            fd,
            _master: master.clone(),
        })
    }
}

impl AsyncRead for PtyStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| Ok(nix::unistd::read(fd.as_raw_fd(), unfilled)?)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // The last holder of the terminal's slave side closed it: the end.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| Ok(nix::unistd::write(fd.get_ref(), data)?)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
