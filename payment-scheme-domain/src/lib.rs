//! payment-scheme-domain: the scheme gateway and the payment process managers. Owns `inboundPayment-…` and
//! `outboundPayment-…` streams.
//!
//! - [`validation`]: Bacs gateway validation of inbound payments.
//! - [`inbound`]: the inbound payment process (aggregate and stage handlers).

pub mod inbound;
pub mod validation;
