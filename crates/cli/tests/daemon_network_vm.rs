//! A container and a VM on one corral network: the VM is defined with `vm create --network`
//! (the daemon makes its tap on the network's bridge and puts `ip=` on the kernel command
//! line), boots Linux under the software CPU with a busybox initramfs whose /init applies that
//! `ip=` (the shared guest kernel has no CONFIG_IP_PNP) and serves HTTP; a container of the
//! same network pings it and fetches a page by the VM's name (DNS). The initramfs also starts
//! the guest agent (`corral-agent`): its heartbeat and the guest's memory figures show in
//! `vm ls`, `ps -a --all-kinds` and `vm inspect`, `vm exec` runs commands through it, and
//! `vm shutdown` powers the guest off through it. Then `vm rm` removes the tap and nothing is left.
//!
//! Host test: root, a guest kernel (CORRAL_GUEST_KERNEL, or ../shared/guest/vmlinux-microvm),
//! Debian's busybox-static, cpio and the static guest agent (scripts/agent.sh builds it;
//! scripts/test.sh does that and sets CORRAL_AGENT_BIN). The boot costs ~20-45 s on this host (software CPU), so
//! this is the one VM boot of the network tests. CORRAL_SKIP_HOST_TESTS=1 skips it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod world;

use world::network::require_net_host;
use world::{guest, skip, World};

const READY: &str = "CORRAL-VM-NET-READY";

/// The static guest agent: CORRAL_AGENT_BIN, else where scripts/agent.sh puts it in this
/// build's target dir.
fn agent_bin() -> PathBuf {
    let p = std::env::var_os("CORRAL_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // <target>/debug/corral → <target>/x86_64-unknown-linux-gnu/agent/corral-agent
            let exe = Path::new(env!("CARGO_BIN_EXE_corral"));
            exe.parent()
                .and_then(Path::parent)
                .unwrap()
                .join("x86_64-unknown-linux-gnu/agent/corral-agent")
        });
    assert!(
        p.is_file(),
        "this test needs the static guest agent at {}: run scripts/agent.sh (scripts/test.sh \
         does) or set CORRAL_AGENT_BIN",
        p.display()
    );
    p
}

/// A busybox initramfs whose /init starts the guest agent and takes
/// `ip=IP::GW:MASK::eth0:off` from the command line.
fn initramfs(dir: &Path) -> PathBuf {
    let root = guest::busybox_tree(dir, &["proc", "sys", "dev", "www"]);
    std::fs::copy(agent_bin(), root.join("bin/corral-agent")).unwrap();
    let init = format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
corral-agent &
for a in $(cat /proc/cmdline); do
  case $a in ip=*) v=${{a#ip=}}; IP=${{v%%:*}}; r=${{v#*::}}; GW=${{r%%:*}};; esac
done
ip link set lo up
ip link set eth0 up
ip addr add $IP/24 dev eth0
ip route add default via $GW
echo "hello from the vm" > /www/index.html
httpd -p 80 -h /www
echo {READY} $IP
sleep 600
poweroff -f
"#
    );
    guest::pack(&root, &init)
}

#[test]
fn host_emu_container_and_vm_on_one_network_ping_and_tcp_by_name() {
    if skip() {
        return;
    }
    require_net_host();
    let kernel = guest::kernel();
    let w = World::network(4);
    let initrd = initramfs(&w.root.parent().unwrap().join("guest"));
    let net = format!("{}-mix", w.prefix());
    w.ok(&["network", "create", &net]);
    w.ok(&[
        "vm",
        "create",
        "vm1",
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--cmdline",
        "console=ttyS0 quiet panic=-1",
        "--memory",
        "256M",
        "--network",
        &net,
    ]);
    let vm_ip = w.ip_of("vm1");
    let tap = w.inspect("vm1")["network"]["host_link"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(&["vm", "start", "vm1"]);
    // Readiness: the guest's marker line on its serial log (bounded).
    let serial = w.root.join("vms/vm1/logs/serial.log");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let log = std::fs::read_to_string(&serial).unwrap_or_default();
        if log.contains(READY) {
            assert!(log.contains(&format!("{READY} {vm_ip}")), "{log}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the guest never got ready:\n{log}\n{}",
            std::fs::read_to_string(w.root.join("vms/vm1/logs/vmm.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = w.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "--cap-add",
        "NET_RAW",
        "busybox",
        "sh",
        "-c",
        "ping -c 1 -W 5 vm1 && wget -qO- http://vm1/",
    ]);
    assert!(out.contains(&format!("({vm_ip})")), "{out}");
    assert!(out.contains("hello from the vm"), "{out}");

    // The guest agent's heartbeats reach the inventory (bounded: the agent connects once the
    // guest's /init started it; it beats every 2 s).
    let deadline = Instant::now() + Duration::from_secs(120);
    let row = loop {
        let rows: serde_json::Value =
            serde_json::from_str(&w.ok(&["vm", "ls", "--format", "json"])).unwrap();
        let row = rows
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == "vm1"))
            .cloned()
            .unwrap_or_default();
        if row["heartbeat"]
            .as_str()
            .is_some_and(|h| h.ends_with("s ago"))
        {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "no heartbeat from the guest agent: {row}\nserial.log:\n{}",
            std::fs::read_to_string(&serial).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Memory demand is the guest's MemTotal - MemAvailable: some, less than its 256 MiB.
    let demand = row["memory_demand"].as_u64().unwrap_or(0);
    assert!(demand > 1 << 20 && demand < 256 << 20, "{row}");
    assert_eq!(row["memory_assigned"].as_u64(), Some(256 << 20), "{row}");
    let info: serde_json::Value = serde_json::from_str(&w.ok(&["vm", "inspect", "vm1"])).unwrap();
    let agent = &info["guest_agent"];
    assert_eq!(agent["connected"], true, "{info}");
    let total = agent["mem_total"].as_u64().unwrap_or(0);
    assert!(total > 128 << 20 && total <= 256 << 20, "{info}");
    assert!(
        agent["mem_available"].as_u64().unwrap_or(u64::MAX) < total,
        "{info}"
    );
    assert!(agent["guest_uptime_secs"].as_u64().is_some(), "{info}");
    assert!(
        agent["memory_demand_source"]
            .as_str()
            .is_some_and(|s| s.contains("MemAvailable")),
        "{info}"
    );
    let table = w.ok(&["ps", "-a", "--all-kinds"]);
    let line = table.lines().find(|l| l.starts_with("vm1 ")).unwrap_or("");
    assert!(
        line.trim_end().ends_with("s ago"),
        "HEARTBEAT column:\n{table}"
    );

    // Commands run in the guest through the agent: output, errors and exit status come back.
    let out = w.corral(&[
        "vm",
        "exec",
        "vm1",
        "--",
        "sh",
        "-c",
        "cat /proc/sys/kernel/ostype; echo oops >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Linux\n", "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n", "{out:?}");
    // More output than a pipe holds arrives whole (the command ends before it is through).
    let out = w.corral(&[
        "vm",
        "exec",
        "vm1",
        "--",
        "sh",
        "-c",
        "head -c 300000 /dev/zero",
    ]);
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
    assert_eq!(out.stdout.len(), 300_000);
    assert!(out.stdout.iter().all(|&b| b == 0));
    let out = w.corral(&["vm", "exec", "vm1", "/no/such/prog"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/no/such/prog"),
        "{out:?}"
    );

    // A guest-cooperative shutdown goes through the agent: it powers the guest off.
    w.ok(&["vm", "shutdown", "vm1", "--timeout", "120"]);
    let info: serde_json::Value = serde_json::from_str(&w.ok(&["vm", "inspect", "vm1"])).unwrap();
    assert_eq!(info["state"], "exited", "{info}");
    assert!(info["reason"].is_null(), "turned off instead: {info}");
    let log = std::fs::read_to_string(&serial).unwrap_or_default();
    assert!(
        log.contains("shutdown requested by the host: powering off"),
        "{log}"
    );
    w.ok(&["vm", "rm", "vm1"]);
    assert!(!w.links().contains(&tap), "the tap went with the VM");
    w.ok(&["network", "rm", &net]);
    w.assert_nothing_left();
}
