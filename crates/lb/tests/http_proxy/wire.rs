//! The L7 proxy at the byte level, against scripted backends: pipelining, chunked bodies both
//! ways, HEAD, HTTP/1.0, `Expect: 100-continue`, a backend closing idle connections, and
//! requests the proxy must refuse.

use std::net::SocketAddr;
use std::time::Duration;

use corral_lb::{start_service, ServiceConfig, ServiceHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that answers each request (head plus Content-Length or chunked body) with
/// `respond(method, body)` and closes a connection after `per_conn` answers.
async fn scripted_backend(per_conn: usize, respond: fn(&str, &[u8]) -> String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for _ in 0..per_conn {
                    let Some((method, body)) = read_request(&mut s, &mut buf).await else {
                        return;
                    };
                    if s.write_all(respond(&method, &body).as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Reads one request from `s` (leftovers in `buf`): its method and decoded body.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        fill(s, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let method = head.split(' ').next().unwrap_or("").to_uppercase();
    buf.drain(..head_end);
    let mut body = Vec::new();
    if head.contains("transfer-encoding: chunked") {
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                fill(s, buf).await?;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).ok()?, 16).ok()?;
            while buf.len() < line_end + 2 + size + 2 {
                fill(s, buf).await?;
            }
            body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        while buf.len() < n {
            fill(s, buf).await?;
        }
        body = buf.drain(..n).collect();
    }
    Some((method, body))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match s.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

fn ok(method: &str, body: &[u8]) -> String {
    let text = format!("{method} {}", String::from_utf8_lossy(body));
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    )
}

async fn proxy(backend: SocketAddr) -> ServiceHandle {
    let mut cfg = ServiceConfig::new("wire", "127.0.0.1:0".parse().unwrap());
    cfg.backends = vec![backend];
    start_service(cfg).await.unwrap()
}

/// Reads from `s` until `buf` holds `want` complete responses (by Content-Length, or up to a
/// chunked body's last chunk) or the peer closes; returns the text.
async fn read_responses(s: &mut TcpStream, want: usize) -> String {
    let mut buf = Vec::new();
    let complete = |buf: &[u8]| {
        let text = String::from_utf8_lossy(buf);
        let mut count = 0;
        let mut rest: &str = &text;
        while let Some(head_end) = rest.find("\r\n\r\n") {
            let head = rest[..head_end].to_ascii_lowercase();
            let after = &rest[head_end + 4..];
            let len = if head.contains("transfer-encoding: chunked") {
                match after.find("0\r\n\r\n") {
                    Some(i) => i + 5,
                    None => return count,
                }
            } else if head.starts_with("http/1.1 100") {
                0
            } else {
                head.lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            if after.len() < len {
                return count;
            }
            count += 1;
            rest = &after[len..];
        }
        count
    };
    while complete(&buf) < want {
        if tokio::time::timeout(Duration::from_secs(5), fill(s, &mut buf))
            .await
            .expect("response within 5 s")
            .is_none()
        {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let svc = proxy(scripted_backend(100, ok).await).await;
    let mut c = TcpStream::connect(svc.local_addr()).await.unwrap();
    c.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody")
        .await
        .unwrap();
    let text = read_responses(&mut c, 2).await;
    let get = text.find("GET ").expect(&text);
    let post = text.find("POST body").expect(&text);
    assert!(get < post, "{text}");
    svc.shutdown().await;
}

#[tokio::test]
async fn chunked_bodies_cross_both_ways_and_the_connection_stays_usable() {
    fn chunked(method: &str, body: &[u8]) -> String {
        let text = format!("{method} {}", String::from_utf8_lossy(body));
        format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{text}\r\n0\r\n\r\n",
            text.len()
        )
    }
    let svc = proxy(scripted_backend(100, chunked).await).await;
    let mut c = TcpStream::connect(svc.local_addr()).await.unwrap();
    c.write_all(
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_responses(&mut c, 1).await;
    assert!(
        text.contains("transfer-encoding: chunked") || text.contains("Transfer-Encoding: chunked"),
        "{text}"
    );
    assert!(text.ends_with("a\r\nPOST abcde\r\n0\r\n\r\n"), "{text:?}");
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(read_responses(&mut c, 1).await.contains("GET "));
    svc.shutdown().await;
}

#[tokio::test]
async fn head_responses_have_no_body_and_http10_clients_are_closed() {
    fn head_aware(method: &str, _: &[u8]) -> String {
        match method {
            "HEAD" => "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".into(),
            _ => ok(method, b""),
        }
    }
    let svc = proxy(scripted_backend(100, head_aware).await).await;
    let mut c = TcpStream::connect(svc.local_addr()).await.unwrap();
    c.write_all(b"HEAD / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    while find(&buf, b"\r\n\r\n").is_none() {
        fill(&mut c, &mut buf).await.unwrap();
    }
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let text = read_responses(&mut c, 1).await;
    assert!(text.contains("GET "), "the HEAD answer had no body: {text}");

    let mut c = TcpStream::connect(svc.local_addr()).await.unwrap();
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut all = String::new();
    c.read_to_string(&mut all).await.unwrap();
    assert!(all.starts_with("HTTP/1.0 200"), "{all}");
    assert!(all.contains("Connection: close"), "{all}");
    svc.shutdown().await;
}

#[tokio::test]
async fn expect_continue_is_answered_by_the_proxy() {
    let svc = proxy(scripted_backend(100, ok).await).await;
    let mut c = TcpStream::connect(svc.local_addr()).await.unwrap();
    c.write_all(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    let interim = read_responses(&mut c, 1).await;
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n\r\n"),
        "{interim}"
    );
    c.write_all(b"hello").await.unwrap();
    let text = read_responses(&mut c, 1).await;
    assert!(text.ends_with("PUT hello"), "{text}");
    svc.shutdown().await;
}

#[tokio::test]
async fn a_backend_closing_idle_connections_costs_no_request() {
    // One answer per connection, then a silent close (no `Connection: close`): the pooled
    // connection is dead when the client's next request comes.
    let svc = proxy(scripted_backend(1, ok).await).await;
    let mut c = TcpStream::connect(svc.local_addr()).await.unwrap();
    for i in 0..5 {
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let text = read_responses(&mut c, 1).await;
        assert!(text.starts_with("HTTP/1.1 200"), "request {i}: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    svc.shutdown().await;
}

#[tokio::test]
async fn ambiguous_or_oversized_requests_are_refused() {
    let svc = proxy(scripted_backend(100, ok).await).await;
    for bad in [
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc".to_string(),
        "GARBAGE\r\n\r\n".to_string(),
        format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(70_000)),
    ] {
        let mut c = TcpStream::connect(svc.local_addr()).await.unwrap();
        let _ = c.write_all(bad.as_bytes()).await;
        let mut all = Vec::new();
        let _ = c.read_to_end(&mut all).await;
        let all = String::from_utf8_lossy(&all);
        assert!(
            all.starts_with("HTTP/1.1 400") || all.starts_with("HTTP/1.1 431"),
            "{all}"
        );
    }
    svc.shutdown().await;
}
