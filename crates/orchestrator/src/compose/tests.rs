//! Compose parsing: the issue's example file and edge cases.

use super::*;

const ISSUE_COMPOSE: &str = r#"# docker-compose.yml
version: '2'
services:
  mongo:
    image: mongo
    stdin_open: true
    tty: true
    ports:
      - "27017"
    labels:
      io.rancher.container.pull_image: always
  chat:
    image: sdelements/lets-chat
    stdin_open: true
    tty: true
    ports:
      - 9890:8080/tcp
    labels:
      io.rancher.container.pull_image: always
"#;

fn parse_one(text: &str, vars: &Vars) -> Result<Parsed, ManifestError> {
    parse(
        &[ComposeFile {
            name: "docker-compose.yml".into(),
            text: text.into(),
        }],
        None,
        "My Project",
        vars,
    )
}

fn ok(text: &str) -> Parsed {
    parse_one(text, &Vars::new()).unwrap()
}

fn err(text: &str) -> String {
    parse_one(text, &Vars::new()).unwrap_err().to_string()
}

#[test]
fn the_issue_file_becomes_two_services() {
    let p = ok(ISSUE_COMPOSE);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let app = &p.app;
    assert_eq!(app.name, "myproject");
    assert_eq!(app.source, Source::Compose);
    let mongo = &app.services["mongo"];
    assert_eq!(mongo.image.as_deref(), Some("mongo"));
    assert!(mongo.stdin_open && mongo.tty);
    assert_eq!(mongo.ports.len(), 1);
    assert_eq!(
        (mongo.ports[0].published, mongo.ports[0].target),
        (None, 27017)
    );
    assert_eq!(mongo.labels["io.rancher.container.pull_image"], "always");
    assert_eq!(mongo.replicas, 1);
    assert_eq!(mongo.restart, RestartPolicy::No);
    let chat = &app.services["chat"];
    assert_eq!(chat.image.as_deref(), Some("sdelements/lets-chat"));
    assert_eq!(
        (chat.ports[0].published, chat.ports[0].target),
        (Some(9890), 8080)
    );
    assert_eq!(chat.ports[0].protocol, Protocol::Tcp);
    assert_eq!(chat.lb, "round_robin");
    assert_eq!(chat.isolation, Isolation::Container);
    assert_eq!(chat.networks, vec!["default".to_string()]);
}

#[test]
fn version_3_with_every_supported_key() {
    let text = r#"
services:
  web:
    build:
      context: ./web
      dockerfile: Containerfile
      args: [GREETING=hi]
    image: web:dev
    command: ["serve", "--port", "8080"]
    entrypoint: /bin/app --verbose
    environment:
      MODE: prod
      COUNT: 3
    ports:
      - target: 8080
        published: 80
        protocol: tcp
    expose: ["9000", 9001]
    depends_on:
      db:
        condition: service_healthy
    healthcheck:
      test: ["CMD", "wget", "-q", "http://localhost:8080/health"]
      interval: 5s
      timeout: 2s
      retries: 4
      start_period: 1m
    restart: on-failure:5
    deploy:
      replicas: 3
      resources:
        limits: {cpus: "0.5", memory: 256m, pids: 100}
      update_config: {parallelism: 2, order: start-first}
    volumes:
      - data:/var/lib/data:ro
      - ./static:/srv/static
      - type: bind
        source: /etc/hosts
        target: /etc/hosts
        read_only: true
    networks: [front]
    working_dir: /srv
    user: "1000:1000"
    x-corral-lb: least_connections
    x-corral-isolation: vm
  db:
    image: kv
    healthcheck:
      test: nc -z localhost 6379
    networks:
      front:
        aliases: [database]
volumes:
  data: {}
networks:
  front:
    driver: bridge
x-common: &common {a: 1}
"#;
    let p = ok(text);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let web = &p.app.services["web"];
    let b = web.build.as_ref().unwrap();
    assert_eq!(
        (b.context.as_str(), b.dockerfile.as_deref()),
        ("./web", Some("Containerfile"))
    );
    assert_eq!(b.args["GREETING"], "hi");
    assert_eq!(web.command.as_ref().unwrap(), &["serve", "--port", "8080"]);
    assert_eq!(web.entrypoint.as_ref().unwrap(), &["/bin/app", "--verbose"]);
    assert_eq!(web.env["COUNT"], "3");
    assert_eq!(
        (web.ports[0].published, web.ports[0].target),
        (Some(80), 8080)
    );
    assert_eq!(web.expose, vec![9000, 9001]);
    assert_eq!(
        web.depends_on[0].condition,
        DependencyCondition::ServiceHealthy
    );
    let r = web.readiness.as_ref().unwrap();
    assert_eq!(
        r.action,
        ProbeAction::Exec {
            command: vec![
                "wget".into(),
                "-q".into(),
                "http://localhost:8080/health".into()
            ]
        }
    );
    assert_eq!(
        (r.interval, r.timeout, r.failure_threshold),
        (Duration::from_secs(5), Duration::from_secs(2), 4)
    );
    assert_eq!(r.initial_delay, Duration::from_secs(60));
    assert_eq!(
        web.restart,
        RestartPolicy::OnFailure {
            max_retries: Some(5)
        }
    );
    assert_eq!(web.replicas, 3);
    assert_eq!(web.resources.cpus, Some(0.5));
    assert_eq!(web.resources.memory_bytes, Some(256 << 20));
    assert_eq!(web.resources.pids, Some(100));
    assert_eq!(
        web.update,
        UpdateStrategy::RollingUpdate {
            max_surge: Quantity::Count(2),
            max_unavailable: Quantity::Count(0)
        }
    );
    assert_eq!(web.volumes.len(), 3);
    assert!(!web.volumes[0].bind && web.volumes[0].read_only);
    assert!(web.volumes[1].bind && !web.volumes[1].read_only);
    assert!(web.volumes[2].bind && web.volumes[2].read_only);
    assert_eq!(web.networks, vec!["front".to_string()]);
    assert_eq!(web.user.as_deref(), Some("1000:1000"));
    assert_eq!(web.lb, "least_connections");
    assert_eq!(web.isolation, Isolation::Vm);
    let db = &p.app.services["db"];
    assert_eq!(
        db.readiness.as_ref().unwrap().action,
        ProbeAction::Shell {
            script: "nc -z localhost 6379".into()
        }
    );
    assert!(p.app.volumes.contains_key("data"));
    assert!(p.app.networks.contains_key("front"));
    let order: Vec<_> = p.app.start_order().iter().map(|s| s.name.clone()).collect();
    assert_eq!(order, vec!["db", "web"]);
}

#[test]
fn unknown_keys_warn_with_path_and_line() {
    let p =
        ok("services:\n  web:\n    image: x\n    privileged: true\n    x-custom: 1\nconfigs: {}\n");
    let w: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter()
            .any(|w| w == "docker-compose.yml:4: services.web.privileged: unknown key, ignored"),
        "{w:?}"
    );
    assert!(w.iter().any(|w| w.contains(":6: configs")), "{w:?}");
}

#[test]
fn invalid_values_name_key_path_and_line() {
    let e = err("services:\n  web:\n    image: x\n    deploy:\n      replicas: many\n");
    assert!(
        e.starts_with("docker-compose.yml:5: services.web.deploy.replicas: invalid type"),
        "{e}"
    );
    let e = err("services:\n  web:\n    image: x\n    ports:\n      - 80\n      - \"80:99999\"\n");
    assert!(
        e.starts_with("docker-compose.yml:6: services.web.ports.1:"),
        "{e}"
    );
    let e = err("services:\n  web:\n    ports: [80]\n");
    assert_eq!(
        e,
        "docker-compose.yml:2: services.web: a service needs `image` or `build`"
    );
    let e = err("services:\n  web:\n    image: x\n    restart: sometimes\n");
    assert!(
        e.starts_with("docker-compose.yml:4: services.web.restart: unknown restart policy"),
        "{e}"
    );
    let e = err("services:\n  web:\n    image: x\n    x-corral-lb: fastest\n");
    assert!(
        e.contains(":4: services.web.x-corral-lb: unknown load-balancing algorithm"),
        "{e}"
    );
    let e = err("services:\n  web:\n    image: x\n    x-corral-isolation: jail\n");
    assert!(e.contains("unknown isolation"), "{e}");
    let e = err("services:\n  web:\n    image: x\n    healthcheck:\n      test: [CMD]\n      interval: soon\n");
    assert!(e.contains("services.web.healthcheck.test"), "{e}");
    let e = err("services:\n  web:\n    image: x\n    healthcheck:\n      test: [CMD, true]\n      interval: soon\n");
    assert!(
        e.contains(":6: services.web.healthcheck.interval: \"soon\" is not a duration"),
        "{e}"
    );
}

#[test]
fn structural_errors() {
    assert!(err("services: {}\n").contains("no services defined"));
    assert!(err("- a\n- b\n").contains("a Compose file is a mapping"));
    let e = err("services:\n  web:\n    image: x\n    depends_on: [ghost]\n");
    assert!(e.contains("depends on unknown service \"ghost\""), "{e}");
    let e = err("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n");
    assert!(e.contains("dependency cycle"), "{e}");
    let e = err("services:\n  web:\n    image: x\n    volumes: [\"data:/d\"]\n");
    assert!(e.contains("named volume \"data\" is not declared"), "{e}");
    let e = err("services:\n  web:\n    image: x\n    networks: [back]\n");
    assert!(e.contains("network \"back\" is not declared"), "{e}");
    let e = err("version: '1'\nservices:\n  web:\n    image: x\n");
    assert!(e.starts_with("docker-compose.yml:1: version:"), "{e}");
    let e = err("services:\n  web:\n    image: [unclosed\n");
    assert!(e.contains("invalid YAML"), "{e}");
    let e = err("services:\n  web:\n    image: x\n    volumes: [\"data\"]\n");
    assert!(e.contains("absolute path"), "{e}");
}

#[test]
fn interpolation_from_vars_with_defaults_and_required() {
    let mut vars = Vars::new();
    vars.set("TAG", "2.0");
    vars.set("REPLICAS", "4");
    vars.set("FROM_SHELL", "yes");
    let text = "services:\n  web:\n    image: \"web:${TAG}\"\n    ports: [\"${PORT:-8080}:80\"]\n    environment: [FROM_SHELL, NOT_SET]\n    deploy:\n      replicas: ${REPLICAS}\n";
    let p = parse_one(text, &vars).unwrap();
    let web = &p.app.services["web"];
    assert_eq!(web.image.as_deref(), Some("web:2.0"));
    assert_eq!(web.ports[0].published, Some(8080));
    assert_eq!(web.replicas, 4);
    assert_eq!(web.env.get("FROM_SHELL").map(String::as_str), Some("yes"));
    assert!(!web.env.contains_key("NOT_SET"));
    let e = parse_one(
        "services:\n  web:\n    image: \"${IMAGE:?set IMAGE}\"\n",
        &vars,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "docker-compose.yml:3: services.web.image: required variable IMAGE is missing a value: set IMAGE");
}

#[test]
fn later_files_override_earlier_ones_and_project_name_wins() {
    let base = ComposeFile {
        name: "a.yml".into(),
        text: "services:\n  web:\n    image: web:1\n    environment: {A: '1', B: '1'}\n".into(),
    };
    let over = ComposeFile { name: "b.yml".into(), text: "services:\n  web:\n    image: web:2\n    environment: {B: '2'}\n  extra:\n    image: x\n".into() };
    let p = parse(&[base, over], Some("Demo_App"), "dir", &Vars::new()).unwrap();
    assert_eq!(p.app.name, "demo_app");
    let web = &p.app.services["web"];
    assert_eq!(web.image.as_deref(), Some("web:2"));
    assert_eq!((web.env["A"].as_str(), web.env["B"].as_str()), ("1", "2"));
    assert!(p.app.services.contains_key("extra"));
}

#[test]
fn version_2_limits_scale_and_restart_forms() {
    let p = ok("version: '2.4'\nservices:\n  w:\n    image: x\n    mem_limit: 1g\n    cpus: 1.5\n    scale: 2\n    restart: always\n  u:\n    image: x\n    restart: unless-stopped\n  n:\n    image: x\n    restart: \"no\"\n    deploy:\n      restart_policy: {condition: on-failure, max_attempts: 2}\n");
    let w = &p.app.services["w"];
    assert_eq!(
        (w.resources.memory_bytes, w.resources.cpus, w.replicas),
        (Some(1 << 30), Some(1.5), 2)
    );
    assert_eq!(w.restart, RestartPolicy::Always);
    assert_eq!(p.app.services["u"].restart, RestartPolicy::UnlessStopped);
    assert_eq!(
        p.app.services["n"].restart,
        RestartPolicy::OnFailure {
            max_retries: Some(2)
        }
    );
}

#[test]
fn load_reads_default_file_and_dot_env() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: \"web:${APPS_TEST_TAG}\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), "APPS_TEST_TAG=from-dotenv\n").unwrap();
    let p = load(&[], dir.path(), None).unwrap();
    assert_eq!(
        p.app.services["web"].image.as_deref(),
        Some("web:from-dotenv")
    );
    let empty = tempfile::tempdir().unwrap();
    let e = load(&[], empty.path(), None).unwrap_err().to_string();
    assert!(e.contains("no compose.yaml"), "{e}");
    let e = load(&[empty.path().join("missing.yml")], empty.path(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.yml"), "{e}");
}
