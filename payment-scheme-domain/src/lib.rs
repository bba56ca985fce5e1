//! payment-scheme-domain: the scheme gateway and the payment process managers. Owns `inboundPayment-…` and
//! `outboundPayment-…` streams.
//!
//! - [`validation`]: Bacs gateway validation of inbound payments.

pub mod validation;
