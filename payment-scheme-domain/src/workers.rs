//! The consumer groups of the inbound payment process (DESIGN §4.2). Each handler loads the payment through the
//! repository, asks the aggregate what the delivered event means for it, and appends the answer with ids derived
//! from the payment and the step, so a redelivered event writes nothing twice.
//!
//! | group                       | source                                   | on                               |
//! |-----------------------------|------------------------------------------|----------------------------------|
//! | `payment-validation`        | `$et-InboundPaymentReceived`             | validate → Validated / Rejected + Returned |
//! | `payment-screening-outcome` | `$ce-screening`                          | SanctionsChecked / Held / Released / Failed + Returned |
//! | `payment-account-outcome`   | `$all`, types `FundsCredited`, `PaymentPostingRefused` | AccountChecked + BalanceUpdated / Failed + Returned |
//! | `scheme-returns`            | `$et-InboundPaymentReturned`             | POST the return to the simulator |

use std::time::Duration;

use events::accounts::AccountEvent;
use events::payments::{InboundPaymentEvent, InboundPaymentReturned};
use events::sanctions::ScreeningEvent;
use events::{streams, Money, PaymentId};
use infrastructure::eventstore::SubscriptionFilter;
use infrastructure::{
    Aggregate, CommandContext, Delivery, GroupSettings, HandlerError, Repository,
    SubscriptionSource,
};
use serde::Serialize;

use crate::inbound::{InboundPayment, Stage};

pub const VALIDATION_GROUP: &str = "payment-validation";
pub const SCREENING_OUTCOME_GROUP: &str = "payment-screening-outcome";
pub const ACCOUNT_OUTCOME_GROUP: &str = "payment-account-outcome";
pub const SCHEME_RETURNS_GROUP: &str = "scheme-returns";

/// The consumer groups this service owns.
pub const GROUPS: [&str; 4] = [
    VALIDATION_GROUP,
    SCREENING_OUTCOME_GROUP,
    ACCOUNT_OUTCOME_GROUP,
    SCHEME_RETURNS_GROUP,
];

impl Aggregate for InboundPayment {
    type Event = InboundPaymentEvent;
    type Id = PaymentId;

    fn stream_name(id: &PaymentId) -> String {
        streams::inbound_payment(id)
    }

    fn apply(&mut self, event: &InboundPaymentEvent) {
        InboundPayment::apply(self, event);
    }
}

/// Every group with its source and settings.
pub fn groups() -> Vec<(SubscriptionSource, &'static str, GroupSettings)> {
    let by_type = |event_type: &str| SubscriptionSource::Stream(streams::by_event_type(event_type));
    vec![
        (
            by_type("InboundPaymentReceived"),
            VALIDATION_GROUP,
            GroupSettings::default(),
        ),
        (
            SubscriptionSource::Stream(streams::by_category(streams::SCREENING_CATEGORY)),
            SCREENING_OUTCOME_GROUP,
            GroupSettings::default(),
        ),
        (
            SubscriptionSource::All,
            ACCOUNT_OUTCOME_GROUP,
            GroupSettings {
                filter: Some(
                    SubscriptionFilter::on_event_type()
                        .add_prefix("FundsCredited")
                        .add_prefix("PaymentPostingRefused"),
                ),
                ..GroupSettings::default()
            },
        ),
        (
            by_type("InboundPaymentReturned"),
            SCHEME_RETURNS_GROUP,
            GroupSettings::default(),
        ),
    ]
}

/// The handlers of every group, sharing one repository and one HTTP client. Cheap to clone.
#[derive(Clone)]
pub struct Handlers {
    repository: Repository<InboundPayment>,
    max_amount: Money,
    simulator_url: Option<String>,
    http: reqwest::Client,
}

/// What the simulator receives on `POST /returns`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReturnToScheme<'a> {
    scheme_transaction_id: &'a str,
    payment_id: PaymentId,
    reason_code: char,
    reason: &'static str,
    amount: i64,
}

impl Handlers {
    pub fn new(
        repository: Repository<InboundPayment>,
        max_amount: Money,
        simulator_url: Option<String>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            repository,
            max_amount,
            simulator_url: simulator_url.map(|url| url.trim_end_matches('/').to_owned()),
            http,
        }
    }

    /// Handles a delivery of `group`.
    pub async fn handle(&self, group: &str, delivery: Delivery) -> Result<(), HandlerError> {
        match group {
            VALIDATION_GROUP => self.validate(delivery).await,
            SCREENING_OUTCOME_GROUP => self.screening_outcome(delivery).await,
            ACCOUNT_OUTCOME_GROUP => self.account_outcome(delivery).await,
            SCHEME_RETURNS_GROUP => self.send_return(delivery).await,
            other => Err(HandlerError::poison(format!(
                "no handler for group {other}"
            ))),
        }
    }

    /// Runs `decide` on the payment and appends what it returns, with ids derived from `payment/step`.
    async fn decide(
        &self,
        payment: PaymentId,
        step: &str,
        metadata: events::EventMetadata,
        decide: impl Fn(&InboundPayment) -> Result<Vec<InboundPaymentEvent>, HandlerError>,
    ) -> Result<(), HandlerError> {
        let context = CommandContext::idempotent(metadata, format!("{payment}/{step}"));
        match self
            .repository
            .execute(&payment, &context, |state| decide(state))
            .await
        {
            Ok(_) => Ok(()),
            Err(infrastructure::ExecuteError::Rejected(error)) => Err(error),
            Err(other) => Err(HandlerError::from(other)),
        }
    }

    async fn validate(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let Some(stored) = delivery.decode::<InboundPaymentEvent>()? else {
            return Ok(());
        };
        let InboundPaymentEvent::InboundPaymentReceived(received) = &stored.event else {
            return Ok(());
        };
        let max_amount = self.max_amount;
        self.decide(
            received.payment_id,
            "validated",
            stored.metadata.caused_by(stored.id),
            |state| Ok(state.validate(max_amount)),
        )
        .await
    }

    async fn screening_outcome(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let Some(stored) = delivery.decode::<ScreeningEvent>()? else {
            return Ok(());
        };
        let metadata = stored.metadata.caused_by(stored.id);
        match &stored.event {
            ScreeningEvent::PaymentScreened(screened) => {
                self.decide(screened.payment_id, "screened", metadata, |state| {
                    Ok(state.on_screened(screened))
                })
                .await
            }
            ScreeningEvent::HeldPaymentReleased(released) => {
                self.decide(released.payment_id, "released", metadata, |state| {
                    not_held_yet(state)?;
                    Ok(state.on_released(released))
                })
                .await
            }
            ScreeningEvent::HeldPaymentRejected(rejected) => {
                self.decide(rejected.payment_id, "rejected", metadata, |state| {
                    not_held_yet(state)?;
                    Ok(state.on_rejected(rejected))
                })
                .await
            }
        }
    }

    async fn account_outcome(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let Some(stored) = delivery.decode::<AccountEvent>()? else {
            return Ok(());
        };
        let metadata = stored.metadata.caused_by(stored.id);
        let (payment, outcome) = match &stored.event {
            AccountEvent::FundsCredited(credited) if credited.transfer_id.is_none() => {
                (credited.payment_id, Ok(credited.amount))
            }
            AccountEvent::PaymentPostingRefused(refused) => {
                (refused.payment_id, Err(refused.reason))
            }
            _ => return Ok(()),
        };
        // Credits of transfers and of payments this service never received are not ours: a payment that
        // does not exist decides nothing, and nothing is written.
        self.decide(payment, "account-outcome", metadata, |state| {
            Ok(match outcome {
                Ok(amount) => state.on_credited(amount),
                Err(reason) => state.on_posting_refused(reason),
            })
        })
        .await
    }

    async fn send_return(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let Some(stored) = delivery.decode::<InboundPaymentEvent>()? else {
            return Ok(());
        };
        let InboundPaymentEvent::InboundPaymentReturned(returned) = &stored.event else {
            return Ok(());
        };
        let Some(url) = &self.simulator_url else {
            return Ok(());
        };
        self.post_return(url, returned).await
    }

    async fn post_return(
        &self,
        url: &str,
        returned: &InboundPaymentReturned,
    ) -> Result<(), HandlerError> {
        let body = ReturnToScheme {
            scheme_transaction_id: &returned.scheme_transaction_id,
            payment_id: returned.payment_id,
            reason_code: returned.reason.code(),
            reason: returned.reason.description(),
            amount: returned.amount,
        };
        let response = self
            .http
            .post(format!("{url}/returns"))
            .json(&body)
            .send()
            .await
            .map_err(|error| {
                HandlerError::transient(format!("the scheme simulator is unreachable: {error}"))
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_client_error() {
            Err(HandlerError::poison(format!(
                "the scheme simulator refused the return of {}: {status}",
                returned.payment_id
            )))
        } else {
            Err(HandlerError::transient(format!(
                "the scheme simulator answered {status}"
            )))
        }
    }
}

/// An operator's decision can only reach a payment once the hit that held it has: retry until then.
fn not_held_yet(state: &InboundPayment) -> Result<(), HandlerError> {
    if state.stage == Stage::Validated {
        return Err(HandlerError::transient(
            "the payment is not held yet: the screening hit has not been applied",
        ));
    }
    Ok(())
}
