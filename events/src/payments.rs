//! Events of `inboundPayment-{id}` and `outboundPayment-{id}` streams, owned by payment-scheme-domain.

use serde::{Deserialize, Serialize};

use crate::bacs::ReturnReason;
use crate::ids::{AccountNumber, PaymentId, SortCode};
use crate::Money;

/// One side of a payment as the scheme names it. Fields are raw text on receipt, validated afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Party {
    pub name: String,
    pub sort_code: String,
    pub account_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundPaymentReceived {
    pub payment_id: PaymentId,
    /// The scheme's own id for the message; receipt is idempotent on it.
    pub scheme_transaction_id: String,
    pub payer: Party,
    pub beneficiary: Party,
    /// Pence, as the scheme sent it (validated afterwards).
    pub amount: i64,
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundPaymentValidated {
    pub payment_id: PaymentId,
    pub beneficiary_sort_code: SortCode,
    pub beneficiary_account_number: AccountNumber,
    pub beneficiary_name: String,
    pub payer_name: String,
    pub amount: Money,
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundPaymentRejected {
    pub payment_id: PaymentId,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundPaymentSanctionsChecked {
    pub payment_id: PaymentId,
    pub beneficiary_sort_code: SortCode,
    pub beneficiary_account_number: AccountNumber,
    pub payer_name: String,
    pub amount: Money,
    pub reference: String,
    /// True when it was held and then released by an operator.
    #[serde(default)]
    pub released: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundPaymentHeld {
    pub payment_id: PaymentId,
    pub matches: Vec<crate::sanctions::NameMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundPaymentReleased {
    pub payment_id: PaymentId,
    pub by: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundPaymentAccountChecked {
    pub payment_id: PaymentId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundPaymentBalanceUpdated {
    pub payment_id: PaymentId,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundPaymentFailed {
    pub payment_id: PaymentId,
    pub reason: String,
    #[serde(default)]
    pub return_reason: Option<ReturnReason>,
}

/// Sent back to the scheme.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundPaymentReturned {
    pub payment_id: PaymentId,
    pub scheme_transaction_id: String,
    pub reason: ReturnReason,
    pub amount: i64,
}

crate::domain_events! {
    /// The inbound payment process: received → validated → sanctions-checked → account-checked → balance-updated,
    /// with held / failed / returned branches.
    pub enum InboundPaymentEvent {
        InboundPaymentReceived,
        InboundPaymentValidated,
        InboundPaymentRejected,
        InboundPaymentSanctionsChecked,
        InboundPaymentHeld,
        InboundPaymentReleased,
        InboundPaymentAccountChecked,
        InboundPaymentBalanceUpdated,
        InboundPaymentFailed,
        InboundPaymentReturned,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundPaymentRequested {
    pub payment_id: PaymentId,
    pub from_sort_code: SortCode,
    pub from_account_number: AccountNumber,
    pub beneficiary: Party,
    pub amount: Money,
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundPaymentSanctionsChecked {
    pub payment_id: PaymentId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundPaymentHeld {
    pub payment_id: PaymentId,
    pub matches: Vec<crate::sanctions::NameMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundPaymentFundsReserved {
    pub payment_id: PaymentId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundPaymentSubmitted {
    pub payment_id: PaymentId,
    pub scheme_transaction_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundPaymentSettled {
    pub payment_id: PaymentId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundPaymentRejectedByScheme {
    pub payment_id: PaymentId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundPaymentFailed {
    pub payment_id: PaymentId,
    pub reason: String,
}

crate::domain_events! {
    /// The outbound payment process: requested → screened → funds reserved → submitted → settled or rejected.
    pub enum OutboundPaymentEvent {
        OutboundPaymentRequested,
        OutboundPaymentSanctionsChecked,
        OutboundPaymentHeld,
        OutboundPaymentFundsReserved,
        OutboundPaymentSubmitted,
        OutboundPaymentSettled,
        OutboundPaymentRejectedByScheme,
        OutboundPaymentFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DomainEvent;

    #[test]
    fn events_round_trip_through_type_and_json() {
        let event: InboundPaymentEvent = InboundPaymentRejected {
            payment_id: PaymentId::new(),
            reasons: vec!["sort code must be 6 digits".into()],
        }
        .into();
        let data = event.to_json();
        let back = InboundPaymentEvent::decode(event.event_type(), &data).expect("decodes");
        assert_eq!(back, event);
        assert!(InboundPaymentEvent::decode("NoSuchEvent", &data).is_err());
        assert!(InboundPaymentEvent::EVENT_TYPES.contains(&"InboundPaymentReturned"));
    }
}
