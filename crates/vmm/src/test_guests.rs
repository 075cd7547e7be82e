//! The tiny purpose-built guests assembled at build time from `guests/*.S` (see build.rs):
//! `hello` (PVH, prints a line and resets), `long` (64-bit entry, drops to CPL3, computes,
//! dirties pages, MMIO, resets), `fault` (an instruction the guest cannot survive).

use std::path::PathBuf;

/// Path of the assembled guest `name` (it may be missing when binutils was not installed).
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CORRAL_TEST_GUESTS_DIR")).join(format!("{name}.elf"))
}

/// What `long` prints as its sum: the wrapping sum of i*i for i in 1..=10,000,000.
pub fn long_guest_expected_sum() -> u64 {
    (1..=10_000_000u64).fold(0u64, |acc, i| acc.wrapping_add(i.wrapping_mul(i)))
}

/// First guest-physical page `long` dirties, and how many.
pub const LONG_GUEST_TOUCHED: (u64, u64) = (0x80_0000, 64);
