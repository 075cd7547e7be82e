//! The `corral` binary: the CLI and, as subcommands of the same executable, the daemon, the
//! per-VM monitor, the per-container shim and the runc-compatible OCI face.

mod cli;
mod commands;
mod doctor;
mod exit;
mod paths;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    let args = cli::args_with_face();
    // The runc face parses its own flags (its --root is runc's state root) and skips the
    // main CLI's setup, as containerd runs it for every container operation.
    if args.get(1).is_some_and(|a| a == "oci") {
        die_quietly_on_closed_pipe();
        let mut oci_args = vec![std::ffi::OsString::from("corral oci")];
        oci_args.extend(args.into_iter().skip(2));
        return commands::oci::main(oci_args);
    }
    let cli = Cli::parse_from(args);
    if !cli.command.is_server() {
        die_quietly_on_closed_pipe();
    }
    init_tracing(cli.global.verbose);
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(err) => exit::report(&err),
    }
}

/// `corral image inspect | head` ends like coreutils do (SIGPIPE) instead of panicking in
/// `println!`; long-running servers keep Rust's ignored SIGPIPE and see EPIPE instead.
fn die_quietly_on_closed_pipe() {
    // SAFETY: resetting a signal disposition to its default before any thread is started.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
