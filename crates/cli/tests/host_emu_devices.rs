//! One Linux boot under `corral vmm --config vm.toml` (software CPU) that checks the guest-visible devices at
//! once (each software-CPU boot costs ~45 s here, so there is exactly one): the guest's /init
//! prints `CHECK key=value` lines for nproc, a file's sha256 on a virtio-blk ext4 disk,
//! virtio-rng reads, the virtio-net MAC and a ping to the host end of a tap, a vsock stream
//! the host opens (hybrid `CONNECT <port>`) and one the guest opens, the balloon inflated
//! through the control socket (the guest's MemTotal drops) with its statistics, then powers
//! off.
//!
//! Host test: needs root (a network namespace and a tap), a guest kernel
//! (CORRAL_GUEST_KERNEL, or ../shared/guest/vmlinux-microvm), Debian's busybox-static, cpio,
//! e2fsprogs, iproute2 and a C compiler (`cc`, for the guest's vsock probe: busybox has no
//! AF_VSOCK). CORRAL_SKIP_HOST_TESTS=1 skips it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_vmm::control;

#[path = "world/guest.rs"]
mod guest;

const HOST_IP: &str = "10.213.7.1";
const GUEST_IP: &str = "10.213.7.2";
const GUEST_MAC: &str = "52:54:00:c0:11:01";
const DONE: &str = "CORRAL-CHECKS-DONE";
const TCP_OUT_PORT: u16 = 7000;
const TCP_IN_PORT: u16 = 7001;
const GUEST_VSOCK_PORT: u32 = 5000;
const HOST_VSOCK_PORT: u32 = 6000;
const BALLOON_MIB: u64 = 64;
const BALLOON_KIB: u64 = BALLOON_MIB * 1024;

fn skip() -> bool {
    std::env::var("CORRAL_SKIP_HOST_TESTS").as_deref() == Ok("1")
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed by this host test: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace holding the test's tap, deleted (with the tap) when dropped.
struct Netns(String);

impl Netns {
    fn create(name: String) -> Self {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        Netns(name)
    }
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.0];
        all.extend_from_slice(args);
        run("ip", &all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A newc initramfs with busybox and `init` as /init.
fn initramfs(dir: &Path, init: &str) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "this host test needs Debian's busybox-static"
    );
    let root = guest::busybox_tree(dir, &["dev", "proc", "sys", "mnt"]);
    let probe = root.join("bin/vsock-probe");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest/vsock-probe.c");
    run(
        "cc",
        &[
            "-static",
            "-Os",
            "-o",
            probe.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    guest::pack(&root, init)
}

/// An ext4 image holding `payload.bin`; returns the image and the payload's sha256.
fn disk_image(dir: &Path) -> (PathBuf, String) {
    let content = dir.join("disk");
    std::fs::create_dir_all(&content).unwrap();
    let payload: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(content.join("payload.bin"), &payload).unwrap();
    let img = dir.join("disk.img");
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-d",
            content.to_str().unwrap(),
            img.to_str().unwrap(),
            "8M",
        ],
    );
    let out = Command::new("sha256sum")
        .arg(content.join("payload.bin"))
        .output()
        .expect("sha256sum");
    let sum = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    (img, sum)
}

fn init_script() -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
timeout 300 vsock-probe listen {GUEST_VSOCK_PORT} &
LISTENER=$!
echo "CHECK nproc=$(nproc)"
memtotal() {{ awk '/MemTotal/ {{print $2}}' /proc/meminfo; }}
M0=$(memtotal)
echo "CHECK memtotal0=$M0"
for i in $(seq 1 60); do [ $((M0 - $(memtotal))) -ge {BALLOON_KIB} ] && break; sleep 1; done
echo "CHECK balloon=$(( (M0 - $(memtotal)) >= {BALLOON_KIB} ))"
mount -t ext4 -o ro /dev/vda /mnt && echo "CHECK blk=$(sha256sum /mnt/payload.bin | cut -d' ' -f1)"
echo "CHECK rng=$(cat /sys/class/misc/hw_random/rng_current)/$(head -c 64 /dev/hwrng | wc -c)"
echo "CHECK mac=$(cat /sys/class/net/eth0/address)"
ip link set lo up
ip link set eth0 up
ip addr add {GUEST_IP}/24 dev eth0
if ping -c 2 -W 10 {HOST_IP} >/dev/null; then echo "CHECK ping=ok"; else echo "CHECK ping=failed"; fi
nc {HOST_IP} {TCP_OUT_PORT} -e cat /mnt/payload.bin && echo "CHECK tcp-out=sent"
printf '#!/bin/sh\nexec sha256sum > /tcp-in.sum\n' > /bin/tcp-in && chmod +x /bin/tcp-in
nc -l -p {TCP_IN_PORT} -e /bin/tcp-in &
TCP_IN=$!
echo "CHECK tcp-listening=1"
wait $TCP_IN
echo "CHECK tcp-in=$(cut -d' ' -f1 /tcp-in.sum)"
vsock-probe connect {HOST_VSOCK_PORT} hello-host
wait $LISTENER
echo {DONE}
poweroff -f
"#
    )
}

#[test]
fn host_emu_guest_uses_blk_rng_net_vsock_and_balloon_then_powers_off() {
    if skip() {
        return;
    }
    let kernel = guest::kernel();
    let pid = std::process::id();
    let dir = tempfile::Builder::new()
        .prefix(&format!("vmm-{pid}-"))
        .tempdir()
        .unwrap();
    let ns = Netns::create(format!("vmm-{pid}"));
    let tap = format!("vmmtap{pid}");
    ns.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"]);
    ns.ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", &tap]);
    ns.ip(&["link", "set", &tap, "up"]);
    let (img, sum) = disk_image(dir.path());
    let initrd = initramfs(dir.path(), &init_script());

    // The guest's connection to host port 6000 lands on <uds>_6000: answer it.
    let uds = dir.path().join("vsock.sock");
    let host_listener = UnixListener::bind(format!("{}_{HOST_VSOCK_PORT}", uds.display())).unwrap();
    let host_side = std::thread::spawn(move || -> std::io::Result<String> {
        let (s, _) = host_listener.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(300)))?;
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line)?;
        (&s).write_all(format!("thanks:{line}").as_bytes())?;
        Ok(line.trim_end().to_owned())
    });
    let mut host_connect = None;
    // TCP both ways over the tap: the guest sends the payload to a listener in the netns,
    // then the netns sends it to the guest; each side reports the sha256 it received.
    // (busybox nc quits when its own stdin ends, so each receiver is a program run on the
    // connection, reading it to its end; the guest sends with cat's sendfile, in one piece, so
    // its TCP has whole segments to hand the NIC.)
    let sink = dir.path().join("tcp-sink.sh");
    let sink_sum = dir.path().join("tcp-out.sum");
    std::fs::write(
        &sink,
        format!("#!/bin/sh\nexec sha256sum > {}\n", sink_sum.display()),
    )
    .unwrap();
    std::fs::set_permissions(&sink, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut tcp_sink = Command::new("ip")
        .args(["netns", "exec", &ns.0, "busybox", "nc", "-l", "-p"])
        .arg(TCP_OUT_PORT.to_string())
        .arg("-e")
        .arg(&sink)
        .stdin(Stdio::null())
        .spawn()
        .expect("nc listener in the netns");
    let payload = dir.path().join("disk/payload.bin");
    let mut tcp_source = None;

    let ctl = dir.path().join("ctl.sock");
    let vm_toml = dir.path().join("vm.toml");
    std::fs::write(
        &vm_toml,
        format!(
            r#"kernel = {kernel:?}
initrd = {initrd:?}
cmdline = "console=ttyS0 reboot=k panic=-1 no_int3_selftest quiet"
cpus = 1
memory = "256M"
accel = "emu"
serial = "stdio"
[[disk]]
path = {img:?}
read_only = true
[net]
tap = "{tap}"
mac = "{GUEST_MAC}"
[vsock]
cid = 3
uds_path = {uds:?}
[balloon]
stats_interval_s = 1
"#,
        ),
    )
    .unwrap();

    let corral = env!("CARGO_BIN_EXE_corral");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0, corral, "vmm", "--config"])
        .arg(&vm_toml)
        .arg("--control-socket")
        .arg(&ctl)
        .env("CORRAL_ROOT", dir.path())
        .env("CORRAL_RUN", dir.path().join("run"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start corral vmm");

    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait for the guest's last marker, bounded so a hung guest fails the test.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut console = String::new();
    let mut checks = BTreeMap::new();
    let mut done = false;
    let mut balloon_stats = None;
    let mut metrics = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let line = line.trim_end_matches('\r').to_owned();
                if let Some((k, v)) = line
                    .strip_prefix("CHECK ")
                    .and_then(|kv| kv.split_once('='))
                {
                    checks.insert(k.to_owned(), v.to_owned());
                    if k == "memtotal0" {
                        let r = control::call_request(
                            &ctl,
                            &control::Request {
                                version: control::PROTOCOL_VERSION,
                                op: control::Op::Balloon,
                                target_mib: Some(BALLOON_MIB),
                            },
                        );
                        assert!(r.as_ref().is_ok_and(|r| r.ok), "balloon request: {r:?}");
                    }
                    if k == "tcp-listening" {
                        let (ns, payload) = (ns.0.clone(), payload.clone());
                        tcp_source = Some(std::thread::spawn(move || {
                            // The guest listens a moment after it says so: retry, bounded.
                            let send = format!(
                                "for i in $(seq 100); do busybox nc {GUEST_IP} {TCP_IN_PORT} < {} \
                                 && exit 0; sleep 0.2; done; exit 1",
                                payload.display()
                            );
                            Command::new("ip")
                                .args(["netns", "exec", &ns, "timeout", "600", "sh", "-c"])
                                .arg(send)
                                .status()
                                .is_ok_and(|s| s.success())
                        }));
                    }
                    if k == "vsock-listening" {
                        let uds = uds.clone();
                        host_connect = Some(std::thread::spawn(move || connect_to_guest(&uds)));
                    }
                }
                if line.contains(DONE) && !done {
                    done = true;
                    balloon_stats = control::call(&ctl, control::Op::BalloonStats)
                        .ok()
                        .and_then(|r| r.result);
                    metrics = control::call(&ctl, control::Op::Metrics)
                        .ok()
                        .and_then(|r| r.result);
                }
                console.push_str(&line);
                console.push('\n');
            }
            Err(_) => break,
        }
    }
    if !done {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let _ = reader.join();
    let _ = tcp_sink.kill();
    let _ = tcp_sink.wait();
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr);
    let context = format!("status {status}; stderr:\n{stderr}\nconsole:\n{console}");
    assert!(done, "the guest never finished its checks; {context}");
    let want = |k: &str, v: &str| {
        assert_eq!(
            checks.get(k).map(String::as_str),
            Some(v),
            "check {k}; {context}"
        )
    };
    want("nproc", "1");
    want("blk", &sum);
    want("rng", "virtio_rng.0/64");
    want("mac", GUEST_MAC);
    want("ping", "ok");
    want("tcp-out", "sent");
    want("tcp-in", &sum);
    let received = std::fs::read_to_string(&sink_sum).unwrap_or_default();
    assert_eq!(
        received.split_whitespace().next(),
        Some(sum.as_str()),
        "what the netns received"
    );
    let sent = tcp_source.expect("the guest never listened on TCP");
    assert!(
        sent.join().unwrap(),
        "the netns could not send to the guest"
    );
    want("balloon", "1");
    want("vsock-in", "ping-from-host");
    want("vsock-out", "thanks:hello-host");
    let answer = host_connect
        .expect("the guest never listened on vsock")
        .join()
        .unwrap();
    assert_eq!(
        answer.ok().as_deref(),
        Some("pong:ping-from-host"),
        "{context}"
    );
    assert_eq!(
        host_side.join().unwrap().ok().as_deref(),
        Some("hello-host")
    );
    let metrics = metrics.expect("metrics answered");
    let dev = |d: &str, k: &str| metrics["devices"][d][k].as_u64().unwrap_or(0);
    assert!(dev("net0", "tx_frames") >= 2, "ARP + pings out; {metrics}");
    assert!(
        dev("net0", "rx_frames") >= 2,
        "ARP reply + pongs in; {metrics}"
    );
    // Offloads: 64 KiB segments cross the tap both ways instead of MTU-sized frames.
    assert!(dev("net0", "tx_gso_frames") >= 1, "guest TSO; {metrics}");
    assert!(
        dev("net0", "rx_gso_frames") >= 1,
        "tap GSO to the guest; {metrics}"
    );
    assert!(dev("vda", "read_bytes") >= 200_000, "{metrics}");
    assert!(dev("rng0", "bytes_served") >= 64, "{metrics}");
    assert_eq!(dev("vsock0", "host_connections"), 1, "{metrics}");
    assert_eq!(dev("vsock0", "guest_connections"), 1, "{metrics}");
    assert_eq!(
        dev("balloon0", "inflated_pages"),
        BALLOON_MIB * 256,
        "{metrics}"
    );
    let stats = balloon_stats.expect("balloon_stats answered");
    assert_eq!(
        stats["actual_pages"],
        BALLOON_MIB * 256,
        "the guest reports the pages it gave; {stats}"
    );
    assert!(
        stats["stats"]["total_memory"].as_u64().unwrap_or(0) > 0,
        "guest statistics arrived; {stats}"
    );
    assert!(
        status.success(),
        "poweroff must end corral with 0; {context}"
    );
}

/// The host opens a stream to the guest's vsock port through the hybrid socket; returns the
/// guest's answer to one line.
fn connect_to_guest(uds: &Path) -> std::io::Result<String> {
    let s = UnixStream::connect(uds)?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    (&s).write_all(format!("CONNECT {GUEST_VSOCK_PORT}\n").as_bytes())?;
    let mut r = BufReader::new(&s);
    let mut ok = String::new();
    r.read_line(&mut ok)?;
    if !ok.starts_with("OK ") {
        return Err(std::io::Error::other(format!("handshake answer {ok:?}")));
    }
    (&s).write_all(b"ping-from-host\n")?;
    let mut line = String::new();
    r.read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}
