//! Links through rtnetlink: bridges, veth pairs, addresses and routes, in the host's network
//! namespace or in a container's.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// A network namespace: a bind-mounted file (`/run/netns/NAME`) or a process's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    /// A namespace file, e.g. `/run/netns/NAME` or `/proc/PID/ns/net`.
    Path(PathBuf),
    /// The namespace of a running process.
    Pid(u32),
}

impl Netns {
    /// The namespace file's path.
    pub fn path(&self) -> PathBuf {
        match self {
            Netns::Path(p) => p.clone(),
            Netns::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }

    /// Open the namespace file.
    pub fn open(&self) -> Result<File, LinkError> {
        let path = self.path();
        File::open(&path).map_err(|source| LinkError::Netns { path, source })
    }
}

/// A netlink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The kernel refused a request.
    #[error("{op} {name}: {source}")]
    Netlink {
        /// What was asked ("create bridge", "delete link", …).
        op: &'static str,
        /// The link or address it was about.
        name: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// A namespace file could not be opened or entered.
    #[error("network namespace {path}: {source}")]
    Netns {
        /// The namespace file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The netlink socket could not be opened.
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    /// A link that should exist does not.
    #[error("link {0} does not exist")]
    Missing(String),
}

impl LinkError {
    /// The errno of a kernel refusal, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            LinkError::Netlink {
                source: rtnetlink::Error::NetlinkError(m),
                ..
            } => m.to_io().raw_os_error(),
            _ => None,
        }
    }
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Kind ("bridge", "veth", "tun", …) when the kernel says.
    pub kind: Option<String>,
    /// Index of the bridge it is attached to.
    pub controller: Option<u32>,
    /// Administratively up.
    pub up: bool,
}

fn link_from(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        controller: None,
        up: msg.header.flags.contains(LinkFlags::Up),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Controller(c) => link.controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        link.kind = Some(match k {
                            InfoKind::Bridge => "bridge".into(),
                            InfoKind::Veth => "veth".into(),
                            InfoKind::Tun => "tun".into(),
                            other => format!("{other:?}").to_lowercase(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// An rtnetlink connection bound to one network namespace. Needs a tokio runtime.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Netlink")
    }
}

impl Netlink {
    /// A connection in the caller's network namespace.
    pub fn open() -> Result<Self, LinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(LinkError::Socket)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// A connection inside `ns`: the socket is created by a thread that entered `ns`, and a
    /// netlink socket stays bound to the namespace it was created in.
    pub fn open_in(ns: &Netns) -> Result<Self, LinkError> {
        let file = ns.open()?;
        let path = ns.path();
        let rt = tokio::runtime::Handle::current();
        let (conn, handle) = std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                    LinkError::Netns {
                        path: path.clone(),
                        source: e.into(),
                    }
                })?;
                let _guard = rt.enter();
                let (conn, handle, _) = rtnetlink::new_connection().map_err(LinkError::Socket)?;
                Ok::<_, LinkError>((conn, handle))
            })
            .join()
            .expect("the netns thread does not panic")
        })?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    fn err(
        op: &'static str,
        name: impl Into<String>,
    ) -> impl FnOnce(rtnetlink::Error) -> LinkError {
        let name = name.into();
        move |source| LinkError::Netlink { op, name, source }
    }

    /// All links of the namespace.
    pub async fn links(&self) -> Result<Vec<Link>, LinkError> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(Self::err("list links", "*"))?;
        Ok(msgs.iter().map(link_from).collect())
    }

    /// The link called `name`, if any.
    pub async fn link(&self, name: &str) -> Result<Option<Link>, LinkError> {
        let res: Result<Vec<LinkMessage>, _> = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_collect()
            .await;
        match res {
            Ok(msgs) => Ok(msgs.first().map(link_from)),
            Err(e) => {
                let e = Self::err("get link", name)(e);
                if e.errno() == Some(libc::ENODEV) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// The index of `name`, which must exist.
    pub async fn index(&self, name: &str) -> Result<u32, LinkError> {
        self.link(name)
            .await?
            .map(|l| l.index)
            .ok_or_else(|| LinkError::Missing(name.to_string()))
    }

    /// Create bridge `name` (or reuse it), give it `addr` and bring it up.
    pub async fn ensure_bridge(&self, name: &str, addr: Ipv4Net) -> Result<u32, LinkError> {
        let index = match self.link(name).await? {
            Some(l) => l.index,
            None => {
                self.handle
                    .link()
                    .add(LinkBridge::new(name).build())
                    .execute()
                    .await
                    .map_err(Self::err("create bridge", name))?;
                self.index(name).await?
            }
        };
        self.add_address(index, addr, name).await?;
        self.set_up(index, name).await?;
        Ok(index)
    }

    /// Add `addr` to link `index` (no error when it is already there).
    pub async fn add_address(
        &self,
        index: u32,
        addr: Ipv4Net,
        name: &str,
    ) -> Result<(), LinkError> {
        let res = self
            .handle
            .address()
            .add(index, addr.addr().into(), addr.prefix_len())
            .execute()
            .await
            .map_err(Self::err("add address", format!("{addr} on {name}")));
        match res {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Create a veth pair `host` ↔ `peer`.
    pub async fn create_veth(&self, host: &str, peer: &str) -> Result<(), LinkError> {
        self.handle
            .link()
            .add(LinkVeth::new(host, peer).build())
            .execute()
            .await
            .map_err(Self::err("create veth", host))
    }

    async fn change(
        &self,
        msg: LinkMessage,
        op: &'static str,
        name: &str,
    ) -> Result<(), LinkError> {
        self.handle
            .link()
            .change(msg)
            .execute()
            .await
            .map_err(Self::err(op, name))
    }

    /// Bring link `index` up.
    pub async fn set_up(&self, index: u32, name: &str) -> Result<(), LinkError> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.change(msg, "set up", name).await
    }

    /// Attach link `index` to bridge `bridge`.
    pub async fn set_controller(
        &self,
        index: u32,
        bridge: u32,
        name: &str,
    ) -> Result<(), LinkError> {
        let msg = LinkUnspec::new_with_index(index).controller(bridge).build();
        self.change(msg, "attach to bridge", name).await
    }

    /// Set the MAC address of link `index`.
    pub async fn set_mac(&self, index: u32, mac: [u8; 6], name: &str) -> Result<(), LinkError> {
        let msg = LinkUnspec::new_with_index(index)
            .address(mac.to_vec())
            .build();
        self.change(msg, "set mac", name).await
    }

    /// Rename link `index` (it must be down).
    pub async fn rename(&self, index: u32, new_name: &str) -> Result<(), LinkError> {
        let msg = LinkUnspec::new_with_index(index).name(new_name).build();
        self.change(msg, "rename", new_name).await
    }

    /// Move link `index` into the namespace `ns`.
    pub async fn move_to(&self, index: u32, ns: &Netns, name: &str) -> Result<(), LinkError> {
        let file = ns.open()?;
        let msg = LinkUnspec::new_with_index(index)
            .setns_by_fd(file.as_raw_fd())
            .build();
        self.change(msg, "move to netns", name).await
    }

    /// Delete link `name`; `false` when it did not exist.
    pub async fn delete(&self, name: &str) -> Result<bool, LinkError> {
        let Some(link) = self.link(name).await? else {
            return Ok(false);
        };
        match self
            .handle
            .link()
            .del(link.index)
            .execute()
            .await
            .map_err(Self::err("delete link", name))
        {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Add a default route through `gateway`.
    pub async fn add_default_route(&self, gateway: Ipv4Addr) -> Result<(), LinkError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        let res = self
            .handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(Self::err("add default route via", gateway.to_string()));
        match res {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Destinations of the IPv4 routes of the main table (for subnet clash checks).
    pub async fn ipv4_routes(&self) -> Result<Vec<Ipv4Net>, LinkError> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(Self::err("list routes", "*"))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.address_family == AddressFamily::Inet)
            .filter_map(|m| {
                let prefix = m.header.destination_prefix_length;
                let dst = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                    _ => None,
                });
                match dst {
                    Some(ip) => Ipv4Net::new(ip, prefix).ok(),
                    None if prefix == 0 => Some(Ipv4Net::default()),
                    None => None,
                }
            })
            .collect())
    }
}
