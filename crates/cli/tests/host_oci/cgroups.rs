//! Cgroup limits of `corral oci` containers, each read back from inside the container
//! through its `cgroup` mount (or felt: OOM kill, failed fork).

use std::path::Path;

use serde_json::json;

use crate::oci_support::{host_ready, TestBundle};

#[test]
fn host_oci_memory_limit_oom_kills() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new("oom", "exec dd if=/dev/zero of=/dev/null bs=64M count=1");
    b.config["linux"]["resources"] = json!({"memory": {"limit": 16777216, "swap": 16777216}});
    let (code, out, err) = b.run();
    assert_eq!(
        code, 137,
        "dd over the limit is OOM-killed (SIGKILL): out={out} err={err}"
    );
}

#[test]
fn host_oci_pids_limit_stops_fork() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new(
        "pids",
        "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; echo all forked",
    );
    b.config["linux"]["resources"] = json!({"pids": {"limit": 4}});
    let (code, out, err) = b.run();
    assert_ne!(code, 0, "out: {out}");
    assert!(!out.contains("all forked"), "{out}");
    assert!(err.contains("can't fork"), "fork must fail: {err}");
}

#[test]
fn host_oci_cpu_limits_visible_inside() {
    if !host_ready() {
        return;
    }
    let mut b = TestBundle::new(
        "cpu",
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.shares",
    );
    b.config["linux"]["resources"] =
        json!({"cpu": {"quota": 20000, "period": 100000, "shares": 512}});
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["20000", "512"]);
}

/// `major:minor` of the first real block device (for throttle rules).
fn some_block_device() -> (u64, u64) {
    let mut devs: Vec<_> = std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with("loop"))
        .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
        .collect();
    devs.sort();
    let dev = devs.first().expect("a block device in /sys/block");
    let (major, minor) = dev.trim().split_once(':').unwrap();
    (major.parse().unwrap(), minor.parse().unwrap())
}

#[test]
fn host_oci_memory_reservation_swap_blkio_throttle_and_hugetlb_visible_inside() {
    if !host_ready() {
        return;
    }
    let (major, minor) = some_block_device();
    // Pure v1 hosts have a hugetlb hierarchy; hybrid ones (like this one) hold it in the
    // unified tree, which the container sees at /sys/fs/cgroup/unified.
    let hugetlb = if Path::new("/sys/fs/cgroup/hugetlb").exists() {
        "/sys/fs/cgroup/hugetlb/hugetlb.2MB.limit_in_bytes"
    } else {
        "/sys/fs/cgroup/unified/hugetlb.2MB.max"
    };
    let m = "/sys/fs/cgroup/memory";
    let mut b = TestBundle::new(
        "knobs",
        &format!(
            "cat {m}/memory.soft_limit_in_bytes {m}/memory.memsw.limit_in_bytes \
             /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device {hugetlb}"
        ),
    );
    b.config["linux"]["resources"] = json!({
        "memory": {"limit": 67108864, "swap": 134217728, "reservation": 33554432},
        "blockIO": {"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
    });
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "stderr: {err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "33554432",
            "134217728",
            &format!("{major}:{minor} 1048576"),
            "4194304"
        ]
    );
    assert!(!b.cgroup_exists(), "cgroups removed after run");
}

#[test]
fn host_oci_blkio_weight_applies_or_is_refused_by_name() {
    if !host_ready() {
        return;
    }
    // Weight files exist only below the root and only with bfq/cfq: which one (if any) the
    // container's cgroup has is known only once it is made.
    let b = "/sys/fs/cgroup/blkio";
    let mut bundle = TestBundle::new(
        "weight",
        &format!("cat {b}/blkio.bfq.weight 2>/dev/null || cat {b}/blkio.weight"),
    );
    bundle.config["linux"]["resources"] = json!({"blockIO": {"weight": 300}});
    let (code, out, err) = bundle.run();
    if code == 0 {
        assert!(out.trim().ends_with("300"), "weight visible inside: {out}");
    } else {
        assert_eq!(code, 1, "refused: out={out}");
        assert!(err.contains("blockIO.weight"), "names the field: {err}");
        assert!(!bundle.cgroup_exists(), "nothing left behind");
    }
}
