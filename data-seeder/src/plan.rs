//! What to seed: [`SeedPlan`], and the accounts it describes, each a pure function of its index so that every
//! run (and every machine) seeds the same bank.

use events::{AccountId, AccountNumber, Money, SortCode};

use crate::users::SeedUser;

/// Sanctioned names seeded when none are given: fictional, and short enough (Bacs names are at most 18
/// characters) to travel as a payer's name so the simulator can send payments that screening holds.
pub const DEFAULT_SANCTIONED_NAMES: &[&str] = &[
    "VIKTOR ORLOVSKY",
    "MARINA VOLKOVA",
    "DRAGAN PETRIC",
    "HASSAN AL NOURI",
    "IGOR BELENKO",
    "KASIMIR ZOLTAN",
    "GOLDEN CRESCENT CO",
    "NORTHSTAR SHIPPING",
];

/// The bank's own branch sort codes; accounts are spread over them.
const BRANCH_SORT_CODES: &[&str] = &["309634", "309635", "309640", "309712", "309758"];

const FIRST_NAMES: &[&str] = &[
    "OLIVIA",
    "JAMES",
    "AMELIA",
    "WILLIAM",
    "ISLA",
    "THOMAS",
    "AVA",
    "GEORGE",
    "EMILY",
    "HENRY",
    "SOPHIE",
    "ARTHUR",
    "GRACE",
    "OSCAR",
    "CHLOE",
    "HARRY",
    "RUBY",
    "JACK",
    "EVIE",
    "NOAH",
    "PRIYA",
    "ARJUN",
    "FATIMA",
    "MOHAMMED",
    "SIOBHAN",
    "CONOR",
    "AGNIESZKA",
    "TOMASZ",
    "RHIANNON",
    "DYLAN",
    "CHIOMA",
    "KWAME",
    "MEI",
    "HUW",
    "EILIDH",
    "CALLUM",
];

const SURNAMES: &[&str] = &[
    "SMITH",
    "JONES",
    "TAYLOR",
    "BROWN",
    "WILLIAMS",
    "WILSON",
    "JOHNSON",
    "DAVIES",
    "ROBINSON",
    "WRIGHT",
    "THOMPSON",
    "EVANS",
    "WALKER",
    "WHITE",
    "ROBERTS",
    "GREEN",
    "HALL",
    "WOOD",
    "JACKSON",
    "CLARKE",
    "PATEL",
    "KHAN",
    "MURPHY",
    "KELLY",
    "NOWAK",
    "OKAFOR",
    "MENSAH",
    "CHEN",
    "MACDONALD",
    "CAMPBELL",
    "HUGHES",
    "LLEWELLYN",
    "OBRIEN",
    "STEWART",
    "AHMED",
    "BUTLER",
    "FOSTER",
];

/// How an account ends up after seeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SeedStatus {
    Open,
    Blocked,
    /// Emptied (withdrawn to zero) and closed.
    Closed,
}

/// One seeded account, fully determined by its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedAccount {
    pub index: u32,
    pub id: AccountId,
    pub name: String,
    pub initial_deposit: Money,
    pub overdraft_limit: Money,
    pub status: SeedStatus,
}

/// What a run seeds. The same plan always seeds the same accounts and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedPlan {
    /// How many accounts in all, including the blocked and closed ones.
    pub accounts: u32,
    /// How many of them are blocked.
    pub blocked: u32,
    /// How many of them are closed (with a zero balance).
    pub closed: u32,
    pub sanctioned_names: Vec<String>,
    /// How many store operations to keep in flight at once.
    pub concurrency: usize,
    /// Store users to create (normally [`crate::domain_users`], with passwords the caller chose). When there are
    /// any, the seeder also secures what it writes: `account-…` streams and `sanctionedNames` get the `$acl`
    /// that lets only their domain's role write them.
    pub users: Vec<SeedUser>,
}

impl Default for SeedPlan {
    fn default() -> Self {
        Self {
            accounts: 100,
            blocked: 5,
            closed: 5,
            sanctioned_names: DEFAULT_SANCTIONED_NAMES
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            concurrency: 32,
            users: Vec::new(),
        }
    }
}

/// A plan that cannot be seeded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

impl SeedPlan {
    /// Checks that the numbers add up and the names are usable.
    pub fn validate(&self) -> Result<(), PlanError> {
        let special = u64::from(self.blocked) + u64::from(self.closed);
        if special > u64::from(self.accounts) {
            return Err(PlanError(format!(
                "{} blocked + {} closed accounts is more than the {} accounts to seed",
                self.blocked, self.closed, self.accounts
            )));
        }
        // Account numbers are a bijection of the index onto 8 digits.
        if self.accounts > 10_000_000 {
            return Err(PlanError(
                "at most 10,000,000 accounts can be seeded".to_owned(),
            ));
        }
        if let Some(empty) = self
            .sanctioned_names
            .iter()
            .find(|name| name_key(name).is_empty())
        {
            return Err(PlanError(format!(
                "sanctioned name '{empty}' has no letters or digits"
            )));
        }
        if self.concurrency == 0 {
            return Err(PlanError("concurrency must be at least 1".to_owned()));
        }
        if let Some(user) = self
            .users
            .iter()
            .find(|user| user.login.trim().is_empty() || user.password.is_empty())
        {
            return Err(PlanError(format!(
                "user '{}' needs a login and a password",
                user.login
            )));
        }
        Ok(())
    }

    /// The status of the account at `index`: the last `closed` accounts are closed, the `blocked` before them
    /// blocked, the rest open.
    fn status_of(&self, index: u32) -> SeedStatus {
        let open = self.accounts - self.blocked - self.closed;
        if index >= open + self.blocked {
            SeedStatus::Closed
        } else if index >= open {
            SeedStatus::Blocked
        } else {
            SeedStatus::Open
        }
    }

    /// Every account of the plan, in index order.
    pub fn accounts(&self) -> impl Iterator<Item = SeedAccount> + '_ {
        (0..self.accounts).map(|index| self.account(index))
    }

    /// The account at `index`.
    pub fn account(&self, index: u32) -> SeedAccount {
        let mix = spread(index);
        let sort_code: SortCode = BRANCH_SORT_CODES
            [(mix % BRANCH_SORT_CODES.len() as u64) as usize]
            .parse()
            .expect("branch sort codes are six digits");
        // A bijection of 0..10^8 (the multiplier is coprime with 10), so account numbers never collide and look
        // random rather than sequential.
        let number = (u64::from(index) * 48_271 + 31_415_926) % 100_000_000;
        let account_number: AccountNumber = format!("{number:08}")
            .parse()
            .expect("formatted account numbers are eight digits");
        let first = FIRST_NAMES[(mix / 7 % FIRST_NAMES.len() as u64) as usize];
        let last = SURNAMES[(mix / 11 % SURNAMES.len() as u64) as usize];
        let name: String = format!("{first} {last}")
            .chars()
            .take(events::bacs::MAX_NAME_LEN)
            .collect();
        // Opening balances from £10 to about £5,000, in whole pence.
        let initial_deposit = Money::from_pence(1_000 + (mix / 13 % 499_000) as i64);
        let overdraft_limit = match mix / 17 % 4 {
            0 => Money::from_pence(50_000),
            1 => Money::from_pence(100_000),
            _ => Money::ZERO,
        };
        SeedAccount {
            index,
            id: AccountId::new(sort_code, account_number),
            name,
            initial_deposit,
            overdraft_limit,
            status: self.status_of(index),
        }
    }
}

/// A well-mixed 64-bit value of the index (SplitMix64's finaliser), so neighbouring accounts differ.
fn spread(index: u32) -> u64 {
    let mut z = u64::from(index).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A name as the sanctions list compares it: upper case, letters and digits only, single spaces.
pub(crate) fn name_key(name: &str) -> String {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|token| !token.is_empty())
        .map(str::to_uppercase)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn accounts_are_deterministic_unique_and_valid() {
        let plan = SeedPlan {
            accounts: 2_000,
            blocked: 30,
            closed: 20,
            ..SeedPlan::default()
        };
        plan.validate().expect("a valid plan");
        let first: Vec<_> = plan.accounts().collect();
        let again: Vec<_> = plan.accounts().collect();
        assert_eq!(first, again);
        let ids: HashSet<_> = first.iter().map(|a| a.id).collect();
        assert_eq!(ids.len(), 2_000);
        let count = |status| first.iter().filter(|a| a.status == status).count();
        assert_eq!(count(SeedStatus::Blocked), 30);
        assert_eq!(count(SeedStatus::Closed), 20);
        for account in &first {
            assert!(account.name.len() <= events::bacs::MAX_NAME_LEN);
            assert!(
                events::bacs::is_bacs_text(&account.name),
                "{}",
                account.name
            );
            assert!(account.initial_deposit.is_positive());
        }
        for name in DEFAULT_SANCTIONED_NAMES {
            assert!(name.len() <= events::bacs::MAX_NAME_LEN, "{name}");
        }
    }

    #[test]
    fn plans_that_do_not_add_up_are_refused() {
        let plan = SeedPlan {
            accounts: 3,
            blocked: 2,
            closed: 2,
            ..SeedPlan::default()
        };
        assert!(plan.validate().is_err());
        let plan = SeedPlan {
            sanctioned_names: vec!["  -- ".to_owned()],
            ..SeedPlan::default()
        };
        assert!(plan.validate().is_err());
        let plan = SeedPlan {
            users: crate::domain_users(|_| String::new()),
            ..SeedPlan::default()
        };
        assert!(plan.validate().is_err(), "users need passwords");
    }
}
