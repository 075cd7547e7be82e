//! The event bus: every state change is broadcast to `/v1/events` subscribers.

use corral_api::{Event, InstanceKind};
use corral_store::{InstanceRecord, Kind};
use tokio::sync::broadcast;

use crate::state::wire_state;

/// Broadcast of state changes.
#[derive(Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(256).0,
        }
    }
}

impl EventBus {
    /// Announce `action` on `rec` (in its new state).
    pub fn emit(&self, rec: &InstanceRecord, action: &str) {
        let ev = Event {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            kind: match rec.kind {
                Kind::Container => InstanceKind::Container,
                Kind::Vm => InstanceKind::Vm,
            },
            id: rec.id.clone(),
            name: rec.name.clone(),
            action: action.into(),
            state: wire_state(rec.state),
        };
        tracing::info!(id = %ev.id, name = %ev.name, action, "event");
        let _ = self.tx.send(ev);
    }

    /// A new subscriber.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
