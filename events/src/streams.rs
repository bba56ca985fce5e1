//! Stream names. Each stream has exactly one owning service (DESIGN §4.1); the category (text before the first
//! `-`) is what `$by_category` groups on, so `$ce-inboundPayment` lists every inbound payment event.

use crate::ids::{AccountId, PaymentId, TransferId};

pub const ACCOUNT_CATEGORY: &str = "account";
pub const TRANSFER_CATEGORY: &str = "transfer";
pub const INBOUND_PAYMENT_CATEGORY: &str = "inboundPayment";
pub const OUTBOUND_PAYMENT_CATEGORY: &str = "outboundPayment";
pub const SCREENING_CATEGORY: &str = "screening";
pub const SCHEME_CATEGORY: &str = "scheme";

/// Owned by accounts-api.
pub fn account(id: &AccountId) -> String {
    format!("{ACCOUNT_CATEGORY}-{id}")
}

/// Owned by accounts-api.
pub fn transfer(id: &TransferId) -> String {
    format!("{TRANSFER_CATEGORY}-{id}")
}

/// Owned by payment-scheme-domain.
pub fn inbound_payment(id: &PaymentId) -> String {
    format!("{INBOUND_PAYMENT_CATEGORY}-{id}")
}

/// Owned by payment-scheme-domain.
pub fn outbound_payment(id: &PaymentId) -> String {
    format!("{OUTBOUND_PAYMENT_CATEGORY}-{id}")
}

/// Owned by sanctions-api: the sanctioned-names list.
pub const SANCTIONED_NAMES: &str = "sanctionedNames";

/// Owned by sanctions-api.
pub fn screening(payment: &PaymentId) -> String {
    format!("{SCREENING_CATEGORY}-{payment}")
}

/// Owned by scheme-simulator: its record of one processing cycle or file.
pub fn scheme(record: &str) -> String {
    format!("{SCHEME_CATEGORY}-{record}")
}

/// The `$by_event_type` stream of an event type, which consumer groups subscribe to.
pub fn by_event_type(event_type: &str) -> String {
    format!("$et-{event_type}")
}

/// The `$by_category` stream of a category.
pub fn by_category(category: &str) -> String {
    format!("$ce-{category}")
}

/// The id part of a stream name (`account-12345612345678` → `12345612345678`).
pub fn id_of(stream: &str) -> Option<&str> {
    stream.split_once('-').map(|(_, id)| id)
}
