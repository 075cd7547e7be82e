//! Apps end to end: Compose files and Kubernetes manifests through the CLI, the daemon it
//! starts, the reconciler and containers on corral's OCI runtime. Every test needs root
//! (mounts, namespaces, cgroups): names start with `host_`. Images are the built-in busybox,
//! with busybox `httpd` as the web service and busybox `nc` as a TCP echo service.

use std::time::{Duration, Instant};

#[path = "host_apps/lifecycle.rs"]
mod lifecycle;
#[path = "host_apps/support.rs"]
mod support;
mod world;

use support::*;

#[test]
fn host_compose_app_comes_up_scales_and_goes_down_leaving_nothing() {
    if skip() {
        return;
    }
    require_host();
    let w = World::app("compose", 0);
    let app = w.app_name("c");
    let port = free_port();
    w.write("docker-compose.yml", &compose_file(port));
    let out = w.ok(&["app", "up", "-d", "-p", &app]);
    assert!(out.contains(&format!("{app}-chat-1")), "{out}");
    assert!(out.contains(&format!("{app}-mongo-1")), "{out}");
    let st = w.status(&app);
    assert!(
        all_running(&st, "chat", 1) && all_running(&st, "mongo", 1),
        "{st:#}"
    );

    // `tty: true` and `stdin_open: true`: the replica's process runs on a terminal.
    let fd = w.ok(&["exec", &format!("{app}-chat-1"), "readlink", "/proc/1/fd/0"]);
    assert!(
        fd.contains("/dev/pts/") || fd.contains("/dev/console"),
        "{fd}"
    );

    // The web service answers on the published port, the echo service on its balancer's.
    assert!(http_get(port).unwrap().starts_with("hello from "));
    let echo_port = published_port(&st, "mongo");
    assert_eq!(echo(echo_port, "ping"), "ping");

    // Scaling to 3 spreads requests over the 3 replicas (round robin).
    let out = w.ok(&["app", "scale", "-p", &app, "chat=3"]);
    assert!(out.contains(&format!("{app}-chat-3")), "{out}");
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..30 {
        *seen.entry(http_get(port).unwrap()).or_default() += 1;
    }
    assert_eq!(seen.len(), 3, "requests went to {seen:?}");
    assert!(seen.values().all(|&n| n == 10), "round robin: {seen:?}");

    // A rolling update (a new command) under continuous requests fails none of them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed, mut bodies) = (0u32, Vec::new(), Vec::new());
            let start = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(60)
            {
                match http_get(port) {
                    Ok(b) => {
                        ok += 1;
                        bodies.push(b);
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed, bodies)
        })
    };
    w.write(
        "docker-compose.yml",
        &compose_file(port).replace("hello from", "v2 from"),
    );
    w.ok(&["app", "up", "-d", "-p", &app]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, bodies) = client.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    assert!(ok > 20, "only {ok} requests ran during the update");
    assert!(
        bodies.iter().any(|b| b.starts_with("v2 from")),
        "never reached v2"
    );
    for _ in 0..5 {
        assert!(
            http_get(port).unwrap().starts_with("v2 from"),
            "old replicas still serve"
        );
    }
    let st = w.status(&app);
    assert!(
        all_running(&st, "chat", 1),
        "the file says 1 replica: {st:#}"
    );

    // ps and logs name the replicas.
    let ps = w.ok(&["app", "ps", "-p", &app]);
    assert!(
        ps.contains(&format!("{app}-mongo-1")) && ps.contains("Running"),
        "{ps}"
    );

    // A container that is not the app's survives `app down`.
    w.ok(&[
        "run",
        "-d",
        "--name",
        &format!("{app}-other"),
        "busybox",
        "sleep",
        "60",
    ]);
    w.ok(&["app", "down", "-p", &app]);
    let left: Vec<String> = w
        .containers()
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        left,
        [format!("{app}-other")],
        "app down removes exactly what the app made"
    );
    assert!(!w.root.join("apps").join(&app).exists());
    let again = w.corral(&["app", "ps", "-p", &app]);
    assert!(!again.status.success(), "the app is gone");
}

#[test]
fn host_compose_errors_are_clear_and_leave_nothing() {
    if skip() {
        return;
    }
    require_host();
    let w = World::app("errors", 1);
    let app = w.app_name("e");
    w.write(
        "vm.yaml",
        "services:\n  web:\n    image: busybox\n    x-corral-isolation: vm\n",
    );
    let out = w.corral(&["app", "up", "-d", "-p", &app, "-f", "vm.yaml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    // Refused as not built yet (exit 2), naming the service, the key and the way out.
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("service web: microVM replicas (x-corral-isolation: vm)")
            && err.contains("drop `x-corral-isolation: vm` to run it as containers")
            && err.contains("not implemented yet"),
        "{err}"
    );
    // The same for Kubernetes' runtime class.
    w.write(
        "vm-pod.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: vmpod, namespace: {app}}}\n\
             spec:\n  runtimeClassName: corral-vm\n  containers:\n  - {{name: c, image: busybox}}\n"
        ),
    );
    let out = w.corral(&["apply", "-f", "vm-pod.yaml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("service vmpod: microVM replicas (runtimeClassName: corral-vm)")
            && err.contains("not implemented yet"),
        "{err}"
    );
    assert!(w.containers().is_empty(), "nothing was created");

    w.write(
        "bad.yaml",
        "services:\n  web:\n    image: busybox\n    deploy:\n      replicas: lots\n",
    );
    let out = w.corral(&["app", "up", "-d", "-p", &app, "-f", "bad.yaml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("services.web.deploy.replicas") && err.contains("bad.yaml:5"),
        "{err}"
    );

    w.write("img.yaml", "services:\n  web:\n    image: no-such-image\n");
    let out = w.corral(&["app", "up", "-d", "-p", &app, "-f", "img.yaml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no-such-image"),
        "{err}"
    );

    // A replica that keeps failing is shown as CrashLoopBackOff (and `up` says so when it
    // sees it: a replica without probes may look ready for the moment it runs).
    w.write(
        "crash.yaml",
        "services:\n  web:\n    image: busybox\n    command: [sh, -c, 'exit 3']\n    restart: always\n",
    );
    let out = w.corral(&["app", "up", "-d", "-p", &app, "-f", "crash.yaml"]);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{app}-web-1 is CrashLoopBackOff")),
            "{err}"
        );
    }
    w.wait_for(&app, "CrashLoopBackOff", |st| {
        replicas_of(st, "web")
            .first()
            .is_some_and(|r| r["status"] == "CrashLoopBackOff")
    });
    let ps = w.ok(&["app", "ps", "-p", &app]);
    assert!(ps.contains("CrashLoopBackOff"), "{ps}");
    w.ok(&["app", "down", "-p", &app]);

    let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    w.write(
        "busy.yaml",
        &format!("services:\n  web:\n    image: busybox\n    command: [sleep, '60']\n    ports: ['{port}:80']\n"),
    );
    let out = w.corral(&["app", "up", "-d", "-p", &app, "-f", "busy.yaml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&port.to_string()),
        "{err}"
    );
    assert!(w.containers().is_empty(), "nothing was created");
    drop(busy);

    // The daemon dies while the app runs and its port is taken meanwhile: the app cannot
    // come back on the next start, and `app down` still removes what it made.
    let port = free_port();
    w.write(
        "late.yaml",
        &format!("services:\n  web:\n    image: busybox\n    command: [httpd, -f, -p, '80']\n    ports: ['{port}:80']\n"),
    );
    w.ok(&["app", "up", "-d", "-p", &app, "-f", "late.yaml"]);
    let pid = w.daemon_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut taken = None;
    for _ in 0..500 {
        if let Ok(l) = std::net::TcpListener::bind(("0.0.0.0", port)) {
            taken = Some(l);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(taken.is_some(), "the dead daemon's port never came free");
    assert_eq!(w.containers().len(), 1, "the replica outlives the daemon");
    w.ok(&["app", "down", "-p", &app]);
    assert!(
        w.containers().is_empty(),
        "down removed the replica of an app that did not resume"
    );
}

#[test]
fn host_kube_manifests_apply_heal_get_and_delete() {
    if skip() {
        return;
    }
    require_host();
    let w = World::app("kube", 2);
    let ns = w.app_name("k");
    let port = free_port();
    w.write(
        "chat-deployment.yml",
        &format!(
            "apiVersion: extensions/v1beta1
kind: Deployment
metadata:
  labels: {{io.kompose.service: chat}}
  name: chat
  namespace: {ns}
spec:
  replicas: 1
  strategy: {{}}
  template:
    metadata:
      labels: {{io.kompose.service: chat}}
    spec:
      containers:
      - image: busybox
        name: chat
        command: {WEB_CMD}
        ports: [{{containerPort: 8080}}]
        stdin: true
        tty: true
      restartPolicy: Always
"
        )
        .replace("$$", "$"),
    );
    w.write(
        "chat-service.yml",
        &format!(
            "apiVersion: v1
kind: Service
metadata:
  labels: {{io.kompose.service: chat}}
  name: chat
  namespace: {ns}
spec:
  ports:
  - name: \"{port}\"
    port: {port}
    targetPort: 8080
  selector:
    io.kompose.service: chat
"
        ),
    );
    let out = w.ok(&["apply", "-f", "chat-deployment.yml"]);
    assert_eq!(out.trim(), "deployment.apps/chat created");
    let out = w.ok(&["apply", "-f", "chat-service.yml"]);
    assert_eq!(out.trim(), "service/chat created");
    let out = w.ok(&["apply", "-f", "."]);
    assert!(out.contains("deployment.apps/chat unchanged"), "{out}");
    let st = w.wait_for(&ns, "the chat pod", |st| all_running(st, "chat", 1));
    // kubectl's pod name: <deployment>-<pod-template-hash>-<5 random>.
    let pod = pod_name(&st, "chat");
    let parts: Vec<&str> = pod.split('-').collect();
    assert!(
        parts.len() == 3 && parts[0] == "chat" && parts[1].len() == 10 && parts[2].len() == 5,
        "{pod}"
    );

    // restartPolicy: Always — killing the replica's process brings it back.
    let before = replicas_of(&st, "chat")[0]["started"].clone();
    w.ok(&["kill", &pod]);
    let st = w.wait_for(&ns, "the killed replica to run again", |st| {
        let r = replicas_of(st, "chat");
        r.len() == 1 && r[0]["ready"] == true && r[0]["started"] != before
    });
    assert_eq!(replicas_of(&st, "chat")[0]["restarts"], 1, "{st:#}");

    assert!(http_get(port).unwrap().starts_with("hello from "));

    // `app restart` restarts every replica; the app serves again afterwards.
    let before = replicas_of(&st, "chat")[0]["started"].clone();
    w.ok(&["app", "restart", "-p", &ns]);
    let st = w.status(&ns);
    assert_ne!(replicas_of(&st, "chat")[0]["started"], before, "{st:#}");
    assert!(http_get(port).unwrap().starts_with("hello from "));

    // The daemon dies (SIGKILL); the next command starts it, the app is still there, its
    // pod keeps its name and restart count, and its balancer serves again.
    assert!(w.kill9_daemon(), "a running daemon to kill");
    let ps = w.ok(&["app", "ps", "-p", &ns]);
    assert!(ps.contains(&pod), "{ps}");
    let st = w.wait_for(&ns, "the app after a daemon restart", |st| {
        all_running(st, "chat", 1)
    });
    assert_eq!(replicas_of(&st, "chat")[0]["restarts"], 1, "{st:#}");
    assert!(http_get(port).unwrap().starts_with("hello from "));

    let deps = w.ok(&["get", "deployments"]);
    let lines: Vec<&str> = deps.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("UP-TO-DATE"),
        "{deps}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("chat ") && l.contains("1/1")),
        "{deps}"
    );
    let pods = w.ok(&["get", "pods"]);
    assert!(
        pods.lines()
            .any(|l| l.starts_with(&format!("{pod} ")) && l.contains("Running")),
        "{pods}"
    );
    let svcs = w.ok(&["get", "svc"]);
    assert!(
        svcs.contains("ClusterIP") && svcs.contains(&format!("{port}/TCP")),
        "{svcs}"
    );

    // A new pod template (a rolling update) gives pods of a new template hash, as kubectl
    // shows; only the new pod is left.
    let text = std::fs::read_to_string(w.project().join("chat-deployment.yml")).unwrap();
    w.write(
        "chat-deployment.yml",
        &text.replace("hello from", "v2 from"),
    );
    let out = w.ok(&["apply", "-f", "chat-deployment.yml"]);
    assert_eq!(out.trim(), "deployment.apps/chat configured");
    let st = w.wait_for(&ns, "the rolled pod", |st| {
        all_running(st, "chat", 1) && pod_name(st, "chat") != pod
    });
    let rolled = pod_name(&st, "chat");
    let hash = |p: &str| p.rsplit_once('-').unwrap().0.to_string();
    assert!(
        rolled.starts_with("chat-") && hash(&rolled) != hash(&pod),
        "{pod} -> {rolled}"
    );
    assert!(http_get(port).unwrap().starts_with("v2 from "));
    let pods = w.ok(&["get", "pods"]);
    assert!(pods.contains(&rolled) && !pods.contains(&pod), "{pods}");

    let out = w.ok(&[
        "delete",
        "-f",
        "chat-service.yml",
        "-f",
        "chat-deployment.yml",
    ]);
    assert!(out.contains("service \"chat\" deleted"), "{out}");
    assert!(out.contains("deployment.apps \"chat\" deleted"), "{out}");
    assert!(w.containers().is_empty(), "delete removed the pods");
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
        "the Service port is free again"
    );
}

#[test]
fn host_kube_probes_gate_traffic_and_restart_replicas() {
    if skip() {
        return;
    }
    require_host();
    let w = World::app("probes", 3);
    let ns = w.app_name("p");
    let port = free_port();
    w.write(
        "web.yml",
        &format!(
            "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: busybox
        command: [sh, -c, 'mkdir -p /www && echo up > /www/index.html && touch /tmp/alive && exec httpd -f -p 8080 -h /www']
        ports: [{{containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /ready.html, port: 8080}}
          periodSeconds: 1
          failureThreshold: 1
        livenessProbe:
          exec: {{command: [test, -f, /tmp/alive]}}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  ports: [{{port: {port}, targetPort: 8080}}]
  selector: {{app: web}}
"
        ),
    );
    w.ok(&["apply", "-f", "web.yml"]);
    // Running, but the readiness probe fails: no traffic.
    let st = w.wait_for(&ns, "the replica to run, not ready", |st| {
        let r = replicas_of(st, "web");
        r.len() == 1 && r[0]["status"] == "NotReady"
    });
    let replica = replicas_of(&st, "web")[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(http_get(port).is_err(), "an unready replica got traffic");
    // The probe passes: the replica joins the balancer.
    w.ok(&["exec", &replica, "touch", "/www/ready.html"]);
    w.wait_for(&ns, "readiness", |st| all_running(st, "web", 1));
    assert_eq!(http_get(port).unwrap(), "up");
    // The liveness probe fails: the replica is restarted.
    w.ok(&["exec", &replica, "rm", "/tmp/alive"]);
    let st = w.wait_for(&ns, "the liveness restart", |st| {
        replicas_of(st, "web")
            .first()
            .is_some_and(|r| r["restarts"] == 1)
    });
    assert_eq!(replicas_of(&st, "web").len(), 1);
    w.ok(&["delete", "-f", "web.yml"]);
    assert!(w.containers().is_empty());
}

#[test]
fn host_compose_builds_services_that_have_build_and_runs_them() {
    if skip() {
        return;
    }
    require_host();
    let w = World::app("build", 4);
    let app = w.app_name("b");
    let port = free_port();
    std::fs::create_dir_all(w.project().join("web")).unwrap();
    w.write(
        "web/Containerfile",
        "FROM busybox\nRUN mkdir -p /www && echo built-by-compose > /www/index.html\n\
         CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    );
    w.write(
        "compose.yml",
        &format!("services:\n  web:\n    build: ./web\n    ports:\n      - \"{port}:8080\"\n"),
    );
    w.ok(&["app", "up", "-d", "-p", &app]);
    assert_eq!(http_get(port).unwrap(), "built-by-compose");
    let images = w.ok(&["image", "ls"]);
    assert!(images.contains(&format!("{app}-web ")), "{images}");

    // The image exists now: a second up does not rebuild it, `--build` does.
    let again = w.corral(&["app", "up", "-d", "-p", &app]);
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("Building"));
    let rebuilt = w.corral(&["app", "up", "-d", "--build", "-p", &app]);
    assert!(rebuilt.status.success());
    let err = String::from_utf8_lossy(&rebuilt.stderr);
    assert!(err.contains(&format!("Building {app}-web")), "{err}");
    w.ok(&["app", "down", "-p", &app]);
}

#[test]
fn host_compose_apps_get_their_own_networks_and_entrypoints() {
    if skip() {
        return;
    }
    require_host();
    let w = World::app("nets", 5);
    std::fs::create_dir_all(w.project().join("img")).unwrap();
    // An image whose own entrypoint fails: a service only runs if `entrypoint:` replaces it.
    w.write(
        "img/Containerfile",
        "FROM busybox\nENTRYPOINT [\"/bin/false\"]\n",
    );
    let compose = format!(
        "services:
  web:
    image: busybox
    command: {WEB_CMD}
  client:
    build: ./img
    entrypoint: [\"/bin/sleep\"]
    command: [\"300\"]
"
    );
    w.write("compose.yml", &compose);
    let (a, b) = (w.app_name("na"), w.app_name("nb"));
    w.ok(&["app", "up", "-d", "-p", &a]);
    w.ok(&["app", "up", "-d", "-p", &b]);
    let nets = w.ok(&["network", "ls"]);
    for app in [&a, &b] {
        assert!(nets.contains(&format!("{app}_default")), "{nets}");
    }

    let client = format!("{a}-client-1");
    let cmdline = w.ok(&["exec", &client, "cat", "/proc/1/cmdline"]);
    assert_eq!(
        cmdline, "/bin/sleep\u{0}300\u{0}",
        "entrypoint replaced the image's"
    );

    // Within an app, services reach each other by name; another app's web is out of reach.
    // busybox nc, not wget: Debian's static busybox wget crashes resolving names.
    let fetch = |host: &str| {
        let get = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} 8080");
        w.corral(&["exec", &client, "sh", "-c", &get])
    };
    let start = Instant::now();
    let own = loop {
        // The web replica may still be starting its server.
        let out = fetch("web");
        let answered = String::from_utf8_lossy(&out.stdout).contains("hello from");
        if answered || start.elapsed() > Duration::from_secs(10) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = String::from_utf8_lossy(&own.stdout);
    let own_id = w.status(&a);
    let own_id = replicas_of(&own_id, "web")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains(&format!("hello from {}", &own_id[..12])),
        "{text} {}",
        String::from_utf8_lossy(&own.stderr)
    );
    let st = w.status(&b);
    let other_ip = replicas_of(&st, "web")[0]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    let out = fetch(&other_ip);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("hello from"),
        "app {a} reached app {b}'s web at {other_ip}: {text}"
    );

    w.ok(&["app", "down", "-p", &a]);
    let nets = w.ok(&["network", "ls"]);
    assert!(
        !nets.contains(&format!("{a}_default")),
        "removed with its app: {nets}"
    );
    assert!(nets.contains(&format!("{b}_default")), "{nets}");
    w.ok(&["app", "down", "-p", &b]);
}
