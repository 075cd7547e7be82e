//! The doctor's table.

use super::checks::{Check, Status};

/// Render checks as an aligned table with a summary line.
pub fn table(checks: &[Check]) -> String {
    let width = checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:<width$}  {:<7}  DETAIL\n", "CHECK", "STATUS");
    for c in checks {
        let status = match c.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Missing => "MISSING",
        };
        out.push_str(&format!(
            "{:<width$}  {:<7}  {}\n",
            c.name, status, c.detail
        ));
    }
    let missing = checks
        .iter()
        .filter(|c| c.status == Status::Missing)
        .count();
    let warn = checks.iter().filter(|c| c.status == Status::Warn).count();
    out.push_str(&format!(
        "\n{} checks: {} ok, {warn} warnings, {missing} missing must-haves\n",
        checks.len(),
        checks.len() - warn - missing
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_and_summarises() {
        let checks = vec![
            Check {
                name: "kvm".into(),
                status: Status::Warn,
                detail: "pvm".into(),
            },
            Check {
                name: "overlayfs".into(),
                status: Status::Ok,
                detail: "yes".into(),
            },
        ];
        let t = table(&checks);
        assert!(
            t.starts_with("CHECK      STATUS   DETAIL\nkvm        warn     pvm\n"),
            "{t}"
        );
        assert!(t.ends_with("2 checks: 1 ok, 1 warnings, 0 missing must-haves\n"));
    }
}
