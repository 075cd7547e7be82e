//! `corral vm run` and `corral vmm` end to end with the tiny KVM guests (host tests: they need
//! /dev/kvm; CORRAL_SKIP_HOST_TESTS=1 skips them) and their bad-input errors.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn skip_host_tests() -> bool {
    std::env::var("CORRAL_SKIP_HOST_TESTS").as_deref() == Ok("1")
}

fn guest(name: &str) -> PathBuf {
    let p = corral_vmm::test_guests::path(name);
    assert!(
        p.exists(),
        "test guest {} missing (binutils needed)",
        p.display()
    );
    p
}

fn corral(args: &[&str]) -> Output {
    let root = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(args)
        .env("CORRAL_ROOT", root.path())
        .env("CORRAL_RUN", root.path().join("run"))
        .stdin(Stdio::null())
        .output()
        .expect("run corral")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn host_kvm_vm_run_prints_the_guest_line_and_exits_0() {
    if skip_host_tests() {
        return;
    }
    let hello = guest("hello");
    let out = corral(&[
        "vm",
        "run",
        "--kernel",
        hello.to_str().unwrap(),
        "--accel",
        "kvm",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "corral-guest: hello\n"
    );
}

#[test]
fn host_kvm_vm_run_long_mode_guest_through_a_config_file_and_serial_file() {
    if skip_host_tests() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serial.log");
    let cfg = dir.path().join("vm.toml");
    std::fs::File::create(dir.path().join("disk.img"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    std::fs::write(
        &cfg,
        format!(
            "kernel = {:?}\nmemory = \"64M\"\ncpus = 2\naccel = \"kvm\"\nserial = \"file:{}\"\nrng = false\n[[disk]]\npath = \"disk.img\"\n",
            guest("long"),
            log.display()
        ),
    )
    .unwrap();
    let out = corral(&["vm", "run", "--config", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("corral-guest: cpl=3"), "{text}");
    // The guest's MMIO read reached the virtio-blk device at 0xd0000000 (magic "virt").
    assert!(
        text.contains("corral-guest: mmio=0000000074726976"),
        "{text}"
    );
    assert!(text.ends_with("corral-guest: done\n"), "{text}");
}

#[test]
fn host_kvm_guest_fault_exits_1_naming_the_rip() {
    if skip_host_tests() {
        return;
    }
    let fault = guest("fault");
    let out = corral(&[
        "vm",
        "run",
        "--kernel",
        fault.to_str().unwrap(),
        "--accel",
        "kvm",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("RIP 0x10000a"), "{}", stderr(&out));
}

#[test]
fn bad_inputs_fail_with_one_line_and_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let hello = corral_vmm::test_guests::path("hello");
    let h = hello.to_str().unwrap();
    let big = dir.path().join("big.initrd");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(80 << 20)
        .unwrap();
    let not_kernel = dir.path().join("text");
    std::fs::write(&not_kernel, "not a kernel").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--kernel", "/nonexistent/vmlinux"],
            "kernel /nonexistent/vmlinux",
        ),
        (vec!["--kernel", h, "--memory", "8M"], "too little memory"),
        (
            vec![
                "--kernel",
                h,
                "--memory",
                "64M",
                "--initrd",
                big.to_str().unwrap(),
            ],
            "larger than guest memory",
        ),
        (
            vec!["--kernel", h, "--disk", "/nonexistent/disk.img"],
            "disk /nonexistent/disk.img",
        ),
        (vec!["--kernel", h, "--net", "bogus"], "--net"),
        (vec!["--kernel", h, "--net", "tap=a/b"], "net.tap"),
        (
            vec!["--kernel", h, "--net", "tap=t0,mac=01:00:5e:00:00:01"],
            "net.mac",
        ),
        (vec!["--kernel", h, "--vsock", "2"], "reserved"),
        (vec!["--cpus", "2"], "--kernel"),
    ];
    for (args, expect) in cases {
        let mut all = vec!["vm", "run", "--accel", "kvm"];
        all.extend(args.iter());
        let out = corral(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{all:?}: {err}");
        assert!(err.contains(expect), "{all:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{all:?}: one line, got {err}"
        );
    }
    let out = corral(&[
        "vm",
        "run",
        "--accel",
        "kvm",
        "--kernel",
        not_kernel.to_str().unwrap(),
    ]);
    if !skip_host_tests() {
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("not a bootable"), "{}", stderr(&out));
    }
}

#[test]
fn host_device_backends_that_cannot_open_fail_with_one_line() {
    if skip_host_tests() {
        return;
    }
    // The software CPU builds the machine on any host; the devices fail before it boots.
    let hello = corral_vmm::test_guests::path("hello");
    let missing_tap = format!("vmmnosuch{}", std::process::id() % 100_000);
    let cases = [
        (
            vec!["--net".to_owned(), format!("tap={missing_tap}")],
            "no such interface",
        ),
        (vec!["--net".to_owned(), "tap=lo".to_owned()], "TUNSETIFF"),
        (
            vec![
                "--vsock".to_owned(),
                "3,uds=/nonexistent/dir/v.sock".to_owned(),
            ],
            "vsock socket /nonexistent/dir/v.sock",
        ),
    ];
    for (extra, expect) in cases {
        let mut all = vec![
            "vm",
            "run",
            "--accel",
            "emu",
            "--kernel",
            hello.to_str().unwrap(),
        ];
        all.extend(extra.iter().map(String::as_str));
        let out = corral(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{all:?}: {err}");
        assert!(err.contains(expect), "{all:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{all:?}: {err}");
    }
    assert!(!std::path::Path::new("/sys/class/net")
        .join(&missing_tap)
        .exists());
}

#[test]
fn host_kvm_vmm_serves_its_control_socket() {
    if skip_host_tests() {
        return;
    }
    use corral_vmm::control::{call, Op};
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vm.toml");
    let sock = dir.path().join("ctl.sock");
    std::fs::write(
        &cfg,
        format!(
            "kernel = {:?}\nmemory = \"128M\"\naccel = \"kvm\"\nserial = \"stdio\"\n",
            guest("idle")
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["vmm", "--config", cfg.to_str().unwrap(), "--control-socket"])
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Readiness: the guest's line on the serial console, printed after the socket is bound.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "corral-guest: idle\n");
    let status = call(&sock, Op::Status).unwrap();
    assert!(status.ok, "{status:?}");
    assert_eq!(status.result.unwrap()["state"], "running");
    assert!(call(&sock, Op::Pause).unwrap().ok);
    assert_eq!(
        call(&sock, Op::Status).unwrap().result.unwrap()["state"],
        "paused"
    );
    assert!(call(&sock, Op::Resume).unwrap().ok);
    let m = call(&sock, Op::Metrics).unwrap().result.unwrap();
    assert_eq!(m["serial_tx_bytes"], 19);
    assert!(m["rss_bytes"].as_u64().unwrap() > 0);
    assert!(m["exits"]["io_out"].as_u64().unwrap() >= 19);
    assert!(call(&sock, Op::Stop).unwrap().ok);
    let status = child.wait().unwrap();
    assert!(status.success(), "vmm exit {status:?}");
    assert!(!sock.exists(), "socket removed at exit");
}
