//! `attach`, and `run -i` without a terminal: this process's stdio joined to a container's
//! through the daemon. With a terminal, the terminal's raw bytes (raw mode, resizes, the
//! detach keys); without one, the container's stdout and stderr arrive in frames and go to
//! ours, and our stdin goes to its stdin (`run -i` closes it when ours ends, as Docker's).

use std::io::Write;
use std::os::fd::AsFd;
use std::process::ExitCode;

use anyhow::Context;
use corral_api::tty::{frame_header, FRAME_HEADER, STDERR};
use corral_api::{ContainerSpec, ExecSession, InstanceState, TtySize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::interactive::{
    check_input, code, discard_unattached, lost_daemon, session_status, wait_then_remove,
};
use super::{AttachArgs, RunArgs};
use crate::cli::GlobalArgs;
use crate::commands::api_client::Api;
use crate::commands::terminal::{self, DetachKeys, Ended, RawMode};

/// Copy the container's framed output to stdout/stderr until the daemon closes the stream;
/// with `input`, stdin goes to the stream and its end is passed on as a write shutdown.
pub(super) async fn stdio_session<S>(stream: S, input: bool) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    // Input on its own task: a frame read must never be cut short by a key.
    let feeder = input.then(|| {
        tokio::spawn(async move {
            let mut keys = terminal::stdin_channel();
            while let Some(k) = keys.recv().await {
                if wr.write_all(&k).await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        })
    });
    let mut header = [0u8; FRAME_HEADER];
    let mut payload = Vec::new();
    let ended = loop {
        match rd.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
            Err(e) => break Err(e).context("reading the container's output"),
        }
        let (stream, len) = frame_header(&header);
        payload.resize(len, 0);
        if let Err(e) = rd.read_exact(&mut payload).await {
            break Err(e).context("reading the container's output");
        }
        let written = if stream == STDERR {
            let mut err = std::io::stderr();
            err.write_all(&payload).and_then(|_| err.flush())
        } else {
            let mut out = std::io::stdout();
            out.write_all(&payload).and_then(|_| out.flush())
        };
        if let Err(e) = written {
            break Err(e).context("writing the container's output");
        }
    };
    if let Some(f) = feeder {
        f.abort();
    }
    ended
}

impl RunArgs {
    /// `run -i` without `-t` in the foreground: our stdin to the container's, its output to
    /// ours, its exit status as ours.
    pub(super) fn run_stdio(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let mut spec = self.spec()?;
        spec.interactive = true;
        let api = Api::connect(global)?;
        let exit = api.block_on(async {
            let inst = api.client.create_container(&spec).await?;
            let _proxy = match self.sig_proxy {
                true => Some(super::sigproxy::start(&api.client, &inst.id)?),
                false => None,
            };
            // Started by the attach, so no output is missed.
            let stream = match api.client.attach_stdio(&inst.id, true, true).await {
                Ok(s) => s,
                Err(e) => {
                    discard_unattached(&api.client, &spec, &inst.id).await;
                    return Err(e.into());
                }
            };
            stdio_session(stream, true).await?;
            wait_then_remove(&api.client, &spec, &inst).await
        })?;
        Ok(code(exit))
    }
}

impl AttachArgs {
    /// Join exec session `s` again: its terminal (the detach keys leave it running), or its
    /// output and input; its exit status as ours.
    fn attach_session(
        &self,
        api: &Api,
        s: ExecSession,
        detach: DetachKeys,
    ) -> anyhow::Result<ExitCode> {
        if !s.running {
            match s.exit_code {
                Some(c) => anyhow::bail!("exec session {} ended with status {c}", s.id),
                None => anyhow::bail!("exec session {} does not run", s.id),
            }
        }
        let input = s.interactive && !self.no_stdin;
        if s.tty {
            check_input(input)?;
        }
        let exit = api.block_on(async {
            let size = if s.tty { terminal::size() } else { None };
            let stream = api.client.attach_exec(&s.id, size).await?;
            let streamed = if s.tty {
                let raw = if input { Some(RawMode::enter()?) } else { None };
                let client = api.client.clone();
                let sid = s.id.clone();
                let ended =
                    terminal::run(stream, input, input.then_some(detach), |size: TtySize| {
                        let (client, sid) = (client.clone(), sid.clone());
                        async move {
                            let _ = client.resize_exec(&sid, size).await;
                        }
                    })
                    .await;
                drop(raw);
                if matches!(ended, Ok(Ended::Detached)) {
                    eprintln!("read escape sequence");
                    return anyhow::Ok(1);
                }
                ended.map(drop)
            } else {
                stdio_session(stream, input).await
            };
            session_status(&api.client, &s.id, &s.container, s.tty, streamed).await
        })?;
        Ok(code(exit))
    }

    /// Run the verb.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        let detach = DetachKeys::parse(&self.detach_keys)?;
        let api = Api::connect(global)?;
        let inst = match api.block_on(api.client.container(&self.container)) {
            Ok(i) => i,
            // An exec session's id: its process runs on after its first client left.
            Err(e) if e.status() == Some(404) => {
                return match api.block_on(api.client.exec_session(&self.container)) {
                    Ok(s) => self.attach_session(&api, s, detach),
                    Err(_) => Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        };
        if inst.state != InstanceState::Running {
            anyhow::bail!(
                "container {} is {}: you cannot attach to a container that does not run, start it first",
                inst.name,
                inst.state.as_str()
            );
        }
        let spec: ContainerSpec = serde_json::from_value(inst.spec.clone()).unwrap_or_default();
        let input = spec.interactive && !self.no_stdin;
        let id = inst.id.clone();
        if !spec.tty {
            let exit = api.block_on(async {
                let _proxy = match self.sig_proxy {
                    true => Some(super::sigproxy::start(&api.client, &id)?),
                    false => None,
                };
                let stream = api.client.attach_stdio(&id, false, false).await?;
                stdio_session(stream, input).await?;
                let exit = api.client.wait_container(&id).await;
                anyhow::Ok(exit.map_err(|e| lost_daemon(e, &inst.name))?.exit_code)
            })?;
            return Ok(code(exit));
        }
        check_input(input)?;
        let exit = api.block_on(async {
            let stream = api
                .client
                .attach_container(&id, false, terminal::size())
                .await?;
            let raw = if input && terminal::is_tty(std::io::stdin().as_fd()) {
                Some(RawMode::enter()?)
            } else {
                None
            };
            let client = api.client.clone();
            let ended = terminal::run(stream, input, input.then_some(detach), |size: TtySize| {
                let (client, id) = (client.clone(), id.clone());
                async move {
                    let _ = client.resize_container(&id, size).await;
                }
            })
            .await;
            drop(raw);
            if ended? == Ended::Detached {
                // Docker's words and status for a detach.
                eprintln!("read escape sequence");
                return anyhow::Ok(1);
            }
            let exit = api.client.wait_container(&id).await;
            anyhow::Ok(exit.map_err(|e| lost_daemon(e, &inst.name))?.exit_code)
        })?;
        Ok(code(exit))
    }
}
