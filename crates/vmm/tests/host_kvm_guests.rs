//! The tiny guests under the KVM backend, through the library. Needs /dev/kvm
//! (CORRAL_SKIP_HOST_TESTS=1 skips).

use std::io::Write;
use std::sync::{Arc, Mutex};

use corral_vmm::config::SerialConfig;
use corral_vmm::hypervisor::kvm::KvmHypervisor;
use corral_vmm::{test_guests, Machine, MachineExit, VmConfig};

fn skip() -> bool {
    std::env::var("CORRAL_SKIP_HOST_TESTS").as_deref() == Ok("1")
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn kvm() -> KvmHypervisor {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "host test needs /dev/kvm (set CORRAL_SKIP_HOST_TESTS=1 to skip)"
    );
    KvmHypervisor::new().expect("open /dev/kvm")
}

fn guest(name: &str) -> VmConfig {
    let path = test_guests::path(name);
    assert!(
        path.exists(),
        "test guest {} missing: binutils (as, ld) are needed to build it",
        path.display()
    );
    let mut cfg = VmConfig::new(path);
    cfg.memory = "64M".into();
    cfg.serial = SerialConfig::None;
    cfg
}

#[test]
fn host_kvm_pvh_guest_prints_and_resets() {
    if skip() {
        return;
    }
    let sink = Sink::default();
    let m = Machine::build(&guest("hello"), &kvm(), Box::new(sink.clone())).unwrap();
    let exit = m.run(Vec::new()).unwrap();
    assert_eq!(exit, MachineExit::Reset, "serial: {}", sink.text());
    assert_eq!(sink.text(), "corral-guest: hello\n");
}

#[test]
fn host_kvm_long_mode_guest_computes_at_cpl3_and_dirties_pages() {
    if skip() {
        return;
    }
    let sink = Sink::default();
    let m = Machine::build(&guest("long"), &kvm(), Box::new(sink.clone())).unwrap();
    let vm = m.vm().clone();
    let _mem = m.memory().clone();
    vm.set_dirty_logging(true).unwrap();
    let handle = m.handle();
    let exit = m.run(Vec::new()).unwrap();
    let out = sink.text();
    assert_eq!(exit, MachineExit::Reset, "serial: {out}");
    assert!(out.contains("corral-guest: cpl=3\n"), "{out}");
    let sum = format!(
        "corral-guest: sum={:016x}\n",
        test_guests::long_guest_expected_sum()
    );
    assert!(out.contains(&sum), "expected {sum} in {out}");
    // The first virtio-mmio device (the default virtio-rng) answers with its magic "virt".
    assert!(
        out.contains("corral-guest: mmio=0000000074726976\n"),
        "{out}"
    );
    assert!(out.ends_with("corral-guest: done\n"), "{out}");

    let (base, count) = test_guests::LONG_GUEST_TOUCHED;
    let dirty: Vec<u64> = vm
        .take_dirty_log()
        .unwrap()
        .iter()
        .flat_map(|d| d.pages().collect::<Vec<_>>())
        .collect();
    for page in 0..count {
        let addr = base + page * 4096;
        assert!(dirty.contains(&addr), "page {addr:#x} not in the dirty log");
    }
    assert!(
        !dirty.contains(&(base + count * 4096)),
        "an untouched page is dirty"
    );

    let metrics = handle.metrics();
    assert!(metrics.exits["io_out"] >= out.len() as u64, "{metrics:?}");
    assert_eq!(metrics.exits["mmio_read"], 1, "{metrics:?}");
    assert_eq!(metrics.exits["mmio_write"], 1, "{metrics:?}");
    assert_eq!(metrics.serial_tx_bytes, out.len() as u64);
}

#[test]
fn host_kvm_mmio_without_a_device_reads_all_ones() {
    if skip() {
        return;
    }
    let sink = Sink::default();
    let mut cfg = guest("long");
    cfg.rng = false;
    let m = Machine::build(&cfg, &kvm(), Box::new(sink.clone())).unwrap();
    assert!(!m.cmdline().contains("virtio_mmio.device="));
    assert_eq!(m.run(Vec::new()).unwrap(), MachineExit::Reset);
    assert!(
        sink.text()
            .contains("corral-guest: mmio=00000000ffffffff\n"),
        "{}",
        sink.text()
    );
}

#[test]
fn host_kvm_fault_is_reported_with_the_guest_rip() {
    if skip() {
        return;
    }
    let sink = Sink::default();
    let m = Machine::build(&guest("fault"), &kvm(), Box::new(sink.clone())).unwrap();
    let exit = m.run(Vec::new()).unwrap();
    assert_eq!(sink.text(), "!\n");
    // `bad` is at 0x100000 + 10 (after four instructions of 3, 2, 3 and 2 bytes).
    let bad = 0x10_000a;
    match exit {
        MachineExit::TripleFault { rip, .. } => assert_eq!(rip, bad),
        MachineExit::Error { rip, .. } => assert_eq!(rip, Some(bad), "{exit}"),
        other => panic!("expected a fault, got {other:?}"),
    }
    assert!(!exit.is_clean());
    assert!(exit.to_string().contains("RIP 0x10000a"), "{exit}");
}

#[test]
fn host_kvm_queue_notify_reaches_the_device_without_an_mmio_exit() {
    if skip() {
        return;
    }
    // Slot 0 is the entropy device; the guest writes its QueueNotify register once.
    let sink = Sink::default();
    let m = Machine::build(&guest("notify"), &kvm(), Box::new(sink.clone())).unwrap();
    let handle = m.handle();
    let runner = std::thread::spawn(move || m.run(Vec::new()));
    // No event marks "the device saw it": poll its counter, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let notified = |h: &corral_vmm::MachineHandle| {
        h.metrics()
            .devices
            .get("rng0")
            .and_then(|d| d.get("notifications").copied())
            == Some(1)
    };
    while !(notified(&handle) && sink.text().ends_with("notified\n")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the notify never reached the device; serial: {}",
            sink.text()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    handle.stop();
    assert_eq!(runner.join().unwrap().unwrap(), MachineExit::Stopped);
    let metrics = handle.metrics();
    assert_eq!(
        metrics.exits["mmio_write"], 0,
        "the notify came through KVM's ioeventfd, not an MMIO exit"
    );
}
