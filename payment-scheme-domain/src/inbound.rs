//! The inbound payment process: the `inboundPayment-{id}` aggregate and what it does when each stage's outcome
//! arrives. Pure: handlers give the events to append; a stage already decided gives nothing, so a redelivered
//! message changes nothing.
//!
//! received → validated → sanctions-checked → account-checked → balance-updated;
//! rejected → returned; held → released → sanctions-checked, or held → failed → returned;
//! posting refused → failed → returned.

use events::bacs::ReturnReason;
use events::payments::*;
use events::sanctions::{
    HeldPaymentRejected, HeldPaymentReleased, PaymentScreened, ScreeningOutcome,
};
use events::{Money, PaymentId};
use serde::{Deserialize, Serialize};

/// Where a payment is. Final states: `Credited`, `Returned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Stage {
    New,
    Received,
    Validated,
    Held,
    SanctionsChecked,
    AccountChecked,
    Credited,
    Failed,
    Returned,
}

impl Stage {
    pub fn is_final(self) -> bool {
        matches!(self, Stage::Credited | Stage::Returned)
    }

    /// Received and neither final nor waiting for an operator: work the pipeline still has to do.
    pub fn is_in_progress(self) -> bool {
        !self.is_final() && !matches!(self, Stage::New | Stage::Held)
    }

    pub fn name(self) -> &'static str {
        match self {
            Stage::New => "new",
            Stage::Received => "received",
            Stage::Validated => "validated",
            Stage::Held => "held",
            Stage::SanctionsChecked => "sanctionsChecked",
            Stage::AccountChecked => "accountChecked",
            Stage::Credited => "credited",
            Stage::Failed => "failed",
            Stage::Returned => "returned",
        }
    }
}

/// The payment as its events say it is; serialisable so read models and snapshots can keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundPayment {
    pub stage: Stage,
    pub received: Option<InboundPaymentReceived>,
    pub validated: Option<InboundPaymentValidated>,
    pub return_reason: Option<ReturnReason>,
}

impl Default for InboundPayment {
    fn default() -> Self {
        Self {
            stage: Stage::New,
            received: None,
            validated: None,
            return_reason: None,
        }
    }
}

impl InboundPayment {
    pub fn apply(&mut self, event: &InboundPaymentEvent) {
        match event {
            InboundPaymentEvent::InboundPaymentReceived(e) => {
                self.received = Some(e.clone());
                self.stage = Stage::Received;
            }
            InboundPaymentEvent::InboundPaymentValidated(e) => {
                self.validated = Some(e.clone());
                self.stage = Stage::Validated;
            }
            InboundPaymentEvent::InboundPaymentRejected(_) => {
                self.stage = Stage::Failed;
                self.return_reason = Some(ReturnReason::InvalidAccountDetails);
            }
            InboundPaymentEvent::InboundPaymentHeld(_) => self.stage = Stage::Held,
            InboundPaymentEvent::InboundPaymentReleased(_) => {}
            InboundPaymentEvent::InboundPaymentSanctionsChecked(_) => {
                self.stage = Stage::SanctionsChecked
            }
            InboundPaymentEvent::InboundPaymentAccountChecked(_) => {
                self.stage = Stage::AccountChecked
            }
            InboundPaymentEvent::InboundPaymentBalanceUpdated(_) => self.stage = Stage::Credited,
            InboundPaymentEvent::InboundPaymentFailed(e) => {
                self.stage = Stage::Failed;
                self.return_reason = e.return_reason.or(self.return_reason);
            }
            InboundPaymentEvent::InboundPaymentReturned(_) => self.stage = Stage::Returned,
        }
    }

    fn id(&self) -> Option<PaymentId> {
        self.received.as_ref().map(|r| r.payment_id)
    }

    /// Receipt: idempotent on the scheme transaction id (the payment id is derived from it).
    pub fn receive(&self, received: InboundPaymentReceived) -> Vec<InboundPaymentEvent> {
        if self.stage != Stage::New {
            return Vec::new();
        }
        vec![received.into()]
    }

    /// Validation outcome: validated, or rejected and returned.
    pub fn validate(&self, max_amount: Money) -> Vec<InboundPaymentEvent> {
        let (Stage::Received, Some(received)) = (self.stage, &self.received) else {
            return Vec::new();
        };
        match crate::validation::validate(received, max_amount) {
            Ok(validated) => vec![validated.into()],
            Err(reasons) => {
                let payment_id = received.payment_id;
                vec![
                    InboundPaymentRejected {
                        payment_id,
                        reasons,
                    }
                    .into(),
                    self.returned(ReturnReason::InvalidAccountDetails),
                ]
            }
        }
    }

    fn returned(&self, reason: ReturnReason) -> InboundPaymentEvent {
        let received = self.received.as_ref();
        InboundPaymentReturned {
            payment_id: received.map(|r| r.payment_id).unwrap_or_default(),
            scheme_transaction_id: received
                .map(|r| r.scheme_transaction_id.clone())
                .unwrap_or_default(),
            reason,
            amount: received.map_or(0, |r| r.amount),
        }
        .into()
    }

    fn sanctions_checked(&self, released: bool) -> Option<InboundPaymentEvent> {
        let v = self.validated.as_ref()?;
        Some(
            InboundPaymentSanctionsChecked {
                payment_id: v.payment_id,
                beneficiary_sort_code: v.beneficiary_sort_code,
                beneficiary_account_number: v.beneficiary_account_number,
                payer_name: v.payer_name.clone(),
                amount: v.amount,
                reference: v.reference.clone(),
                released,
            }
            .into(),
        )
    }

    /// Screening outcome: clear → sanctions-checked; hit → held for review.
    pub fn on_screened(&self, screened: &PaymentScreened) -> Vec<InboundPaymentEvent> {
        if self.stage != Stage::Validated {
            return Vec::new();
        }
        match &screened.result {
            ScreeningOutcome::Clear => self.sanctions_checked(false).into_iter().collect(),
            ScreeningOutcome::Hit { matches } => {
                vec![InboundPaymentHeld {
                    payment_id: screened.payment_id,
                    matches: matches.clone(),
                }
                .into()]
            }
        }
    }

    /// An operator released a held payment: it goes on to posting.
    pub fn on_released(&self, released: &HeldPaymentReleased) -> Vec<InboundPaymentEvent> {
        if self.stage != Stage::Held {
            return Vec::new();
        }
        let mut out = vec![InboundPaymentReleased {
            payment_id: released.payment_id,
            by: released.by.clone(),
            reason: released.reason.clone(),
        }
        .into()];
        out.extend(self.sanctions_checked(true));
        out
    }

    /// An operator rejected a held payment: it fails and goes back to the payer.
    pub fn on_rejected(&self, rejected: &HeldPaymentRejected) -> Vec<InboundPaymentEvent> {
        if self.stage != Stage::Held {
            return Vec::new();
        }
        vec![
            InboundPaymentFailed {
                payment_id: rejected.payment_id,
                reason: format!(
                    "sanctions: rejected by {}: {}",
                    rejected.by, rejected.reason
                ),
                return_reason: Some(ReturnReason::ReferToPayer),
            }
            .into(),
            self.returned(ReturnReason::ReferToPayer),
        ]
    }

    /// The account credited the payment.
    pub fn on_credited(&self, amount: Money) -> Vec<InboundPaymentEvent> {
        let Some(payment_id) = self.id() else {
            return Vec::new();
        };
        if self.stage != Stage::SanctionsChecked {
            return Vec::new();
        }
        vec![
            InboundPaymentAccountChecked { payment_id }.into(),
            InboundPaymentBalanceUpdated { payment_id, amount }.into(),
        ]
    }

    /// The account refused the payment: it fails and goes back with the account's reason.
    pub fn on_posting_refused(&self, reason: ReturnReason) -> Vec<InboundPaymentEvent> {
        let Some(payment_id) = self.id() else {
            return Vec::new();
        };
        if self.stage != Stage::SanctionsChecked {
            return Vec::new();
        }
        vec![
            InboundPaymentFailed {
                payment_id,
                reason: format!("account: {}", reason.description()),
                return_reason: Some(reason),
            }
            .into(),
            self.returned(reason),
        ]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use events::bacs::DEFAULT_MAX_AMOUNT;
    use events::sanctions::NameMatch;
    use events::DomainEvent;

    /// A scheme payment to `sort_code` / 12345678 (shared with the read model's tests).
    pub(crate) fn received(sort_code: &str) -> InboundPaymentReceived {
        InboundPaymentReceived {
            payment_id: PaymentId::new(),
            scheme_transaction_id: "BACS-7".into(),
            payer: Party {
                name: "J SMITH".into(),
                sort_code: "200000".into(),
                account_number: "55779911".into(),
            },
            beneficiary: Party {
                name: "ADA".into(),
                sort_code: sort_code.into(),
                account_number: "12345678".into(),
            },
            amount: 500,
            reference: "RENT".into(),
        }
    }

    /// Runs `step` on the state built from `history`, applies what it returns, and gives the new events' types.
    fn step(
        history: &mut Vec<InboundPaymentEvent>,
        f: impl Fn(&InboundPayment) -> Vec<InboundPaymentEvent>,
    ) -> Vec<&'static str> {
        let mut state = InboundPayment::default();
        history.iter().for_each(|e| state.apply(e));
        let new = f(&state);
        let types = new.iter().map(|e| e.event_type()).collect();
        history.extend(new);
        types
    }

    fn stage(history: &[InboundPaymentEvent]) -> Stage {
        let mut state = InboundPayment::default();
        history.iter().for_each(|e| state.apply(e));
        state.stage
    }

    #[test]
    fn the_happy_path_ends_credited_and_each_stage_happens_once() {
        let r = received("123456");
        let id = r.payment_id;
        let mut h = Vec::new();
        assert_eq!(
            step(&mut h, |s| s.receive(r.clone())),
            ["InboundPaymentReceived"]
        );
        assert!(
            step(&mut h, |s| s.receive(r.clone())).is_empty(),
            "the same scheme message twice is one payment"
        );
        assert_eq!(
            step(&mut h, |s| s.validate(DEFAULT_MAX_AMOUNT)),
            ["InboundPaymentValidated"]
        );
        let clear = PaymentScreened {
            payment_id: id,
            screened_name: "ADA".into(),
            result: ScreeningOutcome::Clear,
        };
        assert_eq!(
            step(&mut h, |s| s.on_screened(&clear)),
            ["InboundPaymentSanctionsChecked"]
        );
        assert!(step(&mut h, |s| s.on_screened(&clear)).is_empty());
        assert_eq!(
            step(&mut h, |s| s.on_credited(Money::from_pence(500))),
            [
                "InboundPaymentAccountChecked",
                "InboundPaymentBalanceUpdated"
            ]
        );
        assert!(step(&mut h, |s| s.on_credited(Money::from_pence(500))).is_empty());
        assert_eq!(stage(&h), Stage::Credited);
    }

    #[test]
    fn invalid_held_and_refused_payments_are_returned_with_their_reason() {
        let mut h = Vec::new();
        step(&mut h, |s| s.receive(received("1234")));
        assert_eq!(
            step(&mut h, |s| s.validate(DEFAULT_MAX_AMOUNT)),
            ["InboundPaymentRejected", "InboundPaymentReturned"]
        );
        assert_eq!(stage(&h), Stage::Returned);

        let r = received("123456");
        let id = r.payment_id;
        let hit = PaymentScreened {
            payment_id: id,
            screened_name: "ADA".into(),
            result: ScreeningOutcome::Hit {
                matches: vec![NameMatch {
                    sanctioned_name: "ADA".into(),
                    score: 1.0,
                }],
            },
        };
        let mut held = Vec::new();
        step(&mut held, |s| s.receive(r.clone()));
        step(&mut held, |s| s.validate(DEFAULT_MAX_AMOUNT));
        assert_eq!(
            step(&mut held, |s| s.on_screened(&hit)),
            ["InboundPaymentHeld"]
        );
        let mut released = held.clone();
        let release = HeldPaymentReleased {
            payment_id: id,
            by: "ops".into(),
            reason: "false positive".into(),
        };
        assert_eq!(
            step(&mut released, |s| s.on_released(&release)),
            ["InboundPaymentReleased", "InboundPaymentSanctionsChecked"]
        );
        let reject = HeldPaymentRejected {
            payment_id: id,
            by: "ops".into(),
            reason: "true match".into(),
        };
        assert_eq!(
            step(&mut held, |s| s.on_rejected(&reject)),
            ["InboundPaymentFailed", "InboundPaymentReturned"]
        );
        assert!(
            matches!(held.last(), Some(InboundPaymentEvent::InboundPaymentReturned(r)) if r.reason == ReturnReason::ReferToPayer)
        );

        assert_eq!(
            step(&mut released, |s| s
                .on_posting_refused(ReturnReason::AccountClosed)),
            ["InboundPaymentFailed", "InboundPaymentReturned"]
        );
        assert!(
            matches!(released.last(), Some(InboundPaymentEvent::InboundPaymentReturned(r)) if r.reason.code() == 'B')
        );
    }
}
