//! The guest figures a heartbeat carries, read cheaply from `/proc` (uptime, MemTotal and
//! MemAvailable, load averages). Parsing is separate from reading so it is tested on text.

use std::path::Path;

use crate::protocol::Heartbeat;

/// Milliseconds of uptime from `/proc/uptime` text ("12.34 5.67").
pub fn parse_uptime_ms(text: &str) -> Option<u64> {
    let secs: f64 = text.split_ascii_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64)
}

/// (MemTotal, MemAvailable) in KiB from `/proc/meminfo` text; either may be missing
/// (MemAvailable appeared in Linux 3.14).
pub fn parse_meminfo_kib(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_ascii_whitespace().next()?.parse().ok()
        })
    };
    (field("MemTotal"), field("MemAvailable"))
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg` text.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_ascii_whitespace().map(|w| w.parse::<f64>().ok());
    let a = it.next()??;
    let b = it.next()??;
    let c = it.next()??;
    Some([a, b, c])
}

/// Heartbeat number `seq` with the figures read from the proc file system at `proc_root`
/// (`/proc` in the guest); a file that cannot be read leaves its figures unknown.
pub fn read(proc_root: &Path, seq: u64) -> Heartbeat {
    let text = |name: &str| std::fs::read_to_string(proc_root.join(name)).ok();
    let (mem_total_kib, mem_available_kib) = text("meminfo")
        .map(|t| parse_meminfo_kib(&t))
        .unwrap_or_default();
    Heartbeat {
        seq,
        uptime_ms: text("uptime").as_deref().and_then(parse_uptime_ms),
        mem_total_kib,
        mem_available_kib,
        load: text("loadavg").as_deref().and_then(parse_loadavg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:         241320 kB\nMemFree:          221012 kB\n\
                           MemAvailable:     215640 kB\nBuffers:               0 kB\n";

    #[test]
    fn proc_texts_parse() {
        assert_eq!(parse_uptime_ms("12.34 5.67\n"), Some(12_340));
        assert_eq!(parse_uptime_ms("nonsense"), None);
        assert_eq!(parse_uptime_ms("-1 0"), None);
        assert_eq!(parse_meminfo_kib(MEMINFO), (Some(241_320), Some(215_640)));
        assert_eq!(
            parse_meminfo_kib("MemTotal: 10 kB\nMemTotalX: 3 kB\n"),
            (Some(10), None)
        );
        assert_eq!(
            parse_loadavg("0.52 0.31 0.10 1/45 123\n"),
            Some([0.52, 0.31, 0.10])
        );
        assert_eq!(parse_loadavg("0.52 x 0.10"), None);
    }

    #[test]
    fn read_takes_what_it_finds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meminfo"), MEMINFO).unwrap();
        std::fs::write(dir.path().join("uptime"), "3.5 1.0\n").unwrap();
        let h = read(dir.path(), 4);
        assert_eq!(h.seq, 4);
        assert_eq!(h.uptime_ms, Some(3_500));
        assert_eq!(h.mem_used_bytes(), Some((241_320 - 215_640) * 1024));
        assert_eq!(h.load, None, "no loadavg file");
    }

    #[test]
    fn this_hosts_proc_reads() {
        let h = read(Path::new("/proc"), 1);
        assert!(h.uptime_ms.is_some_and(|u| u > 0), "{h:?}");
        assert!(h.mem_total_kib.is_some_and(|m| m > 0), "{h:?}");
        assert!(h.load.is_some(), "{h:?}");
    }
}
