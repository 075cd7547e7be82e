//! Instance lifecycle states and the one transition table every change goes through.

use std::fmt;
use std::str::FromStr;

/// Where an instance is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Being set up (folder, bundle, rootfs); not yet usable.
    Creating,
    /// Set up, never started or stopped cleanly and startable again.
    Created,
    /// Its supervisor and workload are alive.
    Running,
    /// A VM whose vCPUs are paused.
    Paused,
    /// Being stopped.
    Stopping,
    /// The workload ended; the exit status is known.
    Exited,
    /// Its supervisor died without recording an exit status.
    Dead,
    /// Being removed.
    Removing,
}

impl State {
    /// Every state, for enumeration (metrics).
    pub const ALL: [State; 8] = [
        State::Creating,
        State::Created,
        State::Running,
        State::Paused,
        State::Stopping,
        State::Exited,
        State::Dead,
        State::Removing,
    ];

    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopping => "stopping",
            State::Exited => "exited",
            State::Dead => "dead",
            State::Removing => "removing",
        }
    }

    /// Whether the lifecycle allows going from `self` to `to`.
    pub fn valid_transition(self, to: State) -> bool {
        use State::*;
        if to == Dead || to == Removing {
            return true;
        }
        matches!(
            (self, to),
            (Creating, Created)
                | (Created, Running)
                | (Exited, Running)
                | (Dead, Running)
                | (Running, Paused)
                | (Paused, Running)
                | (Running, Stopping)
                | (Paused, Stopping)
                | (Running, Exited)
                | (Paused, Exited)
                | (Stopping, Exited)
                | (Creating, Exited)
                | (Created, Exited)
                | (Stopping, Running)
        )
    }

    /// Whether a supervisor process is expected to be alive in this state.
    pub fn has_supervisor(self) -> bool {
        matches!(self, State::Running | State::Paused | State::Stopping)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown state {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for st in State::ALL {
            assert_eq!(st.as_str().parse::<State>().unwrap(), st);
        }
        assert!("bogus".parse::<State>().is_err());
    }

    #[test]
    fn table_forbids_skipping_creation() {
        assert!(!State::Creating.valid_transition(State::Running));
        assert!(!State::Exited.valid_transition(State::Paused));
        assert!(State::Created.valid_transition(State::Running));
        assert!(State::Running.valid_transition(State::Dead));
    }
}
