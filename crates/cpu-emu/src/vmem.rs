//! Virtual memory accesses of instructions: little-endian loads and stores of 1 to 16 bytes
//! through the TLB, page-crossing accesses, MMIO reads/writes as exits, LOCKed
//! read-modify-write as host atomics, and code-page invalidation on every store.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use crate::cpu::{Cpu, PendingRead};
use crate::error::{Exit, Stop};
use crate::mmu::{acc, Translation};
use crate::phys::PAGE_SIZE;

/// Serialises LOCKed accesses that the host cannot do atomically (split across pages or
/// misaligned, or MMIO).
static SPLIT_LOCK: Mutex<()> = Mutex::new(());

impl Cpu {
    /// Reads `size` (1, 2, 4 or 8) bytes at linear address `va`.
    #[inline(always)]
    pub(crate) fn read_mem(&mut self, va: u64, size: usize) -> Result<u64, Stop> {
        let a = self.data_acc(false);
        let off = (va & (PAGE_SIZE - 1)) as usize;
        if off + size <= PAGE_SIZE as usize {
            if let Some(page) = self.direct_page(va, a) {
                // SAFETY: a RAM page mapped for the VM's lifetime; the access stays inside it.
                return Ok(unsafe { load(page.host + off, size) });
            }
        }
        self.read_acc(va, size, a)
    }

    /// Reads with explicit access bits (implicit supervisor accesses: IDT, GDT, TSS).
    pub(crate) fn read_acc(&mut self, va: u64, size: usize, a: u8) -> Result<u64, Stop> {
        if (va & (PAGE_SIZE - 1)) as usize + size <= PAGE_SIZE as usize {
            let t = self.translate(va, a)?;
            if t.host != 0 {
                // SAFETY: `t.host` points into a RAM page mapped for the VM's lifetime and the
                // access stays inside that page (checked above).
                return Ok(unsafe { load(t.host, size) });
            }
            return self.mmio_read(t.gpa, size);
        }
        let mut buf = [0u8; 8];
        self.read_bytes_acc(va, &mut buf[..size], a)?;
        Ok(u64::from_le_bytes(buf))
    }

    /// Reads bytes at `va` (any length, any alignment).
    pub(crate) fn read_bytes(&mut self, va: u64, out: &mut [u8]) -> Result<(), Stop> {
        let a = self.data_acc(false);
        self.read_bytes_acc(va, out, a)
    }

    fn read_bytes_acc(&mut self, va: u64, out: &mut [u8], a: u8) -> Result<(), Stop> {
        let mut done = 0;
        while done < out.len() {
            let cur = va.wrapping_add(done as u64);
            let room = (PAGE_SIZE - (cur & (PAGE_SIZE - 1))) as usize;
            let n = room.min(out.len() - done);
            let t = self.translate(cur, a)?;
            if t.host != 0 {
                // SAFETY: `n` bytes from `t.host` stay inside one mapped RAM page.
                unsafe {
                    std::ptr::copy_nonoverlapping(t.host as *const u8, out[done..].as_mut_ptr(), n)
                };
            } else {
                for i in 0..n {
                    out[done + i] = self.mmio_read(t.gpa + i as u64, 1)? as u8;
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Reads 16 bytes (SSE operands).
    pub(crate) fn read_u128(&mut self, va: u64) -> Result<u128, Stop> {
        let mut b = [0u8; 16];
        self.read_bytes(va, &mut b)?;
        Ok(u128::from_le_bytes(b))
    }

    /// Writes `size` (1, 2, 4 or 8) bytes at `va`.
    #[inline(always)]
    pub(crate) fn write_mem(&mut self, va: u64, size: usize, val: u64) -> Result<(), Stop> {
        let a = self.data_acc(true);
        let off = (va & (PAGE_SIZE - 1)) as usize;
        if off + size <= PAGE_SIZE as usize {
            if let Some(page) = self.direct_page(va, a) {
                // SAFETY: a RAM page mapped for the VM's lifetime; the access stays inside it.
                unsafe { store(page.host + off, size, val) };
                if self.code.note_write(page.gpa) {
                    self.code_written = true;
                }
                return Ok(());
            }
        }
        self.write_acc(va, size, val, a)
    }

    /// Writes with explicit access bits.
    pub(crate) fn write_acc(&mut self, va: u64, size: usize, val: u64, a: u8) -> Result<(), Stop> {
        if (va & (PAGE_SIZE - 1)) as usize + size <= PAGE_SIZE as usize {
            let t = self.translate(va, a | acc::WRITE)?;
            return self.store(t, size, val);
        }
        let bytes = val.to_le_bytes();
        self.write_bytes_acc(va, &bytes[..size], a)
    }

    #[inline]
    fn store(&mut self, t: Translation, size: usize, val: u64) -> Result<(), Stop> {
        if t.host != 0 {
            // SAFETY: the access stays inside one mapped RAM page (callers check).
            unsafe { store(t.host, size, val) };
            if self.code.note_write(t.gpa) {
                self.code_written = true;
            }
            Ok(())
        } else {
            self.mmio_write(t.gpa, size, val)
        }
    }

    /// Writes bytes at `va`; every page is translated before anything is written, so a
    /// fault leaves memory untouched.
    pub(crate) fn write_bytes(&mut self, va: u64, data: &[u8]) -> Result<(), Stop> {
        let a = self.data_acc(true);
        self.write_bytes_acc(va, data, a)
    }

    fn write_bytes_acc(&mut self, va: u64, data: &[u8], a: u8) -> Result<(), Stop> {
        let mut parts = [(Translation { gpa: 0, host: 0 }, 0usize, 0usize); 3];
        let mut count = 0;
        let mut done = 0;
        while done < data.len() {
            let cur = va.wrapping_add(done as u64);
            let room = (PAGE_SIZE - (cur & (PAGE_SIZE - 1))) as usize;
            let n = room.min(data.len() - done);
            if count == parts.len() {
                return Err(Stop::Internal("write spans more than three pages".into()));
            }
            parts[count] = (self.translate(cur, a | acc::WRITE)?, done, n);
            count += 1;
            done += n;
        }
        for &(t, off, n) in &parts[..count] {
            if t.host != 0 {
                // SAFETY: `n` bytes from `t.host` stay inside one mapped RAM page.
                unsafe {
                    std::ptr::copy_nonoverlapping(data[off..].as_ptr(), t.host as *mut u8, n)
                };
                if self.code.note_write(t.gpa) {
                    self.code_written = true;
                }
            } else {
                for i in 0..n {
                    self.mmio_write(t.gpa + i as u64, 1, data[off + i] as u64)?;
                }
            }
        }
        Ok(())
    }

    /// Writes 16 bytes.
    pub(crate) fn write_u128(&mut self, va: u64, val: u128) -> Result<(), Stop> {
        self.write_bytes(va, &val.to_le_bytes())
    }

    fn mmio_read(&mut self, gpa: u64, size: usize) -> Result<u64, Stop> {
        match self.read_reply.take() {
            Some(PendingRead::Mmio {
                gpa: g,
                size: s,
                data: Some(d),
            }) if g == gpa && s as usize == size => Ok(d),
            _ => {
                self.read_reply = Some(PendingRead::Mmio {
                    gpa,
                    size: size as u8,
                    data: None,
                });
                Err(Stop::Exit(Exit::MmioRead {
                    gpa,
                    size: size as u8,
                }))
            }
        }
    }

    fn mmio_write(&mut self, gpa: u64, size: usize, val: u64) -> Result<(), Stop> {
        if self.pending_exit.is_some() {
            return Err(Stop::Internal(format!(
                "a second MMIO write ({gpa:#x}) in one instruction is not supported"
            )));
        }
        let mask = if size >= 8 {
            u64::MAX
        } else {
            (1u64 << (size * 8)) - 1
        };
        self.pending_exit = Some(Exit::MmioWrite {
            gpa,
            size: size as u8,
            data: val & mask,
        });
        Ok(())
    }

    /// A LOCKed (or XCHG) read-modify-write of `size` bytes at `va`: `f(old)` gives the new
    /// value or `None` to leave memory unchanged (CMPXCHG failing). Returns the old value.
    /// Done as a host compare-and-swap loop so other vCPU threads see it atomically.
    pub(crate) fn atomic_rmw(
        &mut self,
        va: u64,
        size: usize,
        mut f: impl FnMut(u64) -> Option<u64>,
    ) -> Result<u64, Stop> {
        let a = self.data_acc(true);
        let aligned = va & (size as u64 - 1) == 0;
        if aligned {
            let t = self.translate(va, a)?;
            if t.host != 0 {
                if self.code.note_write(t.gpa) {
                    self.code_written = true;
                }
                // SAFETY: aligned access of `size` bytes inside a mapped RAM page; other
                // threads touch guest memory only through atomics or plain racy copies, as
                // real hardware allows.
                return Ok(unsafe { cas_loop(t.host, size, &mut f) });
            }
        }
        let _guard = SPLIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.read_acc(va, size, a)?;
        // Check writability before writing anything.
        self.translate(va, a | acc::WRITE)?;
        self.translate(va.wrapping_add(size as u64 - 1), a | acc::WRITE)?;
        if let Some(new) = f(old) {
            self.write_acc(va, size, new, a)?;
        }
        Ok(old)
    }
}

impl Cpu {
    /// LOCK CMPXCHG16B on a 16-byte aligned address: returns the old value.
    pub(crate) fn atomic_rmw128(&mut self, va: u64, expect: u128, new: u128) -> Result<u128, Stop> {
        let a = self.data_acc(true);
        let t = self.translate(va, a)?;
        if t.host == 0 {
            return Err(Stop::Internal(format!(
                "CMPXCHG16B on MMIO address {:#x}",
                t.gpa
            )));
        }
        if self.code.note_write(t.gpa) {
            self.code_written = true;
        }
        // SAFETY: `t.host` is 16-byte aligned (the guest address is, and pages are) inside a
        // mapped RAM page.
        Ok(unsafe { cmpxchg16b(t.host as *mut u128, expect, new) })
    }
}

/// A 16-byte compare-and-swap at a host address, returning the previous value.
///
/// # Safety
/// `p` must be 16-byte aligned and valid for reads and writes.
#[cfg(target_arch = "x86_64")]
unsafe fn cmpxchg16b(p: *mut u128, expect: u128, new: u128) -> u128 {
    let (mut lo, mut hi) = (expect as u64, (expect >> 64) as u64);
    // SAFETY: the caller guarantees `p`; CMPXCHG16B is in every x86-64 CPU that runs Linux
    // guests we care about (and is what the guest itself asked for). RBX is reserved by
    // LLVM, so it is swapped in and out around the instruction.
    unsafe {
        std::arch::asm!(
            "xchg {nlo}, rbx",
            "lock cmpxchg16b [{p}]",
            "mov rbx, {nlo}",
            p = in(reg) p,
            nlo = inout(reg) new as u64 => _,
            in("rcx") (new >> 64) as u64,
            inout("rax") lo,
            inout("rdx") hi,
        );
    }
    (hi as u128) << 64 | lo as u128
}

/// Fallback for non-x86 hosts: serialised through the split lock.
///
/// # Safety
/// `p` must be 16-byte aligned and valid for reads and writes.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn cmpxchg16b(p: *mut u128, expect: u128, new: u128) -> u128 {
    let _guard = SPLIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: guaranteed by the caller.
    unsafe {
        let old = p.read_volatile();
        if old == expect {
            p.write_volatile(new);
        }
        old
    }
}

/// Loads `size` bytes from a host address.
///
/// # Safety
/// `p..p+size` must be readable.
#[inline]
unsafe fn load(p: usize, size: usize) -> u64 {
    // SAFETY: guaranteed by the caller; unaligned reads are fine on x86 and handled by
    // read_unaligned elsewhere.
    unsafe {
        match size {
            1 => *(p as *const u8) as u64,
            2 => (p as *const u16).read_unaligned() as u64,
            4 => (p as *const u32).read_unaligned() as u64,
            _ => (p as *const u64).read_unaligned(),
        }
    }
}

/// Stores the low `size` bytes of `v` at a host address.
///
/// # Safety
/// `p..p+size` must be writable.
#[inline]
unsafe fn store(p: usize, size: usize, v: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        match size {
            1 => *(p as *mut u8) = v as u8,
            2 => (p as *mut u16).write_unaligned(v as u16),
            4 => (p as *mut u32).write_unaligned(v as u32),
            _ => (p as *mut u64).write_unaligned(v),
        }
    }
}

/// Compare-and-swap loop at an aligned host address.
///
/// # Safety
/// `p` must be aligned to `size` and point to `size` writable bytes.
unsafe fn cas_loop(p: usize, size: usize, f: &mut impl FnMut(u64) -> Option<u64>) -> u64 {
    macro_rules! cas {
        ($atomic:ty, $t:ty) => {{
            // SAFETY: alignment and validity are the caller's contract.
            let a = unsafe { <$atomic>::from_ptr(p as *mut $t) };
            let mut cur = a.load(Ordering::Acquire);
            loop {
                match f(cur as u64) {
                    None => return cur as u64,
                    Some(new) => match a.compare_exchange_weak(
                        cur,
                        new as $t,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return cur as u64,
                        Err(now) => cur = now,
                    },
                }
            }
        }};
    }
    match size {
        1 => cas!(AtomicU8, u8),
        2 => cas!(AtomicU16, u16),
        4 => cas!(AtomicU32, u32),
        _ => cas!(AtomicU64, u64),
    }
}
