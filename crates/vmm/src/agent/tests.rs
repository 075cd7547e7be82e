use super::*;

fn send(s: &UnixStream, m: Message) {
    (&*s).write_all(m.encode().as_bytes()).unwrap();
}

fn wait_for(h: &AgentHandle, what: impl Fn(&AgentStatus) -> bool) -> AgentStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = h.status();
        if what(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never reached: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn heartbeats_are_kept_and_a_shutdown_reaches_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path(&dir.path().join("vsock.sock"));
    assert!(path.ends_with("vsock.sock_1024"));
    let listener = AgentListener::start(&path).unwrap();
    let h = listener.handle();
    assert!(!h.status().connected);
    assert_eq!(h.shutdown(), Err(AgentRequestError::NotConnected));
    assert_eq!(
        h.status().to_json()["last_heartbeat"],
        serde_json::Value::Null
    );

    let guest = UnixStream::connect(&path).unwrap();
    send(
        &guest,
        Message::Hello {
            version: 1,
            agent: "9.9".into(),
            caps: vec!["exec".into()],
        },
    );
    send(
        &guest,
        Message::Heartbeat(Heartbeat {
            seq: 1,
            mem_total_kib: Some(1000),
            mem_available_kib: Some(400),
            ..Default::default()
        }),
    );
    let s = wait_for(&h, |s| s.heartbeats == 1);
    assert!(s.connected);
    let j = s.to_json();
    assert_eq!(j["agent_version"], "9.9");
    assert_eq!(j["last_heartbeat"]["mem_used_bytes"], 600 * 1024);
    assert!(j["last_heartbeat"]["age_ms"].as_u64().unwrap() < 10_000);

    h.shutdown().unwrap();
    let mut r = BufReader::new(guest.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(Message::parse(&line), Ok(Message::Shutdown));

    // A command: its request reaches the guest; output and end come back.
    assert_eq!(
        h.exec_start(vec![], Duration::from_secs(1)),
        Err(AgentRequestError::EmptyCommand)
    );
    let id = h
        .exec_start(vec!["ls".into(), "/".into()], Duration::from_secs(5))
        .unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert_eq!(
        Message::parse(&line),
        Ok(Message::Exec {
            id,
            timeout_ms: 5000,
            argv: vec!["ls".into(), "/".into()]
        })
    );
    assert_eq!(h.exec_poll(id), Ok(None), "still running");
    for m in [
        Message::ExecOut {
            id,
            stream: ExecStream::Stdout,
            data: b"bin\n".to_vec(),
        },
        Message::ExecOut {
            id: id + 100,
            stream: ExecStream::Stdout,
            data: b"not ours".to_vec(),
        },
        Message::ExecOut {
            id,
            stream: ExecStream::Stderr,
            data: b"warn\n".to_vec(),
        },
        Message::ExecExit {
            id,
            end: ExecEnd::Code(2),
        },
    ] {
        send(&guest, m);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let res = loop {
        if let Some(r) = h.exec_poll(id).unwrap() {
            break r;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(res.stdout, b"bin\n");
    assert_eq!(res.stderr, b"warn\n");
    assert_eq!(res.end, ExecEnd::Code(2));
    assert_eq!(res.to_json()["exit_code"], 2);
    assert!(!res.truncated);
    assert_eq!(h.exec_poll(id), Err(AgentRequestError::NoSuchExec(id)));
    // Output beyond the limit is cut and said so.
    let big = h
        .exec_start(vec!["yes".into()], Duration::from_secs(5))
        .unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    let chunk = corral_agent::protocol::EXEC_CHUNK;
    let mut left = EXEC_OUTPUT_MAX + 1;
    while left > 0 {
        let n = left.min(chunk);
        send(
            &guest,
            Message::ExecOut {
                id: big,
                stream: ExecStream::Stdout,
                data: vec![b'y'; n],
            },
        );
        left -= n;
    }
    send(
        &guest,
        Message::ExecExit {
            id: big,
            end: ExecEnd::Signal(9),
        },
    );
    let res = loop {
        if let Some(r) = h.exec_poll(big).unwrap() {
            break r;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(res.stdout.len(), EXEC_OUTPUT_MAX);
    assert!(res.truncated);
    assert_eq!(res.to_json()["signal"], 9);
    // A command still running when the connection ends ends with an error.
    let pending = h
        .exec_start(vec!["sleep".into(), "9".into()], Duration::from_secs(60))
        .unwrap();

    drop(guest);
    drop(r);
    let s = wait_for(&h, |s| !s.connected);
    let ended = h
        .exec_poll(pending)
        .unwrap()
        .expect("ended with the connection");
    assert!(matches!(ended.end, ExecEnd::Error(m) if m.contains("connection ended")));
    assert_eq!(
        s.heartbeats, 1,
        "the last heartbeat outlives the connection"
    );
    assert!(s.last.is_some());
    drop(listener);
    assert!(!path.exists(), "socket removed");
}

#[test]
fn a_wrong_version_or_garbage_first_is_dropped_and_a_newer_connection_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.sock");
    let listener = AgentListener::start(&path).unwrap();
    let h = listener.handle();
    for first in [
        "hello version=2 agent=x\n",
        "heartbeat seq=1\n",
        "garbage\n",
    ] {
        let g = UnixStream::connect(&path).unwrap();
        (&g).write_all(first.as_bytes()).unwrap();
        let mut rest = String::new();
        // The host closes on us.
        assert_eq!(
            BufReader::new(&g).read_line(&mut rest).unwrap(),
            0,
            "{first}"
        );
    }
    assert_eq!(h.status().heartbeats, 0);
    let old = UnixStream::connect(&path).unwrap();
    send(
        &old,
        Message::Hello {
            version: 1,
            agent: "old".into(),
            caps: vec![],
        },
    );
    wait_for(&h, |s| s.agent_version.as_deref() == Some("old"));
    let new = UnixStream::connect(&path).unwrap();
    send(
        &new,
        Message::Hello {
            version: 1,
            agent: "new".into(),
            caps: vec![],
        },
    );
    wait_for(&h, |s| s.agent_version.as_deref() == Some("new"));
    assert_eq!(
        h.exec_start(vec!["ls".into()], Duration::from_secs(1)),
        Err(AgentRequestError::NoExec),
        "an agent without the exec capability"
    );
    let mut rest = String::new();
    assert_eq!(BufReader::new(&old).read_line(&mut rest).unwrap(), 0);
    assert!(h.status().connected);
    // An endless line is cut off.
    (&new).write_all(&[b'a'; MAX_LINE + 1]).unwrap();
    wait_for(&h, |s| !s.connected);
    assert!(matches!(
        AgentListener::start(&path),
        Err(AgentError::Listen { .. })
    ));
}
