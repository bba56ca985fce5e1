//! Authentication (HTTP Basic, EventStoreDB's built-in `admin` and `ops` users) and authorisation (stream
//! `$acl` rules and EventStoreDB's defaults: system streams and `$all` for `$admins` and `$ops`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;

use crate::storage::{Acl, Store};

/// Who is calling. With `--insecure` every caller is allowed everything, as in EventStoreDB.
#[derive(Debug, Clone, Default)]
pub struct Principal {
    auth: bool,
    user: Option<String>,
    groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
    Delete,
    MetaRead,
    MetaWrite,
}

impl Principal {
    pub fn insecure() -> Self {
        Self::default()
    }

    pub fn anonymous() -> Self {
        Self {
            auth: true,
            user: None,
            groups: Vec::new(),
        }
    }

    pub fn auth_enabled(&self) -> bool {
        self.auth
    }

    /// The authenticated user's name, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// May manage users and server-wide settings.
    pub fn is_admin(&self) -> bool {
        !self.auth || self.groups.iter().any(|g| g == "$admins")
    }

    fn is_ops(&self) -> bool {
        self.groups.iter().any(|g| g == "$ops")
    }

    pub fn can_read_all(&self) -> bool {
        !self.auth || self.is_admin() || self.is_ops()
    }

    /// Whether the caller may do `operation` on `stream` with its `$acl`.
    pub fn allowed(&self, operation: Operation, stream: &str, acl: Option<&Acl>) -> bool {
        if !self.auth || self.is_admin() {
            return true;
        }
        let roles = acl.and_then(|acl| match operation {
            Operation::Read => acl.read.as_ref(),
            Operation::Write => acl.write.as_ref(),
            Operation::Delete => acl.delete.as_ref(),
            Operation::MetaRead => acl.meta_read.as_ref(),
            Operation::MetaWrite => acl.meta_write.as_ref(),
        });
        match roles {
            Some(roles) => roles.iter().any(|role| {
                role == "$all"
                    || self.user.as_deref() == Some(role.as_str())
                    || self.groups.iter().any(|g| g == role)
            }),
            // Defaults: system streams for admins (and ops for reading); user streams for any known user.
            None if stream.starts_with('$') => self.is_ops() && operation == Operation::Read,
            None => self.user.is_some(),
        }
    }
}

/// How long a successful password check is remembered (PBKDF2 is deliberately slow; clients send credentials on
/// every call).
const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);

/// The users the server knows: the built-in `admin` and `ops` (passwords from the configuration) and the users
/// stored in the event store (`users.rs`).
pub struct Users {
    admin_password: String,
    ops_password: String,
    store: Option<Store>,
    verified: Mutex<HashMap<String, (Principal, Instant)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid credentials")]
pub struct InvalidCredentials;

impl Users {
    pub fn new(admin_password: String, ops_password: String) -> Self {
        Self {
            admin_password,
            ops_password,
            store: None,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Also authenticates the users stored in `store`.
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Forgets remembered password checks (after any change to a user).
    pub fn invalidate(&self) {
        self.verified.lock().clear();
    }

    /// Checks an `authorization` header value; no header means anonymous.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, InvalidCredentials> {
        let Some(header) = header else {
            return Ok(Principal::anonymous());
        };
        if let Some((principal, at)) = self.verified.lock().get(header) {
            if at.elapsed() < AUTH_CACHE_TTL {
                return Ok(principal.clone());
            }
        }
        let encoded = header.strip_prefix("Basic ").ok_or(InvalidCredentials)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| InvalidCredentials)?;
        let decoded = String::from_utf8(decoded).map_err(|_| InvalidCredentials)?;
        let (user, password) = decoded.split_once(':').ok_or(InvalidCredentials)?;
        let groups = match user {
            "admin" if password == self.admin_password => vec!["$admins".to_owned()],
            "ops" if password == self.ops_password => vec!["$ops".to_owned()],
            "admin" | "ops" => return Err(InvalidCredentials),
            _ => {
                let store = self.store.as_ref().ok_or(InvalidCredentials)?;
                let record = crate::users::load(store, user)
                    .map_err(|_| InvalidCredentials)?
                    .ok_or(InvalidCredentials)?;
                if record.disabled || !record.verify(password) {
                    return Err(InvalidCredentials);
                }
                record.groups
            }
        };
        let principal = Principal {
            auth: true,
            user: Some(user.to_owned()),
            groups,
        };
        self.verified
            .lock()
            .insert(header.to_owned(), (principal.clone(), Instant::now()));
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn admin_and_ops_authenticate_and_strangers_do_not() {
        let users = Users::new("changeit".into(), "changeit".into());
        let admin = users
            .authenticate(Some(&basic("admin", "changeit")))
            .expect("admin");
        assert!(admin.can_read_all());
        assert!(admin.allowed(Operation::Write, "$secret", None));
        let ops = users
            .authenticate(Some(&basic("ops", "changeit")))
            .expect("ops");
        assert!(ops.allowed(Operation::Read, "$secret", None));
        assert!(!ops.allowed(Operation::Write, "$secret", None));
        assert_eq!(
            users.authenticate(Some(&basic("admin", "wrong"))).err(),
            Some(InvalidCredentials)
        );
        let anonymous = users.authenticate(None).expect("anonymous");
        assert!(!anonymous.can_read_all());
        assert!(!anonymous.allowed(Operation::Read, "orders-1", None));
        let acl = Acl {
            read: Some(vec!["$all".into()]),
            ..Acl::default()
        };
        assert!(anonymous.allowed(Operation::Read, "orders-1", Some(&acl)));
    }
}
