//! Compose `ports:` items: `"[[HOST_IP:]PUBLISHED[-END]:]TARGET[-END][/PROTOCOL]"` and the
//! long form.

use std::net::IpAddr;

use super::raw::{RawPort, RawPortLong};
use crate::model::{PortSpec, Protocol};

fn range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a port or port range"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a port or port range"))?;
    if a == 0 || b < a {
        return Err(format!("{s:?} is not a valid port range"));
    }
    Ok((a, b))
}

fn protocol(p: &str) -> Result<Protocol, String> {
    match p {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        o => Err(format!("unknown protocol {o:?} (tcp or udp)")),
    }
}

/// Parses one short-form port.
pub fn parse_short(s: &str) -> Result<Vec<PortSpec>, String> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, p)) => (spec, protocol(p)?),
        None => (s, Protocol::Tcp),
    };
    // The host IP may be IPv6 in brackets.
    let (host_ip, rest) = if let Some(inner) = spec.strip_prefix('[') {
        let (ip, rest) = inner
            .split_once("]:")
            .ok_or_else(|| format!("{s:?}: unclosed [IPv6]"))?;
        (Some(ip), rest)
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (None, spec),
            3 => (Some(parts[0]), &spec[parts[0].len() + 1..]),
            _ => {
                return Err(format!(
                    "{s:?} is not [[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]"
                ))
            }
        }
    };
    let host_ip: Option<IpAddr> = match host_ip {
        None | Some("") => None,
        Some(ip) => Some(
            ip.parse()
                .map_err(|_| format!("{ip:?} is not an IP address"))?,
        ),
    };
    let (published, target) = match rest.split_once(':') {
        Some(("", t)) => (None, range(t)?),
        Some((p, t)) => (Some(range(p)?), range(t)?),
        None => (None, range(rest)?),
    };
    let count = target.1 - target.0 + 1;
    if let Some((pa, pb)) = published {
        let pcount = pb - pa + 1;
        if pcount != count && pcount != 1 {
            return Err(format!("{s:?}: published and target ranges differ in size"));
        }
    }
    Ok((0..count)
        .map(|i| PortSpec {
            published: published.map(|(pa, pb)| if pa == pb { pa } else { pa + i }),
            target: target.0 + i,
            protocol: proto,
            host_ip,
            name: None,
            app_protocol: None,
        })
        .collect())
}

fn long(l: &RawPortLong) -> Result<PortSpec, String> {
    if l.target == 0 {
        return Err("target port 0 is not valid".into());
    }
    let published = match &l.published {
        None => None,
        Some(p) => {
            let text = p.text();
            let (a, _) = range(&text)?;
            Some(a)
        }
    };
    Ok(PortSpec {
        published,
        target: l.target,
        protocol: protocol(l.protocol.as_deref().unwrap_or("tcp"))?,
        host_ip: match l.host_ip.as_deref() {
            None | Some("") => None,
            Some(ip) => Some(
                ip.parse()
                    .map_err(|_| format!("{ip:?} is not an IP address"))?,
            ),
        },
        name: l.name.clone(),
        app_protocol: l.app_protocol.clone(),
    })
}

/// Converts one `ports:` item.
pub fn convert(p: &RawPort) -> Result<Vec<PortSpec>, String> {
    match p {
        RawPort::Short(s) => parse_short(&s.text()),
        RawPort::Long(l) => Ok(vec![long(l)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> PortSpec {
        let mut v = parse_short(s).unwrap();
        assert_eq!(v.len(), 1, "{s}");
        v.remove(0)
    }

    #[test]
    fn short_forms() {
        let p = one("27017");
        assert_eq!(
            (p.published, p.target, p.protocol),
            (None, 27017, Protocol::Tcp)
        );
        let p = one("9890:8080/tcp");
        assert_eq!((p.published, p.target), (Some(9890), 8080));
        let p = one("127.0.0.1:80:8080/udp");
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(p.protocol, Protocol::Udp);
        let p = one("[::1]:80:8080");
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        let p = one("127.0.0.1::8080");
        assert_eq!((p.published, p.target), (None, 8080));
        let r = parse_short("8000-8002:3000-3002").unwrap();
        assert_eq!(
            r.iter()
                .map(|p| (p.published.unwrap(), p.target))
                .collect::<Vec<_>>(),
            vec![(8000, 3000), (8001, 3001), (8002, 3002)]
        );
    }

    #[test]
    fn bad_forms_are_explained() {
        for bad in [
            "",
            "abc",
            "80:0",
            "1:2:3:4",
            "80/sctp",
            "8000-8001:3000-3005",
            "x.y:80:80",
            "90-80",
        ] {
            assert!(parse_short(bad).is_err(), "{bad}");
        }
    }
}
