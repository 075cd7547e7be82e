//! Boot tests on the software CPU: the guest kernel (CORRAL_GUEST_KERNEL) with a busybox
//! initramfs built here reaches a marker on the serial console, through the very same
//! `corral_vmm::Machine` (boot setup, buses, devices) the KVM backend uses. The boot here has
//! two vCPUs (one-vCPU boots are covered by crates/cli/tests/host_emu_devices.rs).
//! Needs a guest kernel and Debian's busybox-static, cpio and coreutils' sha256sum; set
//! CORRAL_SKIP_HOST_TESTS=1 to skip.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_cpu_emu::EmuHypervisor;
use corral_vmm::{Machine, MachineExit, VmConfig};

const MARKER: &str = "CORRAL-EMU-BOOTED";

fn skip() -> bool {
    std::env::var("CORRAL_SKIP_HOST_TESTS").as_deref() == Ok("1")
}

fn kernel() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The ready-made kernel sits beside the checkout (/work/main) or beside the worktrees'
    // folder (/work/wt/<area>).
    let k = std::env::var_os("CORRAL_GUEST_KERNEL")
        .map(PathBuf::from)
        .or_else(|| {
            [
                "../../../shared/guest/vmlinux-microvm",
                "../../../../shared/guest/vmlinux-microvm",
            ]
            .iter()
            .map(|p| manifest.join(p))
            .find(|p| p.exists())
        })
        .expect(
            "host_ boot tests need a guest kernel: set CORRAL_GUEST_KERNEL (scripts/test.sh does)",
        );
    assert!(k.exists(), "guest kernel {} is missing", k.display());
    k
}

/// An initramfs (newc cpio) with busybox and an /init that prints the marker and powers off.
fn initramfs(dir: &Path, init: &str) -> PathBuf {
    let root = dir.join("root");
    for d in ["bin", "dev", "proc", "sys"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "host_ boot tests need Debian's busybox-static (/bin/busybox)"
    );
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let init_path = root.join("init");
    std::fs::write(&init_path, init).unwrap();
    std::fs::set_permissions(
        &init_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = dir.join("initramfs.cpio");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . | cpio -o -H newc --quiet > {}",
            root.display(),
            out.display()
        ))
        .status()
        .expect("cpio (Debian's cpio package) is needed");
    assert!(status.success(), "building the initramfs failed");
    out
}

#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        if std::env::var_os("CORRAL_CPUEMU_ECHO").is_some() {
            std::io::stderr().write_all(b)?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The sha256 of the first `len` bytes of a host file, by coreutils' head and sha256sum.
fn host_sha256(path: &Path, len: usize) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("head -c {len} {} | sha256sum", path.display()))
        .output()
        .expect("head and sha256sum (coreutils)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// The value of `key=` in the marker line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Two vCPUs: the application processor starts through INIT/SIPI and the real-mode
/// trampoline, `nproc` is 2, a process pinned to CPU 1 runs there, and both CPUs hash a
/// slice of the busybox binary concurrently (fork, exec, exit and page-table teardown on
/// both, with the IPIs and TLB shootdowns that brings) to the host's sha256.
#[test]
fn host_boot_smp_busybox_uses_both_cpus_and_powers_off() {
    if skip() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("cpuemu-{}-", std::process::id()))
        .tempdir()
        .unwrap();
    const ROUNDS: usize = 3;
    const SLICE: usize = 65536;
    let init = format!(
        r#"#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t devtmpfs dev /dev
$bb head -c {SLICE} /bin/busybox > /slice
for c in 0 1; do
  $bb taskset -c $c $bb sh -c 'for i in $(/bin/busybox seq {ROUNDS}); do /bin/busybox sha256sum /slice; done' > /sum$c &
done
wait
on1=$($bb taskset -c 1 $bb cat /proc/self/stat | $bb cut -d' ' -f39)
n=$($bb cat /sum0 /sum1 | $bb wc -l)
distinct=$($bb cat /sum0 /sum1 | $bb cut -d' ' -f1 | $bb sort -u | $bb wc -l)
sum=$($bb head -n1 /sum0 | $bb cut -d' ' -f1)
$bb echo {MARKER} cpus=$($bb nproc) on1=$on1 hashes=$n distinct=$distinct sum=$sum
$bb grep -E 'CAL|TLB|RES|LOC' /proc/interrupts
$bb poweroff -f
"#
    );
    let mut cfg = VmConfig::new(kernel());
    cfg.initrd = Some(initramfs(dir.path(), &init));
    cfg.memory = "256M".into();
    cfg.cpus = 2;
    cfg.rng = false;
    cfg.cmdline = Some("console=ttyS0 reboot=k panic=-1 no_int3_selftest".into());
    let console = Console::default();
    let machine = Machine::build(&cfg, &EmuHypervisor::new(), Box::new(console.clone()))
        .expect("build the VM");
    let handle = machine.handle();
    // Bound the test: stop the VM if it has not ended after 10 minutes.
    let (done, ended) = std::sync::mpsc::channel::<()>();
    let watcher = std::thread::spawn(move || {
        if ended.recv_timeout(Duration::from_secs(600)).is_err() {
            handle.stop();
        }
    });
    let exit = machine.run(Vec::new()).expect("run the VM");
    let _ = done.send(());
    let _ = watcher.join();
    let out = String::from_utf8_lossy(&console.0.lock().unwrap()).into_owned();
    let line = out
        .lines()
        .find(|l| l.starts_with(MARKER))
        .unwrap_or_else(|| panic!("no marker; exit {exit:?}; console:\n{out}"));
    let want_sum = host_sha256(Path::new("/bin/busybox"), SLICE);
    for (key, want) in [
        ("cpus", "2"),
        ("on1", "1"),
        ("hashes", &(2 * ROUNDS).to_string()),
        ("distinct", "1"),
        ("sum", want_sum.as_str()),
    ] {
        assert_eq!(
            field(line, key),
            Some(want),
            "{key} in {line:?}; console:\n{out}"
        );
    }
    assert!(
        matches!(
            exit,
            MachineExit::PowerOff | MachineExit::Halted { .. } | MachineExit::Reset
        ),
        "unexpected end {exit:?}; console:\n{out}"
    );
}
