//! Linear-to-physical translation: the 4-level page walk (4 KiB, 2 MiB and 1 GiB pages,
//! NX, WP, U/S, accessed/dirty bits) and a direct-mapped software TLB in front of it,
//! flushed on CR3 writes, INVLPG and paging-mode changes.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::cpu::Cpu;
use crate::error::{vector, Fault, Stop};
use crate::phys::PAGE_SIZE;
use crate::state::cr;

/// Entries in the software TLB.
const TLB_ENTRIES: usize = 1024;

const PTE_P: u64 = 1;
const PTE_W: u64 = 1 << 1;
const PTE_U: u64 = 1 << 2;
const PTE_A: u64 = 1 << 5;
const PTE_D: u64 = 1 << 6;
const PTE_PS: u64 = 1 << 7;
const PTE_NX: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Kinds of access, combined as bits.
pub mod acc {
    /// A read.
    pub const READ: u8 = 0;
    /// A write.
    pub const WRITE: u8 = 1;
    /// An instruction fetch.
    pub const EXEC: u8 = 2;
    /// Made with user privilege (CPL 3, not an implicit supervisor access).
    pub const USER: u8 = 4;
}

/// Every access kind a [`TlbEntry::direct`] bit stands for.
const DIRECT_KINDS: [u8; 6] = [
    acc::READ,
    acc::WRITE,
    acc::EXEC,
    acc::READ | acc::USER,
    acc::WRITE | acc::USER,
    acc::EXEC | acc::USER,
];

const PERM_W: u8 = 1;
const PERM_U: u8 = 2;
const PERM_X: u8 = 4;
const PERM_D: u8 = 8;

#[derive(Debug, Clone, Copy, Default)]
struct TlbEntry {
    /// Virtual page number + 1 (0 = empty).
    tag: u64,
    /// Host address of the page, 0 for MMIO.
    host: usize,
    /// Guest-physical page address.
    gpa: u64,
    perm: u8,
    /// Bit `1 << a` set when access kind `a` (an [`acc`] combination) may use the host page
    /// directly: allowed by `perm` under the CR0.WP of the fill (a CR0 write flushes the
    /// TLB), and RAM. The inlined fast path of loads, stores and fetches tests only this.
    direct: u8,
}

/// The software TLB.
#[derive(Debug)]
pub struct Tlb {
    entries: Box<[TlbEntry; TLB_ENTRIES]>,
}

impl Default for Tlb {
    fn default() -> Self {
        Tlb {
            entries: Box::new([TlbEntry::default(); TLB_ENTRIES]),
        }
    }
}

impl Tlb {
    /// Drops every translation.
    pub fn flush(&mut self) {
        self.entries.fill(TlbEntry::default());
    }
    /// Drops the translation of one page.
    pub fn flush_page(&mut self, va: u64) {
        let vpn = va >> 12;
        let e = &mut self.entries[(vpn as usize) & (TLB_ENTRIES - 1)];
        if e.tag == vpn.wrapping_add(1) {
            *e = TlbEntry::default();
        }
    }
}

/// The RAM page behind a linear address, for a direct access (see [`Cpu::direct_page`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DirectPage {
    /// Host address of the page.
    pub host: usize,
    /// Guest-physical address of the page.
    pub gpa: u64,
}

/// A translated page: guest-physical address and host address (0 for MMIO) of `va`.
#[derive(Debug, Clone, Copy)]
pub struct Translation {
    /// Guest-physical address of the byte.
    pub gpa: u64,
    /// Host address of the byte, 0 when it is MMIO.
    pub host: usize,
}

/// An 8-byte-aligned page-table entry in guest RAM, accessed atomically (other vCPUs and
/// the guest's own page-table updates race with the walk).
struct PteRef(*mut u64);

impl PteRef {
    fn atomic(&self) -> &AtomicU64 {
        // SAFETY: the pointer is 8-byte aligned inside a guest RAM page mapped for the VM's
        // lifetime (see `pte_ref`); all concurrent accesses go through atomics.
        unsafe { AtomicU64::from_ptr(self.0) }
    }
    fn load(&self) -> u64 {
        self.atomic().load(Ordering::Acquire)
    }
    fn set(&self, bits: u64) {
        self.atomic().fetch_or(bits, Ordering::AcqRel);
    }
}

/// Whether `va` is a canonical 48-bit address.
pub fn canonical(va: u64) -> bool {
    ((va as i64) << 16 >> 16) as u64 == va
}

impl Cpu {
    /// The access bits for a normal data access at the current privilege level.
    #[inline]
    pub(crate) fn data_acc(&self, write: bool) -> u8 {
        (if write { acc::WRITE } else { acc::READ })
            | if self.state.cpl() == 3 { acc::USER } else { 0 }
    }

    /// The RAM page of `va` when the TLB holds it for access kind `a`, without a page walk,
    /// a permission computation or a call: the fast path of every load, store and fetch.
    #[inline(always)]
    pub(crate) fn direct_page(&self, va: u64, a: u8) -> Option<DirectPage> {
        let vpn = va >> 12;
        let e = &self.tlb.entries[(vpn as usize) & (TLB_ENTRIES - 1)];
        (e.tag == vpn.wrapping_add(1) && e.direct & (1 << a) != 0).then_some(DirectPage {
            host: e.host,
            gpa: e.gpa,
        })
    }

    /// Translates `va` for an access of kind `a`, raising #PF or #GP as the hardware would.
    #[inline]
    pub(crate) fn translate(&mut self, va: u64, a: u8) -> Result<Translation, Stop> {
        let vpn = va >> 12;
        let e = self.tlb.entries[(vpn as usize) & (TLB_ENTRIES - 1)];
        if e.tag == vpn.wrapping_add(1) && self.tlb_allows(e.perm, a) {
            let off = va & (PAGE_SIZE - 1);
            return Ok(Translation {
                gpa: e.gpa | off,
                host: if e.host == 0 {
                    0
                } else {
                    e.host + off as usize
                },
            });
        }
        self.stats.walks += 1;
        self.walk(va, a)
    }

    #[inline]
    fn tlb_allows(&self, perm: u8, a: u8) -> bool {
        if a & acc::USER != 0 && perm & PERM_U == 0 {
            return false;
        }
        if a & acc::EXEC != 0 && perm & PERM_X == 0 {
            return false;
        }
        if a & acc::WRITE != 0 {
            let wp = a & acc::USER != 0 || self.state.cr0 & cr::CR0_WP != 0;
            if (wp && perm & PERM_W == 0) || perm & PERM_D == 0 {
                return false;
            }
        }
        true
    }

    fn page_fault(&mut self, va: u64, a: u8, present: bool, rsvd: bool) -> Stop {
        let mut code = 0u32;
        if present {
            code |= 1;
        }
        if a & acc::WRITE != 0 {
            code |= 2;
        }
        if a & acc::USER != 0 {
            code |= 4;
        }
        if rsvd {
            code |= 8;
        }
        if a & acc::EXEC != 0 && self.state.efer & cr::EFER_NXE != 0 {
            code |= 16;
        }
        self.state.cr2 = va;
        Stop::Fault(Fault {
            vector: vector::PF,
            error_code: Some(code),
        })
    }

    /// A page-table entry through its host address (page tables must live in RAM).
    fn pte_ref(&self, gpa: u64) -> Result<PteRef, Stop> {
        let page = self
            .mem
            .page_ptr(gpa)
            .ok_or_else(|| Stop::Internal(format!("page table entry at {gpa:#x} is not in RAM")))?;
        // SAFETY: `page` is the host mapping of a whole guest RAM page that lives as long as
        // the VM; `gpa & 0xff8` keeps the 8-byte-aligned entry inside it.
        Ok(PteRef(
            unsafe { page.add((gpa & 0xff8) as usize) } as *mut u64
        ))
    }

    fn walk(&mut self, va: u64, a: u8) -> Result<Translation, Stop> {
        let s = &self.state;
        let (gpa_page, perm) = if s.cr0 & cr::CR0_PG == 0 {
            (
                va & !(PAGE_SIZE - 1) & ADDR_MASK,
                PERM_W | PERM_U | PERM_X | PERM_D,
            )
        } else {
            if !canonical(va) {
                return Err(Stop::Fault(Fault::gp(0)));
            }
            if s.cr4 & cr::CR4_PAE == 0 || s.efer & cr::EFER_LMA == 0 {
                return Err(Stop::NotLongMode);
            }
            let nxe = s.efer & cr::EFER_NXE != 0;
            let mut table = s.cr3 & ADDR_MASK;
            let (mut w, mut u, mut nx) = (true, true, false);
            let mut level = 3;
            let leaf_page;
            loop {
                let idx = (va >> (12 + 9 * level)) & 511;
                let pte_ref = self.pte_ref(table + idx * 8)?;
                let pte = pte_ref.load();
                if pte & PTE_P == 0 {
                    return Err(self.page_fault(va, a, false, false));
                }
                if pte & PTE_NX != 0 && !nxe {
                    return Err(self.page_fault(va, a, true, true));
                }
                w &= pte & PTE_W != 0;
                u &= pte & PTE_U != 0;
                nx |= pte & PTE_NX != 0;
                let large = pte & PTE_PS != 0 && (level == 1 || level == 2);
                if level == 0 || large {
                    let size_mask = (1u64 << (12 + 9 * level)) - 1;
                    let user = a & acc::USER != 0;
                    let write = a & acc::WRITE != 0;
                    let wp = user || self.state.cr0 & cr::CR0_WP != 0;
                    if (user && !u) || (write && wp && !w) || (a & acc::EXEC != 0 && nx) {
                        return Err(self.page_fault(va, a, true, false));
                    }
                    let set = PTE_A | if write { PTE_D } else { 0 };
                    if pte & set != set {
                        pte_ref.set(set);
                    }
                    let dirty = write || pte & PTE_D != 0;
                    leaf_page =
                        ((pte & ADDR_MASK & !size_mask) | (va & size_mask)) & !(PAGE_SIZE - 1);
                    let perm = (if w { PERM_W } else { 0 })
                        | (if u { PERM_U } else { 0 })
                        | (if nx { 0 } else { PERM_X })
                        | (if dirty { PERM_D } else { 0 });
                    break (leaf_page, perm);
                }
                if pte & PTE_A == 0 {
                    pte_ref.set(PTE_A);
                }
                table = pte & ADDR_MASK;
                level -= 1;
            }
        };
        let host = self.mem.page_ptr(gpa_page).map_or(0, |p| p as usize);
        let vpn = va >> 12;
        let direct = if host == 0 {
            0
        } else {
            DIRECT_KINDS
                .iter()
                .filter(|&&k| self.tlb_allows(perm, k))
                .fold(0u8, |bits, &k| bits | 1 << k)
        };
        self.tlb.entries[(vpn as usize) & (TLB_ENTRIES - 1)] = TlbEntry {
            tag: vpn.wrapping_add(1),
            host,
            gpa: gpa_page,
            perm,
            direct,
        };
        let off = va & (PAGE_SIZE - 1);
        Ok(Translation {
            gpa: gpa_page | off,
            host: if host == 0 { 0 } else { host + off as usize },
        })
    }
}
