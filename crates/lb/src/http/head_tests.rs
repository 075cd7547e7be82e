use super::*;

const RW: RequestRewrite<'static> = RequestRewrite {
    client_ip: b"10.0.0.9",
    hash_header: None,
    sticky_cookie: None,
};

fn request(text: &str) -> (Result<Option<RequestHead>, HeadError>, String) {
    let mut out = Vec::new();
    let r = parse_request(text.as_bytes(), &mut out, &RW);
    (r, String::from_utf8(out).unwrap())
}

fn response(text: &str, rw: ResponseRewrite<'_>) -> (ResponseHead, String) {
    let mut out = Vec::new();
    let r = parse_response(text.as_bytes(), &mut out, &rw)
        .unwrap()
        .unwrap();
    (r, String::from_utf8(out).unwrap())
}

const KEEP: ResponseRewrite<'static> = ResponseRewrite {
    is_head: false,
    client_keep_alive: true,
    client_http10: false,
    set_cookie: None,
};

#[test]
fn partial_heads_wait_for_more_bytes() {
    assert_eq!(request("GET / HTTP/1.1\r\nHost: a\r\n").0, Ok(None));
}

#[test]
fn request_is_rewritten_without_hop_by_hop_headers_and_with_xff() {
    let text =
        "GET /x?y HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
                Keep-Alive: timeout=5\r\nUpgrade: h2c\r\nX-Forwarded-For: 1.2.3.4\r\n\r\nNEXT";
    let (r, out) = request(text);
    let r = r.unwrap().unwrap();
    assert_eq!(
        r.len,
        text.len() - "NEXT".len(),
        "a pipelined request stays in the buffer"
    );
    assert_eq!(
        out,
        "GET /x?y HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4, 10.0.0.9\r\n\r\n"
    );
    assert!(r.keep_alive);
    assert_eq!(r.framing, Framing::Empty);
}

#[test]
fn request_length_is_the_head_only() {
    let text = "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    let (r, _) = request(text);
    let r = r.unwrap().unwrap();
    assert_eq!(r.len, text.len() - 3);
    assert_eq!(r.framing, Framing::Length(3));
}

#[test]
fn request_framing_and_smuggling_defences() {
    let (r, _) = request("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(r.unwrap().unwrap().framing, Framing::Chunked);
    let (r, _) =
        request("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n");
    assert!(matches!(r, Err(HeadError::Malformed(_))));
    let (r, _) = request("POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n");
    assert!(matches!(r, Err(HeadError::Malformed(_))));
    let (r, _) = request("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
    assert!(matches!(r, Err(HeadError::Malformed(_))));
    let (r, _) = request("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
    assert!(matches!(r, Err(HeadError::Malformed(_))));
    let (r, _) = request("NOT HTTP AT ALL\r\n\r\n");
    assert!(r.is_err());
}

#[test]
fn huge_heads_are_refused() {
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(MAX_HEAD + 1));
    assert_eq!(request(&big).0, Err(HeadError::TooLarge));
    let complete = format!("{big}\r\n\r\n");
    assert_eq!(request(&complete).0, Err(HeadError::TooLarge));
}

#[test]
fn http10_keep_alive_is_explicit_both_ways() {
    let (r, out) = request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    let r = r.unwrap().unwrap();
    assert!(r.http10 && r.keep_alive);
    assert!(out.ends_with("Connection: keep-alive\r\n\r\n"), "{out}");
    let (r, _) = request("GET / HTTP/1.0\r\n\r\n");
    assert!(!r.unwrap().unwrap().keep_alive);
    let (r, _) = request("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(!r.unwrap().unwrap().keep_alive);

    let rw = ResponseRewrite {
        client_http10: true,
        ..KEEP
    };
    let (_, out) = response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", rw);
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");
    assert!(out.ends_with("Connection: keep-alive\r\n\r\n"), "{out}");
}

#[test]
fn expect_continue_is_taken_out_and_flagged() {
    let (r, out) = request("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    assert!(r.unwrap().unwrap().expect_continue);
    assert!(!out.to_ascii_lowercase().contains("expect"), "{out}");
}

#[test]
fn sticky_cookie_and_hash_header_are_read() {
    let id = BackendId(0xabc);
    let rw = RequestRewrite {
        client_ip: b"1.1.1.1",
        hash_header: Some("x-user"),
        sticky_cookie: Some("lb"),
    };
    let text = format!(
        "GET / HTTP/1.1\r\nCookie: a=1; lb={}\r\nX-User: alice\r\n\r\n",
        id.to_hex()
    );
    let mut out = Vec::new();
    let r = parse_request(text.as_bytes(), &mut out, &rw)
        .unwrap()
        .unwrap();
    assert_eq!(r.sticky, Some(id));
    assert_eq!(r.header_hash, Some(hash64(b"alice".as_slice())));
}

#[test]
fn response_framing() {
    let (r, _) = response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", KEEP);
    assert_eq!((r.framing, r.reusable), (Framing::Length(5), true));
    let (r, _) = response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        KEEP,
    );
    assert_eq!(r.framing, Framing::Chunked);
    let (r, out) = response("HTTP/1.1 200 OK\r\n\r\n", KEEP);
    assert_eq!((r.framing, r.reusable), (Framing::UntilClose, false));
    assert!(out.ends_with("Connection: close\r\n\r\n"), "{out}");
    let (r, _) = response("HTTP/1.1 204 No Content\r\n\r\n", KEEP);
    assert_eq!((r.framing, r.reusable), (Framing::Empty, true));
    let head = ResponseRewrite {
        is_head: true,
        ..KEEP
    };
    let (r, _) = response("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", head);
    assert_eq!(r.framing, Framing::Empty);
    let (r, _) = response(
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
        KEEP,
    );
    assert!(!r.reusable);
    let (r, _) = response("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", KEEP);
    assert!(!r.reusable, "HTTP/1.0 without keep-alive closes");
}

#[test]
fn response_gets_the_sticky_cookie_and_loses_hop_by_hop_headers() {
    let rw = ResponseRewrite {
        set_cookie: Some("lb=1; Path=/"),
        client_keep_alive: false,
        ..KEEP
    };
    let (_, out) = response(
        "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=4\r\nContent-Length: 0\r\n\r\n",
        rw,
    );
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nSet-Cookie: lb=1; Path=/\r\nConnection: close\r\n\r\n"
    );
}
