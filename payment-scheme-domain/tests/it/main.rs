//! payment-scheme-domain's one integration-test binary: each test starts eventstore-lite in memory and the
//! service on a random port, and drives the payment process through HTTP and the events of the other domains.

mod helpers;

mod process;
mod receive;
