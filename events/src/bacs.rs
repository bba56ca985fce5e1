//! Bacs rules the gateway applies to inbound payments, and the ARUCS-style reason codes a returned payment
//! carries back to the scheme.

use serde::{Deserialize, Serialize};

use crate::Money;

/// Longest payer / beneficiary name a Bacs record carries.
pub const MAX_NAME_LEN: usize = 18;
/// Longest payment reference a Bacs record carries.
pub const MAX_REFERENCE_LEN: usize = 18;
/// Largest single Bacs Direct Credit the bank accepts by default (£20 million).
pub const DEFAULT_MAX_AMOUNT: Money = Money::from_pence(2_000_000_000);

/// Whether `text` uses only Bacs's character set: upper-case letters, digits, space, `.` `&` `/` `-`.
/// Lower-case letters are accepted and upper-cased by the sender, as banks' gateways do.
pub fn is_bacs_text(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '&' | '/' | '-'))
}

/// Why a payment goes back to the payer's bank, with ARUCS-style codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReturnReason {
    /// `0`: refer to payer (e.g. sanctions rejection, or anything not covered below).
    ReferToPayer,
    /// `3`: the account has been transferred / is blocked from receiving.
    AccountTransferred,
    /// `5`: no account, or wrong account type.
    NoAccount,
    /// `6`: invalid account details (failed validation).
    InvalidAccountDetails,
    /// `B`: account closed.
    AccountClosed,
}

impl ReturnReason {
    /// The one-character code on the return.
    pub fn code(self) -> char {
        match self {
            Self::ReferToPayer => '0',
            Self::AccountTransferred => '3',
            Self::NoAccount => '5',
            Self::InvalidAccountDetails => '6',
            Self::AccountClosed => 'B',
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::ReferToPayer => "Refer to payer",
            Self::AccountTransferred => "Account transferred or not accepting credits",
            Self::NoAccount => "No account (or wrong account type)",
            Self::InvalidAccountDetails => "Invalid account details",
            Self::AccountClosed => "Account closed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bacs_text_allows_only_its_character_set() {
        assert!(is_bacs_text("J SMITH & CO. 12/3-A"));
        assert!(!is_bacs_text("Zoë"));
        assert!(!is_bacs_text("a_b"));
        assert_eq!(ReturnReason::AccountClosed.code(), 'B');
    }
}
