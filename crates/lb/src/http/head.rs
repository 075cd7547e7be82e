//! HTTP/1.x message heads as the proxy sees them: parsed with httparse straight from the
//! connection's buffer, checked for how their body is framed, and rewritten for the other side
//! (hop-by-hop headers dropped, X-Forwarded-For appended, keep-alive made explicit, the sticky
//! cookie added) into an output buffer in one pass, without building a header map.

use crate::backend::BackendId;
use crate::ring::hash64;
use crate::sticky;

/// A head larger than this is refused (431 for requests, 502 for responses).
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

/// How a message's body is delimited (RFC 9112 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// Why a head cannot be proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not HTTP/1.x, or a field the proxy cannot frame.
    #[error("malformed message head: {0}")]
    Malformed(&'static str),
    /// Longer than [`MAX_HEAD`] or more than 100 header fields.
    #[error("message head too large")]
    TooLarge,
}

/// What the proxy needs to know about a request, its rewritten head already in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the buffer the head took.
    pub len: usize,
    pub framing: Framing,
    /// The client wants the connection kept after this exchange.
    pub keep_alive: bool,
    /// HTTP/1.0 client.
    pub http10: bool,
    /// A HEAD request (its response has no body whatever it announces).
    pub is_head: bool,
    /// The client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
    /// The backend the sticky cookie names.
    pub sticky: Option<BackendId>,
    /// Hash of the `hash` algorithm's header, when present.
    pub header_hash: Option<u64>,
}

/// The request's settings that shape the rewritten head.
#[derive(Debug, Clone, Copy)]
pub struct RequestRewrite<'a> {
    /// The client's address, appended to X-Forwarded-For.
    pub client_ip: &'a [u8],
    /// The header the `hash` algorithm reads (lowercase).
    pub hash_header: Option<&'a str>,
    /// The sticky cookie's name.
    pub sticky_cookie: Option<&'a str>,
}

/// What the proxy needs to know about a response, its rewritten head already in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes of the buffer the head took.
    pub len: usize,
    pub status: u16,
    pub framing: Framing,
    /// The backend keeps the connection after this response.
    pub reusable: bool,
}

/// How the response is to be rewritten for the client.
#[derive(Debug, Clone, Copy)]
pub struct ResponseRewrite<'a> {
    /// The request was HEAD.
    pub is_head: bool,
    /// The client keeps its connection (decides the Connection header sent to it).
    pub client_keep_alive: bool,
    /// The client spoke HTTP/1.0.
    pub client_http10: bool,
    /// `Set-Cookie` value to add (sticky).
    pub set_cookie: Option<&'a str>,
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

fn parse_error(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooLarge,
        _ => HeadError::Malformed("not an HTTP/1.x message"),
    }
}

/// The fields every message has that decide framing and connection handling.
#[derive(Default)]
struct Fields<'h> {
    content_length: Option<u64>,
    chunked: bool,
    other_encoding: bool,
    close: bool,
    keep_alive: bool,
    /// Header names the Connection field lists (lowercase compare).
    connection_names: Vec<&'h [u8]>,
}

fn scan<'h>(headers: &[httparse::Header<'h>]) -> Result<Fields<'h>, HeadError> {
    let mut f = Fields::default();
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or(HeadError::Malformed("bad Content-Length"))?;
            if f.content_length.is_some_and(|old| old != v) {
                return Err(HeadError::Malformed("conflicting Content-Length"));
            }
            f.content_length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                f.chunked = true;
            } else {
                f.other_encoding = true;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    f.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    f.keep_alive = true;
                } else if !token.is_empty() {
                    f.connection_names.push(token);
                }
            }
        }
    }
    Ok(f)
}

fn is_hop_by_hop(name: &str, listed: &[&[u8]]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || listed
            .iter()
            .any(|l| name.as_bytes().eq_ignore_ascii_case(l))
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Parses a request head at the start of `buf` and writes its rewritten form to `out`;
/// `Ok(None)` when the head is not complete yet.
pub fn parse_request(
    buf: &[u8],
    out: &mut Vec<u8>,
    rw: &RequestRewrite<'_>,
) -> Result<Option<RequestHead>, HeadError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    let len = match req.parse(buf).map_err(parse_error)? {
        httparse::Status::Complete(n) if n <= MAX_HEAD => n,
        httparse::Status::Complete(_) => return Err(HeadError::TooLarge),
        httparse::Status::Partial if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
        httparse::Status::Partial => return Ok(None),
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    let f = scan(req.headers)?;
    if f.other_encoding {
        return Err(HeadError::Malformed("unsupported Transfer-Encoding"));
    }
    if f.chunked && f.content_length.is_some() {
        // Both framings at once is how requests are smuggled past proxies: refuse.
        return Err(HeadError::Malformed(
            "both Transfer-Encoding and Content-Length",
        ));
    }
    let http10 = minor == 0;
    let framing = match (f.chunked, f.content_length) {
        (true, _) => Framing::Chunked,
        (false, Some(0) | None) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
    };
    let keep_alive = if http10 { f.keep_alive } else { !f.close };
    let mut head = RequestHead {
        len,
        framing,
        keep_alive,
        http10,
        is_head: method == "HEAD",
        expect_continue: false,
        sticky: None,
        header_hash: None,
    };

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(if http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    let mut xff_done = false;
    for h in req.headers.iter() {
        if is_hop_by_hop(h.name, &f.connection_names) {
            continue;
        }
        if h.name.eq_ignore_ascii_case("expect") {
            // The proxy answers `100 Continue` itself; the backend gets the body at once.
            head.expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
            continue;
        }
        if let Some(cookie) = rw.sticky_cookie {
            if head.sticky.is_none() && h.name.eq_ignore_ascii_case("cookie") {
                head.sticky = sticky::backend_from_cookie(h.value, cookie);
            }
        }
        if let Some(name) = rw.hash_header {
            if head.header_hash.is_none() && h.name.eq_ignore_ascii_case(name) {
                head.header_hash = Some(hash64(h.value));
            }
        }
        if h.name.eq_ignore_ascii_case("x-forwarded-for") && !xff_done {
            xff_done = true;
            let mut value = h.value.to_vec();
            value.extend_from_slice(b", ");
            value.extend_from_slice(rw.client_ip);
            push_header(out, "X-Forwarded-For", &value);
            continue;
        }
        push_header(out, h.name, h.value);
    }
    if !xff_done {
        push_header(out, "X-Forwarded-For", rw.client_ip);
    }
    if http10 {
        // Keep the backend connection reusable even for HTTP/1.0 clients.
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(head))
}

/// Parses a response head at the start of `buf` and writes its rewritten form to `out`;
/// `Ok(None)` when the head is not complete yet.
pub fn parse_response(
    buf: &[u8],
    out: &mut Vec<u8>,
    rw: &ResponseRewrite<'_>,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut storage);
    let len = match resp.parse(buf).map_err(parse_error)? {
        httparse::Status::Complete(n) if n <= MAX_HEAD => n,
        httparse::Status::Complete(_) => return Err(HeadError::TooLarge),
        httparse::Status::Partial if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
        httparse::Status::Partial => return Ok(None),
    };
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Err(HeadError::Malformed("incomplete status line"));
    };
    let f = scan(resp.headers)?;
    let bodiless = rw.is_head || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = match (bodiless, f.chunked, f.other_encoding, f.content_length) {
        (true, ..) => Framing::Empty,
        (false, true, false, _) => Framing::Chunked,
        (false, false, true, _) | (false, true, true, _) => Framing::UntilClose,
        (false, false, false, Some(0)) => Framing::Empty,
        (false, false, false, Some(n)) => Framing::Length(n),
        (false, false, false, None) => Framing::UntilClose,
    };
    let backend_keeps = if minor == 0 { f.keep_alive } else { !f.close };
    let reusable = backend_keeps && framing != Framing::UntilClose;

    out.clear();
    out.extend_from_slice(if rw.client_http10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        if !is_hop_by_hop(h.name, &f.connection_names) {
            push_header(out, h.name, h.value);
        }
    }
    if let Some(cookie) = rw.set_cookie {
        push_header(out, "Set-Cookie", cookie.as_bytes());
    }
    if (100..200).contains(&status) {
        // Interim responses carry no connection semantics.
    } else if !rw.client_keep_alive || framing == Framing::UntilClose {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if rw.client_http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(ResponseHead {
        len,
        status,
        framing,
        reusable,
    }))
}

/// A complete response the proxy makes itself (errors, `100 Continue` is separate).
pub fn own_response(status: u16, reason: &str, body: &str, close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
