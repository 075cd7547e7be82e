//! USER for RUN steps: `name|uid[:group|gid]` resolved against the image's /etc/passwd and
//! /etc/group, as Docker does (primary group from passwd, supplementary groups from group
//! membership, HOME from passwd).

use std::path::Path;

/// The identity a RUN step's process takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (groups listing the user by name), sorted, without `gid`.
    pub additional_gids: Vec<u32>,
    /// The home directory from /etc/passwd (`/root` for an unknown root).
    pub home: String,
}

/// A USER that does not resolve in the image.
#[derive(Debug, thiserror::Error)]
#[error("USER {user}: {reason}")]
pub struct UserError {
    /// The USER value.
    pub user: String,
    /// What is missing.
    pub reason: String,
}

/// Reads `etc/<name>` of `rootfs` if it is a regular file (a symlink could point at the
/// host's files while the rootfs is not the process's root); empty otherwise.
fn image_file(rootfs: &Path, name: &str) -> String {
    let path = rootfs.join("etc").join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => std::fs::read_to_string(&path).unwrap_or_default(),
        _ => String::new(),
    }
}

/// Resolves `user` against the passwd and group files of the root filesystem at `rootfs`.
pub fn resolve_in_rootfs(rootfs: &Path, user: &str) -> Result<RunUser, UserError> {
    resolve(
        &image_file(rootfs, "passwd"),
        &image_file(rootfs, "group"),
        user,
    )
}

fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

/// Resolves `user` (empty means root) against passwd and group file contents.
pub fn resolve(passwd: &str, group: &str, user: &str) -> Result<RunUser, UserError> {
    let err = |reason: String| UserError {
        user: user.to_owned(),
        reason,
    };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = records(passwd).find(|f| match u.parse::<u32>() {
        Ok(n) => f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(n),
        Err(_) => f.first() == Some(&u),
    });
    let (uid, primary, name, home) = match (&entry, u.parse::<u32>()) {
        (Some(f), _) => (
            f.get(2)
                .and_then(|x| x.parse().ok())
                .ok_or_else(|| err(format!("bad uid in /etc/passwd entry of {}", f[0])))?,
            f.get(3).and_then(|x| x.parse().ok()).unwrap_or(0),
            Some(f[0]),
            f.get(5).filter(|h| !h.is_empty()).map(|h| h.to_string()),
        ),
        (None, Ok(n)) => (n, n, None, None),
        (None, Err(_)) => return Err(err(format!("no user {u:?} in the image's /etc/passwd"))),
    };
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => records(group)
                .find(|f| f.first() == Some(&g))
                .and_then(|f| f.get(2).and_then(|x| x.parse().ok()))
                .ok_or_else(|| err(format!("no group {g:?} in the image's /etc/group")))?,
        },
    };
    // Docker adds the groups listing the user only when USER names no group.
    let mut additional_gids: Vec<u32> = match (name, g) {
        (Some(name), None) => records(group)
            .filter(|f| {
                f.get(3)
                    .is_some_and(|m| m.split(',').any(|x| x.trim() == name))
            })
            .filter_map(|f| f.get(2).and_then(|x| x.parse().ok()))
            .filter(|&x| x != gid)
            .collect(),
        _ => Vec::new(),
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    let home = home.unwrap_or_else(|| if uid == 0 { "/root" } else { "/" }.to_owned());
    Ok(RunUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        app:x:1000:1001:App:/home/app:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app,other\napp:x:1001:\nwheel:x:10:app\n";

    #[test]
    fn names_ids_groups_and_home() {
        let root = resolve(PASSWD, GROUP, "").unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let app = resolve(PASSWD, GROUP, "app").unwrap();
        assert_eq!((app.uid, app.gid), (1000, 1001));
        assert_eq!(app.additional_gids, vec![10, 50]);
        assert_eq!(app.home, "/home/app");
        let by_uid = resolve(PASSWD, GROUP, "1000").unwrap();
        assert_eq!(by_uid, app);
        let explicit = resolve(PASSWD, GROUP, "app:staff").unwrap();
        assert_eq!((explicit.gid, explicit.additional_gids.len()), (50, 0));
        let unknown = resolve(PASSWD, GROUP, "4242:77").unwrap();
        assert_eq!(
            (unknown.uid, unknown.gid, unknown.home.as_str()),
            (4242, 77, "/")
        );
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let e = resolve(PASSWD, GROUP, "ghost").unwrap_err().to_string();
        assert!(e.contains("ghost") && e.contains("/etc/passwd"), "{e}");
        let e = resolve(PASSWD, GROUP, "app:nogroup")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nogroup") && e.contains("/etc/group"), "{e}");
    }

    #[test]
    fn a_symlinked_passwd_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        let outside = t.path().join("outside");
        std::fs::write(&outside, "ghost:x:7:7::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(&outside, t.path().join("etc/passwd")).unwrap();
        assert!(resolve_in_rootfs(t.path(), "ghost").is_err());
        std::fs::remove_file(t.path().join("etc/passwd")).unwrap();
        std::fs::copy(&outside, t.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve_in_rootfs(t.path(), "ghost").unwrap().uid, 7);
    }
}
