//! Differential tests (need root and Debian's runc at /usr/sbin/runc): the same bundles under
//! runc and corral give the same `state` JSON shape, statuses and exit codes.

mod oci_support;

use std::path::{Path, PathBuf};

use oci_support::{corral, host_ready, state, wait_pid_exit, TestBundle};

fn runc() -> PathBuf {
    let p = PathBuf::from("/usr/sbin/runc");
    assert!(
        p.exists(),
        "this test needs Debian's runc at /usr/sbin/runc (scripts/setup.sh installs it)"
    );
    p
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// The exit code of each step of a lifecycle, and the state JSON after create.
fn lifecycle(b: &TestBundle, rt: &Path) -> (Vec<Option<i32>>, serde_json::Value, Vec<String>) {
    let mut codes = Vec::new();
    let mut statuses = Vec::new();
    let mut step = |args: &[&str]| codes.push(b.rt(rt, args).status.code());
    step(&["create", &b.id]);
    let created = state(b, rt).expect("state after create");
    statuses.push(created["status"].as_str().unwrap().to_owned());
    step(&["create", &b.id]); // duplicate id
    step(&["start", &b.id]);
    statuses.push(state(b, rt).unwrap()["status"].as_str().unwrap().to_owned());
    step(&["start", &b.id]); // already running
    step(&["delete", &b.id]); // running, no --force
    step(&["pause", &b.id]);
    statuses.push(state(b, rt).unwrap()["status"].as_str().unwrap().to_owned());
    step(&["resume", &b.id]);
    step(&["kill", &b.id, "KILL"]);
    wait_pid_exit(created["pid"].as_i64().unwrap() as i32);
    statuses.push(state(b, rt).unwrap()["status"].as_str().unwrap().to_owned());
    step(&["delete", &b.id]);
    step(&["state", &b.id]); // gone
    step(&["delete", &b.id]); // gone
    step(&["delete", "--force", &b.id]); // gone, forced
    step(&["kill", "no-such-container-corral"]);
    (codes, created, statuses)
}

#[test]
fn host_oci_lifecycle_matches_runc() {
    if !host_ready() {
        return;
    }
    let b = TestBundle::new("diff", "exec sleep 1000");
    let (runc_codes, runc_state, runc_statuses) = lifecycle(&b, &runc());
    let (our_codes, our_state, our_statuses) = lifecycle(&b, &corral());
    assert_eq!(our_statuses, runc_statuses);
    assert_eq!(
        our_codes, runc_codes,
        "exit codes per step (corral vs runc)"
    );
    assert_eq!(keys(&our_state), keys(&runc_state), "state JSON fields");
    for k in ["ociVersion", "id", "status", "bundle", "rootfs", "owner"] {
        assert_eq!(our_state[k], runc_state[k], "state field {k}");
    }
    assert!(our_state["created"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn host_oci_run_exit_codes_match_runc() {
    if !host_ready() {
        return;
    }
    for script in ["exit 0", "exit 3", "kill -9 $$"] {
        let b = TestBundle::new("diffrun", script);
        let theirs = b.rt(&runc(), &["run", &b.id]).status.code();
        let ours = b.rt(&corral(), &["run", &b.id]).status.code();
        assert_eq!(ours, theirs, "run of {script:?}");
    }
    let mut b = TestBundle::new("diffbad", "true");
    b.config["process"]["args"] = serde_json::json!(["/no/such/program"]);
    let theirs = b.rt(&runc(), &["run", &b.id]).status.code();
    let ours = b.rt(&corral(), &["run", &b.id]).status.code();
    assert_eq!(ours, theirs, "run of a missing program");
}
