//! User accounts kept in the store, as EventStoreDB keeps them: one `$user-<login>` stream per user (its last
//! `$User` event is the current record) and a `$users` stream listing every login created. Passwords are stored
//! as salted PBKDF2-HMAC-SHA256 hashes, never in clear.
//!
//! Managed over EventStoreDB's HTTP users API on the server's port: `POST /users`, `GET /users`,
//! `GET|PUT|DELETE /users/{login}`, `POST /users/{login}/command/{enable|disable|reset-password|change-password}`.

use std::num::NonZeroU32;

use base64::Engine;
use bytes::Bytes;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::storage::{ExpectedRevision, ProposedEvent, Store, StreamFrom, StreamRead, WriteError};

const PBKDF2_ITERATIONS: u32 = 10_000;
const USER_EVENT_TYPE: &str = "$User";
const USERS_STREAM: &str = "$users";

pub fn user_stream(login: &str) -> String {
    format!("$user-{login}")
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub login_name: String,
    pub full_name: String,
    pub groups: Vec<String>,
    pub disabled: bool,
    #[serde(default)]
    pub deleted: bool,
    salt: String,
    hash: String,
}

/// What GET /users returns: the record without the password hash.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDetails {
    pub login_name: String,
    pub full_name: String,
    pub groups: Vec<String>,
    pub disabled: bool,
}

impl From<&UserRecord> for UserDetails {
    fn from(r: &UserRecord) -> Self {
        Self {
            login_name: r.login_name.clone(),
            full_name: r.full_name.clone(),
            groups: r.groups.clone(),
            disabled: r.disabled,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user '{0}' already exists")]
    Conflict(String),
    #[error("user '{0}' does not exist")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("the store failed: {0}")]
    Store(String),
}

fn iterations() -> NonZeroU32 {
    NonZeroU32::new(PBKDF2_ITERATIONS).unwrap_or(NonZeroU32::MIN)
}

fn hash_password(password: &str) -> Result<(String, String), UserError> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| UserError::Store("no randomness for a salt".into()))?;
    let mut hash = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations(),
        &salt,
        password.as_bytes(),
        &mut hash,
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok((b64.encode(salt), b64.encode(hash)))
}

impl UserRecord {
    /// Whether `password` is this user's (constant-time comparison inside ring).
    pub fn verify(&self, password: &str) -> bool {
        let b64 = base64::engine::general_purpose::STANDARD;
        let (Ok(salt), Ok(hash)) = (b64.decode(&self.salt), b64.decode(&self.hash)) else {
            return false;
        };
        ring::pbkdf2::verify(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            iterations(),
            &salt,
            password.as_bytes(),
            &hash,
        )
        .is_ok()
    }
}

fn validate_login(login: &str) -> Result<(), UserError> {
    let ok = !login.is_empty()
        && login.len() <= 128
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(UserError::Invalid(format!(
            "'{login}' is not a valid login name (letters, digits, - _ . @)"
        )))
    }
}

/// Reads a user's current record (blocking: a couple of index lookups and one log read).
pub fn load(store: &Store, login: &str) -> Result<Option<UserRecord>, UserError> {
    let read = store
        .read_stream(&user_stream(login), StreamFrom::End, true, 1, false)
        .map_err(|e| UserError::Store(e.to_string()))?;
    let StreamRead::Found { items, .. } = read else {
        return Ok(None);
    };
    let Some(item) = items.first() else {
        return Ok(None);
    };
    let record: UserRecord =
        serde_json::from_slice(&item.record.data).map_err(|e| UserError::Store(e.to_string()))?;
    Ok((!record.deleted).then_some(record))
}

async fn load_async(store: &Store, login: &str) -> Result<Option<UserRecord>, UserError> {
    let (store, login) = (store.clone(), login.to_owned());
    tokio::task::spawn_blocking(move || load(&store, &login))
        .await
        .map_err(|e| UserError::Store(e.to_string()))?
}

async fn save(
    store: &Store,
    record: &UserRecord,
    expected: ExpectedRevision,
) -> Result<(), UserError> {
    let event = ProposedEvent {
        id: uuid::Uuid::new_v4(),
        event_type: USER_EVENT_TYPE.to_owned(),
        is_json: true,
        metadata: Bytes::new(),
        data: Bytes::from(serde_json::to_vec(record).map_err(|e| UserError::Store(e.to_string()))?),
    };
    match store
        .append(user_stream(&record.login_name), expected, vec![event])
        .await
    {
        Ok(_) => Ok(()),
        Err(WriteError::WrongExpectedVersion { .. }) => {
            Err(UserError::Conflict(record.login_name.clone()))
        }
        Err(e) => Err(UserError::Store(e.to_string())),
    }
}

/// Creates a user; fails if the login exists.
pub async fn create(
    store: &Store,
    login: &str,
    full_name: &str,
    groups: Vec<String>,
    password: &str,
) -> Result<(), UserError> {
    validate_login(login)?;
    if password.is_empty() {
        return Err(UserError::Invalid("a password is required".into()));
    }
    if load_async(store, login).await?.is_some() {
        return Err(UserError::Conflict(login.to_owned()));
    }
    let (salt, hash) = hash_password(password)?;
    let record = UserRecord {
        login_name: login.to_owned(),
        full_name: full_name.to_owned(),
        groups,
        disabled: false,
        deleted: false,
        salt,
        hash,
    };
    save(store, &record, ExpectedRevision::Any).await?;
    let listed = ProposedEvent {
        id: uuid::Uuid::new_v4(),
        event_type: "$UserCreated".to_owned(),
        is_json: true,
        metadata: Bytes::new(),
        data: Bytes::from(serde_json::json!({ "loginName": login }).to_string()),
    };
    store
        .append(USERS_STREAM.to_owned(), ExpectedRevision::Any, vec![listed])
        .await
        .map_err(|e| UserError::Store(e.to_string()))?;
    Ok(())
}

/// Applies `change` to an existing user's record and stores it.
pub async fn change(
    store: &Store,
    login: &str,
    change: impl FnOnce(&mut UserRecord) -> Result<(), UserError>,
) -> Result<(), UserError> {
    let mut record = load_async(store, login)
        .await?
        .ok_or_else(|| UserError::NotFound(login.to_owned()))?;
    change(&mut record)?;
    save(store, &record, ExpectedRevision::Any).await
}

pub fn set_password(record: &mut UserRecord, password: &str) -> Result<(), UserError> {
    if password.is_empty() {
        return Err(UserError::Invalid("a password is required".into()));
    }
    let (salt, hash) = hash_password(password)?;
    record.salt = salt;
    record.hash = hash;
    Ok(())
}

/// Every user ever created and not deleted.
pub async fn list(store: &Store) -> Result<Vec<UserDetails>, UserError> {
    let store2 = store.clone();
    let read = tokio::task::spawn_blocking(move || {
        store2.read_stream(USERS_STREAM, StreamFrom::Start, false, usize::MAX, false)
    })
    .await
    .map_err(|e| UserError::Store(e.to_string()))?
    .map_err(|e| UserError::Store(e.to_string()))?;
    let StreamRead::Found { items, .. } = read else {
        return Ok(Vec::new());
    };
    let mut logins: Vec<String> = items
        .iter()
        .filter_map(|i| serde_json::from_slice::<serde_json::Value>(&i.record.data).ok())
        .filter_map(|v| v["loginName"].as_str().map(str::to_owned))
        .collect();
    logins.sort();
    logins.dedup();
    let mut users = Vec::new();
    for login in logins {
        if let Some(record) = load_async(store, &login).await? {
            users.push(UserDetails::from(&record));
        }
    }
    Ok(users)
}
