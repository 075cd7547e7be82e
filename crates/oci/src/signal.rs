//! Signal names as runc accepts them: `KILL`, `SIGKILL`, `kill` or `9`.

use std::str::FromStr;

use nix::sys::signal::Signal;

/// A signal name or number that is not known.
#[derive(Debug, thiserror::Error)]
#[error("unknown signal {0:?}")]
pub struct SignalError(pub String);

/// Parse a signal as runc does.
pub fn parse(s: &str) -> Result<Signal, SignalError> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| SignalError(s.to_owned()));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    Signal::from_str(&name).map_err(|_| SignalError(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse("hup").unwrap(), Signal::SIGHUP);
        assert_eq!(parse("9").unwrap(), Signal::SIGKILL);
        assert!(parse("NOPE").is_err());
        assert!(parse("999").is_err());
    }
}
