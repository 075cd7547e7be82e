//! Registry credentials: `<root>/auth.json` in Docker's config shape
//! (`{"auths": {"host:port": {"auth": base64("user:password")}}}`), written with mode 0600.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;

use super::RegistryError;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AuthEntry {
    auth: String,
}

/// The credentials file under the root dir.
pub fn auth_file(corral_root: &Path) -> PathBuf {
    corral_root.join("auth.json")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read(corral_root: &Path) -> Result<AuthFile, RegistryError> {
    let p = auth_file(corral_root);
    match fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| RegistryError::Invalid(format!("{}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
        Err(e) => Err(RegistryError::Io { path: p, source: e }),
    }
}

/// Stored credentials for `registry` (host[:port]), if any.
pub fn load_credentials(
    corral_root: &Path,
    registry: &str,
) -> Result<Option<Credentials>, RegistryError> {
    let f = read(corral_root)?;
    let Some(e) = f.auths.get(registry) else {
        return Ok(None);
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&e.auth)
        .map_err(|_| RegistryError::Invalid(format!("auth.json: bad base64 for {registry}")))?;
    let s = String::from_utf8_lossy(&raw);
    let (u, p) = s
        .split_once(':')
        .ok_or_else(|| RegistryError::Invalid(format!("auth.json: bad entry for {registry}")))?;
    Ok(Some(Credentials {
        username: u.to_string(),
        password: p.to_string(),
    }))
}

/// Stores credentials (file mode 0600, replaced atomically).
pub fn save_credentials(
    corral_root: &Path,
    registry: &str,
    c: &Credentials,
) -> Result<(), RegistryError> {
    let mut f = read(corral_root)?;
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
    f.auths.insert(registry.to_string(), AuthEntry { auth });
    fs::create_dir_all(corral_root).map_err(io(corral_root))?;
    let p = auth_file(corral_root);
    let tmp = corral_root.join(format!(".auth.json.{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(&serde_json::to_vec_pretty(&f).expect("serializes"))
        .map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, &p).map_err(io(&p))
}

/// Checks the credentials against the registry (`GET /v2/`), then stores them.
pub fn login(
    corral_root: &Path,
    registry: &str,
    c: &Credentials,
    insecure: bool,
) -> Result<(), RegistryError> {
    let client = super::Client::new(
        registry,
        "",
        super::ClientOptions {
            insecure,
            credentials: Some(c.clone()),
            ..Default::default()
        },
    )?;
    client.ping()?;
    save_credentials(corral_root, registry, c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn credentials_round_trip_with_mode_0600() {
        let d = tempfile::tempdir().unwrap();
        let c = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        save_credentials(d.path(), "127.0.0.1:5000", &c).unwrap();
        assert_eq!(
            load_credentials(d.path(), "127.0.0.1:5000").unwrap(),
            Some(c)
        );
        assert_eq!(load_credentials(d.path(), "other").unwrap(), None);
        let mode = fs::metadata(auth_file(d.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
