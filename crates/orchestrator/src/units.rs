//! Durations, byte sizes and CPU quantities as Compose and Kubernetes write them.

use std::time::Duration;

/// Parses Compose/Go durations: `1m30s`, `10s`, `500ms`, `1h`, `2.5s`, `90` (seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs_f64(total))
}

/// Parses byte sizes: Compose's `512m`, `1g`, `100kb`, `1024` and Kubernetes' `128Mi`, `1Gi`,
/// `500M`, `1e3`.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale: f64 = match unit {
        "" | "b" | "B" => 1.0,
        "k" | "kb" | "K" | "KB" | "Ki" | "KiB" => 1024.0,
        "m" | "mb" | "Mi" | "MB" | "MiB" => 1024.0 * 1024.0,
        "g" | "gb" | "Gi" | "GB" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "Ti" | "TB" | "TiB" => 1024f64.powi(4),
        // Kubernetes' decimal suffixes.
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ if unit.starts_with('e') => 10f64.powi(unit[1..].parse().ok()?),
        _ => return None,
    };
    (n >= 0.0).then_some((n * scale) as u64)
}

/// Parses CPU quantities: `0.5`, `2`, `500m`.
pub fn parse_cpus(s: &str) -> Option<f64> {
    let s = s.trim();
    let v = match s.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()? / 1000.0,
        None => s.parse::<f64>().ok()?,
    };
    (v > 0.0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2.5s"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(parse_bytes("512m"), Some(512 << 20));
        assert_eq!(parse_bytes("1g"), Some(1 << 30));
        assert_eq!(parse_bytes("128Mi"), Some(128 << 20));
        assert_eq!(parse_bytes("500M"), Some(500_000_000));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("1.5Gi"), Some(1_610_612_736));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_cpus("500m"), Some(0.5));
        assert_eq!(parse_cpus("2"), Some(2.0));
        assert_eq!(parse_cpus("0"), None);
    }
}
