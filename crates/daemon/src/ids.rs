//! Instance ids and generated names.

use std::io::Read;

/// 64 random hex digits, Docker's id shape.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const LEFT: &[&str] = &[
    "brave", "calm", "eager", "fond", "keen", "lucid", "merry", "quiet", "swift", "witty",
];
const RIGHT: &[&str] = &[
    "bison", "colt", "drover", "heifer", "mustang", "pony", "ranger", "steer", "wrangler", "yak",
];

/// A readable name derived from the id, e.g. `swift_pony_3fa2`.
pub fn name_for(id: &str) -> String {
    let b = u8::from_str_radix(&id[..2], 16).unwrap_or(0) as usize;
    let c = u8::from_str_radix(&id[2..4], 16).unwrap_or(0) as usize;
    format!(
        "{}_{}_{}",
        LEFT[b % LEFT.len()],
        RIGHT[c % RIGHT.len()],
        &id[4..8]
    )
}

/// Whether `name` is a valid object name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 chars.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A random token of 64 hex digits.
pub fn new_token() -> String {
    new_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_and_distinct() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
        assert!(valid_name(&name_for(&a)));
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
