//! A guest profile for finding where an emulated guest spends its instructions: with
//! `CORRAL_EMU_PROFILE=FILE` in the VMM's environment, each vCPU counts the instructions it
//! retires per block start address and writes `FILE.vcpuN` ("count address" lines, most
//! first) every 2^25 instructions (a fraction of a second) and when it ends.
//! `bench/emu-profile.py` maps the addresses to the guest kernel's functions; a copy taken
//! at one moment, given as `--since`, leaves only what ran after it. Next to it,
//! `FILE.vcpuN.stats` holds the vCPU's [`CacheStats`] ("name value" lines).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

/// Environment variable naming the profile file.
pub const PROFILE_ENV: &str = "CORRAL_EMU_PROFILE";
const WRITE_EVERY: u64 = 1 << 25;

/// How often the vCPU's lookup structures answered from their fast paths: plain counters,
/// always kept (an add in a line already in cache), written only with a profile.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CacheStats {
    /// Blocks looked up to run.
    pub fetches: u64,
    /// Of those, found in the direct-mapped fast slots.
    pub fast_hits: u64,
    /// Found in the map behind the fast slots.
    pub map_hits: u64,
    /// Decoded afresh.
    pub decodes: u64,
    /// Page walks (software TLB misses).
    pub walks: u64,
    /// Instructions run by the full interpreter (no pre-decoded fast form).
    pub generic: u64,
}

impl CacheStats {
    fn text(&self, instructions: u64) -> String {
        format!(
            "instructions {instructions}\nfetches {}\nfast_hits {}\nmap_hits {}\ndecodes {}\nwalks {}\ngeneric {}\n",
            self.fetches, self.fast_hits, self.map_hits, self.decodes, self.walks, self.generic
        )
    }
}

/// Instructions retired per block start address, for one vCPU.
pub(crate) struct GuestProfile {
    path: PathBuf,
    hits: HashMap<u64, u64>,
    unwritten: u64,
    retired: u64,
    stats: CacheStats,
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
            retired: 0,
            stats: CacheStats::default(),
        }))
    }

    /// `instructions` ran in the block starting at `rip`; `stats` are the vCPU's counters.
    pub(crate) fn record(&mut self, rip: u64, instructions: u64, stats: &CacheStats) {
        *self.hits.entry(rip).or_default() += instructions;
        self.unwritten += instructions;
        self.retired += instructions;
        self.stats = *stats;
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
        let mut stats = self.path.clone().into_os_string();
        stats.push(".stats");
        let written = std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &self.path))
            .and_then(|()| std::fs::write(&stats, self.stats.text(self.retired)));
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
                retired: 0,
                stats: CacheStats::default(),
            };
            let mut stats = CacheStats::default();
            p.record(0xffff_ffff_8100_0000, 5, &stats);
            p.record(0xffff_ffff_8100_0040, 9, &stats);
            stats.walks = 3;
            p.record(0xffff_ffff_8100_0000, 7, &stats);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "12 0xffffffff81000000\n9 0xffffffff81000040\n");
        let stats = std::fs::read_to_string(dir.path().join("p.vcpu0.stats")).unwrap();
        assert!(stats.starts_with("instructions 21\n"), "{stats}");
        assert!(stats.contains("\nwalks 3\n"), "{stats}");
    }
}
