//! Boot tests on the software CPU: the guest kernel (CORRAL_GUEST_KERNEL) with a busybox
//! initramfs built here reaches a marker on the serial console, through the very same
//! `corral_vmm::Machine` (boot setup, buses, devices) the KVM backend uses.
//! Needs a guest kernel and Debian's busybox-static and cpio; set CORRAL_SKIP_HOST_TESTS=1
//! to skip.

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
    let k = std::env::var_os("CORRAL_GUEST_KERNEL")
        .map(PathBuf::from)
        .or_else(|| {
            Some(PathBuf::from("../../../shared/guest/vmlinux-microvm")).filter(|p| p.exists())
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

#[test]
fn host_boot_busybox_reaches_marker_and_powers_off() {
    if skip() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("cpuemu-{}-", std::process::id()))
        .tempdir()
        .unwrap();
    let init = format!(
        "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n/bin/busybox echo {MARKER} cpus=$(/bin/busybox nproc)\n/bin/busybox poweroff -f\n"
    );
    let mut cfg = VmConfig::new(kernel());
    cfg.initrd = Some(initramfs(dir.path(), &init));
    cfg.memory = "256M".into();
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
    assert!(
        out.contains(&format!("{MARKER} cpus=1")),
        "no marker; exit {exit:?}; console:\n{out}"
    );
    assert!(
        matches!(
            exit,
            MachineExit::PowerOff | MachineExit::Halted { .. } | MachineExit::Reset
        ),
        "unexpected end {exit:?}; console:\n{out}"
    );
}
