//! End-to-end runs of the `corral` binary.

use std::process::{Command, Output};

fn corral(args: &[&str]) -> Output {
    let root = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(args)
        .env("CORRAL_ROOT", root.path())
        .env("CORRAL_RUN", root.path().join("run"))
        .output()
        .expect("run corral")
}

fn skip_host_tests() -> bool {
    std::env::var("CORRAL_SKIP_HOST_TESTS").as_deref() == Ok("1")
}

#[test]
fn help_lists_every_command_group() {
    let out = corral(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for group in [
        "vm",
        "run",
        "ps",
        "logs",
        "exec",
        "stop",
        "kill",
        "rm",
        "inspect",
        "image",
        "app",
        "apply",
        "network",
        "daemon",
        "vmm",
        "shim",
        "oci",
        "doctor",
        "version",
        "completion",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{group} "))),
            "no {group} in\n{text}"
        );
    }
}

#[test]
fn unbuilt_verbs_exit_2_and_say_so() {
    let out = corral(&["vm", "migrate", "vm1", "tcp://host2:7070"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("`corral vm migrate` is not implemented yet"),
        "{err}"
    );
}

#[test]
fn runc_name_selects_the_oci_face() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("corral-runc");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_corral"), &link).unwrap();
    let state_dir = dir.path().join("state");
    let out = Command::new(&link)
        .arg("--root")
        .arg(&state_dir)
        .args(["state", "c1"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("does not exist"),
        "runc's answer for an unknown container: {text}"
    );
}

#[test]
fn completion_script_for_bash() {
    let out = corral(&["completion", "bash"]);
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().contains("_corral()"));
}

#[test]
fn version_json_has_commit() {
    let out = corral(&["version", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["commit"].is_string());
}

/// Runs doctor against the real host. On this development host (KVM-PVM, hybrid cgroups) it
/// must say so; elsewhere it must at least produce a consistent report.
#[test]
fn host_doctor_reports_kvm_flavour_and_cgroups() {
    if skip_host_tests() {
        return;
    }
    let out = corral(&["doctor", "--json"]);
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let get = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let missing = checks.iter().any(|c| c["status"] == "missing");
    assert_eq!(out.status.code(), Some(if missing { 1 } else { 0 }));
    let cgroups = get("cgroups")["detail"].as_str().unwrap().to_owned();
    assert!(
        ["v1", "v2", "hybrid"]
            .iter()
            .any(|k| cgroups.starts_with(k)),
        "{cgroups}"
    );
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        assert!(get("kvm")["detail"].as_str().unwrap().contains("KVM-PVM"));
        assert!(get("vm backend (--accel auto)")["detail"]
            .as_str()
            .unwrap()
            .starts_with("emu:"));
        assert!(
            cgroups.starts_with("hybrid"),
            "this host mounts v1 plus a v2 hugetlb mount: {cgroups}"
        );
    }
}
