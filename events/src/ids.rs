//! Identifiers: UK sort codes and account numbers (validated on parse), the 14-digit account id, payment and
//! transfer ids, and deterministic event ids (UUID v5) so a retried handler never writes twice.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("sort code '{0}' must be 6 digits (dashes allowed: 12-34-56)")]
    SortCode(String),
    #[error("account number '{0}' must be 8 digits")]
    AccountNumber(String),
    #[error("account id '{0}' must be 14 digits: sort code then account number")]
    AccountId(String),
    #[error("'{0}' is not a valid id")]
    Uuid(String),
}

fn digits<const N: usize>(text: &str) -> Option<[u8; N]> {
    let cleaned: Vec<u8> = text.bytes().filter(|b| *b != b'-' && *b != b' ').collect();
    if cleaned.len() != N || !cleaned.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&cleaned);
    Some(out)
}

macro_rules! digit_id {
    ($name:ident, $len:literal, $error:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; $len]);

        impl $name {
            pub fn as_str(&self) -> &str {
                // Only ASCII digits are ever stored.
                std::str::from_utf8(&self.0).unwrap_or_default()
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(text: &str) -> Result<Self, IdError> {
                digits::<$len>(text)
                    .map($name)
                    .ok_or_else(|| IdError::$error(text.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

digit_id!(
    SortCode,
    6,
    SortCode,
    "A UK sort code: 6 digits, shown without dashes."
);
digit_id!(
    AccountNumber,
    8,
    AccountNumber,
    "A UK account number: 8 digits."
);

/// An account of the bank: sort code + account number, written as 14 digits (`12345612345678`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId {
    pub sort_code: SortCode,
    pub account_number: AccountNumber,
}

impl AccountId {
    pub fn new(sort_code: SortCode, account_number: AccountNumber) -> Self {
        Self {
            sort_code,
            account_number,
        }
    }
}

impl FromStr for AccountId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, IdError> {
        let all = digits::<14>(text).ok_or_else(|| IdError::AccountId(text.to_owned()))?;
        let sort_code = std::str::from_utf8(&all[..6]).unwrap_or_default().parse()?;
        let account_number = std::str::from_utf8(&all[6..]).unwrap_or_default().parse()?;
        Ok(Self {
            sort_code,
            account_number,
        })
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.sort_code, self.account_number)
    }
}

impl Serialize for AccountId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! uuid_id {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(text: &str) -> Result<Self, IdError> {
                Uuid::parse_str(text)
                    .map($name)
                    .map_err(|_| IdError::Uuid(text.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(PaymentId, "An inbound or outbound payment.");
uuid_id!(
    TransferId,
    "An internal transfer between two accounts of the bank."
);

/// Namespace of the bank's deterministic ids.
const BANK_NAMESPACE: Uuid = Uuid::from_u128(0x0ba2_c0de_5eed_4e11_8a1e_0000_0000_0001);

/// A payment id derived from the scheme's transaction id, so the same scheme message always names the same
/// payment (idempotent receipt).
pub fn payment_id_for_scheme_transaction(scheme_transaction_id: &str) -> PaymentId {
    PaymentId(uuid_v5(
        &BANK_NAMESPACE,
        format!("scheme-transaction/{scheme_transaction_id}").as_bytes(),
    ))
}

/// The id of the event a handler writes for `business_key` at `step`: the same inputs always give the same id,
/// so EventStoreDB's idempotent append turns a redelivered message's second write into a no-op.
pub fn deterministic_event_id(business_key: &str, step: &str) -> Uuid {
    uuid_v5(&BANK_NAMESPACE, format!("{business_key}/{step}").as_bytes())
}

/// `Uuid::new_v5`, hashed with ring's SHA-1 (SHA-NI where the CPU has it) instead of uuid's portable one: every
/// event a handler writes takes one, at thousands a second.
pub fn uuid_v5(namespace: &Uuid, name: &[u8]) -> Uuid {
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(namespace.as_bytes());
    context.update(name);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&context.finish().as_ref()[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids written before the change to ring's SHA-1 must still be the ids computed now.
    #[test]
    fn deterministic_ids_are_uuid_v5() {
        for name in ["", "scheme-transaction/BENCH-1", &"x".repeat(200)] {
            assert_eq!(
                uuid_v5(&BANK_NAMESPACE, name.as_bytes()),
                Uuid::new_v5(&BANK_NAMESPACE, name.as_bytes())
            );
        }
        assert_eq!(
            deterministic_event_id("payment-1", "validated"),
            Uuid::new_v5(&BANK_NAMESPACE, b"payment-1/validated")
        );
    }

    #[test]
    fn sort_codes_and_account_numbers_validate_on_parse() {
        assert_eq!(
            "12-34-56".parse::<SortCode>().map(|s| s.to_string()),
            Ok("123456".to_owned())
        );
        assert!("12345".parse::<SortCode>().is_err());
        assert!("12a456".parse::<SortCode>().is_err());
        assert_eq!(
            "01234567".parse::<AccountNumber>().map(|a| a.to_string()),
            Ok("01234567".to_owned())
        );
        assert!("1234567".parse::<AccountNumber>().is_err());
        let id: AccountId = "12345601234567".parse().expect("14 digits");
        assert_eq!(id.sort_code.as_str(), "123456");
        assert_eq!(id.account_number.as_str(), "01234567");
        assert_eq!(
            serde_json::to_string(&id).ok(),
            Some("\"12345601234567\"".to_owned())
        );
        assert!(serde_json::from_str::<AccountId>("\"1234\"").is_err());
    }

    #[test]
    fn deterministic_ids_repeat_for_the_same_inputs_only() {
        assert_eq!(
            deterministic_event_id("p1", "validated"),
            deterministic_event_id("p1", "validated")
        );
        assert_ne!(
            deterministic_event_id("p1", "validated"),
            deterministic_event_id("p1", "screened")
        );
        assert_eq!(
            payment_id_for_scheme_transaction("T1"),
            payment_id_for_scheme_transaction("T1")
        );
    }
}
