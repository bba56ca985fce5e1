//! sanctions-api: the Sanctions domain service. Owns `sanctionedNames` and `screening-…` streams.
//!
//! - [`matching`]: fuzzy name screening.

pub mod matching;
