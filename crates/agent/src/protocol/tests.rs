use super::*;

fn beat() -> Heartbeat {
    Heartbeat {
        seq: 7,
        uptime_ms: Some(12_340),
        mem_total_kib: Some(240_000),
        mem_available_kib: Some(200_000),
        load: Some([0.5, 0.25, 0.0]),
    }
}

#[test]
fn every_message_round_trips() {
    for m in [
        Message::Hello {
            version: 1,
            agent: "0.1.0".into(),
            caps: vec![CAP_EXEC.into()],
        },
        Message::Hello {
            version: 1,
            agent: "0.1.0".into(),
            caps: vec![],
        },
        Message::Heartbeat(beat()),
        Message::Heartbeat(Heartbeat {
            seq: 1,
            ..Default::default()
        }),
        Message::Ack {
            op: "shutdown".into(),
        },
        Message::Shutdown,
        Message::Exec {
            id: 3,
            timeout_ms: 5000,
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo a=b; exit 3".into(),
                String::new(),
            ],
        },
        Message::ExecOut {
            id: 3,
            stream: ExecStream::Stderr,
            data: vec![0, 10, 255, b' '],
        },
        Message::ExecOut {
            id: 3,
            stream: ExecStream::Stdout,
            data: vec![b'x'; EXEC_CHUNK],
        },
        Message::ExecExit {
            id: 3,
            end: ExecEnd::Code(3),
        },
        Message::ExecExit {
            id: 4,
            end: ExecEnd::Signal(9),
        },
        Message::ExecExit {
            id: 5,
            end: ExecEnd::Error("no such file: /x y".into()),
        },
    ] {
        let line = m.encode();
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line:?}"
        );
        assert_eq!(Message::parse(&line), Ok(m), "{line:?}");
    }
}

#[test]
fn the_documented_heartbeat_line_parses() {
    let m = Message::parse(
        "heartbeat seq=7 uptime_ms=12340 mem_total_kib=240000 mem_available_kib=200000 \
         load1=0.50 load5=0.25 load15=0.00\n",
    )
    .unwrap();
    assert_eq!(m, Message::Heartbeat(beat()));
    let Message::Heartbeat(h) = m else {
        unreachable!()
    };
    assert_eq!(h.mem_used_bytes(), Some(40_000 * 1024));
}

#[test]
fn unknown_fields_are_ignored_and_missing_ones_unknown() {
    let m = Message::parse("heartbeat seq=3 future=42 load1=1.0\n").unwrap();
    assert_eq!(
        m,
        Message::Heartbeat(Heartbeat {
            seq: 3,
            ..Default::default()
        })
    );
    let Message::Heartbeat(h) = m else {
        unreachable!()
    };
    assert_eq!(h.mem_used_bytes(), None);
}

#[test]
fn bad_lines_are_errors_naming_the_problem() {
    assert_eq!(Message::parse(""), Err(ProtocolError::Empty));
    assert_eq!(Message::parse("  \n"), Err(ProtocolError::Empty));
    assert_eq!(
        Message::parse("migrate to=elsewhere"),
        Err(ProtocolError::UnknownKind("migrate".into()))
    );
    assert_eq!(
        Message::parse("heartbeat uptime_ms=1"),
        Err(ProtocolError::Missing {
            kind: "heartbeat",
            key: "seq"
        })
    );
    assert_eq!(
        Message::parse("heartbeat seq=x"),
        Err(ProtocolError::BadValue {
            key: "seq".into(),
            value: "x".into()
        })
    );
    assert_eq!(
        Message::parse("heartbeat seq=1 load1=NaN load5=1 load15=1")
            .unwrap_err()
            .to_string(),
        "field load1: bad value \"NaN\""
    );
    assert_eq!(
        Message::parse("hello version"),
        Err(ProtocolError::BadField("version".into()))
    );
    assert_eq!(
        Message::parse("hello version=99999999999"),
        Err(ProtocolError::BadValue {
            key: "version".into(),
            value: "99999999999".into()
        })
    );
    let long = format!("heartbeat seq=1 {}", "x".repeat(MAX_LINE));
    assert_eq!(
        Message::parse(&long),
        Err(ProtocolError::TooLong(long.len()))
    );
}

#[test]
fn a_full_output_chunk_fits_a_line_and_bad_exec_fields_are_refused() {
    let line = Message::ExecOut {
        id: u64::MAX,
        stream: ExecStream::Stderr,
        data: vec![0xff; EXEC_CHUNK],
    }
    .encode();
    assert!(line.len() <= MAX_LINE, "{}", line.len());
    assert_eq!(unhex("0aff"), Some(vec![10, 255]));
    assert_eq!(unhex("0"), None);
    assert_eq!(unhex("zz"), None);
    assert!(matches!(
        Message::parse("exec id=1 timeout_ms=1 argv=x6g"),
        Err(ProtocolError::BadValue { key, .. }) if key == "argv"
    ));
    assert!(matches!(
        Message::parse("exec id=1 argv=x6c"),
        Err(ProtocolError::Missing {
            key: "timeout_ms",
            ..
        })
    ));
    assert!(matches!(
        Message::parse("exec_out id=1 stream=stdin data=00"),
        Err(ProtocolError::BadValue { key, .. }) if key == "stream"
    ));
    assert!(matches!(
        Message::parse("exec_exit id=1"),
        Err(ProtocolError::Missing { .. })
    ));
}

#[test]
fn values_with_spaces_or_equals_are_made_safe() {
    let line = Message::Hello {
        version: 1,
        agent: "1.0 beta=2".into(),
        caps: vec![],
    }
    .encode();
    assert_eq!(line, "hello version=1 agent=1.0_beta_2\n");
    assert!(Message::parse(&line).is_ok());
}
