//! The bank's persistent subscription groups (competing consumers), exactly as the services create them at
//! start-up: same names, sources and settings, so whichever of the seeder or the service comes first, the group
//! is the same.

use infrastructure::eventstore::SubscriptionFilter;
use infrastructure::{GroupSettings, SubscriptionSource};

/// One consumer group: its name, what it reads, the settings it is created with, and the service that runs it.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub name: &'static str,
    pub source: SubscriptionSource,
    pub settings: GroupSettings,
    pub owner: &'static str,
}

fn on_event_type(event_type: &str) -> SubscriptionSource {
    SubscriptionSource::Stream(events::streams::by_event_type(event_type))
}

/// Every consumer group of the inbound payment pipeline (DESIGN §4.2), in pipeline order.
pub fn consumer_groups() -> Vec<ConsumerGroup> {
    let defaults = GroupSettings::default;
    vec![
        ConsumerGroup {
            name: "payment-validation",
            source: on_event_type("InboundPaymentReceived"),
            settings: defaults(),
            owner: "payment-scheme-domain",
        },
        ConsumerGroup {
            name: "sanctions-screening",
            source: on_event_type("InboundPaymentValidated"),
            settings: defaults(),
            owner: "sanctions-api",
        },
        ConsumerGroup {
            name: "payment-screening-outcome",
            source: SubscriptionSource::Stream(events::streams::by_category(
                events::streams::SCREENING_CATEGORY,
            )),
            settings: defaults(),
            owner: "payment-scheme-domain",
        },
        ConsumerGroup {
            name: "account-posting",
            source: on_event_type("InboundPaymentSanctionsChecked"),
            settings: defaults(),
            owner: "accounts-api",
        },
        ConsumerGroup {
            name: "payment-account-outcome",
            source: SubscriptionSource::All,
            settings: GroupSettings {
                filter: Some(
                    SubscriptionFilter::on_event_type()
                        .add_prefix("FundsCredited")
                        .add_prefix("PaymentPostingRefused"),
                ),
                ..defaults()
            },
            owner: "payment-scheme-domain",
        },
        ConsumerGroup {
            name: "scheme-returns",
            source: on_event_type("InboundPaymentReturned"),
            settings: defaults(),
            owner: "payment-scheme-domain",
        },
    ]
}
