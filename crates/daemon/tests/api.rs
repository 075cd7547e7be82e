//! The daemon in-process on a temp root: OpenAPI, JSON errors, validation field paths, token
//! auth on TCP, Prometheus metrics, the SSE event stream, VM definitions and name uniqueness.
//! None of this needs root: no container is started.

use std::time::Duration;

use corral_api::{Client, ContainerSpec, Endpoint, Method, VmSpec};
use corral_daemon::DaemonConfig;

struct TestDaemon {
    _dir: tempfile::TempDir,
    client: Client,
    root: std::path::PathBuf,
    port: u16,
}

async fn start() -> TestDaemon {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let run = dir.path().join("run");
    // A free loopback port: bind, read, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = DaemonConfig::new(root.clone(), run.clone(), "/bin/false".into());
    cfg.listen = Some(format!("127.0.0.1:{port}"));
    let (r, w) = nix::unistd::pipe().unwrap();
    cfg.ready_fd = Some(std::os::fd::IntoRawFd::into_raw_fd(w));
    tokio::spawn(async move {
        if let Err(e) = corral_daemon::run(cfg).await {
            panic!("daemon failed: {e}");
        }
    });
    // Readiness: the daemon writes "ready\n" on the pipe.
    let line = tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut s).unwrap();
        s
    })
    .await
    .unwrap();
    assert_eq!(line.trim(), "ready");
    TestDaemon {
        client: Client::new(Endpoint::Unix(run.join("corral.sock"))),
        _dir: dir,
        root,
        port,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_json_with_codes_and_field_paths() {
    let d = start().await;
    let err = d.client.container("nope").await.unwrap_err();
    match err {
        corral_api::ClientError::Api { status, body } => {
            assert_eq!(status, 404);
            assert_eq!(body.code, "not_found");
            assert!(
                body.message.contains("no such container: nope"),
                "{}",
                body.message
            );
        }
        e => panic!("unexpected {e}"),
    }
    let bad = ContainerSpec {
        image: "busybox".into(),
        env: vec!["OK=1".into(), "broken".into()],
        ..Default::default()
    };
    match d.client.run_container(&bad).await.unwrap_err() {
        corral_api::ClientError::Api { status, body } => {
            assert_eq!(status, 400);
            assert_eq!(body.code, "invalid_argument");
            assert_eq!(body.details["field"], "env[1]");
        }
        e => panic!("unexpected {e}"),
    }
    let unknown = ContainerSpec {
        image: "no-such-image".into(),
        ..Default::default()
    };
    let e = d.client.run_container(&unknown).await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert!(e.to_string().contains("no such image"), "{e}");
    // Nothing half-made was left behind.
    assert!(d.client.instances().await.unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(d.root.join("containers"))
            .unwrap()
            .count(),
        0
    );
    // Malformed JSON is a JSON error too.
    let e = d
        .client
        .text(Method::POST, "/v1/containers", Some(b"{not json".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    // A path the daemon does not route: an older daemon than this client, said so.
    let e = d
        .client
        .text(Method::GET, "/v1/nowhere", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, corral_api::ClientError::OldDaemon { pid, .. } if *pid == std::process::id()),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("GET /v1/nowhere") && msg.contains("restart the daemon"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminals_refuse_clearly() {
    let d = start().await;
    // An attach must be an upgrade; then the container must exist.
    let e = d
        .client
        .text(Method::POST, "/v1/containers/nope/attach", None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    assert!(e.to_string().contains("Upgrade"), "{e}");
    let e = d
        .client
        .attach_container("nope", true, None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    let req = corral_api::ExecRequest {
        command: vec!["sh".into()],
        tty: true,
        ..Default::default()
    };
    let e = d.client.create_exec("nope", &req).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    let e = d.client.exec_session("nope").await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    let e = d.client.start_exec("nope", None).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    // A session id is ours (hex): a path is not one.
    let e = d.client.exec_session("..%2F..%2Fetc").await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    // The one-shot exec has no terminal and no input: those need a session.
    let e = d
        .client
        .call::<_, serde_json::Value>(Method::POST, "/v1/containers/nope/exec", Some(&req))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    assert!(e.to_string().contains("session"), "{e}");
    // A VM's console exists while it runs.
    let spec = VmSpec {
        name: "quiet".into(),
        kernel: Some("/bin/true".into()),
        ..Default::default()
    };
    d.client
        .call::<_, serde_json::Value>(Method::POST, "/v1/vms", Some(&spec))
        .await
        .unwrap();
    let e = d.client.upgrade("/v1/vms/quiet/console").await.unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    assert!(e.to_string().contains("start it"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_metrics_and_token_auth() {
    let d = start().await;
    let doc: serde_json::Value = d
        .client
        .call::<(), _>(Method::GET, "/v1/openapi.json", None)
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/containers"]["post"].is_object());
    let metrics = d.client.text(Method::GET, "/metrics", None).await.unwrap();
    assert!(
        metrics.contains("# TYPE corral_instances gauge"),
        "{metrics}"
    );
    assert!(metrics.contains("corral_instances{kind=\"container\",state=\"running\"} 0"));

    let token = std::fs::read_to_string(d.root.join("api-token")).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.root.join("api-token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let addr = format!("127.0.0.1:{}", d.port);
    let wrong = Client::new(Endpoint::Tcp {
        addr: addr.clone(),
        token: "wrong".into(),
    });
    let e = wrong.info().await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    let right = Client::new(Endpoint::Tcp {
        addr,
        token: token.trim().into(),
    });
    assert_eq!(right.info().await.unwrap().pid, std::process::id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_definitions_events_and_unique_names() {
    let d = start().await;
    let mut events = d.client.lines("/v1/events").await.unwrap();
    let kernel = d.root.join("vmlinux");
    std::fs::write(&kernel, b"not really a kernel").unwrap();
    let spec = VmSpec {
        name: "vm1".into(),
        kernel: Some(kernel.display().to_string()),
        instance_type: Some("high-cpu".into()),
        ..Default::default()
    };
    let inst: corral_api::Instance = d
        .client
        .call(Method::POST, "/v1/vms", Some(&spec))
        .await
        .unwrap();
    assert_eq!(inst.spec["cpus"], 2);
    let toml = std::fs::read_to_string(d.root.join("vms/vm1/vm.toml")).unwrap();
    assert!(toml.contains("cpus = 2"), "{toml}");
    let e = d
        .client
        .call::<_, corral_api::Instance>(Method::POST, "/v1/vms", Some(&spec))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409));
    // The event stream saw the creation.
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(l) = events.next_line().await.unwrap() {
            if let Some(data) = l.strip_prefix("data:") {
                let ev: corral_api::Event = serde_json::from_str(data.trim()).unwrap();
                return ev;
            }
        }
        panic!("event stream ended");
    })
    .await
    .unwrap();
    assert_eq!(seen.name, "vm1");
    assert_eq!(seen.action, "create");
    // Edit applies to the file; rm removes folder and row.
    let edit = corral_api::VmEdit {
        memory_mib: Some(64),
        ..Default::default()
    };
    let _: corral_api::Instance = d
        .client
        .call(Method::PATCH, "/v1/vms/vm1", Some(&edit))
        .await
        .unwrap();
    let toml = std::fs::read_to_string(d.root.join("vms/vm1/vm.toml")).unwrap();
    assert!(toml.contains("memory = \"64M\""), "{toml}");
    d.client
        .text(Method::DELETE, "/v1/vms/vm1", None)
        .await
        .unwrap();
    assert!(!d.root.join("vms/vm1").exists());
    let missing = VmSpec {
        name: "vm2".into(),
        kernel: Some("/nonexistent/vmlinux".into()),
        ..Default::default()
    };
    let e = d
        .client
        .call::<_, corral_api::Instance>(Method::POST, "/v1/vms", Some(&missing))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("kernel"), "{e}");
    assert!(!d.root.join("vms/vm2").exists());
}
