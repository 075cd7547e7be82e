//! Interactive terminals end to end, driven through a pty as a person would drive them:
//! `run -it` and `exec -it` (input, output, the exit status, window size changes), `run -i`
//! without a terminal, `attach` and its detach keys, and the refusals around them. Needs root
//! (containers): names start with `host_`.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod world;

use world::pty::PtyChild;
use world::{guest, require_host, skip, World};

const T: Duration = Duration::from_secs(30);

/// Resize the terminal, then ask the shell for its size until it reports the new one (the
/// window change travels CLI → daemon → terminal on its own schedule).
fn resize_and_check(p: &mut PtyChild, rows: u16, cols: u16) {
    p.resize(rows, cols);
    let want = format!("{rows} {cols}");
    for _ in 0..20 {
        p.send(b"stty size\r");
        if p.try_expect(&want, Duration::from_millis(500)).is_some() {
            return;
        }
    }
    panic!("the size never became {want}:\n{}", p.output());
}

#[test]
fn host_run_it_gives_a_terminal_with_resize_and_the_exit_status() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    let mut p = PtyChild::spawn(
        w.cmd(&["run", "-it", "--name", "tty1", "busybox", "sh"]),
        24,
        80,
    );
    p.expect("# ", T);
    p.send(b"echo hi$((6*7)); stty size\r");
    p.expect("hi42", T);
    // The size was set before the first input reached the shell.
    p.expect("24 80", T);
    resize_and_check(&mut p, 33, 101);
    p.send(b"exit 3\r");
    let st = p.wait(T);
    assert_eq!(st.code(), Some(3), "{}", p.output());
    // The terminal's output is in the log as stdout, and the container ended with 3.
    let logs = w.ok(&["logs", "tty1"]);
    assert!(logs.contains("hi42"), "{logs}");
    let info: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "tty1"])).unwrap();
    assert_eq!(info[0]["exit_code"], 3);
    assert_eq!(info[0]["spec"]["tty"], true);
    w.ok(&["rm", "tty1"]);
    // A process that ends before the client is attached: its output still arrives.
    let mut p = PtyChild::spawn(
        w.cmd(&[
            "run",
            "-it",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo fast; exit 6",
        ]),
        24,
        80,
    );
    p.expect("fast", T);
    assert_eq!(p.wait(T).code(), Some(6), "{}", p.output());
}

#[test]
fn host_exec_it_gives_a_terminal_with_resize_and_the_exit_status() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    w.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]);
    let mut p = PtyChild::spawn(
        w.cmd(&["exec", "-it", "-e", "WHO=there", "box", "sh"]),
        40,
        120,
    );
    p.expect("# ", T);
    p.send(b"echo hello-$WHO; tty; stty size\r");
    p.expect("hello-there", T);
    p.expect("/dev/pts/", T);
    p.expect("40 120", T);
    resize_and_check(&mut p, 20, 70);
    p.send(b"exit 5\r");
    let st = p.wait(T);
    assert_eq!(st.code(), Some(5), "{}", p.output());
    // -t without -i: output on a terminal, no input needed.
    let out = w.corral(&[
        "exec",
        "-t",
        "box",
        "sh",
        "-c",
        "tty >/dev/null && echo on-a-tty; exit 4",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("on-a-tty"));
    // -i needs a terminal here.
    let out = w.corral(&["exec", "-it", "box", "sh"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a TTY"));
    // A command that does not exist: a clear error, no hang.
    let mut p = PtyChild::spawn(w.cmd(&["exec", "-it", "box", "no-such-command"]), 24, 80);
    let st = p.wait(T);
    assert_ne!(st.code(), Some(0), "{}", p.output());
    w.ok(&["rm", "-f", "box"]);
}

#[test]
fn host_run_i_without_t_joins_stdin_and_keeps_stdout_and_stderr_apart() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    // Docker's `echo hi | docker run -i busybox cat`.
    let out = w.with_input(&["run", "-i", "--rm", "busybox", "cat"], b"hi\n");
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(0), "hi\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each stream to its own, the end of input reaches the container, its status is ours.
    let script = "while read l; do echo out-$l; echo err-$l >&2; done; exit 3";
    let out = w.with_input(
        &["run", "-i", "--name", "rw", "busybox", "sh", "-c", script],
        b"a\nb\n",
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out-a\nout-b\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err-a\nerr-b\n");
    // The log has the output too.
    let logs = w.corral(&["logs", "rw"]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "out-a\nout-b\n");
    w.ok(&["rm", "rw"]);
    // Typed at a terminal: a line goes through when typed, Ctrl-D ends the input.
    let mut p = PtyChild::spawn(w.cmd(&["run", "-i", "--rm", "busybox", "cat"]), 24, 80);
    p.send(b"typed-line\r");
    p.expect("typed-line", T); // the local echo
    p.expect("typed-line", T); // cat's answer
    p.send(&[0x04]);
    assert_eq!(p.wait(T).code(), Some(0), "{}", p.output());
}

#[test]
fn host_attach_joins_a_running_container_and_the_detach_keys_leave_it_running() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    // run -it, then Ctrl-P Ctrl-Q: run returns 0 and the container runs on.
    let mut p = PtyChild::spawn(
        w.cmd(&["run", "-it", "--name", "sh1", "busybox", "sh"]),
        24,
        80,
    );
    p.expect("# ", T);
    p.send(b"echo one-$((1+1))\r");
    p.expect("one-2", T);
    p.send(&[0x10, 0x11]);
    assert_eq!(p.wait(T).code(), Some(0), "{}", p.output());
    let state = |w: &World| {
        let v: serde_json::Value = serde_json::from_str(&w.ok(&["inspect", "sh1"])).unwrap();
        v[0]["state"].as_str().unwrap().to_string()
    };
    assert_eq!(state(&w), "running");
    // attach: the same shell; the detach keys leave it with Docker's words and status.
    let mut p = PtyChild::spawn(w.cmd(&["attach", "sh1"]), 30, 90);
    p.send(b"echo two-$((2+2)); stty size\r");
    p.expect("two-4", T);
    p.expect("30 90", T);
    p.send(&[0x10, 0x11]);
    assert_eq!(p.wait(T).code(), Some(1), "{}", p.output());
    assert!(
        p.output().contains("read escape sequence"),
        "{}",
        p.output()
    );
    assert_eq!(state(&w), "running");
    // Other keys with --detach-keys; Ctrl-P alone is no longer special.
    let mut p = PtyChild::spawn(
        w.cmd(&["attach", "--detach-keys", "ctrl-x,x", "sh1"]),
        24,
        80,
    );
    p.send(b"echo three-$((1+2))\r");
    p.expect("three-3", T);
    p.send(&[0x18, b'x']);
    assert_eq!(p.wait(T).code(), Some(1), "{}", p.output());
    // An attach that sees the end gets the container's status.
    let mut p = PtyChild::spawn(w.cmd(&["attach", "sh1"]), 24, 80);
    p.send(b"echo four; exit 4\r");
    p.expect("four", T);
    assert_eq!(p.wait(T).code(), Some(4), "{}", p.output());
    assert_eq!(state(&w), "exited");
    let out = w.corral(&["attach", "sh1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("start it first"));
    w.ok(&["rm", "sh1"]);
    // Without a terminal: its output from now on, our input to its stdin, which stays open
    // for the next attach when ours ends (it was not started by this attach).
    w.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "reader",
        "busybox",
        "sh",
        "-c",
        "while read l; do echo got-$l; done; echo stdin-closed",
    ]);
    let attach = |input: &[u8], want: &str| {
        use std::io::{BufRead, Write};
        let mut c = w.cmd(&["attach", "reader"]);
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut c = c.spawn().unwrap();
        let mut stdin = c.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
        drop(stdin);
        let mut out = std::io::BufReader::new(c.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = out.read_line(&mut line);
            let _ = tx.send(line);
            // Keep reading: the other attach's lines come here too.
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        let line = rx.recv_timeout(T).unwrap_or_default();
        if line != want {
            let _ = c.kill();
            panic!("attach printed {line:?}, not {want:?}");
        }
        c
    };
    let mut first = attach(b"x\n", "got-x\n");
    let mut second = attach(b"y\n", "got-y\n");
    w.ok(&["kill", "reader"]);
    for a in [&mut first, &mut second] {
        let deadline = std::time::Instant::now() + T;
        let st = loop {
            if let Some(st) = a.try_wait().unwrap() {
                break st;
            }
            if std::time::Instant::now() > deadline {
                let _ = a.kill();
                panic!("attach did not end with the container");
            }
            // A child's exit has no descriptor to wait on here; a short poll it is.
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(st.code(), Some(137));
    }
    let logs = w.ok(&["logs", "reader"]);
    assert_eq!(logs, "got-x\ngot-y\n");
    w.ok(&["rm", "reader"]);
}

#[test]
fn host_run_it_terminal_survives_the_daemon_and_attach_joins_it_again() {
    if skip() {
        return;
    }
    require_host();
    let w = World::new();
    // A run -it container's terminal is its shim's: it survives a daemon's death, and attach
    // joins it again under the next daemon. (Exec sessions: host_exec.rs.)
    let mut p = PtyChild::spawn(
        w.cmd(&["run", "-it", "--name", "tty2", "busybox", "sh"]),
        24,
        80,
    );
    p.expect("# ", T);
    w.kill9_daemon();
    assert_eq!(p.wait(T).code(), Some(1), "{}", p.output());
    p.expect("`corral attach tty2` joins it again", T);
    let mut p = PtyChild::spawn(w.cmd(&["attach", "tty2"]), 24, 80);
    p.send(b"echo back-$((5+5)); exit 7\r");
    p.expect("back-10", T);
    assert_eq!(p.wait(T).code(), Some(7), "{}", p.output());
    w.ok(&["rm", "-f", "tty2"]);
}

/// Removes a VM when dropped (before the world, which does not know VMs).
struct VmGone<'a>(&'a World, &'static str);

impl Drop for VmGone<'_> {
    fn drop(&mut self) {
        let _ = self.0.corral(&["vm", "rm", "-f", self.1]);
    }
}

/// Ctrl-Alt-Del reaches a guest's init through the i8042, the AT keyboard driver and the VT
/// keyboard handler: a kernel whose config (`KERNEL.config` beside it) lacks one of them cannot
/// shut down cooperatively (the shared ready-made kernel has no VT; the project's has).
fn require_ctrl_alt_del(kernel: &Path) {
    let mut cfg = kernel.as_os_str().to_owned();
    cfg.push(".config");
    let Ok(text) = std::fs::read_to_string(&cfg) else {
        return;
    };
    let missing: Vec<&str> = ["CONFIG_SERIO_I8042", "CONFIG_KEYBOARD_ATKBD", "CONFIG_VT"]
        .into_iter()
        .filter(|k| !text.lines().any(|l| l == format!("{k}=y")))
        .collect();
    assert!(
        missing.is_empty(),
        "guest kernel {} lacks {missing:?}, which vm shutdown's Ctrl-Alt-Del needs: build the \
         project's kernel (scripts/setup.sh) or point CORRAL_GUEST_KERNEL at one that has them",
        kernel.display()
    );
}

const GUEST_READY: &str = "CORRAL-CONSOLE-READY";

const GUEST_CAD: &str = "CORRAL-GUEST-CTRLALTDEL";
const GUEST_DOWN: &str = "CORRAL-GUEST-SHUTDOWN";

/// A busybox initramfs run by busybox init: it announces itself, keeps a shell on the serial
/// console, and answers Ctrl-Alt-Del with an orderly reboot (which ends a microVM).
fn console_initramfs(dir: &Path) -> PathBuf {
    let root = guest::busybox_tree(dir, &["proc", "sys", "dev", "etc"]);
    let init = "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nexport PATH=/bin\n\
         mount -t proc proc /proc\nmount -t devtmpfs dev /dev\nexec /bin/init\n";
    let inittab = format!(
        "::sysinit:/bin/echo {GUEST_READY}\n::respawn:/bin/cttyhack /bin/sh\n\
         ::ctrlaltdel:/bin/sh -c 'echo {GUEST_CAD}; reboot'\n::shutdown:/bin/echo {GUEST_DOWN}\n"
    );
    std::fs::write(root.join("etc/inittab"), inittab).unwrap();
    guest::pack(&root, init)
}

/// One attach: type a command, see its answer, detach with Ctrl-].
fn console_cycle(w: &World, vm: &str, word: &str) {
    let mut p = PtyChild::spawn(w.cmd(&["vm", "console", vm]), 24, 80);
    p.expect("escape character is ^]", T);
    p.send(format!("echo {word}-$((40+2))\r").as_bytes());
    if p.try_expect(&format!("{word}-42"), Duration::from_secs(60))
        .is_none()
    {
        let dir = w.root.join("vms").join(vm).join("logs");
        panic!(
            "{word}-42 not printed; the terminal shows:\n{}\nserial.log:\n{}\nvmm.log:\n{}",
            p.output(),
            std::fs::read_to_string(dir.join("serial.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("vmm.log")).unwrap_or_default()
        );
    }
    p.send(&[0x1d]);
    let st = p.wait(T);
    assert_eq!(st.code(), Some(0), "{}", p.output());
    assert!(p.output().contains("Detached"), "{}", p.output());
}

#[test]
fn host_emu_vm_console_attach_detach_cycles_then_a_guest_cooperative_shutdown() {
    if skip() {
        return;
    }
    require_host();
    let kernel = guest::kernel();
    require_ctrl_alt_del(&kernel);
    let w = World::new();
    // A VM's monitor outlives the daemon by design: a failed test must not leave one.
    let _vm = VmGone(&w, "con1");
    let initrd = console_initramfs(&w.root.parent().unwrap().join("guest"));
    w.ok(&[
        "vm",
        "create",
        "con1",
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--cmdline",
        "console=ttyS0 quiet panic=-1",
        "--memory",
        "128M",
    ]);
    // No console before the start.
    let out = w.corral(&["vm", "console", "con1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("start it"),
        "{out:?}"
    );
    w.ok(&["vm", "start", "con1"]);
    // Readiness: the shell's prompt after the guest's marker on its serial log (software CPU
    // boot, bounded); input typed before the shell's line editor is up would be lost.
    let serial = w.root.join("vms/con1/logs/serial.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let prompted = |log: String| {
        log.split_once(GUEST_READY)
            .is_some_and(|(_, after)| after.contains("# "))
    };
    while !prompted(std::fs::read_to_string(&serial).unwrap_or_default()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the guest never got ready:\n{}",
            std::fs::read_to_string(&serial).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // This initramfs has no guest agent: the inventory's HEARTBEAT says n/a.
    let table = w.ok(&["vm", "ls"]);
    let line = table.lines().find(|l| l.starts_with("con1 ")).unwrap_or("");
    assert!(
        line.trim_end().ends_with("n/a"),
        "HEARTBEAT column:\n{table}"
    );
    console_cycle(&w, "con1", "one");
    console_cycle(&w, "con1", "two");
    let log = std::fs::read_to_string(&serial).unwrap();
    assert!(log.contains("one-42") && log.contains("two-42"), "{log}");
    // A guest-cooperative shutdown: Ctrl-Alt-Del, the guest's init shuts down in order and
    // reboots, which ends the VM before the timeout.
    w.ok(&["vm", "shutdown", "con1", "--timeout", "150"]);
    let info: serde_json::Value = serde_json::from_str(&w.ok(&["vm", "inspect", "con1"])).unwrap();
    assert_eq!(info["state"], "exited", "{info}");
    assert!(info["reason"].is_null(), "turned off instead: {info}");
    let log = std::fs::read_to_string(&serial).unwrap();
    assert!(log.contains(GUEST_CAD) && log.contains(GUEST_DOWN), "{log}");
    // Started again, a guest that has not ended when the timeout expires is turned off, and
    // the wait is for this run's end, not the last one's.
    w.ok(&["vm", "start", "con1"]);
    w.ok(&["vm", "shutdown", "con1", "--timeout", "0"]);
    let info: serde_json::Value = serde_json::from_str(&w.ok(&["vm", "inspect", "con1"])).unwrap();
    assert_eq!(info["state"], "exited", "{info}");
    assert!(
        info["reason"]
            .as_str()
            .is_some_and(|r| r.contains("turned off")),
        "{info}"
    );
    w.ok(&["vm", "rm", "con1"]);
}
