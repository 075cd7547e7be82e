//! A container's capabilities, Docker's way: its default set (shared with `corral build`'s
//! RUN steps, from `corral-oci`), then `cap_drop` and `cap_add`, where `ALL` in `cap_add`
//! means every capability the daemon can hand on (less those dropped) and `ALL` in `cap_drop`
//! means only those added. The bounding, effective and permitted sets are that result; inheritable
//! and ambient stay empty (as Docker since CVE-2022-24769), so a non-root user's programs
//! start without capabilities unless a file grants them.

use corral_api::ContainerSpec;
use corral_oci::capabilities;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, LinuxCapabilitiesBuilder};

use crate::error::{ApiError, ApiResult};

fn is_all(s: &str) -> bool {
    s.eq_ignore_ascii_case("all") || s.eq_ignore_ascii_case("cap_all")
}

fn parse(s: &str, field: String) -> ApiResult<Capability> {
    capabilities::parse(s).ok_or_else(|| {
        ApiError::invalid(
            field,
            format!("unknown capability {s:?} (a name such as NET_ADMIN, or ALL)"),
        )
    })
}

/// The capabilities in `list` other than `ALL`, checked; `field` names the list.
fn named(list: &[String], field: &str) -> ApiResult<Capabilities> {
    list.iter()
        .enumerate()
        .filter(|(_, c)| !is_all(c))
        .map(|(i, c)| parse(c, format!("{field}[{i}]")))
        .collect()
}

/// Check `cap_add` and `cap_drop`; the first unknown name is reported with its field path.
pub fn validate(spec: &ContainerSpec) -> ApiResult<()> {
    named(&spec.cap_add, "cap_add")?;
    named(&spec.cap_drop, "cap_drop")?;
    Ok(())
}

/// The capability set of a container made from `spec`.
pub fn set_of(spec: &ContainerSpec) -> ApiResult<Capabilities> {
    let add = named(&spec.cap_add, "cap_add")?;
    let drop = named(&spec.cap_drop, "cap_drop")?;
    let mut set = if spec.cap_add.iter().any(|c| is_all(c)) {
        capabilities::all_available()
    } else if spec.cap_drop.iter().any(|c| is_all(c)) {
        return Ok(add);
    } else {
        capabilities::docker_default()
    };
    set.retain(|c| !drop.contains(c));
    set.extend(add);
    Ok(set)
}

/// The `process.capabilities` of a container made from `spec`.
pub fn process_capabilities(spec: &ContainerSpec) -> ApiResult<LinuxCapabilities> {
    let set = set_of(spec)?;
    LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .map_err(|e| ApiError::internal("building process.capabilities", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(add: &[&str], drop: &[&str]) -> ContainerSpec {
        ContainerSpec {
            image: "busybox".into(),
            cap_add: add.iter().map(|s| s.to_string()).collect(),
            cap_drop: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_default_is_dockers_fourteen() {
        let set = set_of(&spec(&[], &[])).unwrap();
        assert_eq!(set, capabilities::docker_default());
        assert!(set.contains(&Capability::Chown) && set.contains(&Capability::Setuid));
        assert!(!set.contains(&Capability::SysAdmin));
        let caps = process_capabilities(&spec(&[], &[])).unwrap();
        assert!(caps.ambient().as_ref().unwrap().is_empty());
        assert!(caps.inheritable().as_ref().unwrap().is_empty());
        assert_eq!(caps.effective().as_ref().unwrap().len(), 14);
    }

    #[test]
    fn drops_then_adds_with_all_in_either_list() {
        let set = set_of(&spec(&["net_admin"], &["CAP_CHOWN"])).unwrap();
        assert!(set.contains(&Capability::NetAdmin) && !set.contains(&Capability::Chown));
        assert_eq!(set.len(), 14);
        // Dropped then added: kept, as Docker.
        assert!(set_of(&spec(&["CHOWN"], &["CHOWN"]))
            .unwrap()
            .contains(&Capability::Chown));
        let only = set_of(&spec(&["kill"], &["ALL"])).unwrap();
        assert_eq!(only, [Capability::Kill].into_iter().collect());
        assert!(set_of(&spec(&[], &["all"])).unwrap().is_empty());
        let all = set_of(&spec(&["ALL"], &["sys_admin"])).unwrap();
        assert!(all.contains(&Capability::NetAdmin) && !all.contains(&Capability::SysAdmin));
        assert!(all.len() > 30, "{all:?}");
    }

    #[test]
    fn unknown_names_are_refused_with_their_field() {
        let e = validate(&spec(&["NET_ADMIN", "NOPE"], &[])).unwrap_err();
        assert!(
            matches!(&e, ApiError::Invalid { field, .. } if field == "cap_add[1]"),
            "{e}"
        );
        let e = validate(&spec(&[], &["chown", "bad"])).unwrap_err();
        assert!(matches!(&e, ApiError::Invalid { field, .. } if field == "cap_drop[1]"));
    }
}
