//! scheme-simulator: the simulated Bacs scheme, an external party. It sends the bank inbound payments (explicit,
//! random, from Standard 18 files, or as load at a target rate) and receives returns and outbound payments.
//!
//! - [`generator`]: random payments with realistic names, amounts and references, and chosen ratios of
//!   sanctioned / invalid / unknown-account / closed-account cases.
//! - [`standard18`]: Bacs Standard 18 payment records.

pub mod generator;
pub mod standard18;

use serde::{Deserialize, Serialize};

/// A payment as the scheme sends it to the bank's gateway (`POST /scheme/inbound`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemePayment {
    pub scheme_transaction_id: String,
    pub payer: events::payments::Party,
    pub beneficiary: events::payments::Party,
    /// Pence.
    pub amount: i64,
    pub reference: String,
}
