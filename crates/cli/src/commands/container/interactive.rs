//! `run -t` and `exec`: the process on a terminal in the container, this terminal attached
//! to it through the daemon (raw mode with `-i`, window size changes forwarded; `run -it`
//! detaches with the detach keys, leaving the container running); `exec` without `-t` joins
//! the process's stdio to ours instead.

use std::os::fd::AsFd;
use std::process::ExitCode;

use anyhow::bail;
use corral_api::{Client, ClientError, ContainerSpec, ExecRequest, Instance, TtySize};

use super::{ExecArgs, RunArgs};
use crate::cli::GlobalArgs;
use crate::commands::api_client::Api;
use crate::commands::terminal::{self, DetachKeys, Ended, RawMode};

/// Refuse `-i` when stdin is not a terminal (Docker's wording).
pub(super) fn check_input(interactive: bool) -> anyhow::Result<()> {
    if interactive && !terminal::is_tty(std::io::stdin().as_fd()) {
        bail!("the input device is not a TTY: use -t without -i, or run from a terminal");
    }
    Ok(())
}

/// Whether `e` says the daemon is not there (it died, or was stopped): nothing listens, or
/// the connection broke mid-exchange (a daemon dying as we connect drops what it had queued).
pub(super) fn daemon_lost(e: &ClientError) -> bool {
    matches!(e, ClientError::Connect { .. } | ClientError::Http(_))
}

/// An error of the wait after a terminal closed: when the daemon went away, say that the
/// container (held by its shim) runs on and how to get back to it.
pub(super) fn lost_daemon(e: ClientError, container: &str) -> anyhow::Error {
    if daemon_lost(&e) {
        anyhow::anyhow!(
            "the daemon went away; container {container} runs on (its shim holds its terminal): \
             `corral attach {container}` joins it again"
        )
    } else {
        e.into()
    }
}

/// Removes a `--rm` container this command made but could not attach to.
pub(super) async fn discard_unattached(client: &Client, spec: &ContainerSpec, id: &str) {
    if spec.auto_remove {
        let _ = client.remove_container(id, true).await;
    }
}

/// Waits for a foreground container to end, removes it when it was run with `--rm`, and
/// returns its exit code.
pub(super) async fn wait_then_remove(
    client: &Client,
    spec: &ContainerSpec,
    inst: &Instance,
) -> anyhow::Result<i32> {
    let exit = client
        .wait_container(&inst.id)
        .await
        .map_err(|e| lost_daemon(e, &inst.name))?;
    if spec.auto_remove {
        let _ = client.remove_container(&inst.id, true).await;
    }
    Ok(exit.exit_code)
}

pub(super) fn code(c: i32) -> ExitCode {
    ExitCode::from(c.clamp(0, 255) as u8)
}

impl RunArgs {
    /// `run -t [-i]` in the foreground.
    pub(super) fn run_tty(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        check_input(self.interactive)?;
        let detach = DetachKeys::parse(&self.detach_keys)?;
        let mut spec = self.spec()?;
        spec.tty = true;
        spec.interactive = self.interactive;
        let api = Api::connect(global)?;
        let exit = api.block_on(async {
            let inst = api.client.create_container(&spec).await?;
            let stream = match api
                .client
                .attach_container(&inst.id, true, terminal::size())
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    discard_unattached(&api.client, &spec, &inst.id).await;
                    return Err(e.into());
                }
            };
            let raw = if self.interactive {
                Some(RawMode::enter()?)
            } else {
                None
            };
            let client = api.client.clone();
            let id = inst.id.clone();
            let detach = self.interactive.then_some(detach);
            let ended = terminal::run(stream, self.interactive, detach, |size: TtySize| {
                let (client, id) = (client.clone(), id.clone());
                async move {
                    let _ = client.resize_container(&id, size).await;
                }
            })
            .await;
            drop(raw);
            if ended? == Ended::Detached {
                // The container runs on (and `--rm` still removes it when it ends), as Docker's.
                return anyhow::Ok(0);
            }
            wait_then_remove(&api.client, &spec, &inst).await
        })?;
        Ok(code(exit))
    }
}

impl ExecArgs {
    /// `exec [-i] [-t]`: a session in the container, its terminal (`-t`) or its stdout and
    /// stderr (with `-i`, our stdin as its stdin) joined to ours; its exit status as ours.
    pub(super) fn run_session(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        if self.tty {
            check_input(self.interactive)?;
        }
        let api = Api::connect(global)?;
        let req = ExecRequest {
            command: self.command.clone(),
            env: self.env.clone(),
            user: self.user.clone(),
            tty: self.tty,
            interactive: self.interactive,
        };
        let exit = api.block_on(async {
            let session = api.client.create_exec(&self.container, &req).await?;
            let size = if self.tty { terminal::size() } else { None };
            let stream = api.client.start_exec(&session.id, size).await?;
            let streamed = if self.tty {
                let raw = if self.interactive {
                    Some(RawMode::enter()?)
                } else {
                    None
                };
                let client = api.client.clone();
                let sid = session.id.clone();
                let ended = terminal::run(stream, self.interactive, None, |size: TtySize| {
                    let (client, sid) = (client.clone(), sid.clone());
                    async move {
                        let _ = client.resize_exec(&sid, size).await;
                    }
                })
                .await;
                drop(raw);
                ended.map(drop)
            } else {
                super::attach::stdio_session(stream, self.interactive).await
            };
            session_status(
                &api.client,
                &session.id,
                &self.container,
                self.tty,
                streamed,
            )
            .await
        })?;
        Ok(code(exit))
    }
}

/// The exit status of session `sid` in `container` once its stream ended (`streamed`: how it
/// ended; `tty`: it runs on a terminal).
pub(super) async fn session_status(
    client: &Client,
    sid: &str,
    container: &str,
    tty: bool,
    streamed: anyhow::Result<()>,
) -> anyhow::Result<i32> {
    // The shim records the status before it ends the stream; allow a moment anyway.
    for _ in 0..100 {
        let s = match client.exec_session(sid).await {
            Ok(s) => s,
            // The session's shim holds its process's terminal or pipes, not the daemon.
            Err(e) if daemon_lost(&e) => bail!(
                "the daemon went away during exec session {sid}; its process runs on in \
                 container {container} (the session's shim holds its {}) and its exit status \
                 will be recorded: `corral attach {sid}` joins it again, `corral inspect {sid}` \
                 shows its status",
                if tty { "terminal" } else { "input and output" }
            ),
            Err(e) => return Err(e.into()),
        };
        if let Some(c) = s.exit_code {
            return Ok(c);
        }
        streamed.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        if !s.running {
            bail!("exec session {sid} ended without an exit status (its shim died)");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    bail!("exec session {sid} did not report an exit status")
}
