//! Forwarding payments to the bank in batches of `--batch-size`, recording each batch and the bank's answer as
//! a `PaymentsSubmitted` in `scheme-submissions`.

use events::ids::{payment_id_for_scheme_transaction, PaymentId};
use events::EventMetadata;
use infrastructure::eventstore::ExpectedRevision;
use infrastructure::http::ApiError;
use infrastructure::{NewEvent, StoreError};
use uuid::Uuid;

use crate::bank::BankError;
use crate::record::{PaymentsSubmitted, SchemeEvent, SubmissionSource, SUBMISSIONS_STREAM};
use crate::{AppState, SchemePayment};

/// What the bank accepted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Submitted {
    pub submission_ids: Vec<Uuid>,
    pub payment_ids: Vec<PaymentId>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SubmitError {
    /// The bank was busy at a batch: it and the batches after it were not sent; the `taken` payments of the
    /// batches before it were accepted.
    #[error("{busy} ({taken} payments of this submission were taken before)")]
    Busy {
        busy: BankError,
        taken: usize,
        retry_after: std::time::Duration,
    },
    #[error(transparent)]
    Bank(#[from] BankError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::Busy {
                taken, retry_after, ..
            } => ApiError::Busy {
                message: format!(
                    "the bank is busy; {taken} payments of this submission were taken before it was, \
                     the rest were not sent: send them again later"
                ),
                retry_after_secs: u32::try_from(retry_after.as_secs().max(1)).unwrap_or(u32::MAX),
            },
            SubmitError::Bank(bank) => match bank.status() {
                Some(status) if (400..500).contains(&status) => {
                    ApiError::unprocessable(format!("the bank refused the payments: {bank}"))
                }
                _ => ApiError::Unavailable(bank.to_string()),
            },
            SubmitError::Store(store) => store.into(),
        }
    }
}

/// Sends `payments` to the bank, batch by batch, recording every batch. Stops at the first batch the bank does
/// not accept: that batch is recorded as refused, unless the bank was only busy (nothing happened to it; the
/// caller may send it again, see [`BankError::Busy`]).
pub(crate) async fn submit(
    state: &AppState,
    source: SubmissionSource,
    payments: Vec<SchemePayment>,
    metadata: &EventMetadata,
) -> Result<Submitted, SubmitError> {
    let mut submitted = Submitted::default();
    for batch in payments.chunks(state.config.batch_size) {
        let submission_id = Uuid::new_v4();
        let payment_ids: Vec<PaymentId> = batch
            .iter()
            .map(|p| payment_id_for_scheme_transaction(&p.scheme_transaction_id))
            .collect();
        let outcome = state.bank.forward(batch, metadata.correlation_id).await;
        if let Err(busy @ BankError::Busy { retry_after, .. }) = outcome {
            return Err(SubmitError::Busy {
                busy,
                taken: submitted.payment_ids.len(),
                retry_after,
            });
        }
        let (accepted, bank_status, error) = match &outcome {
            Ok(status) => (true, Some(*status), None),
            Err(error) => (false, error.status(), Some(error.to_string())),
        };
        let event = SchemeEvent::from(PaymentsSubmitted {
            submission_id,
            source,
            payments: batch.to_vec(),
            payment_ids: payment_ids.clone(),
            accepted,
            bank_status,
            error,
        });
        state
            .store
            .append(
                SUBMISSIONS_STREAM,
                ExpectedRevision::Any,
                &[NewEvent::with_id(submission_id, event, metadata.clone())],
            )
            .await?;
        if let Err(error) = outcome {
            // While everything stops, the bank's gateway may stop first: not a fault worth a warning.
            if state.shutdown.token().is_cancelled() {
                tracing::info!(%error, %submission_id, "a batch was cut short by the shutdown");
            } else {
                tracing::warn!(%error, %submission_id, "the bank did not accept a batch");
            }
            return Err(error.into());
        }
        submitted.submission_ids.push(submission_id);
        submitted.payment_ids.extend(payment_ids);
    }
    Ok(submitted)
}
