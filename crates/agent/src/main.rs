//! `corral-agent`, the guest agent: heartbeat, exec, shutdown and metrics over vsock.
//!
//! The vsock protocol arrives with the VM lifecycle work; until then the agent says so.

fn main() {
    eprintln!("corral-agent: not implemented yet");
    std::process::exit(2);
}
