//! A store user per domain service, made through EventStoreDB's HTTP users API (`POST /users`) on the node the
//! connection string names, as the admin the connection string authenticates as. Each user is in its domain's
//! group — the role that domain's stream ACLs name — and in `$ops`, which lets its projectors read `$all` and its
//! services create their persistent subscription groups.

use std::fmt;

use anyhow::Context as _;
use infrastructure::eventstore::ClientSettings;
use infrastructure::EventStore;
use serde::Serialize;

/// The role whose members may write the accounts domain's streams (`account-…`, `transfer-…`).
pub const ACCOUNTS_ROLE: &str = "accounts-domain";
/// The role of the sanctions domain (`sanctionedNames`, `screening-…`).
pub const SANCTIONS_ROLE: &str = "sanctions-domain";
/// The role of the payments domain (`inboundPayment-…`, `outboundPayment-…`).
pub const PAYMENTS_ROLE: &str = "payments-domain";
/// The role of the scheme simulator (`scheme-…`).
pub const SCHEME_ROLE: &str = "scheme-domain";
/// EventStoreDB's operators' group: may read `$all` and system streams and manage subscription groups.
pub const OPS_GROUP: &str = "$ops";

/// A domain service and the store user it connects as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainUser {
    /// The login: the service's name.
    pub login: &'static str,
    /// The domain's role, which the service passes as `--owner-role`.
    pub group: &'static str,
    pub full_name: &'static str,
}

/// One user per domain service.
pub const DOMAIN_USERS: [DomainUser; 4] = [
    DomainUser {
        login: "accounts-api",
        group: ACCOUNTS_ROLE,
        full_name: "Accounts domain service",
    },
    DomainUser {
        login: "sanctions-api",
        group: SANCTIONS_ROLE,
        full_name: "Sanctions domain service",
    },
    DomainUser {
        login: "payment-scheme-domain",
        group: PAYMENTS_ROLE,
        full_name: "Payments domain service",
    },
    DomainUser {
        login: "scheme-simulator",
        group: SCHEME_ROLE,
        full_name: "Bacs scheme simulator",
    },
];

/// A user to create, with its password.
#[derive(Clone, PartialEq, Eq)]
pub struct SeedUser {
    pub login: String,
    pub full_name: String,
    pub groups: Vec<String>,
    pub password: String,
}

impl fmt::Debug for SeedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedUser")
            .field("login", &self.login)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl SeedUser {
    /// The user of a domain service: in its domain's group and in `$ops`.
    pub fn domain(user: &DomainUser, password: impl Into<String>) -> Self {
        Self {
            login: user.login.to_owned(),
            full_name: user.full_name.to_owned(),
            groups: vec![user.group.to_owned(), OPS_GROUP.to_owned()],
            password: password.into(),
        }
    }
}

/// Every domain user, each with the password `password_of(login)` gives.
pub fn domain_users(mut password_of: impl FnMut(&str) -> String) -> Vec<SeedUser> {
    DOMAIN_USERS
        .iter()
        .map(|user| SeedUser::domain(user, password_of(user.login)))
        .collect()
}

/// What [`create_users`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsersReport {
    pub created: Vec<String>,
    pub existing: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NewUser<'a> {
    login_name: &'a str,
    full_name: &'a str,
    groups: &'a [String],
    password: &'a str,
}

/// Creates each user unless a user of that login exists (409, left as it is). Needs the connection string to
/// authenticate as an admin; the users API is at `https://<first host of the connection string>` (`http://`
/// with `tls=false`), and its certificate is checked unless the connection string says `tlsVerifyCert=false`.
pub async fn create_users(store: &EventStore, users: &[SeedUser]) -> anyhow::Result<UsersReport> {
    let api = UsersApi::from_settings(store.client().settings())?;
    let mut report = UsersReport::default();
    for user in users {
        let response = api
            .http
            .post(format!("{}/users", api.base_url))
            .basic_auth(&api.login, Some(&api.password))
            .json(&NewUser {
                login_name: &user.login,
                full_name: &user.full_name,
                groups: &user.groups,
                password: &user.password,
            })
            .send()
            .await
            .with_context(|| format!("creating user '{}' at {}", user.login, api.base_url))?;
        match response.status() {
            status if status.is_success() => report.created.push(user.login.clone()),
            reqwest::StatusCode::CONFLICT => report.existing.push(user.login.clone()),
            status => {
                let body = response.text().await.unwrap_or_default();
                anyhow::bail!(
                    "creating user '{}' at {}: {status} {body}",
                    user.login,
                    api.base_url
                );
            }
        }
    }
    Ok(report)
}

/// Where the users API is and the admin to call it as.
struct UsersApi {
    http: reqwest::Client,
    base_url: String,
    login: String,
    password: String,
}

impl UsersApi {
    fn from_settings(settings: &ClientSettings) -> anyhow::Result<Self> {
        let host = settings
            .hosts()
            .first()
            .context("the connection string names no host")?;
        let scheme = if settings.is_secure_mode_enabled() {
            "https"
        } else {
            "http"
        };
        let (login, password) = credentials(settings).context(
            "creating users needs an admin's credentials in the connection string (esdb://admin:…@host:port)",
        )?;
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(!settings.is_tls_certificate_verification_enabled())
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base_url: format!("{scheme}://{}:{}", host.host, host.port),
            login,
            password,
        })
    }
}

/// The connection string's credentials. The client keeps them private but serialises them (as bytes).
fn credentials(settings: &ClientSettings) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Raw {
        login: Vec<u8>,
        password: Vec<u8>,
    }
    let user = settings.default_authenticated_user().as_ref()?;
    let raw: Raw = serde_json::to_value(user)
        .and_then(serde_json::from_value)
        .ok()?;
    Some((
        String::from_utf8(raw.login).ok()?,
        String::from_utf8(raw.password).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_api_and_the_admin_come_from_the_connection_string() {
        let settings: ClientSettings =
            "esdb://admin:s3cret@node1:2113,node2:2113?tls=true&tlsVerifyCert=false"
                .parse()
                .expect("a connection string");
        let api = UsersApi::from_settings(&settings).expect("users API");
        assert_eq!(api.base_url, "https://node1:2113");
        assert_eq!(
            (api.login.as_str(), api.password.as_str()),
            ("admin", "s3cret")
        );

        let settings: ClientSettings = "esdb://127.0.0.1:2113?tls=false".parse().expect("parses");
        assert!(
            UsersApi::from_settings(&settings).is_err(),
            "no credentials, no users"
        );
    }

    #[test]
    fn every_domain_user_is_in_its_role_and_in_ops_and_hides_its_password() {
        let users = domain_users(|login| format!("pw-{login}"));
        assert_eq!(users.len(), 4);
        let accounts = &users[0];
        assert_eq!(accounts.login, "accounts-api");
        assert_eq!(accounts.groups, ["accounts-domain", "$ops"]);
        assert_eq!(accounts.password, "pw-accounts-api");
        assert!(!format!("{accounts:?}").contains("pw-"));
    }
}
