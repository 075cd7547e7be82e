//! corral's nftables table: published ports (DNAT), localhost access to them, outbound
//! masquerade and isolation between networks, generated from [`NetState`] as a whole.
//!
//! The table is rebuilt in one `nft -j -f -` transaction (add, delete and re-add the table with
//! every chain and rule), so the kernel always holds exactly what the state says and a crash can
//! never leave half a rule set. Nothing outside corral's own table is touched.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::state::{EndpointRecord, NetState, NetworkRecord};

/// Default name of corral's table (family `ip`).
pub const DEFAULT_TABLE: &str = "corral";

/// The table could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be run.
    #[error("running nft for table {table}: {source} (is the nftables package installed?)")]
    Spawn {
        /// corral's table.
        table: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `nft` refused the rule set.
    #[error("nft refused table {table}: {stderr}")]
    Failed {
        /// corral's table.
        table: String,
        /// What nft said.
        stderr: String,
    },
}

fn table_obj(table: &str) -> Value {
    json!({"table": {"family": "ip", "name": table}})
}

fn chain(table: &str, name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({"add": {"chain": {
        "family": "ip", "table": table, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept"
    }}})
}

fn rule(table: &str, chain: &str, expr: Vec<Value>, comment: &str) -> Value {
    json!({"add": {"rule": {
        "family": "ip", "table": table, "chain": chain, "expr": expr, "comment": comment
    }}})
}

fn eq(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn ne(left: Value, right: Value) -> Value {
    json!({"match": {"op": "!=", "left": left, "right": right}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn prefix(addr: impl ToString, len: u8) -> Value {
    json!({"prefix": {"addr": addr.to_string(), "len": len}})
}

fn dnat_rules(table: &str, chain: &str, ep: &EndpointRecord) -> Vec<Value> {
    ep.ports
        .iter()
        .map(|p| {
            let dst = match p.host_ip {
                Some(ip) => eq(payload("ip", "daddr"), json!(ip.to_string())),
                None => eq(
                    json!({"fib": {"result": "type", "flags": ["daddr"]}}),
                    json!("local"),
                ),
            };
            let proto = p.protocol.as_str();
            let expr = vec![
                dst,
                eq(payload(proto, "dport"), json!(p.host_port)),
                json!({"dnat": {"addr": ep.ip.to_string(), "port": p.port}}),
            ];
            rule(table, chain, expr, &format!("{} {}", ep.instance, p))
        })
        .collect()
}

fn network_rules(table: &str, net: &NetworkRecord, others: &[&str]) -> Vec<Value> {
    let br = json!(net.bridge);
    let mut rules = vec![
        // The host's own 127.0.0.1 reaching a published port: the DNAT'd packet leaves with a
        // loopback source (route_localnet on the bridge), so it is masqueraded to the gateway.
        rule(
            table,
            "postrouting",
            vec![
                eq(meta("oifname"), br.clone()),
                eq(payload("ip", "saddr"), prefix("127.0.0.0", 8)),
                json!({"masquerade": null}),
            ],
            &format!("{} localhost", net.name),
        ),
        // An instance reaching a published port of its own network through a host address
        // (the gateway, the host's IP): the DNAT'd packet goes back out the same bridge, so it
        // is masqueraded to the gateway, or the reply would come straight from the peer.
        rule(
            table,
            "postrouting",
            vec![
                eq(meta("oifname"), br.clone()),
                eq(
                    payload("ip", "saddr"),
                    prefix(net.subnet.network(), net.subnet.prefix_len()),
                ),
                json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}),
                json!({"masquerade": null}),
            ],
            &format!("{} hairpin", net.name),
        ),
        // Instances reaching beyond their bridge leave with the host's address.
        rule(
            table,
            "postrouting",
            vec![
                eq(
                    payload("ip", "saddr"),
                    prefix(net.subnet.network(), net.subnet.prefix_len()),
                ),
                ne(meta("oifname"), br.clone()),
                json!({"masquerade": null}),
            ],
            &format!("{} outbound", net.name),
        ),
    ];
    if !others.is_empty() {
        rules.push(rule(
            table,
            "forward",
            vec![
                eq(meta("iifname"), br),
                eq(meta("oifname"), json!({"set": others})),
                json!({"drop": null}),
            ],
            &format!("{} isolation", net.name),
        ));
    }
    rules
}

/// The `nft -j` document that makes `table` match `state` (or removes it when `state` is empty).
pub fn ruleset(table: &str, state: &NetState) -> Value {
    let mut cmds = vec![
        json!({"add": table_obj(table)}),
        json!({"delete": table_obj(table)}),
    ];
    if state.networks.is_empty() && state.endpoints.is_empty() {
        return json!({"nftables": cmds});
    }
    cmds.push(json!({"add": table_obj(table)}));
    cmds.push(chain(table, "prerouting", "nat", "prerouting", -100));
    cmds.push(chain(table, "output", "nat", "output", -100));
    cmds.push(chain(table, "postrouting", "nat", "postrouting", 100));
    cmds.push(chain(table, "forward", "filter", "forward", 0));
    for ep in state.endpoints.values() {
        cmds.extend(dnat_rules(table, "prerouting", ep));
        cmds.extend(dnat_rules(table, "output", ep));
    }
    for net in state.networks.values() {
        let others: Vec<&str> = state
            .networks
            .values()
            .filter(|o| o.name != net.name)
            .map(|o| o.bridge.as_str())
            .collect();
        cmds.extend(network_rules(table, net, &others));
    }
    json!({"nftables": cmds})
}

fn run_nft(table: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, NftError> {
    let spawn = |source| NftError::Spawn {
        table: table.to_string(),
        source,
    };
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input).map_err(spawn)?;
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if !out.status.success() {
        return Err(NftError::Failed {
            table: table.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// Make the kernel's `table` match `state`, in one transaction.
pub fn apply(table: &str, state: &NetState) -> Result<(), NftError> {
    let doc = ruleset(table, state).to_string();
    tracing::debug!(table, "applying nftables rule set");
    run_nft(table, &["-j", "-f", "-"], Some(doc.as_bytes())).map(|_| ())
}

/// Remove `table` (nothing happens when it does not exist).
pub fn remove(table: &str) -> Result<(), NftError> {
    apply(table, &NetState::default())
}

/// The rules of `table` as `nft -j` lists them; `None` when the table does not exist.
pub fn list(table: &str) -> Result<Option<Value>, NftError> {
    match run_nft(table, &["-j", "list", "table", "ip", table], None) {
        Ok(out) => serde_json::from_slice(&out)
            .map(Some)
            .map_err(|e| NftError::Failed {
                table: table.to_string(),
                stderr: format!("unreadable nft output: {e}"),
            }),
        Err(NftError::Failed { stderr, .. }) if stderr.contains("No such file") => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::{gateway_of, mac_for};
    use crate::state::EndpointKind;

    fn state() -> NetState {
        let mut s = NetState::default();
        for (name, subnet, br) in [
            ("a", "10.213.7.0/24", "br-a"),
            ("b", "10.213.8.0/24", "br-b"),
        ] {
            let subnet = subnet.parse().unwrap();
            s.networks.insert(
                name.into(),
                NetworkRecord {
                    name: name.into(),
                    subnet,
                    gateway: gateway_of(subnet),
                    bridge: br.into(),
                },
            );
        }
        let ip = "10.213.7.2".parse().unwrap();
        s.endpoints.insert(
            "web".into(),
            EndpointRecord {
                instance: "web".into(),
                network: "a".into(),
                ip,
                mac: mac_for(ip),
                kind: EndpointKind::Veth,
                host_link: "v1".into(),
                names: vec!["web".into()],
                ports: vec![
                    "8080:80".parse().unwrap(),
                    "127.0.0.1:5353:53/udp".parse().unwrap(),
                ],
            },
        );
        s
    }

    #[test]
    fn empty_state_only_removes_the_table() {
        let doc = ruleset("t", &NetState::default());
        let cmds = doc["nftables"].as_array().unwrap();
        assert_eq!(cmds.len(), 2);
        assert!(cmds[1]["delete"]["table"]["name"] == "t");
    }

    #[test]
    fn dnat_in_prerouting_and_output_and_isolation_both_ways() {
        let doc = ruleset("t", &state());
        let rules: Vec<&Value> = doc["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["add"].get("rule"))
            .collect();
        let dnats: Vec<&&Value> = rules
            .iter()
            .filter(|r| r["expr"][2].get("dnat").is_some())
            .collect();
        assert_eq!(dnats.len(), 4, "two ports in two chains");
        let udp = dnats
            .iter()
            .find(|r| {
                r["chain"] == "output"
                    && r["expr"][1]["match"]["left"]["payload"]["protocol"] == "udp"
            })
            .unwrap();
        assert_eq!(udp["expr"][0]["match"]["right"], "127.0.0.1");
        assert_eq!(udp["expr"][2]["dnat"]["addr"], "10.213.7.2");
        assert_eq!(udp["expr"][2]["dnat"]["port"], 53);
        let iso: Vec<&&Value> = rules.iter().filter(|r| r["chain"] == "forward").collect();
        assert_eq!(iso.len(), 2);
        assert_eq!(iso[0]["expr"][1]["match"]["right"]["set"][0], "br-b");
        assert_eq!(iso[1]["expr"][1]["match"]["right"]["set"][0], "br-a");
    }
}
