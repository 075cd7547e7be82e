//! Published ports: `-p [HOSTIP:]HOSTPORT:PORT[/tcp|udp]`, parsed into a typed mapping.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The protocol's name as nftables spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One published port: traffic to `host_ip:host_port` goes to the instance's `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address to listen on; `None` means every local address (incl. 127.0.0.1).
    pub host_ip: Option<Ipv4Addr>,
    /// Port on the host.
    pub host_port: u16,
    /// Port inside the instance.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// Why a `-p` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    /// Not of the form `[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`.
    #[error("published port {spec:?}: expected [HOSTIP:]HOSTPORT:PORT[/tcp|udp]")]
    Shape {
        /// The value as given.
        spec: String,
    },
    /// A port is not a number in 1..=65535.
    #[error("published port {spec:?}: {field} {value:?} is not a port number (1-65535)")]
    Port {
        /// The value as given.
        spec: String,
        /// Which port: "host port" or "container port".
        field: &'static str,
        /// The offending text.
        value: String,
    },
    /// The host address is not an IPv4 address.
    #[error("published port {spec:?}: host address {value:?} is not an IPv4 address")]
    HostIp {
        /// The value as given.
        spec: String,
        /// The offending text.
        value: String,
    },
    /// Neither tcp nor udp.
    #[error("published port {spec:?}: protocol {value:?} is not tcp or udp")]
    Protocol {
        /// The value as given.
        spec: String,
        /// The offending text.
        value: String,
    },
}

fn parse_port(spec: &str, field: &'static str, value: &str) -> Result<u16, PortSpecError> {
    match value.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(PortSpecError::Port {
            spec: spec.to_string(),
            field,
            value: value.to_string(),
        }),
    }
}

impl FromStr for PortMapping {
    type Err = PortSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (addr_part, proto) = match spec.rsplit_once('/') {
            Some((a, "tcp")) => (a, Protocol::Tcp),
            Some((a, "udp")) => (a, Protocol::Udp),
            Some((_, other)) => {
                return Err(PortSpecError::Protocol {
                    spec: spec.to_string(),
                    value: other.to_string(),
                })
            }
            None => (spec, Protocol::Tcp),
        };
        let parts: Vec<&str> = addr_part.split(':').collect();
        let (host_ip, host_port, port) = match parts.as_slice() {
            [hp, p] => (None, *hp, *p),
            [ip, hp, p] => {
                let ip = ip.parse::<Ipv4Addr>().map_err(|_| PortSpecError::HostIp {
                    spec: spec.to_string(),
                    value: ip.to_string(),
                })?;
                (Some(ip), *hp, *p)
            }
            _ => {
                return Err(PortSpecError::Shape {
                    spec: spec.to_string(),
                })
            }
        };
        Ok(PortMapping {
            host_ip: host_ip.filter(|ip| !ip.is_unspecified()),
            host_port: parse_port(spec, "host port", host_port)?,
            port: parse_port(spec, "container port", port)?,
            protocol: proto,
        })
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port,
            self.port,
            self.protocol.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_shapes() {
        let m: PortMapping = "8080:80".parse().unwrap();
        assert_eq!((m.host_ip, m.host_port, m.port), (None, 8080, 80));
        assert_eq!(m.protocol, Protocol::Tcp);
        let m: PortMapping = "127.0.0.1:53:5353/udp".parse().unwrap();
        assert_eq!(m.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!((m.host_port, m.port, m.protocol), (53, 5353, Protocol::Udp));
        let m: PortMapping = "0.0.0.0:1:2/tcp".parse().unwrap();
        assert_eq!(m.host_ip, None);
        assert_eq!(m.to_string(), "1:2/tcp");
    }

    #[test]
    fn refuses_bad_values_naming_the_field() {
        let e = "80".parse::<PortMapping>().unwrap_err();
        assert!(matches!(e, PortSpecError::Shape { .. }));
        let e = "0:80".parse::<PortMapping>().unwrap_err();
        assert!(e.to_string().contains("host port \"0\""), "{e}");
        let e = "1:99999".parse::<PortMapping>().unwrap_err();
        assert!(e.to_string().contains("container port"), "{e}");
        let e = "1:2/sctp".parse::<PortMapping>().unwrap_err();
        assert!(matches!(e, PortSpecError::Protocol { .. }));
        let e = "host:1:2".parse::<PortMapping>().unwrap_err();
        assert!(matches!(e, PortSpecError::HostIp { .. }));
    }
}
