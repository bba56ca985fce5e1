//! The `sanctions-screening` consumer group: each validated inbound payment's payer name is screened against the
//! current list, and the outcome (clear, or a hit with its matches and scores, which holds the payment) is
//! appended to `screening-{paymentId}` once, with an id derived from the payment.

use events::payments::InboundPaymentEvent;
use events::streams;
use infrastructure::{
    CommandContext, Delivery, GroupSettings, HandlerError, Repository, SubscriptionSource,
};

use crate::matching;
use crate::names::CurrentList;
use crate::screening::Screening;

pub const SCREENING_GROUP: &str = "sanctions-screening";

/// The group's source and settings.
pub fn screening_group() -> (SubscriptionSource, GroupSettings) {
    (
        SubscriptionSource::Stream(streams::by_event_type("InboundPaymentValidated")),
        GroupSettings::default(),
    )
}

/// The screening handler. Cheap to clone.
#[derive(Clone)]
pub struct ScreeningHandler {
    pub list: CurrentList,
    pub screenings: Repository<Screening>,
    pub threshold: f64,
}

impl ScreeningHandler {
    pub async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let Some(stored) = delivery.decode::<InboundPaymentEvent>()? else {
            return Ok(());
        };
        let InboundPaymentEvent::InboundPaymentValidated(validated) = &stored.event else {
            return Ok(());
        };
        let list = self.list.current().await?;
        let matches = matching::screen(&validated.payer_name, list.names(), self.threshold);
        let payment_id = validated.payment_id;
        let context = CommandContext::idempotent(
            stored.metadata.caused_by(stored.id),
            format!("{payment_id}/screened"),
        );
        self.screenings
            .execute_expecting_new(&payment_id, &context, |screening| {
                Ok::<_, std::convert::Infallible>(screening.screen(
                    payment_id,
                    &validated.payer_name,
                    matches.clone(),
                ))
            })
            .await?;
        Ok(())
    }
}
