//! The capability sets containers start from: Docker's default set (what `corral run` and a
//! `corral build` RUN step give a container), every capability this process can hand on
//! (`--cap-add ALL`), and capability names as users write them (`chown`, `CAP_CHOWN`).

use std::str::FromStr;

use oci_spec::runtime::{Capabilities, Capability};

/// Docker's default capabilities: enough for package managers to chown, switch users and bind
/// low ports, without the ones that reach outside the container (SYS_ADMIN, NET_ADMIN, …).
pub const DOCKER_DEFAULT: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// [`DOCKER_DEFAULT`] as a set.
pub fn docker_default() -> Capabilities {
    DOCKER_DEFAULT.into_iter().collect()
}

/// Parse a capability name, case-insensitive, with or without the `CAP_` prefix.
pub fn parse(name: &str) -> Option<Capability> {
    let up = name.to_ascii_uppercase();
    Capability::from_str(up.strip_prefix("CAP_").unwrap_or(&up)).ok()
}

/// Every capability this process can hand on to a container (`--cap-add ALL`): its bounding
/// set, which holds the capabilities the kernel knows less any the host took away (a
/// capability outside it would make the container's `capset` fail).
pub fn all_available() -> Capabilities {
    let bounding = caps::read(None, caps::CapSet::Bounding)
        .unwrap_or_else(|_| caps::runtime::thread_all_supported());
    bounding
        .into_iter()
        .filter_map(|c| parse(&c.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_any_case_with_or_without_the_prefix() {
        assert_eq!(parse("chown"), Some(Capability::Chown));
        assert_eq!(parse("CAP_NET_ADMIN"), Some(Capability::NetAdmin));
        assert_eq!(parse("cap_sys_admin"), Some(Capability::SysAdmin));
        assert_eq!(parse("NOT_A_CAP"), None);
        assert_eq!(parse("ALL"), None);
    }

    #[test]
    fn all_available_is_this_process_bounding_set() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let bnd = status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
            .unwrap();
        let all = all_available();
        assert_eq!(all.len(), bnd.count_ones() as usize, "{all:?}");
        assert_eq!(docker_default().len(), 14);
    }
}
