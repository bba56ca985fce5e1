//! accounts-api: the Accounts domain service. Owns `account-…` and `transfer-…` streams.
//!
//! - [`account`]: the account aggregate (state from events, decisions as events).

pub mod account;
