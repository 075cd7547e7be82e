//! The corral guest agent's shared parts: the wire protocol spoken between `corral-agent` in
//! the guest and `corral vmm` on the host ([`protocol`]), and the guest figures a heartbeat
//! carries ([`guest_metrics`]). The `corral-agent` binary (src/main.rs) runs in the guest.

pub mod guest_metrics;
pub mod protocol;
