//! The simulator's own record, in its `scheme-*` streams: what it submitted to the bank and how the bank
//! answered (`scheme-submissions`), the files it received (`scheme-file-{fileId}`), the load runs it made
//! (`scheme-load-{loadId}`) and the returns the bank sent back (`scheme-returns`).

use events::ids::PaymentId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::SchemePayment;

pub const SUBMISSIONS_STREAM: &str = "scheme-submissions";
pub const RETURNS_STREAM: &str = "scheme-returns";

pub fn file_stream(file_id: &str) -> String {
    events::streams::scheme(&format!("file-{file_id}"))
}

pub fn load_stream(load_id: &Uuid) -> String {
    events::streams::scheme(&format!("load-{}", load_id.simple()))
}

/// Where submitted payments came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SubmissionSource {
    Explicit,
    Random,
    File,
    Load,
}

/// One batch sent to the bank's `POST /scheme/inbound`, and the bank's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentsSubmitted {
    pub submission_id: Uuid,
    pub source: SubmissionSource,
    pub payments: Vec<SchemePayment>,
    /// The bank's payment id of each payment (derived from the scheme transaction id).
    pub payment_ids: Vec<PaymentId>,
    /// Whether the bank accepted the batch (a 2xx answer).
    pub accepted: bool,
    /// The bank's HTTP status, when it answered at all.
    #[serde(default)]
    pub bank_status: Option<u16>,
    #[serde(default)]
    pub error: Option<String>,
}

/// A Standard 18 file the scheme received for submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileReceived {
    pub file_id: String,
    pub records: usize,
    pub text: String,
}

/// A returned payment, as the bank sent it back (`POST /returns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReturnReceived {
    pub scheme_transaction_id: String,
    #[schema(value_type = String)]
    pub payment_id: PaymentId,
    /// The ARUCS-style reason code, one character.
    #[schema(value_type = String)]
    pub reason_code: char,
    pub reason: String,
    /// Pence.
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadStarted {
    pub load_id: Uuid,
    pub rate_per_second: u32,
    pub duration_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadFinished {
    pub load_id: Uuid,
    pub sent: u64,
    pub accepted: u64,
    pub failed: u64,
    /// Busy answers from the bank, each batch sent again after the wait (absent in runs recorded before).
    #[serde(default)]
    pub throttled: u64,
    /// False when the load was stopped early (shutdown).
    pub completed: bool,
}

events::domain_events! {
    /// Everything the simulator records.
    pub enum SchemeEvent {
        PaymentsSubmitted,
        FileReceived,
        ReturnReceived,
        LoadStarted,
        LoadFinished,
    }
}
