//! One payment's screening, the `screening-{paymentId}` aggregate: the screen's outcome (clear, or a hit that
//! holds the payment for review) and, for a hit, the operator's one decision (release or reject, with who and
//! why). Pure: decisions return the events to append.

use events::sanctions::{
    HeldPaymentRejected, HeldPaymentReleased, NameMatch, PaymentScreened, ScreeningEvent,
    ScreeningOutcome,
};
use events::PaymentId;
use serde::{Deserialize, Serialize};

/// What an operator decided about a held payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub released: bool,
    pub by: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Screening {
    pub screened: Option<PaymentScreened>,
    pub decision: Option<Decision>,
}

/// Why an operator's decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("payment {0} is not held for review")]
    NotHeld(PaymentId),
    #[error("payment {payment} was already {decision} by {by}")]
    AlreadyDecided {
        payment: PaymentId,
        decision: &'static str,
        by: String,
    },
    #[error("{0} must not be empty")]
    Missing(&'static str),
}

impl Screening {
    pub fn apply(&mut self, event: &ScreeningEvent) {
        match event {
            ScreeningEvent::PaymentScreened(screened) => self.screened = Some(screened.clone()),
            ScreeningEvent::HeldPaymentReleased(e) => {
                self.decision = Some(Decision {
                    released: true,
                    by: e.by.clone(),
                    reason: e.reason.clone(),
                })
            }
            ScreeningEvent::HeldPaymentRejected(e) => {
                self.decision = Some(Decision {
                    released: false,
                    by: e.by.clone(),
                    reason: e.reason.clone(),
                })
            }
        }
    }

    pub fn is_held(&self) -> bool {
        self.decision.is_none()
            && self
                .screened
                .as_ref()
                .is_some_and(|s| matches!(s.result, ScreeningOutcome::Hit { .. }))
    }

    /// The outcome of screening `name`: a payment is screened once, so a repeat gives nothing.
    pub fn screen(
        &self,
        payment_id: PaymentId,
        name: &str,
        matches: Vec<NameMatch>,
    ) -> Vec<ScreeningEvent> {
        if self.screened.is_some() {
            return Vec::new();
        }
        let result = if matches.is_empty() {
            ScreeningOutcome::Clear
        } else {
            ScreeningOutcome::Hit { matches }
        };
        vec![PaymentScreened {
            payment_id,
            screened_name: name.to_owned(),
            result,
        }
        .into()]
    }

    fn check_decision(
        &self,
        payment_id: PaymentId,
        by: &str,
        reason: &str,
    ) -> Result<(), DecisionError> {
        if by.trim().is_empty() {
            return Err(DecisionError::Missing("by"));
        }
        if reason.trim().is_empty() {
            return Err(DecisionError::Missing("reason"));
        }
        if let Some(decision) = &self.decision {
            return Err(DecisionError::AlreadyDecided {
                payment: payment_id,
                decision: if decision.released {
                    "released"
                } else {
                    "rejected"
                },
                by: decision.by.clone(),
            });
        }
        if !self.is_held() {
            return Err(DecisionError::NotHeld(payment_id));
        }
        Ok(())
    }

    pub fn release(
        &self,
        payment_id: PaymentId,
        by: &str,
        reason: &str,
    ) -> Result<Vec<ScreeningEvent>, DecisionError> {
        self.check_decision(payment_id, by, reason)?;
        Ok(vec![HeldPaymentReleased {
            payment_id,
            by: by.trim().to_owned(),
            reason: reason.trim().to_owned(),
        }
        .into()])
    }

    pub fn reject(
        &self,
        payment_id: PaymentId,
        by: &str,
        reason: &str,
    ) -> Result<Vec<ScreeningEvent>, DecisionError> {
        self.check_decision(payment_id, by, reason)?;
        Ok(vec![HeldPaymentRejected {
            payment_id,
            by: by.trim().to_owned(),
            reason: reason.trim().to_owned(),
        }
        .into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit() -> Vec<NameMatch> {
        vec![NameMatch {
            sanctioned_name: "Vladimir Petrov".into(),
            score: 0.97,
        }]
    }

    #[test]
    fn a_hit_is_held_until_one_decision_and_a_clear_payment_cannot_be_decided() {
        let id = PaymentId::new();
        let mut screening = Screening::default();
        let screened = screening.screen(id, "V PETROV", hit());
        screened.iter().for_each(|e| screening.apply(e));
        assert!(screening.is_held());
        assert!(
            screening.screen(id, "V PETROV", hit()).is_empty(),
            "screened once"
        );
        assert_eq!(
            screening.release(id, " ", "ok"),
            Err(DecisionError::Missing("by"))
        );
        let released = screening
            .release(id, "alice", "false positive")
            .expect("held");
        released.iter().for_each(|e| screening.apply(e));
        assert!(matches!(
            screening.reject(id, "bob", "no"),
            Err(DecisionError::AlreadyDecided {
                decision: "released",
                ..
            })
        ));

        let mut clear = Screening::default();
        clear
            .screen(id, "ADA", Vec::new())
            .iter()
            .for_each(|e| clear.apply(e));
        assert_eq!(
            clear.release(id, "alice", "x"),
            Err(DecisionError::NotHeld(id))
        );
        assert_eq!(
            Screening::default().reject(id, "alice", "x"),
            Err(DecisionError::NotHeld(id))
        );
    }
}
