//! Events of `transfer-{id}` streams: the internal transfer saga, owned by accounts-api.

use serde::{Deserialize, Serialize};

use crate::ids::AccountId;
use crate::Money;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferRequested {
    pub from: AccountId,
    pub to: AccountId,
    pub amount: Money,
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferDebited {
    pub from: AccountId,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferCompleted {
    pub to: AccountId,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferFailed {
    pub reason: String,
}

/// The debit was refunded because the credit failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferCompensated {
    pub from: AccountId,
    pub amount: Money,
}

crate::domain_events! {
    pub enum TransferEvent {
        TransferRequested,
        TransferDebited,
        TransferCompleted,
        TransferFailed,
        TransferCompensated,
    }
}
