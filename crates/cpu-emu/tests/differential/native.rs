//! Runs test cases natively on the host CPU, in user mode, in a child process: fixed
//! pages for code, data and the harness, registers loaded from and saved to a state block,
//! faults caught by signal handlers that resume at the harness's exit path.

use std::sync::atomic::{AtomicU64, Ordering};

use super::case::{Case, Outcome, CODE, DATA, HARNESS, PAGE, STATE, XMM_OFF};

/// Where the host RSP is saved while the snippet runs.
const SAVE_RSP: u64 = HARNESS + 0x800;
/// The harness's private stack top (for PUSHF in the epilogue).
const PRIV_STACK: u64 = HARNESS + 0xf00;

static SIGNAL: AtomicU64 = AtomicU64::new(0);
static RECOVER: AtomicU64 = AtomicU64::new(0);

fn imm64(code: &mut Vec<u8>, prefix: &[u8], v: u64) {
    code.extend_from_slice(prefix);
    code.extend_from_slice(&v.to_le_bytes());
}

/// ModRM-with-disp32 moves between GPR `r` and `[rax + disp]`.
fn gpr_move(code: &mut Vec<u8>, store: bool, r: u8, disp: u32) {
    code.push(0x48 | if r >= 8 { 4 } else { 0 });
    code.push(if store { 0x89 } else { 0x8b });
    code.push(0x80 | ((r & 7) << 3));
    code.extend_from_slice(&disp.to_le_bytes());
}

fn xmm_move(code: &mut Vec<u8>, store: bool, x: u8, disp: u32) {
    code.push(0xf3);
    if x >= 8 {
        code.push(0x44);
    }
    code.extend_from_slice(&[0x0f, if store { 0x7f } else { 0x6f }, 0x80 | ((x & 7) << 3)]);
    code.extend_from_slice(&disp.to_le_bytes());
}

/// The harness: prologue (loads state), the snippet, epilogue (saves state), exit path.
/// Returns the code and the offset of the snippet and of the epilogue.
pub fn harness(snippet: &[u8]) -> (Vec<u8>, usize, usize, usize) {
    let mut c = vec![0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57];
    imm64(&mut c, &[0x48, 0xb8], SAVE_RSP);
    c.extend_from_slice(&[0x48, 0x89, 0x20]); // mov [rax], rsp
    imm64(&mut c, &[0x48, 0xb8], STATE);
    imm64(&mut c, &[0x48, 0xbc], PRIV_STACK);
    c.extend_from_slice(&[0xff, 0xb0, 0x80, 0, 0, 0, 0x9d]); // push [rax+128]; popfq
    for x in 0..16 {
        xmm_move(&mut c, false, x, XMM_OFF + 16 * x as u32);
    }
    for r in 1..16 {
        gpr_move(&mut c, false, r, 8 * r as u32);
    }
    c.extend_from_slice(&[0x48, 0x8b, 0x00]); // mov rax, [rax]
    let start = c.len();
    c.extend_from_slice(snippet);
    let end = c.len();
    imm64(&mut c, &[0x48, 0xa3], STATE); // mov [STATE], rax
    imm64(&mut c, &[0x48, 0xb8], STATE);
    for r in 1..16 {
        gpr_move(&mut c, true, r, 8 * r as u32);
    }
    for x in 0..16 {
        xmm_move(&mut c, true, x, XMM_OFF + 16 * x as u32);
    }
    imm64(&mut c, &[0x48, 0xbc], PRIV_STACK);
    c.extend_from_slice(&[0x9c, 0x8f, 0x80, 0x80, 0, 0, 0]); // pushfq; pop [rax+128]
    let recover = c.len();
    c.push(0xfc); // cld
    imm64(&mut c, &[0x48, 0xb8], SAVE_RSP);
    c.extend_from_slice(&[0x48, 0x8b, 0x20]); // mov rsp, [rax]
    c.extend_from_slice(&[
        0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0xc3,
    ]);
    (c, start, end, recover)
}

extern "C" fn on_signal(sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    SIGNAL.store(sig as u64, Ordering::SeqCst);
    // SAFETY: the kernel passes a valid ucontext_t for SA_SIGINFO handlers; we redirect the
    // interrupted thread to the harness's exit path, which restores the host stack.
    unsafe {
        let uc = ctx as *mut libc::ucontext_t;
        (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] = RECOVER.load(Ordering::SeqCst) as i64;
        // Never return to Rust code single-stepping or alignment-checking.
        (*uc).uc_mcontext.gregs[libc::REG_EFL as usize] &= !((1 << 8) | (1 << 18));
    }
}

fn map_fixed(addr: u64, prot: libc::c_int) {
    // SAFETY: mapping fresh anonymous pages at addresses this process does not use (the
    // runner is a dedicated child process).
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            PAGE as usize,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    assert_eq!(
        p as u64,
        addr,
        "mmap at {addr:#x} failed: {}",
        std::io::Error::last_os_error()
    );
}

/// Runs every case natively and returns the outcomes.
pub fn run_all(cases: &[Case]) -> Vec<Outcome> {
    map_fixed(CODE, libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC);
    map_fixed(DATA, libc::PROT_READ | libc::PROT_WRITE);
    map_fixed(HARNESS, libc::PROT_READ | libc::PROT_WRITE);
    let mut alt = vec![0u8; 64 * 1024];
    // SAFETY: installing an alternate signal stack and handlers in this dedicated process.
    unsafe {
        let ss = libc::stack_t {
            ss_sp: alt.as_mut_ptr() as *mut libc::c_void,
            ss_flags: 0,
            ss_size: alt.len(),
        };
        libc::sigaltstack(&ss, std::ptr::null_mut());
        for sig in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
        ] {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    let mut out = Vec::with_capacity(cases.len());
    let trace = std::env::var_os("CORRAL_CPUEMU_TRACE").is_some();
    for (n, case) in cases.iter().enumerate() {
        if trace {
            eprintln!("native case {n}: {:02x?}", case.code);
        }
        let (code, _, _, recover) = harness(&case.code);
        RECOVER.store(CODE + recover as u64, Ordering::SeqCst);
        SIGNAL.store(0, Ordering::SeqCst);
        // SAFETY: the three pages are mapped above and owned by this process; the harness is
        // position-dependent code generated for exactly these addresses.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), CODE as *mut u8, code.len());
            std::ptr::copy_nonoverlapping(case.data.as_ptr(), DATA as *mut u8, PAGE as usize);
            let st = STATE as *mut u64;
            for (i, v) in case.gpr.iter().enumerate() {
                *st.add(i) = *v;
            }
            *st.add(16) = case.rflags;
            let xs = (STATE + XMM_OFF as u64) as *mut u128;
            for (i, v) in case.xmm.iter().enumerate() {
                xs.add(i).write_unaligned(*v);
            }
            let f: extern "C" fn() = std::mem::transmute(CODE as usize);
            f();
            let mut o = Outcome {
                signal: SIGNAL.load(Ordering::SeqCst) as u32,
                gpr: [0; 16],
                rflags: *st.add(16),
                xmm: [0; 16],
                data: vec![0; PAGE as usize],
            };
            for i in 0..16 {
                o.gpr[i] = *st.add(i);
                o.xmm[i] = xs.add(i).read_unaligned();
            }
            std::ptr::copy_nonoverlapping(DATA as *const u8, o.data.as_mut_ptr(), PAGE as usize);
            out.push(o);
        }
    }
    out
}
