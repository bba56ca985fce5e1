//! Bacs Standard 18 payment records (the 100-character contra-free credit record), parsed into scheme payments.
//! Label records (VOL1, HDR1, HDR2, UHL1, EOF1, EOF2, UTL1) are skipped.
//!
//! Columns (1-based): 1–6 destination sort code, 7–14 destination account, 15 account type, 16–17 transaction
//! code, 18–23 originating sort code, 24–31 originating account, 32–35 free format, 36–46 amount in pence,
//! 47–64 originator's name, 65–82 reference, 83–100 destination account name.

use events::payments::Party;

use crate::SchemePayment;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Standard18Error {
    #[error("line {line}: a payment record is 100 characters or more, this one is {len}")]
    TooShort { line: usize, len: usize },
    #[error("line {line}: the amount '{amount}' is not 11 digits of pence")]
    Amount { line: usize, amount: String },
    #[error("line {line}: transaction code '{code}' is not a credit (99)")]
    NotACredit { line: usize, code: String },
}

const LABELS: &[&str] = &["VOL1", "HDR1", "HDR2", "UHL1", "EOF1", "EOF2", "UTL1"];

/// Parses every payment record of a file. `file_id` prefixes the scheme transaction ids (`<file>-<line>`), so
/// submitting the same file twice names the same transactions.
pub fn parse(file_id: &str, text: &str) -> Result<Vec<SchemePayment>, Standard18Error> {
    let mut payments = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let record = raw.trim_end_matches('\r');
        if record.trim().is_empty() || LABELS.iter().any(|l| record.starts_with(l)) {
            continue;
        }
        let chars: Vec<char> = record.chars().collect();
        if chars.len() < 100 {
            return Err(Standard18Error::TooShort {
                line,
                len: chars.len(),
            });
        }
        let field = |from: usize, to: usize| {
            chars[from - 1..to]
                .iter()
                .collect::<String>()
                .trim()
                .to_owned()
        };
        let code = field(16, 17);
        if code != "99" {
            return Err(Standard18Error::NotACredit { line, code });
        }
        let amount_text = field(36, 46);
        let amount = amount_text
            .parse::<i64>()
            .ok()
            .filter(|_| amount_text.len() == 11)
            .ok_or(Standard18Error::Amount {
                line,
                amount: amount_text.clone(),
            })?;
        payments.push(SchemePayment {
            scheme_transaction_id: format!("{file_id}-{line}"),
            payer: Party {
                name: field(47, 64),
                sort_code: field(18, 23),
                account_number: field(24, 31),
            },
            beneficiary: Party {
                name: field(83, 100),
                sort_code: field(1, 6),
                account_number: field(7, 14),
            },
            amount,
            reference: field(65, 82),
        });
    }
    Ok(payments)
}

/// Formats a payment as a Standard 18 record (what `parse` reads back).
pub fn format_record(payment: &SchemePayment) -> String {
    let pad = |text: &str, width: usize| {
        format!("{:<width$}", text.chars().take(width).collect::<String>())
    };
    format!(
        "{}{}0{}{}{}{}{:011}{}{}{}",
        pad(&payment.beneficiary.sort_code, 6),
        pad(&payment.beneficiary.account_number, 8),
        "99",
        pad(&payment.payer.sort_code, 6),
        pad(&payment.payer.account_number, 8),
        "    ",
        payment.amount,
        pad(&payment.payer.name, 18),
        pad(&payment.reference, 18),
        pad(&payment.beneficiary.name, 18),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_labels_are_skipped() {
        let payment = SchemePayment {
            scheme_transaction_id: "F1-2".into(),
            payer: Party {
                name: "ACME PAYROLL LTD".into(),
                sort_code: "200000".into(),
                account_number: "55779911".into(),
            },
            beneficiary: Party {
                name: "ADA LOVELACE".into(),
                sort_code: "123456".into(),
                account_number: "12345678".into(),
            },
            amount: 250_000,
            reference: "SALARY NOV".into(),
        };
        let record = format_record(&payment);
        assert_eq!(record.chars().count(), 100);
        let file = format!("VOL1 BANK\n{record}\nEOF1\n");
        assert_eq!(parse("F1", &file), Ok(vec![payment]));
        assert!(matches!(
            parse("F1", "123456"),
            Err(Standard18Error::TooShort { .. })
        ));
        let debit = record.replacen("099", "017", 1);
        assert!(matches!(
            parse("F1", &debit),
            Err(Standard18Error::NotACredit { .. })
        ));
    }
}
