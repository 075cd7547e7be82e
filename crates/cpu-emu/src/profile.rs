//! A guest profile for finding where an emulated guest spends its instructions: with
//! `CORRAL_EMU_PROFILE=FILE` in the VMM's environment, each vCPU counts the instructions it
//! retires per block start address and writes `FILE.vcpuN` ("count address" lines, most
//! first) every 2^25 instructions (a fraction of a second) and when it ends.
//! `bench/emu-profile.py` maps the addresses to the guest kernel's functions; a copy taken
//! at one moment, given as `--since`, leaves only what ran after it.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

/// Environment variable naming the profile file.
pub const PROFILE_ENV: &str = "CORRAL_EMU_PROFILE";
const WRITE_EVERY: u64 = 1 << 25;

/// Instructions retired per block start address, for one vCPU.
pub(crate) struct GuestProfile {
    path: PathBuf,
    hits: HashMap<u64, u64>,
    unwritten: u64,
}

impl GuestProfile {
    /// The profile of vCPU `index`, when the environment asks for one.
    pub(crate) fn from_env(index: u32) -> Option<Box<Self>> {
        let base = std::env::var_os(PROFILE_ENV)?;
        let mut path = PathBuf::from(base);
        path.as_mut_os_string().push(format!(".vcpu{index}"));
        Some(Box::new(GuestProfile {
            path,
            hits: HashMap::new(),
            unwritten: 0,
        }))
    }

    /// `instructions` ran in the block starting at `rip`.
    pub(crate) fn record(&mut self, rip: u64, instructions: u64) {
        *self.hits.entry(rip).or_default() += instructions;
        self.unwritten += instructions;
        if self.unwritten >= WRITE_EVERY {
            self.write();
        }
    }

    fn write(&mut self) {
        self.unwritten = 0;
        let mut rows: Vec<(u64, u64)> = self.hits.iter().map(|(&rip, &n)| (n, rip)).collect();
        rows.sort_unstable_by(|a, b| b.cmp(a));
        let mut text = Vec::with_capacity(rows.len() * 28);
        for (n, rip) in rows {
            let _ = writeln!(text, "{n} {rip:#x}");
        }
        // Whole files only: a reader copying it mid-run never sees half of one.
        let mut partial = self.path.clone().into_os_string();
        partial.push(".partial");
        let written =
            std::fs::write(&partial, text).and_then(|()| std::fs::rename(&partial, &self.path));
        if let Err(e) = written {
            tracing::warn!("guest profile {}: {e}", self.path.display());
        }
    }
}

impl Drop for GuestProfile {
    fn drop(&mut self) {
        self.write();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_block_start_are_written_most_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.vcpu0");
        {
            let mut p = GuestProfile {
                path: path.clone(),
                hits: HashMap::new(),
                unwritten: 0,
            };
            p.record(0xffff_ffff_8100_0000, 5);
            p.record(0xffff_ffff_8100_0040, 9);
            p.record(0xffff_ffff_8100_0000, 7);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "12 0xffffffff81000000\n9 0xffffffff81000040\n");
    }
}
