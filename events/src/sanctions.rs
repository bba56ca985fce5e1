//! Events of `sanctionedNames` and `screening-{paymentId}` streams, owned by sanctions-api.

use serde::{Deserialize, Serialize};

use crate::ids::PaymentId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SanctionedNameAdded {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SanctionedNameRemoved {
    pub name: String,
}

crate::domain_events! {
    /// The sanctioned-names list: a mutable list kept as an immutable stream.
    pub enum SanctionedNamesEvent {
        SanctionedNameAdded,
        SanctionedNameRemoved,
    }
}

/// A sanctioned name a screened name resembles, with its similarity (0..=1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameMatch {
    pub sanctioned_name: String,
    pub score: f64,
}

impl Eq for NameMatch {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum ScreeningOutcome {
    Clear,
    /// Held for review.
    Hit {
        matches: Vec<NameMatch>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentScreened {
    pub payment_id: PaymentId,
    pub screened_name: String,
    pub result: ScreeningOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldPaymentReleased {
    pub payment_id: PaymentId,
    pub by: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldPaymentRejected {
    pub payment_id: PaymentId,
    pub by: String,
    pub reason: String,
}

crate::domain_events! {
    /// One payment's screening and, when held, the operator's decision.
    pub enum ScreeningEvent {
        PaymentScreened,
        HeldPaymentReleased,
        HeldPaymentRejected,
    }
}
