//! The `account-posting` consumer group's handler: an `InboundPaymentSanctionsChecked` event becomes a
//! `FundsCredited` (or a `PaymentPostingRefused` with the Bacs return reason) on the beneficiary's account.
//! Idempotent twice over: the aggregate remembers payments it settled, and the events' ids derive from the
//! payment id, so a redelivered or duplicated trigger never posts twice.

use std::convert::Infallible;

use events::payments::InboundPaymentEvent;
use events::AccountId;
use infrastructure::{CommandContext, Delivery, HandlerError, Repository};

use crate::account::Account;

/// Posts one sanctions-checked inbound payment. Events of other types are acked and ignored.
pub async fn post_inbound_payment(
    accounts: &Repository<Account>,
    delivery: Delivery,
) -> Result<(), HandlerError> {
    let Some(stored) = delivery.decode::<InboundPaymentEvent>()? else {
        return Ok(());
    };
    let InboundPaymentEvent::InboundPaymentSanctionsChecked(checked) = stored.event else {
        return Ok(());
    };
    let account = AccountId::new(
        checked.beneficiary_sort_code,
        checked.beneficiary_account_number,
    );
    let context = CommandContext::idempotent(
        stored.metadata.caused_by(stored.id),
        format!("{}/account-posting", checked.payment_id),
    );
    let executed = accounts
        .execute(&account, &context, |state| {
            Ok::<_, Infallible>(state.post_inbound_payment(
                checked.payment_id,
                checked.amount,
                checked.payer_name.clone(),
                checked.reference.clone(),
            ))
        })
        .await?;
    match executed.events.first() {
        Some(event) => tracing::debug!(
            payment_id = %checked.payment_id,
            %account,
            outcome = events::DomainEvent::event_type(event),
            "inbound payment posted"
        ),
        None => {
            tracing::debug!(payment_id = %checked.payment_id, %account, "payment already settled")
        }
    }
    Ok(())
}
