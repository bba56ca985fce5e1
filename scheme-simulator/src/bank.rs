//! The simulator's view of the bank over HTTP: forwarding payments to the gateway (`POST /scheme/inbound`) and
//! learning, for the random mix, which accounts exist (accounts-api `GET /accounts`) and which names are
//! sanctioned (sanctions-api `GET /sanctioned-names`).

use std::time::Duration;

use serde_json::Value;

use crate::generator::Population;
use crate::SchemePayment;

/// accounts-api's largest page (its `pageSize` limit); pages count from 1.
const POPULATION_PAGE_SIZE: usize = 500;
/// At most this many pages of each status are read: the random mix needs a sample, not every account.
const POPULATION_MAX_PAGES: usize = 20;

/// Why a call to the bank failed.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("{what} at {url} cannot be reached: {source}")]
    Unreachable {
        what: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what} at {url} answered {status}: {body}")]
    Refused {
        what: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{what} at {url} answered with a body that is not the expected JSON")]
    Unreadable { what: &'static str, url: String },
    /// The gateway has as much work as it takes (503 with `Retry-After`): send the same payments again later.
    #[error("{what} at {url} is busy (send again in {}s): {body}", retry_after.as_secs())]
    Busy {
        what: &'static str,
        url: String,
        retry_after: Duration,
        body: String,
    },
}

impl BankError {
    /// The bank's HTTP status, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            BankError::Refused { status, .. } => Some(*status),
            BankError::Busy { .. } => Some(503),
            _ => None,
        }
    }
}

/// The longest wait a `Retry-After` gets: a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// The shortest: `Retry-After: 0` must not make a sender resend in a tight loop.
const MIN_RETRY_AFTER: Duration = Duration::from_millis(200);

/// A 503 with `Retry-After` (in seconds, as the bank sends it) asks to be sent again, after the wait this
/// returns; anything else is a refusal. Every sender of scheme payments (the simulator, `bank bench`) reads a
/// busy answer this way.
pub fn retry_after(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> Option<Duration> {
    if status != reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let seconds: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER))
}

/// HTTP access to the bank's services.
#[derive(Debug, Clone)]
pub struct Bank {
    http: reqwest::Client,
    bank_url: String,
    accounts_url: String,
    sanctions_url: String,
}

impl Bank {
    pub fn new(bank_url: &str, accounts_url: &str, sanctions_url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let trim = |url: &str| url.trim_end_matches('/').to_owned();
        Ok(Self {
            http,
            bank_url: trim(bank_url),
            accounts_url: trim(accounts_url),
            sanctions_url: trim(sanctions_url),
        })
    }

    /// Sends `payments` to the gateway as one JSON array. Ok with the bank's status when it accepted them.
    pub async fn forward(
        &self,
        payments: &[SchemePayment],
        correlation_id: uuid::Uuid,
    ) -> Result<u16, BankError> {
        let url = format!("{}/scheme/inbound", self.bank_url);
        let what = "the bank's scheme gateway";
        let response = self
            .http
            .post(&url)
            .header(
                infrastructure::http::CORRELATION_ID_HEADER,
                correlation_id.to_string(),
            )
            .json(payments)
            .send()
            .await
            .map_err(|source| BankError::Unreachable {
                what,
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let busy = retry_after(status, response.headers());
        let body = response.text().await.unwrap_or_default();
        if let Some(retry_after) = busy {
            return Err(BankError::Busy {
                what,
                url,
                retry_after,
                body: body.chars().take(500).collect(),
            });
        }
        Err(BankError::Refused {
            what,
            url,
            status: status.as_u16(),
            body: body.chars().take(500).collect(),
        })
    }

    /// The accounts and sanctioned names the random mix draws from.
    pub async fn population(&self) -> Result<Population, BankError> {
        let open = self.accounts("open").await?;
        let closed = self.accounts("closed").await?;
        let sanctioned_names = self.sanctioned_names().await?;
        Ok(Population {
            open_accounts: open,
            closed_accounts: closed,
            sanctioned_names,
        })
    }

    async fn get_json(&self, what: &'static str, url: String) -> Result<Value, BankError> {
        let response =
            self.http
                .get(&url)
                .send()
                .await
                .map_err(|source| BankError::Unreachable {
                    what,
                    url: url.clone(),
                    source,
                })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(BankError::Refused {
                what,
                url,
                status: status.as_u16(),
                body: body.chars().take(500).collect(),
            });
        }
        response
            .json()
            .await
            .map_err(|_| BankError::Unreadable { what, url })
    }

    /// (sort code, account number, name) of accounts with `status`.
    async fn accounts(&self, status: &str) -> Result<Vec<(String, String, String)>, BankError> {
        let mut accounts = Vec::new();
        for page in 1..=POPULATION_MAX_PAGES {
            let url = format!(
                "{}/accounts?status={status}&page={page}&pageSize={POPULATION_PAGE_SIZE}",
                self.accounts_url
            );
            let body = self.get_json("accounts-api", url).await?;
            let items = items(&body);
            accounts.extend(
                items
                    .iter()
                    .filter(|item| {
                        // Kept even if the service ignored the filter.
                        item.get("status")
                            .and_then(Value::as_str)
                            .is_none_or(|s| s.eq_ignore_ascii_case(status))
                    })
                    .filter_map(account_of),
            );
            if items.len() < POPULATION_PAGE_SIZE {
                break;
            }
        }
        Ok(accounts)
    }

    async fn sanctioned_names(&self) -> Result<Vec<String>, BankError> {
        let url = format!("{}/sanctioned-names", self.sanctions_url);
        let body = self.get_json("sanctions-api", url).await?;
        Ok(items(&body)
            .iter()
            .filter_map(|item| match item {
                Value::String(name) => Some(name.clone()),
                other => other.get("name").and_then(Value::as_str).map(str::to_owned),
            })
            .collect())
    }
}

/// The list in a response: the body itself when it is an array, else its first array-valued field among the
/// usual names of a page's items.
fn items(body: &Value) -> Vec<Value> {
    if let Some(list) = body.as_array() {
        return list.clone();
    }
    [
        "items",
        "accounts",
        "names",
        "sanctionedNames",
        "data",
        "results",
    ]
    .iter()
    .find_map(|field| body.get(*field).and_then(Value::as_array))
    .cloned()
    .unwrap_or_default()
}

/// An account item: `sortCode` + `accountNumber`, or a 14-digit `id`; and its `name`.
fn account_of(item: &Value) -> Option<(String, String, String)> {
    let text = |field: &str| item.get(field).and_then(Value::as_str).map(str::to_owned);
    let name = text("name")?;
    let (sort_code, account_number) = match (text("sortCode"), text("accountNumber")) {
        (Some(sort_code), Some(account_number)) => (sort_code, account_number),
        _ => {
            let id: events::AccountId = text("id")?.parse().ok()?;
            (id.sort_code.to_string(), id.account_number.to_string())
        }
    };
    Some((sort_code, account_number, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_and_names_read_from_the_usual_shapes() {
        let page = serde_json::json!({"items": [
            {"id": "30963412345678", "name": "ADA LOVELACE", "status": "open"},
            {"sortCode": "309634", "accountNumber": "87654321", "name": "ALAN TURING"},
            {"name": "NO ID"}
        ], "total": 3});
        let accounts: Vec<_> = items(&page).iter().filter_map(account_of).collect();
        assert_eq!(
            accounts,
            vec![
                ("309634".into(), "12345678".into(), "ADA LOVELACE".into()),
                ("309634".into(), "87654321".into(), "ALAN TURING".into()),
            ]
        );
        let names = serde_json::json!([{"name": "VIKTOR ORLOVSKY"}, "MARINA VOLKOVA"]);
        assert_eq!(items(&names).len(), 2);
    }

    #[test]
    fn only_a_503_with_retry_after_asks_to_be_sent_again() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        use reqwest::StatusCode;
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(StatusCode::INTERNAL_SERVER_ERROR, &headers),
            None
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("0"));
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers),
            Some(MIN_RETRY_AFTER)
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers),
            Some(MAX_RETRY_AFTER)
        );
        // An HTTP date is not what the bank sends; it is treated as a refusal.
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"),
        );
        assert_eq!(retry_after(StatusCode::SERVICE_UNAVAILABLE, &headers), None);
    }
}
