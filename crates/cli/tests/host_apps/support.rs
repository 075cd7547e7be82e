//! What the app tests share besides their world: the services of the issue's Compose file,
//! reading replicas and endpoints out of an app's status, and reaching services from the host.
//! It also hands on the parts of the shared world (`tests/world`) the app tests use.

use std::time::Duration;

pub use super::world::network::free_port;
pub use super::world::{require_host, skip, tail, World};

/// The web service: busybox httpd answering with the replica's host name.
pub const WEB_CMD: &str = r#"["sh", "-c", "mkdir -p /www && echo \"hello from $$HOSTNAME\" > /www/index.html && exec httpd -f -p 8080 -h /www"]"#;
/// The TCP echo service.
pub const ECHO_CMD: &str = r#"["nc", "-ll", "-p", "27017", "-e", "cat"]"#;

/// The issue's Compose file with local images (busybox httpd and nc), on `port`.
pub fn compose_file(port: u16) -> String {
    format!(
        "version: '2'
services:
  mongo:
    image: busybox
    command: {ECHO_CMD}
    stdin_open: true
    tty: true
    ports:
      - \"27017\"
    labels:
      io.rancher.container.pull_image: always
  chat:
    image: busybox
    command: {WEB_CMD}
    stdin_open: true
    tty: true
    ports:
      - {port}:8080/tcp
    labels:
      io.rancher.container.pull_image: always
"
    )
}

pub fn replicas_of<'a>(st: &'a serde_json::Value, service: &str) -> Vec<&'a serde_json::Value> {
    st["replicas"]
        .as_array()
        .map(|a| a.iter().filter(|r| r["service"] == service).collect())
        .unwrap_or_default()
}

pub fn all_running(st: &serde_json::Value, service: &str, n: usize) -> bool {
    let r = replicas_of(st, service);
    r.len() == n
        && r.iter()
            .all(|r| r["status"] == "Running" && r["ready"] == true)
}

/// One HTTP/1.0 GET through the balancer; the body.
pub fn http_get(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    if !text.starts_with("HTTP/1.") || !text.contains(" 200 ") {
        return Err(std::io::Error::other(format!("bad answer: {text:?}")));
    }
    Ok(text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string())
}

/// A line through the TCP echo service.
pub fn echo(port: u16, line: &str) -> String {
    use std::io::{BufRead, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut back = String::new();
    std::io::BufReader::new(s).read_line(&mut back).unwrap();
    back.trim().to_string()
}

/// The host port a service's balancer listens on.
pub fn published_port(st: &serde_json::Value, service: &str) -> u16 {
    let ep = st["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["service"] == service)
        .unwrap_or_else(|| panic!("no endpoint for {service}: {st:#}"));
    let listen = ep["listen"].as_str().unwrap();
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

/// The name of a service's only replica.
pub fn pod_name(st: &serde_json::Value, service: &str) -> String {
    let r = replicas_of(st, service);
    assert_eq!(r.len(), 1, "one replica of {service}: {st:#}");
    r[0]["name"].as_str().unwrap().to_string()
}
