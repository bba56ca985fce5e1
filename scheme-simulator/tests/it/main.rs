//! scheme-simulator's one integration-test binary: the simulator runs against eventstore-lite in memory and a
//! fake bank (a tiny axum app on port 0) that records what it receives and lists accounts and sanctioned names.

mod helpers;

mod forwarding;
mod load_and_files;
