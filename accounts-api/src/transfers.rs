//! The internal transfer saga, recorded in `transfer-{id}`: requested → debit the source (`FundsDebited`) →
//! credit the destination (`FundsCredited` with the transfer id) → completed; when the credit is refused (the
//! destination is missing, blocked or closed) the debit is refunded to the source → failed + compensated. It runs
//! inside the request; every write has an id derived from the transfer id and the step.

use events::accounts::{AccountEvent, FundsCredited, FundsDebited};
use events::ids::deterministic_event_id;
use events::transfers::{
    TransferCompensated, TransferCompleted, TransferDebited, TransferEvent, TransferFailed,
    TransferRequested,
};
use events::{AccountId, EventMetadata, Money, PaymentId, TransferId};
use infrastructure::eventstore::ExpectedRevision;
use infrastructure::http::ApiError;
use infrastructure::{CommandContext, EventStore, ExecuteError, NewEvent, Repository};
use serde::{Deserialize, Serialize};

use crate::account::{Account, AccountError, AccountStatus};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferRequest {
    pub from: AccountId,
    pub to: AccountId,
    /// Pence.
    pub amount: i64,
    #[serde(default)]
    pub reference: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TransferStatus {
    /// The money moved.
    Completed,
    /// The credit was refused and the debit refunded: nothing moved in the end.
    Compensated,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferOutcome {
    pub id: TransferId,
    pub from: AccountId,
    pub to: AccountId,
    pub amount: Money,
    pub reference: String,
    pub status: TransferStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

async fn record(
    store: &EventStore,
    id: TransferId,
    metadata: &EventMetadata,
    step: &str,
    event: impl Into<TransferEvent>,
) -> Result<(), ApiError> {
    let new = NewEvent::with_id(
        deterministic_event_id(&id.to_string(), step),
        event.into(),
        metadata.clone(),
    );
    store
        .append(
            &events::streams::transfer(&id),
            ExpectedRevision::Any,
            &[new],
        )
        .await?;
    Ok(())
}

/// Runs one transfer to its end.
pub async fn run_transfer(
    accounts: &Repository<Account>,
    store: &EventStore,
    metadata: EventMetadata,
    request: TransferRequest,
) -> Result<TransferOutcome, ApiError> {
    if request.from == request.to {
        return Err(ApiError::unprocessable(
            "a transfer needs two different accounts",
        ));
    }
    let amount = Money::from_pence(request.amount);
    if !amount.is_positive() {
        return Err(ApiError::unprocessable(
            AccountError::NonPositiveAmount.to_string(),
        ));
    }
    let id = TransferId::new();
    let key = id.to_string();
    let TransferRequest {
        from,
        to,
        reference,
        ..
    } = request;
    // The saga's stream is appended to with `Any` (each step has its own idempotent id); it is new here, so it
    // is claimed before its first event, like the streams the repository creates.
    store.claim_stream(&events::streams::transfer(&id)).await?;
    record(
        store,
        id,
        &metadata,
        "requested",
        TransferRequested {
            from,
            to,
            amount,
            reference: reference.clone(),
        },
    )
    .await?;

    let debit = accounts
        .execute(
            &from,
            &CommandContext::idempotent(metadata.clone(), format!("{key}/debit")),
            |account| {
                // The same rules as a withdrawal: open, positive, within the available balance.
                account.withdraw(amount, reference.clone())?;
                Ok::<_, AccountError>(vec![AccountEvent::from(FundsDebited {
                    amount,
                    reference: reference.clone(),
                    payment_id: None,
                    transfer_id: Some(id),
                })])
            },
        )
        .await;
    match debit {
        Ok(_) => {}
        Err(ExecuteError::Rejected(refusal)) => {
            record(
                store,
                id,
                &metadata,
                "failed",
                TransferFailed {
                    reason: format!("debit refused: {refusal}"),
                },
            )
            .await?;
            return Err(refusal.into());
        }
        Err(other) => return Err(other.into()),
    }
    record(
        store,
        id,
        &metadata,
        "debited",
        TransferDebited { from, amount },
    )
    .await?;

    let credited = |payer_name: String, reference: String| {
        AccountEvent::from(FundsCredited {
            // A transfer's credit is named by the transfer, so the account remembers it like a payment.
            payment_id: PaymentId(id.0),
            amount,
            payer_name,
            reference,
            transfer_id: Some(id),
        })
    };
    let credit = accounts
        .execute(
            &to,
            &CommandContext::idempotent(metadata.clone(), format!("{key}/credit")),
            |account| {
                if !account.exists() {
                    return Err(AccountError::NotFound);
                }
                if account.status != AccountStatus::Open {
                    return Err(AccountError::NotOpen(account.status));
                }
                Ok(vec![credited(
                    format!("transfer from {from}"),
                    reference.clone(),
                )])
            },
        )
        .await;
    let refusal = match credit {
        Ok(_) => {
            record(
                store,
                id,
                &metadata,
                "completed",
                TransferCompleted { to, amount },
            )
            .await?;
            return Ok(TransferOutcome {
                id,
                from,
                to,
                amount,
                reference,
                status: TransferStatus::Completed,
                reason: None,
            });
        }
        Err(ExecuteError::Rejected(refusal)) => refusal,
        Err(other) => return Err(other.into()),
    };
    let reason = format!("credit refused: {refusal}");
    record(
        store,
        id,
        &metadata,
        "failed",
        TransferFailed {
            reason: reason.clone(),
        },
    )
    .await?;
    // The refund is owed whatever happened to the source account since: it is not a decision to refuse.
    accounts
        .execute(
            &from,
            &CommandContext::idempotent(metadata.clone(), format!("{key}/compensate")),
            |_| {
                Ok::<_, AccountError>(vec![credited(
                    "transfer refund".to_owned(),
                    format!("refund {reference}"),
                )])
            },
        )
        .await?;
    record(
        store,
        id,
        &metadata,
        "compensated",
        TransferCompensated { from, amount },
    )
    .await?;
    Ok(TransferOutcome {
        id,
        from,
        to,
        amount,
        reference,
        status: TransferStatus::Compensated,
        reason: Some(reason),
    })
}
