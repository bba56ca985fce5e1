//! data-seeder: prepares an event store for the bank, once and idempotently, writing directly through
//! `infrastructure` and the `events` published language (never through the services, on none of which it
//! depends).
//!
//! - `plan`: [`SeedPlan`] (how many accounts, how many blocked / closed, which sanctioned names) and the
//!   deterministic accounts it describes ([`SeedAccount`], [`SeedPlan::accounts`]): the same index always gives
//!   the same sort code, account number, name, deposit and overdraft, so runs are reproducible.
//! - `groups`: [`consumer_groups`], every persistent subscription group of the bank with the settings its owning
//!   service uses.
//! - `seed`: [`seed`], which writes the plan and reports what it created and what was already there
//!   ([`SeedReport`]), calling back with [`Progress`] as it goes.
//!
//! Idempotency: an account stream is written only if it does not exist (`ExpectedRevision::NoStream`, with
//! deterministic event ids, so even two seeders racing write it once); a sanctioned name is appended only if its
//! deterministic event id is not in `sanctionedNames` yet; groups are created unless they exist.

mod groups;
mod plan;
mod seed;

pub use groups::{consumer_groups, ConsumerGroup};
pub use plan::{PlanError, SeedAccount, SeedPlan, SeedStatus, DEFAULT_SANCTIONED_NAMES};
pub use seed::{seed, Progress, SeedReport, Stage};
