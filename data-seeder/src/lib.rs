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
//! - `projections`: [`deploy_projections`] creates or updates the bank's JavaScript projections
//!   (`projections-js/`, [`BANK_PROJECTIONS`]).
//! - `users`: a store user per domain service ([`DOMAIN_USERS`], [`domain_users`]) made through the store's
//!   HTTP users API ([`create_users`]), and the domains' roles that stream ACLs name.
//!
//! Idempotency: an account stream is written only if it does not exist (`ExpectedRevision::NoStream`, with
//! deterministic event ids, so even two seeders racing write it once); a sanctioned name is appended only if its
//! deterministic event id is not in `sanctionedNames` yet; groups are created unless they exist; a user that
//! exists (409) is left as it is; a stream whose ACL is already its domain's is not written again.

mod groups;
mod plan;
mod projections;
mod seed;
mod users;

pub use groups::{consumer_groups, ConsumerGroup};
pub use plan::{PlanError, SeedAccount, SeedPlan, SeedStatus, DEFAULT_SANCTIONED_NAMES};
pub use projections::{deploy_projections, BankProjection, ProjectionsReport, BANK_PROJECTIONS};
pub use seed::{seed, Progress, SeedReport, Stage};
pub use users::{
    create_users, domain_users, DomainUser, SeedUser, UsersReport, ACCOUNTS_ROLE, DOMAIN_USERS,
    OPS_GROUP, PAYMENTS_ROLE, SANCTIONS_ROLE, SCHEME_ROLE,
};
