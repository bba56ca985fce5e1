//! Events of `account-{sortCode}{accountNumber}` streams, owned by accounts-api.

use serde::{Deserialize, Serialize};

use crate::bacs::ReturnReason;
use crate::ids::{AccountId, PaymentId, TransferId};
use crate::Money;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountOpened {
    pub account_id: AccountId,
    pub name: String,
    pub overdraft_limit: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountBlocked {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountUnblocked {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountClosed {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OverdraftLimitChanged {
    pub overdraft_limit: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundsDeposited {
    pub amount: Money,
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundsWithdrawn {
    pub amount: Money,
    pub reference: String,
}

/// An inbound payment posted to the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundsCredited {
    pub payment_id: PaymentId,
    pub amount: Money,
    pub payer_name: String,
    pub reference: String,
    #[serde(default)]
    pub transfer_id: Option<TransferId>,
}

/// Money taken for an outbound payment or an internal transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundsDebited {
    pub amount: Money,
    pub reference: String,
    #[serde(default)]
    pub payment_id: Option<PaymentId>,
    #[serde(default)]
    pub transfer_id: Option<TransferId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundsReserved {
    pub payment_id: PaymentId,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundsReservationReleased {
    pub payment_id: PaymentId,
    pub amount: Money,
    /// True when the reservation became a debit (settled), false when it was given back.
    pub settled: bool,
}

/// An inbound payment could not be posted; the payment goes back with this reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPostingRefused {
    pub payment_id: PaymentId,
    pub amount: Money,
    pub reason: ReturnReason,
}

crate::domain_events! {
    /// Everything that happens to an account.
    pub enum AccountEvent {
        AccountOpened,
        AccountBlocked,
        AccountUnblocked,
        AccountClosed,
        OverdraftLimitChanged,
        FundsDeposited,
        FundsWithdrawn,
        FundsCredited,
        FundsDebited,
        FundsReserved,
        FundsReservationReleased,
        PaymentPostingRefused,
    }
}
