//! Secure mode's credentials: a password per domain service's store user, made once and kept in
//! `<data-dir>/credentials.json` (readable by its owner only) so that a restarted bank logs in as the users the
//! first run created; and connection strings that log in as one of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The domain users' passwords, by login.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    passwords: BTreeMap<String, String>,
    file: PathBuf,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("logins", &self.passwords.keys().collect::<Vec<_>>())
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The passwords kept under `data_dir`, with a new random one for every domain user that has none yet.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let file = data_dir.join("credentials.json");
        let mut passwords: BTreeMap<String, String> = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", file.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => return Err(error).with_context(|| format!("reading {}", file.display())),
        };
        let before = passwords.len();
        for user in data_seeder::DOMAIN_USERS {
            passwords
                .entry(user.login.to_owned())
                .or_insert_with(|| uuid::Uuid::new_v4().simple().to_string());
        }
        if passwords.len() != before {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            write_private(&file, &serde_json::to_vec_pretty(&passwords)?)
                .with_context(|| format!("writing {}", file.display()))?;
        }
        Ok(Self { passwords, file })
    }

    /// Where the passwords are kept.
    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn password_of(&self, login: &str) -> Option<&str> {
        self.passwords.get(login).map(String::as_str)
    }

    /// The seed plan's users: every domain user with its password.
    pub fn seed_users(&self) -> Vec<data_seeder::SeedUser> {
        data_seeder::domain_users(|login| self.password_of(login).unwrap_or_default().to_owned())
    }
}

#[cfg(unix)]
fn write_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)?
        .write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(file, bytes)
}

/// `connection_string` logging in as `login` / `password` instead of whoever it named (if anyone).
pub fn with_credentials(
    connection_string: &str,
    login: &str,
    password: &str,
) -> anyhow::Result<String> {
    let (scheme, rest) = connection_string
        .split_once("://")
        .with_context(|| format!("'{connection_string}' is not an esdb:// connection string"))?;
    let hosts_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(hosts_end);
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    Ok(format!("{scheme}://{login}:{password}@{hosts}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_replaced_or_added() {
        assert_eq!(
            with_credentials(
                "esdb://admin:changeit@127.0.0.1:2113?tls=true&tlsVerifyCert=false",
                "accounts-api",
                "pw"
            )
            .expect("rewrites"),
            "esdb://accounts-api:pw@127.0.0.1:2113?tls=true&tlsVerifyCert=false"
        );
        assert_eq!(
            with_credentials("esdb://node1:2113,node2:2113/?tls=true", "a", "b").expect("adds"),
            "esdb://a:b@node1:2113,node2:2113/?tls=true"
        );
        assert!(with_credentials("node1:2113", "a", "b").is_err());
    }

    #[test]
    fn passwords_are_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!(
            "bank-credentials-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let first = Credentials::load_or_create(&dir).expect("made");
        let again = Credentials::load_or_create(&dir).expect("loaded");
        assert_eq!(first, again);
        for user in data_seeder::DOMAIN_USERS {
            assert!(first.password_of(user.login).is_some_and(|p| p.len() >= 32));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(first.file())
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "only the owner may read the passwords");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
