//! Kubernetes parsing: the issue's kompose output and edge cases.

use super::*;
use crate::model::*;

const CHAT_DEPLOYMENT: &str = r#"apiVersion: extensions/v1beta1
kind: Deployment
metadata:
  labels: {io.kompose.service: chat}
  name: chat
spec:
  replicas: 1
  strategy: {}
  template:
    metadata:
      labels: {io.kompose.service: chat}
    spec:
      containers:
      - image: sdelements/lets-chat
        name: chat
        ports: [{containerPort: 8080}]
        stdin: true
        tty: true
      restartPolicy: Always
"#;

const CHAT_SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  labels: {io.kompose.service: chat}
  name: chat
spec:
  ports:
  - name: "9890"
    port: 9890
    targetPort: 8080
  selector:
    io.kompose.service: chat
"#;

fn files(docs: &[(&str, &str)]) -> Vec<ManifestFile> {
    docs.iter()
        .map(|(n, t)| ManifestFile {
            name: n.to_string(),
            text: t.to_string(),
        })
        .collect()
}

fn parse_text(text: &str) -> Result<Parsed, ManifestError> {
    parse(&files(&[("m.yaml", text)]))
}

fn err(text: &str) -> String {
    parse_text(text).unwrap_err().to_string()
}

#[test]
fn the_issue_deployment_and_service_become_one_balanced_service() {
    let p = parse(&files(&[
        ("chat-deployment.yml", CHAT_DEPLOYMENT),
        ("chat-service.yml", CHAT_SERVICE),
    ]))
    .unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let app = &p.app;
    assert_eq!(
        (app.name.as_str(), app.source),
        ("default", Source::Kubernetes)
    );
    let chat = &app.services["chat"];
    assert_eq!(chat.kind, WorkloadKind::Deployment);
    assert_eq!(chat.image.as_deref(), Some("sdelements/lets-chat"));
    assert_eq!(chat.replicas, 1);
    assert_eq!(chat.restart, RestartPolicy::Always);
    assert!(chat.stdin_open && chat.tty);
    assert_eq!(chat.expose, vec![8080]);
    assert_eq!(chat.ports.len(), 1);
    assert_eq!(
        (chat.ports[0].published, chat.ports[0].target),
        (Some(9890), 8080)
    );
    assert_eq!(chat.ports[0].name.as_deref(), Some("9890"));
    assert_eq!(chat.update, UpdateStrategy::default());
    let svc = &app.exposures["chat"];
    assert_eq!(svc.kind, ExposureType::ClusterIP);
    assert_eq!(svc.targets, vec!["chat".to_string()]);
}

#[test]
fn multi_document_with_configmap_secret_probes_and_strategy() {
    let text = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: shop}
data:
  MODE: prod
  app.conf: "listen 8080\n"
---
apiVersion: v1
kind: Secret
metadata: {name: web-secret, namespace: shop}
type: Opaque
data:
  password: aHVudGVyMg==
stringData:
  token: abc
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  annotations: {corral.dev/lb: least_load}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: "0%"}
  template:
    metadata: {labels: {app: web, tier: front}}
    spec:
      runtimeClassName: corral-vm
      containers:
      - name: web
        image: web:1
        command: [/bin/web]
        args: [--port, "8080"]
        env:
        - {name: PLAIN, value: "1"}
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: web-secret, key: password}}
        - name: OPTIONAL
          valueFrom: {configMapKeyRef: {name: nowhere, key: x, optional: true}}
        envFrom:
        - configMapRef: {name: web-config}
          prefix: CFG_
        ports: [{containerPort: 8080, name: http}]
        resources:
          limits: {cpu: 500m, memory: 128Mi}
          requests: {cpu: 100m}
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 2
        livenessProbe:
          tcpSocket: {port: 8080}
          failureThreshold: 5
        volumeMounts:
        - {name: conf, mountPath: /etc/web}
        - {name: creds, mountPath: /run/secrets/}
        - {name: scratch, mountPath: /tmp}
      volumes:
      - name: conf
        configMap: {name: web-config, items: [{key: app.conf, path: web.conf}]}
      - name: creds
        secret: {secretName: web-secret}
      - name: scratch
        emptyDir: {}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  sessionAffinity: ClientIP
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080, nodePort: 30080, appProtocol: http}
---
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: shop, labels: {app: job}}
spec:
  restartPolicy: OnFailure
  containers:
  - name: job
    image: job:1
    readinessProbe:
      exec: {command: [cat, /tmp/ready]}
"#;
    let p = parse_text(text).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let app = &p.app;
    assert_eq!(app.name, "shop");
    let web = &app.services["web"];
    assert_eq!(web.replicas, 3);
    assert_eq!(web.isolation, Isolation::Vm);
    assert_eq!(
        web.entrypoint.as_deref(),
        Some(&["/bin/web".to_string()][..])
    );
    assert_eq!(web.command.as_ref().unwrap(), &["--port", "8080"]);
    assert_eq!(web.env["PLAIN"], "1");
    assert_eq!(web.env["PASSWORD"], "hunter2");
    assert_eq!(web.env["CFG_MODE"], "prod");
    assert!(!web.env.contains_key("OPTIONAL"));
    assert_eq!(
        (web.resources.cpus, web.resources.memory_bytes),
        (Some(0.5), Some(128 << 20))
    );
    assert_eq!(
        web.readiness.as_ref().unwrap().action,
        ProbeAction::HttpGet {
            path: "/ready".into(),
            port: 8080
        }
    );
    assert_eq!(
        web.readiness.as_ref().unwrap().interval,
        Duration::from_secs(2)
    );
    let live = web.liveness.as_ref().unwrap();
    assert_eq!(
        (live.action.clone(), live.failure_threshold),
        (ProbeAction::TcpSocket { port: 8080 }, 5)
    );
    assert_eq!(
        web.update,
        UpdateStrategy::RollingUpdate {
            max_surge: Quantity::Count(1),
            max_unavailable: Quantity::Percent(0)
        }
    );
    let files: Vec<(&str, bool)> = web
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.secret))
        .collect();
    assert_eq!(
        files,
        vec![
            ("/etc/web/web.conf", false),
            ("/run/secrets/password", true),
            ("/run/secrets/token", true)
        ]
    );
    assert_eq!(web.files[0].content, b"listen 8080\n");
    assert_eq!(
        web.ports
            .iter()
            .find(|p| p.target == 8080)
            .and_then(|p| p.app_protocol.as_deref()),
        Some("http"),
        "appProtocol is kept for the balancer"
    );
    assert_eq!(web.volumes.len(), 1);
    // sessionAffinity: ClientIP overrides the Deployment's annotation for the Service's port.
    assert_eq!(web.lb, "sticky");
    assert_eq!(
        (web.ports[0].published, web.ports[0].target),
        (Some(30080), 8080)
    );
    assert_eq!(app.exposures["web"].kind, ExposureType::NodePort);
    let job = &app.services["job"];
    assert_eq!(job.kind, WorkloadKind::Pod);
    assert_eq!(job.restart, RestartPolicy::OnFailure { max_retries: None });
    assert_eq!(job.update, UpdateStrategy::Recreate);
}

#[test]
fn errors_name_file_key_path_and_line() {
    let e = err("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    ports:\n    - containerPort: http\n");
    assert!(
        e.starts_with("m.yaml:9: spec.containers.0.ports.0.containerPort: invalid type"),
        "{e}"
    );
    let e =
        err("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n");
    assert!(
        e.starts_with("m.yaml:6: spec.containers.0.image: a container needs an image"),
        "{e}"
    );
    let e = err("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: i}]\n");
    assert!(e.contains("apps/v1 Deployments need spec.selector"), "{e}");
    let e = err("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i}]}\n---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\n");
    assert!(
        e.starts_with("m.yaml:7: kind: kind Job is not supported"),
        "{e}"
    );
    let e = err("apiVersion: v2\nkind: Pod\nmetadata: {name: p}\n");
    assert!(e.contains("Pod does not exist in v2"), "{e}");
    let e = err("kind: Pod\n");
    assert!(e.contains("needs `apiVersion` and `kind`"), "{e}");
    let e = err("apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {containers: [{name: c, image: i}]}\n");
    assert!(e.contains("not a valid name"), "{e}");
    let e = err("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  type: ExternalName\n  selector: {a: b}\n");
    assert!(
        e.starts_with("m.yaml:5: spec.type: Service type ExternalName"),
        "{e}"
    );
    let e = err("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: i\n    env:\n    - name: X\n      valueFrom: {secretKeyRef: {name: s, key: k}}\n");
    assert!(e.contains("Secret \"s\" has no key \"k\""), "{e}");
    let e = err("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nspec: {containers: [{name: c, image: i}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: q, namespace: b}\nspec: {containers: [{name: c, image: i}]}\n");
    assert!(e.contains("one apply holds one namespace"), "{e}");
    let e = err("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '***'}\n");
    assert!(e.contains("data.k: not base64"), "{e}");
    let e = err("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {a: b}}\n  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: i}]\n");
    assert!(e.contains("cannot both be 0"), "{e}");
    assert!(err("# nothing\n").contains("no Kubernetes objects"));
}

#[test]
fn unknown_fields_warn_and_multi_container_pods_split() {
    let p = parse_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: p}}\nspec:\n  nodeSelector: {disk: ssd}\n  containers:\n  - {name: a, image: i, securityContext: {}}\n  - {name: b, image: j}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: none}\nspec: {selector: {app: other}, ports: [{port: 80}]}\n").unwrap();
    let w: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter()
            .any(|w| w.starts_with("m.yaml:5: spec.nodeSelector: unknown key")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("spec.containers.0.securityContext")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.contains("selects no Deployment or Pod")),
        "{w:?}"
    );
    assert!(p.app.services.contains_key("p-a") && p.app.services.contains_key("p-b"));
}

#[test]
fn load_reads_a_folder_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b-service.yml"), CHAT_SERVICE).unwrap();
    std::fs::write(dir.path().join("a-deployment.yaml"), CHAT_DEPLOYMENT).unwrap();
    std::fs::write(dir.path().join("README.md"), "not yaml: [").unwrap();
    let p = load(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(p.app.services["chat"].ports[0].published, Some(9890));
    let e = load(&[dir.path().join("missing.yml")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.yml"), "{e}");
}

use std::time::Duration;
