//! Money: GBP in minor units (pence), as `i64`. Parsed from and shown as pounds with two decimals.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An amount of GBP in pence. Serialised as a JSON integer of pence.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an amount of pounds with at most two decimals")]
pub struct MoneyParseError(String);

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_pence(pence: i64) -> Self {
        Money(pence)
    }

    pub const fn pence(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Money {
    /// `£1,234.56` style without separators: `1234.56`, `-0.05`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl FromStr for Money {
    type Err = MoneyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || MoneyParseError(text.to_owned());
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (pounds, pence) = match digits.split_once('.') {
            Some((pounds, pence)) if (1..=2).contains(&pence.len()) => (pounds, pence),
            Some(_) => return Err(error()),
            None => (digits, "0"),
        };
        if pounds.is_empty()
            || !pounds.bytes().all(|b| b.is_ascii_digit())
            || !pence.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(error());
        }
        let pounds: i64 = pounds.parse().map_err(|_| error())?;
        let mut pence_value: i64 = pence.parse().map_err(|_| error())?;
        if pence.len() == 1 {
            pence_value *= 10;
        }
        let total = pounds
            .checked_mul(100)
            .and_then(|p| p.checked_add(pence_value))
            .ok_or_else(error)?;
        Ok(Money(if negative { -total } else { total }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_shows_pounds_and_pence() {
        for (text, pence, shown) in [
            ("0", 0, "0.00"),
            ("12.34", 1234, "12.34"),
            ("12.3", 1230, "12.30"),
            ("-0.05", -5, "-0.05"),
            ("1000000", 100_000_000, "1000000.00"),
        ] {
            let money: Money = text.parse().expect(text);
            assert_eq!(money.pence(), pence, "{text}");
            assert_eq!(money.to_string(), shown, "{text}");
        }
        for bad in [
            "",
            ".5",
            "1.234",
            "1,00",
            "abc",
            "1.",
            "--1",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Money>().is_err(), "{bad}");
        }
    }
}
