//! The embedded DNS responder each network runs on its gateway address, so that an instance
//! reaches `db` by name. It answers A queries for the names of the network's instances from a
//! [`NameTable`] the daemon keeps current; for a name it does not hold it answers REFUSED, which
//! makes the resolver try the next `nameserver` of the container's resolv.conf (the host's).
//! The wire format is hickory-proto's (name compression, EDNS and malformed input are its job).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// TTL of the answers: short, because instances come and go.
pub const TTL: u32 = 5;

/// The responder could not start.
#[derive(Debug, thiserror::Error)]
#[error("dns responder on {addr}: {source}")]
pub struct DnsError {
    /// The address it tried to bind.
    pub addr: SocketAddrV4,
    /// The cause.
    pub source: std::io::Error,
}

/// Names and addresses a responder serves; shared with whoever keeps it current.
#[derive(Debug, Clone, Default)]
pub struct NameTable(Arc<RwLock<HashMap<String, Ipv4Addr>>>);

impl NameTable {
    /// Replace every entry.
    pub fn replace(&self, entries: impl IntoIterator<Item = (String, Ipv4Addr)>) {
        let map = entries
            .into_iter()
            .map(|(n, ip)| (n.to_ascii_lowercase(), ip))
            .collect();
        *self.0.write().expect("name table lock") = map;
    }

    /// The address of `name` (case-insensitive, trailing dot optional).
    pub fn lookup(&self, name: &str) -> Option<Ipv4Addr> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.0.read().expect("name table lock").get(&name).copied()
    }
}

/// The reply to one query datagram; `None` when it is not worth an answer (not a query, or
/// unparsable).
pub fn answer(query: &[u8], table: &NameTable) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    if req.message_type() != MessageType::Query {
        return None;
    }
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .add_queries(req.queries().iter().cloned());
    let q = match (req.op_code(), req.queries()) {
        (OpCode::Query, [q]) => q,
        _ => {
            resp.set_response_code(ResponseCode::NotImp);
            return resp.to_vec().ok();
        }
    };
    match table.lookup(&q.name().to_ascii()) {
        None => {
            resp.set_response_code(ResponseCode::Refused);
        }
        Some(ip) => {
            resp.set_authoritative(true);
            resp.set_response_code(ResponseCode::NoError);
            if q.query_type() == RecordType::A || q.query_type() == RecordType::ANY {
                resp.add_answer(Record::from_rdata(q.name().clone(), TTL, RData::A(A(ip))));
            }
        }
    }
    resp.to_vec().ok()
}

/// A running responder; it stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DnsServer {
    /// Serve `table` on `addr` (normally the gateway, port 53). Needs a tokio runtime.
    pub async fn start(addr: SocketAddrV4, table: NameTable) -> Result<Self, DnsError> {
        let sock = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError { addr, source })?;
        let local = sock
            .local_addr()
            .map_err(|source| DnsError { addr, source })?;
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, peer) = match sock.recv_from(&mut buf).await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(%local, error = %e, "dns receive failed");
                        continue;
                    }
                };
                if let Some(reply) = answer(&buf[..n], &table) {
                    if let Err(e) = sock.send_to(&reply, peer).await {
                        tracing::debug!(%peer, error = %e, "dns reply not sent");
                    }
                }
            }
        });
        Ok(DnsServer { addr: local, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(4242)
            .set_message_type(MessageType::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        m.to_vec().unwrap()
    }

    #[test]
    fn answers_known_names_and_refuses_others() {
        let t = NameTable::default();
        t.replace([("DB".to_string(), Ipv4Addr::new(10, 213, 0, 3))]);
        let r = Message::from_vec(&answer(&query("db.", RecordType::A), &t).unwrap()).unwrap();
        assert_eq!(r.id(), 4242);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert_eq!(r.answers().len(), 1);
        assert_eq!(
            r.answers()[0].data(),
            &RData::A(A(Ipv4Addr::new(10, 213, 0, 3)))
        );
        let r = Message::from_vec(&answer(&query("db", RecordType::AAAA), &t).unwrap()).unwrap();
        assert_eq!(
            (r.response_code(), r.answers().len()),
            (ResponseCode::NoError, 0)
        );
        let r =
            Message::from_vec(&answer(&query("example.org.", RecordType::A), &t).unwrap()).unwrap();
        assert_eq!(r.response_code(), ResponseCode::Refused);
        assert!(answer(b"\x01\x02garbage", &t).is_none());
    }

    #[tokio::test]
    async fn serves_over_udp_on_loopback() {
        let t = NameTable::default();
        t.replace([("web".to_string(), Ipv4Addr::new(10, 213, 0, 9))]);
        let srv = DnsServer::start(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), t)
            .await
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(&query("web.", RecordType::A), srv.local_addr())
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = client.recv(&mut buf).await.unwrap();
        let r = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(
            r.answers()[0].data(),
            &RData::A(A(Ipv4Addr::new(10, 213, 0, 9)))
        );
    }
}
