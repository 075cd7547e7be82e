//! Seccomp from the spec's `linux.seccomp`, compiled to BPF by `seccompiler` (the pure-Rust
//! compiler of Firecracker, so no libseccomp is needed at build or run time).
//!
//! seccompiler gives a filter one match action and one mismatch action, while the spec gives
//! each rule its own. The kernel runs every installed filter and keeps the most severe
//! verdict, so the spec becomes several filters: one that allows every syscall some rule
//! names (with its argument conditions) and applies `defaultAction` to the rest, plus one
//! per distinct non-allow action that applies it to the rules that carry it and allows
//! everything else.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    LinuxSyscall,
};
use seccompiler::{sock_filter, TargetArch};
use serde_json::{json, Value};

/// A seccomp profile that cannot be compiled or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A field of `linux.seccomp` is not supported.
    #[error("linux.seccomp.{field}: {reason}")]
    Unsupported {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// The compiler refused the profile.
    #[error("linux.seccomp: {0}")]
    Compile(String),
    /// The kernel refused the filter.
    #[error("loading seccomp filter: {0}")]
    Load(nix::Error),
}

/// Compiled filters, in load order, and the `seccomp(2)` flags.
#[derive(Debug, Clone)]
pub struct Compiled {
    filters: Vec<Vec<sock_filter>>,
    flags: libc::c_ulong,
}

fn action(a: LinuxSeccompAction, errno: Option<u32>, field: &str) -> Result<Value, SeccompError> {
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => json!("allow"),
        LinuxSeccompAction::ScmpActErrno => json!({"errno": errno.unwrap_or(libc::EPERM as u32)}),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            json!("kill_thread")
        }
        LinuxSeccompAction::ScmpActKillProcess => json!("kill_process"),
        LinuxSeccompAction::ScmpActLog => json!("log"),
        LinuxSeccompAction::ScmpActTrace => json!({"trace": errno.unwrap_or(0)}),
        LinuxSeccompAction::ScmpActTrap => json!("trap"),
        other => {
            return Err(SeccompError::Unsupported {
                field: field.into(),
                reason: format!("action {other:?} is not supported"),
            })
        }
    })
}

fn rule_json(name: &str, s: &LinuxSyscall, field: &str) -> Result<Value, SeccompError> {
    let mut args = Vec::new();
    for (j, a) in s.args().iter().flatten().enumerate() {
        let op = match a.op() {
            LinuxSeccompOperator::ScmpCmpNe => json!("ne"),
            LinuxSeccompOperator::ScmpCmpLt => json!("lt"),
            LinuxSeccompOperator::ScmpCmpLe => json!("le"),
            LinuxSeccompOperator::ScmpCmpEq => json!("eq"),
            LinuxSeccompOperator::ScmpCmpGe => json!("ge"),
            LinuxSeccompOperator::ScmpCmpGt => json!("gt"),
            LinuxSeccompOperator::ScmpCmpMaskedEq => json!({"masked_eq": a.value()}),
        };
        let val = match a.op() {
            LinuxSeccompOperator::ScmpCmpMaskedEq => a.value_two().unwrap_or(0),
            _ => a.value(),
        };
        if a.index() > 5 {
            return Err(SeccompError::Unsupported {
                field: format!("{field}.args[{j}].index"),
                reason: "must be 0..5".into(),
            });
        }
        args.push(json!({"index": a.index(), "type": "qword", "op": op, "val": val}));
    }
    Ok(if args.is_empty() {
        json!({"syscall": name})
    } else {
        json!({"syscall": name, "args": args})
    })
}

/// Compile `linux.seccomp` for this machine's architecture.
pub fn compile(s: &LinuxSeccomp) -> Result<Compiled, SeccompError> {
    if s.listener_path().is_some() {
        return Err(SeccompError::Unsupported {
            field: "listenerPath".into(),
            reason: "user notification is not supported".into(),
        });
    }
    let native = native_arch();
    if let Some(archs) = s.architectures() {
        if !archs.is_empty() && !archs.contains(&native.1) {
            return Err(SeccompError::Unsupported {
                field: "architectures".into(),
                reason: format!("does not list this machine's {:?}", native.1),
            });
        }
    }
    let mut flags: libc::c_ulong = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
        };
    }
    let default = action(s.default_action(), s.default_errno_ret(), "defaultAction")?;
    let mut allow_rules = Vec::new();
    // action JSON (as text, to group by) → rules
    let mut groups: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("syscalls[{i}]");
        let act = action(sc.action(), sc.errno_ret(), &format!("{field}.action"))?;
        for name in sc.names() {
            let rule = rule_json(name, sc, &field)?;
            if act == default {
                continue;
            }
            allow_rules.push(rule.clone());
            if act != json!("allow") {
                groups
                    .entry(act.to_string())
                    .or_insert_with(|| (act.clone(), Vec::new()))
                    .1
                    .push(rule);
            }
        }
    }
    let mut filters = Vec::new();
    if default != json!("allow") {
        filters.push(compile_one(default, json!("allow"), allow_rules, native.0)?);
    }
    for (_, (act, rules)) in groups {
        filters.push(compile_one(json!("allow"), act, rules, native.0)?);
    }
    Ok(Compiled { filters, flags })
}

/// Compile one filter, leaving out syscalls this architecture does not have (as libseccomp
/// does for the names of other kernels' syscalls).
fn compile_one(
    mismatch: Value,
    matched: Value,
    mut rules: Vec<Value>,
    arch: TargetArch,
) -> Result<Vec<sock_filter>, SeccompError> {
    loop {
        let doc =
            json!({"f": {"mismatch_action": mismatch, "match_action": matched, "filter": rules}});
        let text = doc.to_string();
        match seccompiler::compile_from_json(text.as_bytes(), arch) {
            Ok(mut map) => return Ok(map.remove("f").unwrap_or_default()),
            Err(e) => {
                let msg = e.to_string();
                let unknown = msg
                    .split("Invalid syscall name: ")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .map(str::to_owned);
                match unknown {
                    Some(name) => rules.retain(|r| r["syscall"] != json!(name)),
                    None => return Err(SeccompError::Compile(msg)),
                }
            }
        }
    }
}

fn native_arch() -> (TargetArch, Arch) {
    #[cfg(target_arch = "aarch64")]
    return (TargetArch::aarch64, Arch::ScmpArchAarch64);
    #[cfg(not(target_arch = "aarch64"))]
    (TargetArch::x86_64, Arch::ScmpArchX86_64)
}

/// Install the filters in this thread (needs no_new_privs or CAP_SYS_ADMIN).
pub fn load(c: &Compiled) -> Result<(), SeccompError> {
    for f in &c.filters {
        if f.is_empty() {
            continue;
        }
        let prog = libc::sock_fprog {
            len: f.len() as u16,
            filter: f.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at `f`, alive for the call; the kernel copies the program.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                c.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        nix::errno::Errno::result(r).map_err(SeccompError::Load)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_become_separate_filters_and_unknown_names_are_skipped() {
        let s: LinuxSeccomp = serde_json::from_value(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["mkdir", "no_such_syscall_corral"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]}
            ]
        }))
        .unwrap();
        let c = compile(&s).unwrap();
        assert_eq!(c.filters.len(), 2, "one filter per errno value");
        let bad: LinuxSeccomp = serde_json::from_value(json!({
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x"
        }))
        .unwrap();
        assert!(compile(&bad)
            .unwrap_err()
            .to_string()
            .contains("listenerPath"));
    }

    #[test]
    fn default_deny_allows_listed() {
        let s: LinuxSeccomp = serde_json::from_value(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
        }))
        .unwrap();
        assert_eq!(compile(&s).unwrap().filters.len(), 1);
    }
}
