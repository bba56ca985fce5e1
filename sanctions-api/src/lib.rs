//! sanctions-api: the Sanctions domain service. Owns `sanctionedNames` and `screening-…` streams.
//!
//! - [`matching`]: fuzzy name screening.
//! - [`list`]: the sanctioned-names list aggregate.

pub mod list;
pub mod matching;
