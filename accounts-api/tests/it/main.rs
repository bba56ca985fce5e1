//! accounts-api's one integration-test binary: each test starts eventstore-lite in memory and the service on a
//! random port (`spawn_app`), and talks to it over HTTP as a client would.

mod helpers;

mod accounts;
mod posting;
mod read_model;
mod time_machine;
mod transfers;
