//! Gateway validation of an inbound scheme payment, as a Bacs gateway does it: beneficiary sort code (6 digits)
//! and account number (8 digits), amount above zero and within the limit, names and reference within Bacs
//! lengths and character set. Every problem is reported, not just the first.

use events::bacs::{is_bacs_text, MAX_NAME_LEN, MAX_REFERENCE_LEN};
use events::payments::{InboundPaymentReceived, InboundPaymentValidated};
use events::{AccountNumber, Money, SortCode};

/// Validates a received payment; `Err` lists every reason it is rejected.
pub fn validate(
    received: &InboundPaymentReceived,
    max_amount: Money,
) -> Result<InboundPaymentValidated, Vec<String>> {
    let mut reasons = Vec::new();
    let sort_code = received
        .beneficiary
        .sort_code
        .parse::<SortCode>()
        .map_err(|e| reasons.push(e.to_string()))
        .ok();
    let account_number = received
        .beneficiary
        .account_number
        .parse::<AccountNumber>()
        .map_err(|e| reasons.push(e.to_string()))
        .ok();
    let amount = Money::from_pence(received.amount);
    if !amount.is_positive() {
        reasons.push(format!("amount {amount} must be greater than zero"));
    } else if amount > max_amount {
        reasons.push(format!("amount {amount} is over the limit of {max_amount}"));
    }
    for (what, text, max) in [
        ("beneficiary name", &received.beneficiary.name, MAX_NAME_LEN),
        ("payer name", &received.payer.name, MAX_NAME_LEN),
        ("reference", &received.reference, MAX_REFERENCE_LEN),
    ] {
        if text.trim().is_empty() && what != "reference" {
            reasons.push(format!("{what} is empty"));
        }
        if text.chars().count() > max {
            reasons.push(format!("{what} is longer than {max} characters"));
        }
        if !is_bacs_text(text) {
            reasons.push(format!(
                "{what} has characters outside the Bacs character set"
            ));
        }
    }
    match (sort_code, account_number, reasons.is_empty()) {
        (Some(sort_code), Some(account_number), true) => Ok(InboundPaymentValidated {
            payment_id: received.payment_id,
            beneficiary_sort_code: sort_code,
            beneficiary_account_number: account_number,
            beneficiary_name: received.beneficiary.name.to_uppercase(),
            payer_name: received.payer.name.to_uppercase(),
            amount,
            reference: received.reference.to_uppercase(),
        }),
        _ => Err(reasons),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::bacs::DEFAULT_MAX_AMOUNT;
    use events::payments::Party;
    use events::PaymentId;

    fn received() -> InboundPaymentReceived {
        InboundPaymentReceived {
            payment_id: PaymentId::new(),
            scheme_transaction_id: "BACS-1".into(),
            payer: Party {
                name: "J SMITH".into(),
                sort_code: "200000".into(),
                account_number: "55779911".into(),
            },
            beneficiary: Party {
                name: "Ada Lovelace".into(),
                sort_code: "12-34-56".into(),
                account_number: "12345678".into(),
            },
            amount: 12_500,
            reference: "INVOICE 42".into(),
        }
    }

    #[test]
    fn a_well_formed_payment_is_validated_and_upper_cased() {
        let validated = validate(&received(), DEFAULT_MAX_AMOUNT).expect("valid");
        assert_eq!(validated.beneficiary_sort_code.as_str(), "123456");
        assert_eq!(validated.beneficiary_name, "ADA LOVELACE");
        assert_eq!(validated.amount, Money::from_pence(12_500));
    }

    /// A change that breaks one rule, and the words the rejection must contain.
    type BrokenRule = (fn(&mut InboundPaymentReceived), &'static str);

    #[test]
    fn every_problem_is_reported() {
        let cases: Vec<BrokenRule> = vec![
            (|p| p.beneficiary.sort_code = "1234".into(), "sort code"),
            (
                |p| p.beneficiary.account_number = "12AB5678".into(),
                "account number",
            ),
            (|p| p.amount = 0, "greater than zero"),
            (|p| p.amount = 2_000_000_001, "over the limit"),
            (
                |p| p.beneficiary.name = "A VERY LONG NAME INDEED".into(),
                "longer than 18",
            ),
            (|p| p.reference = "PAY_ME".into(), "character set"),
            (|p| p.payer.name = " ".into(), "payer name is empty"),
        ];
        for (change, expected) in cases {
            let mut payment = received();
            change(&mut payment);
            let reasons = validate(&payment, DEFAULT_MAX_AMOUNT).expect_err(expected);
            assert!(
                reasons.iter().any(|r| r.contains(expected)),
                "{expected}: {reasons:?}"
            );
        }
    }
}
