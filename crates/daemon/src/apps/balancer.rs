//! One balanced entry point (a `crates/lb` service) per published port of an app: Compose
//! `ports:` and Kubernetes Services. Backends are the ready replicas' `IP:targetPort`, set
//! live by the reconciler; a backend that leaves drains, and its in-flight count holds the
//! replica's removal back.
//!
//! L7 (HTTP/1.1) when the port is named `http…`, declares `appProtocol: http` (Compose:
//! `app_protocol`) or the algorithm hashes a header; L4 (TCP) otherwise, which carries any
//! protocol.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use corral_api::EndpointStatus;
use corral_lb::{Algorithm, Backend, HashKey, Mode, ServiceConfig, ServiceHandle};
use corral_orchestrator::model::{App, PortSpec, Protocol, Source};

use crate::error::{ApiError, ApiResult};

/// What identifies an entry point: changing any of it means a new listener.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointPlan {
    /// The Kubernetes Service's name, or the Compose service's.
    pub name: String,
    /// `Published`, `ClusterIP`, `NodePort`, `LoadBalancer`.
    pub kind: String,
    /// The service balanced to.
    pub service: String,
    /// The requested listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// The port in the replicas.
    pub target: u16,
    /// L4 or L7.
    pub mode: Mode,
    /// The algorithm.
    pub algorithm: Algorithm,
}

/// A running (or failed) entry point.
#[derive(Debug)]
pub struct Endpoint {
    /// What it is.
    pub plan: EndpointPlan,
    handle: Option<ServiceHandle>,
    /// Backends removed from the set whose work is still in flight.
    leaving: HashMap<SocketAddr, Arc<Backend>>,
}

fn mode_for(port: &PortSpec, algorithm: &Algorithm) -> Mode {
    let named_http = port
        .name
        .as_deref()
        .is_some_and(|n| n.to_ascii_lowercase().starts_with("http"));
    let declared_http = port
        .app_protocol
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("http"));
    if named_http || declared_http || matches!(algorithm, Algorithm::Hash(HashKey::Header(_))) {
        Mode::Http
    } else {
        Mode::Tcp
    }
}

/// The entry points `app` wants.
pub fn plans(app: &App) -> ApiResult<Vec<EndpointPlan>> {
    let mut out = Vec::new();
    for svc in app.services.values() {
        for (i, p) in svc.ports.iter().enumerate() {
            let field = format!("services.{}.ports[{i}]", svc.name);
            if p.protocol == Protocol::Udp {
                return Err(ApiError::NotImplemented(format!(
                    "{field}: balancing UDP ports"
                )));
            }
            let exposure = app.exposures.values().find(|e| {
                e.targets.contains(&svc.name)
                    && e.ports
                        .iter()
                        .any(|q| q.published == p.published && q.target == p.target)
            });
            let lb = exposure.map_or(svc.lb.as_str(), |e| e.lb.as_str());
            let lb = if lb.is_empty() { "round_robin" } else { lb };
            let algorithm: Algorithm = lb
                .parse()
                .map_err(|e| ApiError::invalid(field.clone(), format!("{e}")))?;
            let (name, kind) = match exposure {
                Some(e) => (e.name.clone(), format!("{:?}", e.kind)),
                None if app.source == Source::Kubernetes => continue,
                None => (svc.name.clone(), "Published".to_string()),
            };
            out.push(EndpointPlan {
                name,
                kind,
                service: svc.name.clone(),
                listen: SocketAddr::new(
                    p.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                    p.published.unwrap_or(0),
                ),
                target: p.target,
                mode: mode_for(p, &algorithm),
                algorithm,
            });
        }
    }
    Ok(out)
}

/// An app's entry points.
#[derive(Debug, Default)]
pub struct Balancers {
    endpoints: Vec<Endpoint>,
    /// The last backend addresses set per service, for entry points started later.
    wanted: HashMap<String, Vec<IpAddr>>,
}

impl Balancers {
    /// Start the entry points `wanted` has and these do not; return the ones to stop. A port
    /// that cannot be bound fails the whole call, and what it started is stopped again.
    pub async fn sync(&mut self, wanted: &[EndpointPlan]) -> ApiResult<Vec<ServiceHandle>> {
        let mut started = Vec::new();
        for plan in wanted {
            if self.endpoints.iter().any(|e| &e.plan == plan) {
                continue;
            }
            // A listener on the same address with other settings goes first.
            let same_addr =
                |e: &Endpoint| e.plan.listen == plan.listen && e.plan.listen.port() != 0;
            let mut stopped = Vec::new();
            while let Some(i) = self.endpoints.iter().position(same_addr) {
                stopped.extend(self.endpoints.remove(i).handle);
            }
            for h in stopped {
                h.shutdown().await;
            }
            let mut cfg = ServiceConfig::new(format!("{}/{}", plan.name, plan.target), plan.listen);
            cfg.mode = plan.mode;
            cfg.algorithm = plan.algorithm.clone();
            cfg.backends = self
                .wanted
                .get(&plan.service)
                .map(|ips| {
                    ips.iter()
                        .map(|ip| SocketAddr::new(*ip, plan.target))
                        .collect()
                })
                .unwrap_or_default();
            match corral_lb::start_service(cfg).await {
                Ok(h) => started.push(Endpoint {
                    plan: plan.clone(),
                    handle: Some(h),
                    leaving: HashMap::new(),
                }),
                Err(e) => {
                    for s in started {
                        if let Some(h) = s.handle {
                            h.shutdown().await;
                        }
                    }
                    return Err(ApiError::Conflict(format!(
                        "service {}: cannot publish port {}: {e}",
                        plan.service, plan.listen
                    )));
                }
            }
        }
        self.endpoints.extend(started);
        let mut gone = Vec::new();
        let mut i = 0;
        while i < self.endpoints.len() {
            if wanted.contains(&self.endpoints[i].plan) {
                i += 1;
            } else {
                gone.extend(self.endpoints.remove(i).handle);
            }
        }
        Ok(gone)
    }

    /// Every entry point's handle, for shutting them all down.
    pub fn take_all(&mut self) -> Vec<ServiceHandle> {
        self.endpoints.drain(..).filter_map(|e| e.handle).collect()
    }

    /// Point `service`'s entry points at these replica addresses.
    pub fn set_backends(&mut self, service: &str, ips: &[IpAddr]) {
        self.wanted.insert(service.to_string(), ips.to_vec());
        for e in self
            .endpoints
            .iter_mut()
            .filter(|e| e.plan.service == service)
        {
            let Some(h) = &e.handle else { continue };
            let addrs: Vec<SocketAddr> = ips
                .iter()
                .map(|ip| SocketAddr::new(*ip, e.plan.target))
                .collect();
            for b in h.set_backends(&addrs) {
                e.leaving.insert(b.addr(), b);
            }
            for a in &addrs {
                e.leaving.remove(a);
            }
        }
    }

    /// Requests or connections in flight to a replica at `ip` of `service` (in the set or
    /// draining out of it).
    pub fn in_flight(&mut self, service: &str, ip: IpAddr) -> u32 {
        let mut n = 0;
        for e in self
            .endpoints
            .iter_mut()
            .filter(|e| e.plan.service == service)
        {
            let addr = SocketAddr::new(ip, e.plan.target);
            e.leaving.retain(|_, b| b.active() > 0);
            if let Some(b) = e.leaving.get(&addr) {
                n += b.active() as u32;
            }
            if let Some(h) = &e.handle {
                n += h
                    .backends()
                    .iter()
                    .filter(|b| b.addr() == addr)
                    .map(|b| b.active() as u32)
                    .sum::<u32>();
            }
        }
        n
    }

    /// The entry points as the API shows them.
    pub fn status(&self) -> Vec<EndpointStatus> {
        self.endpoints
            .iter()
            .map(|e| EndpointStatus {
                name: e.plan.name.clone(),
                kind: e.plan.kind.clone(),
                listen: e.handle.as_ref().map(|h| h.local_addr().to_string()),
                target: e.plan.target,
                mode: match e.plan.mode {
                    Mode::Http => "http".into(),
                    Mode::Tcp => "tcp".into(),
                },
                service: e.plan.service.clone(),
                backends: e
                    .handle
                    .as_ref()
                    .map(|h| h.backend_addrs().iter().map(|a| a.to_string()).collect())
                    .unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_orchestrator::model::ServiceSpec;

    fn app_with(ports: Vec<PortSpec>, lb: &str) -> App {
        let mut app = App::new("p", Source::Compose);
        app.services.insert(
            "web".into(),
            ServiceSpec {
                name: "web".into(),
                ports,
                lb: lb.into(),
                replicas: 1,
                ..Default::default()
            },
        );
        app
    }

    fn port(published: Option<u16>, target: u16, name: Option<&str>) -> PortSpec {
        PortSpec {
            published,
            target,
            protocol: Protocol::Tcp,
            host_ip: None,
            name: name.map(String::from),
            app_protocol: None,
        }
    }

    #[test]
    fn published_ports_become_entry_points() {
        let app = app_with(
            vec![
                port(Some(9890), 8080, None),
                port(None, 27017, Some("http-admin")),
            ],
            "least_connections",
        );
        let p = plans(&app).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].listen, "0.0.0.0:9890".parse().unwrap());
        assert_eq!((p[0].target, p[0].mode), (8080, Mode::Tcp));
        assert_eq!(p[0].algorithm, Algorithm::LeastConnections);
        assert_eq!(p[1].listen.port(), 0, "no host port: any free one");
        assert_eq!(
            p[1].mode,
            Mode::Http,
            "a port named http… is balanced per request"
        );
        let mut declared = port(Some(80), 8080, Some("web"));
        declared.app_protocol = Some("HTTP".into());
        let app = app_with(vec![declared], "round_robin");
        assert_eq!(
            plans(&app).unwrap()[0].mode,
            Mode::Http,
            "appProtocol: http"
        );
    }

    #[tokio::test]
    async fn backends_follow_the_replicas_and_a_taken_port_is_an_error() {
        let app = app_with(vec![port(None, 8080, None)], "");
        let mut lbs = Balancers::default();
        let wanted = plans(&app).unwrap();
        assert!(lbs.sync(&wanted).await.unwrap().is_empty());
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        lbs.set_backends("web", &[ip]);
        let st = lbs.status();
        assert_eq!(st[0].backends, ["10.1.2.3:8080"]);
        assert_eq!(lbs.in_flight("web", ip), 0);
        lbs.set_backends("web", &[]);
        assert!(lbs.status()[0].backends.is_empty());

        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = app_with(
            vec![PortSpec {
                host_ip: Some("127.0.0.1".parse().unwrap()),
                ..port(Some(busy.local_addr().unwrap().port()), 80, None)
            }],
            "",
        );
        let mut other = Balancers::default();
        let e = other.sync(&plans(&taken).unwrap()).await.unwrap_err();
        assert!(e.to_string().contains("cannot publish port"), "{e}");
        for h in lbs.take_all() {
            h.shutdown().await;
        }
    }
}
