//! cgroup v2 device rules: a `BPF_PROG_TYPE_CGROUP_DEVICE` program built from
//! `linux.resources.devices` and attached to the container's cgroup, as runc's devicefilter.
//!
//! The program is a straight list of blocks, one per rule, checked from the last rule to the
//! first (the last matching rule wins, as when v1 applies the rules in order); no match
//! denies, as runc does (the list is an allowlist). An allow rule matches when it covers every
//! access asked for; a deny rule when it shares any (so `deny w` also stops a read-write open).
//!
//! It is emitted and loaded with `bpf(2)` directly: the program is a few instructions per
//! rule generated at run time, and loading needs two system calls, where the BPF crates
//! (aya, libbpf-rs) bring an ELF loader, a C build or an async runtime this does not use.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register (low nibble) and source register (high nibble).
    pub regs: u8,
    /// Jump offset (in instructions, from the next one) or memory offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

// Opcodes (linux/bpf.h, bpf_common.h).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JSET_K: u8 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// `bpf_cgroup_dev_ctx.access_type` bits (high 16) and device types (low 16).
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

// Registers: R1 the context, R2 type, R3 access, R4 major, R5 minor, R0 the verdict.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The access bits of a rule's `access` string (`rwm`; absent means all three).
fn access_bits(access: Option<&str>) -> i32 {
    let s = access.unwrap_or("rwm");
    let mut bits = 0;
    for c in s.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        };
    }
    bits
}

/// The block for one rule: jumps to the next block unless the rule matches, then returns its
/// verdict; and whether it matches every access (no jump). `None` for rules that can never
/// match a device access (fifo rules).
fn rule_block(rule: &LinuxDeviceCgroup) -> Option<(Vec<Insn>, bool)> {
    let typ = match rule.typ() {
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Some(DEV_CHAR),
        Some(LinuxDeviceType::B) => Some(DEV_BLOCK),
        Some(LinuxDeviceType::P) => return None,
        Some(LinuxDeviceType::A) | None => None,
    };
    let access = access_bits(rule.access().as_deref());
    // Jumps are emitted with offset 0 and patched to the block's end below.
    let mut b = Vec::new();
    let mut jumps = Vec::new();
    if let Some(t) = typ {
        jumps.push(b.len());
        b.push(insn(JNE_K, R2, 0, 0, t));
    }
    if rule.allow() {
        // Skip unless every access asked for is granted by this rule.
        let missing = !access & (ACC_MKNOD | ACC_READ | ACC_WRITE);
        if missing != 0 {
            jumps.push(b.len());
            b.push(insn(JSET_K, R3, 0, 0, missing));
        }
    } else if access != ACC_MKNOD | ACC_READ | ACC_WRITE {
        // Skip unless some access asked for is one this rule denies.
        b.push(insn(MOV32_X, R1, R3, 0, 0));
        b.push(insn(AND32_K, R1, 0, 0, access));
        jumps.push(b.len());
        b.push(insn(JEQ_K, R1, 0, 0, 0));
    }
    for (reg, num) in [(R4, rule.major()), (R5, rule.minor())] {
        if let Some(n) = num.filter(|n| *n >= 0) {
            jumps.push(b.len());
            b.push(insn(JNE_K, reg, 0, 0, n as i32));
        }
    }
    b.push(insn(MOV64_K, R0, 0, 0, i32::from(rule.allow())));
    b.push(insn(EXIT, 0, 0, 0, 0));
    let end = b.len();
    for j in &jumps {
        b[*j].off = (end - j - 1) as i16;
    }
    Some((b, jumps.is_empty()))
}

/// The device filter program for `rules` (in spec order).
pub fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, R2, R1, 0, 0),
        insn(AND32_K, R2, 0, 0, 0xffff),
        insn(LDX_W, R3, R1, 0, 0),
        insn(RSH32_K, R3, 0, 0, 16),
        insn(LDX_W, R4, R1, 4, 0),
        insn(LDX_W, R5, R1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        if let Some((block, always)) = rule_block(rule) {
            p.extend(block);
            if always {
                // Earlier rules are unreachable, and the verifier refuses dead code.
                return p;
            }
        }
    }
    p.push(insn(MOV64_K, R0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr` (up to `expected_attach_type`; the kernel
/// takes a shorter attr and treats the rest as zero).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, fully initialised bpf_attr prefix of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn load(insns: &[Insn], log: Option<&mut [u8]>) -> std::io::Result<OwnedFd> {
    let license = b"Apache-2.0\0";
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"corral_devcg");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = buf.len() as u32;
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    // SAFETY: BPF_PROG_LOAD returned a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Load the device filter for `rules` and attach it to the cgroup v2 directory `dir`.
pub fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let insns = program(rules);
    let io = |source: std::io::Error| CgroupError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let prog = match load(&insns, None) {
        Ok(fd) => fd,
        Err(first) => {
            // Load again with the verifier's log to say why.
            let mut log = vec![0u8; 64 * 1024];
            let _ = load(&insns, Some(&mut log));
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            return Err(CgroupError::Unsupported {
                field: "devices",
                reason: format!("loading the cgroup device BPF program: {first}; {text}"),
            });
        }
    };
    let cg = std::fs::File::open(dir).map_err(io)?;
    let mut attr = ProgAttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    /// Run `p` on a device access, as the kernel would (only the opcodes we emit).
    fn eval(p: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> i64 {
        let ctx = [((access << 16) | typ) as u32, major as u32, minor as u32];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            let jump = |taken: bool, pc: &mut usize| {
                if taken {
                    *pc = (*pc as isize + i.off as isize) as usize;
                }
            };
            match i.code {
                LDX_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                AND32_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                RSH32_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                MOV32_X => r[dst] = r[src] as u32 as u64,
                MOV64_K => r[dst] = i.imm as i64 as u64,
                JNE_K => jump(r[dst] != i.imm as i64 as u64, &mut pc),
                JEQ_K => jump(r[dst] == i.imm as i64 as u64, &mut pc),
                JSET_K => jump(r[dst] & i.imm as i64 as u64 != 0, &mut pc),
                EXIT => return r[0] as i64,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn rule(allow: bool, typ: LinuxDeviceType, maj: i64, min: i64, acc: &str) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(acc);
        if maj >= 0 {
            b = b.major(maj);
        }
        if min >= 0 {
            b = b.minor(min);
        }
        b.build().unwrap()
    }

    const RW: i32 = ACC_READ | ACC_WRITE;

    #[test]
    fn deny_all_then_allow_one() {
        let p = program(&[
            rule(false, LinuxDeviceType::A, -1, -1, "rwm"),
            rule(true, LinuxDeviceType::C, 1, 3, "rw"),
        ]);
        assert_eq!(eval(&p, DEV_CHAR, RW, 1, 3), 1, "/dev/null rw");
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 3), 1, "/dev/null r");
        assert_eq!(eval(&p, DEV_CHAR, ACC_MKNOD, 1, 3), 0, "mknod not granted");
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 5), 0, "/dev/zero");
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 1, 3), 0, "block 1:3");
    }

    #[test]
    fn later_rules_win_and_partial_denies_cover_read_write() {
        let p = program(&[
            rule(true, LinuxDeviceType::A, -1, -1, "rwm"),
            rule(false, LinuxDeviceType::C, 1, -1, "w"),
        ]);
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 5), 1);
        assert_eq!(eval(&p, DEV_CHAR, ACC_WRITE, 1, 5), 0);
        assert_eq!(eval(&p, DEV_CHAR, RW, 1, 9), 0, "rw asks for w");
        assert_eq!(eval(&p, DEV_CHAR, RW, 4, 1), 1, "other major");
        assert_eq!(eval(&p, DEV_BLOCK, RW, 1, 1), 1, "block is not char");
    }

    #[test]
    fn no_rule_matching_denies_and_fifo_rules_are_skipped() {
        let p = program(&[
            rule(true, LinuxDeviceType::P, -1, -1, "rwm"),
            rule(true, LinuxDeviceType::B, 8, -1, "r"),
        ]);
        assert_eq!(eval(&p, DEV_BLOCK, ACC_READ, 8, 1), 1);
        assert_eq!(eval(&p, DEV_BLOCK, RW, 8, 1), 0, "w not granted");
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 8, 1), 0);
        assert_eq!(program(&[]).len(), 8, "prelude and the default verdict");
        // A rule matching everything ends the program: nothing unreachable follows it.
        let all = program(&[
            rule(true, LinuxDeviceType::C, 1, 3, "rw"),
            rule(false, LinuxDeviceType::A, -1, -1, "rwm"),
        ]);
        assert_eq!(all.len(), 8, "{all:?}");
        assert_eq!(eval(&all, DEV_CHAR, ACC_READ, 1, 3), 0);
    }
}
