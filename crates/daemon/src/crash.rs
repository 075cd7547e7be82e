//! Fault injection for the crash tests: `CORRAL_CRASH_AT=<op>:<step>` makes the daemon kill
//! itself with SIGKILL when it reaches that step, exactly as `kill -9` would.

/// Die here if the crash tests asked for it.
pub fn point(name: &str) {
    if let Ok(want) = std::env::var("CORRAL_CRASH_AT") {
        if want == name {
            tracing::warn!(point = name, "crash point reached: killing the daemon");
            let _ =
                nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
        }
    }
}
