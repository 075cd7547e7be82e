//! A VM's definition: the request validated with field paths (instance types fill in sizes),
//! the network it asks for, and the `corral vmm` configuration written to `vms/NAME/vm.toml`.

use std::path::Path;

use corral_api::{TapAttachment, VmSpec};
use corral_vmm::config::{DiskConfig, NetConfig, SerialConfig, VsockConfig};
use corral_vmm::VmConfig;

use crate::error::{ApiError, ApiResult};

/// The guest's vsock CID (each VM has its own device and host socket, so one number serves).
const GUEST_CID: u32 = 3;

/// Preset sizes (vCPUs, MiB) of the instance types.
pub fn instance_type(name: &str) -> Option<(u8, u64)> {
    match name {
        "standard" => Some((1, 512)),
        "high-mem" => Some((1, 2048)),
        "high-cpu" => Some((2, 256)),
        _ => None,
    }
}

/// How a VM is networked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmNet {
    /// No NIC.
    None,
    /// A NIC on a tap someone else made (`tap=NAME`).
    Tap(String),
    /// A NIC on a tap corral makes on this network, with an address from its IPAM.
    Network(String),
}

/// The network a definition asks for.
pub fn vm_net(spec: &VmSpec) -> VmNet {
    match spec.net.as_deref() {
        None | Some("") | Some("none") => VmNet::None,
        Some(n) => match n.strip_prefix("tap=") {
            Some(tap) => VmNet::Tap(tap.to_string()),
            None => VmNet::Network(n.to_string()),
        },
    }
}

/// Check a definition and fill in the sizes of its instance type.
pub fn validate(spec: &mut VmSpec) -> ApiResult<()> {
    if !crate::ids::valid_name(&spec.name) {
        return Err(ApiError::invalid(
            "name",
            format!("{:?} is not a valid VM name", spec.name),
        ));
    }
    let ty = spec
        .instance_type
        .clone()
        .unwrap_or_else(|| "standard".into());
    let (cpus, mem) = instance_type(&ty).ok_or_else(|| {
        ApiError::invalid(
            "instance_type",
            format!("{ty:?}: use standard, high-mem or high-cpu"),
        )
    })?;
    spec.instance_type = Some(ty);
    spec.cpus = Some(spec.cpus.unwrap_or(cpus));
    spec.memory_mib = Some(spec.memory_mib.unwrap_or(mem));
    if spec.cpus == Some(0) {
        return Err(ApiError::invalid("cpus", "at least one vCPU"));
    }
    if spec.memory_mib.unwrap_or(0) < 16 {
        return Err(ApiError::invalid("memory_mib", "at least 16 MiB"));
    }
    let kernel = spec
        .kernel
        .clone()
        .ok_or_else(|| ApiError::invalid("kernel", "a guest kernel is required (--kernel)"))?;
    if !Path::new(&kernel).is_file() {
        return Err(ApiError::invalid(
            "kernel",
            format!("{kernel} does not exist"),
        ));
    }
    if let Some(i) = &spec.initrd {
        if !Path::new(i).is_file() {
            return Err(ApiError::invalid("initrd", format!("{i} does not exist")));
        }
    }
    match vm_net(spec) {
        VmNet::Tap(t) if t.is_empty() => {
            return Err(ApiError::invalid("net", "tap= needs a tap name"))
        }
        VmNet::Network(n) if n == "host" => {
            return Err(ApiError::invalid(
                "net",
                "a VM joins a network by name (or none, or tap=NAME); host is for containers",
            ))
        }
        VmNet::Network(n)
            if !n
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)) =>
        {
            return Err(ApiError::invalid(
                "net",
                format!("{n:?}: use a network name, none or tap=NAME"),
            ))
        }
        _ => {}
    }
    for (i, d) in spec.disks.iter().enumerate() {
        let path = d.strip_suffix(",ro").unwrap_or(d);
        if !Path::new(path).is_file() {
            return Err(ApiError::invalid(
                format!("disks[{i}]"),
                format!("{path} does not exist"),
            ));
        }
    }
    Ok(())
}

/// The vmm's configuration for a definition: serial output to `logs/serial.log` in `dir`; on a
/// network, the NIC on `tap` and its address on the kernel command line (`ip=`).
pub fn to_config(spec: &VmSpec, dir: &Path, tap: Option<&TapAttachment>) -> ApiResult<VmConfig> {
    let kernel = spec
        .kernel
        .clone()
        .ok_or_else(|| ApiError::invalid("kernel", "a guest kernel is required"))?;
    let mut cfg = VmConfig::new(kernel.into());
    cfg.cpus = spec.cpus.unwrap_or(1);
    cfg.memory = format!("{}M", spec.memory_mib.unwrap_or(512));
    cfg.initrd = spec.initrd.clone().map(Into::into);
    cfg.cmdline = spec.cmdline.clone();
    cfg.serial = SerialConfig::File(dir.join("logs/serial.log"));
    // Every VM gets a vsock device: its guest agent (`corral-agent`) reaches the monitor
    // through `vsock.sock_1024` beside vm.toml (the default socket place).
    cfg.vsock = Some(VsockConfig {
        cid: GUEST_CID,
        uds_path: None,
    });
    for (i, d) in spec.disks.iter().enumerate() {
        cfg.disks.push(
            DiskConfig::parse_flag(d)
                .map_err(|e| ApiError::invalid(format!("disks[{i}]"), e.to_string()))?,
        );
    }
    cfg.net = match (vm_net(spec), tap) {
        (VmNet::None, _) => None,
        (VmNet::Tap(tap), _) => Some(NetConfig { tap, mac: None }),
        (VmNet::Network(_), Some(t)) => {
            let mut line = spec.cmdline.clone().unwrap_or_default();
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&t.kernel_ip_arg);
            cfg.cmdline = Some(line);
            Some(NetConfig {
                tap: t.tap.clone(),
                mac: Some(t.mac.clone()),
            })
        }
        (VmNet::Network(n), None) => {
            return Err(ApiError::Internal(format!(
                "VM {}: no tap on network {n} yet",
                spec.name
            )))
        }
    };
    cfg.validate()
        .map_err(|e| ApiError::invalid("config", e.to_string()))?;
    Ok(cfg)
}

/// The vm.toml text of a definition.
pub fn to_toml(spec: &VmSpec, dir: &Path, tap: Option<&TapAttachment>) -> ApiResult<String> {
    let cfg = to_config(spec, dir, tap)?;
    let body = toml::to_string(&cfg).map_err(|e| ApiError::internal("writing vm.toml", e))?;
    Ok(format!(
        "# corral VM {:?} ({} instance); changes apply at the next start\n{body}",
        spec.name,
        spec.instance_type.as_deref().unwrap_or("standard")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_toml_is_the_vmms_config_and_types_fill_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = VmSpec {
            name: "vm1".into(),
            kernel: Some("/bin/sh".into()),
            instance_type: Some("high-mem".into()),
            disks: vec!["/bin/sh,ro".into()],
            net: Some("tap=tap0".into()),
            ..Default::default()
        };
        validate(&mut spec).unwrap();
        assert_eq!(spec.memory_mib, Some(2048));
        let text = to_toml(&spec, dir.path(), None).unwrap();
        let path = dir.path().join("vm.toml");
        std::fs::write(&path, &text).unwrap();
        let cfg = VmConfig::load(&path).unwrap();
        assert_eq!(cfg.memory_bytes().unwrap(), 2048 << 20);
        assert!(cfg.disks[0].read_only);
        assert_eq!(cfg.net.unwrap().tap, "tap0");
        let vsock = cfg.vsock.expect("a vsock for the guest agent");
        assert_eq!(vsock.socket_path(), dir.path().join("vsock.sock"));
        spec.instance_type = Some("huge".into());
        assert!(
            matches!(validate(&mut spec), Err(ApiError::Invalid { field, .. }) if field == "instance_type")
        );
        spec.instance_type = None;
        spec.net = Some("host".into());
        assert!(
            matches!(validate(&mut spec), Err(ApiError::Invalid { field, .. }) if field == "net")
        );
        spec.net = Some("lan".into());
        spec.cmdline = Some("console=ttyS0".into());
        validate(&mut spec).unwrap();
        let tap = TapAttachment {
            tap: "crlt4".into(),
            ip: "10.213.0.5".into(),
            gateway: "10.213.0.1".into(),
            netmask: "255.255.255.0".into(),
            mac: "02:c0:0a:d5:00:05".into(),
            kernel_ip_arg: "ip=10.213.0.5::10.213.0.1:255.255.255.0::eth0:off".into(),
        };
        let cfg = to_config(&spec, dir.path(), Some(&tap)).unwrap();
        assert_eq!(cfg.net.as_ref().unwrap().tap, "crlt4");
        assert_eq!(cfg.net.unwrap().mac.as_deref(), Some("02:c0:0a:d5:00:05"));
        assert_eq!(
            cfg.cmdline.as_deref(),
            Some("console=ttyS0 ip=10.213.0.5::10.213.0.1:255.255.255.0::eth0:off")
        );
        assert!(to_config(&spec, dir.path(), None).is_err());
    }
}
