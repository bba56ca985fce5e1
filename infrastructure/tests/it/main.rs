//! The infrastructure crate's one integration-test binary: every test that needs an event store starts
//! eventstore-lite in-process on a random port and talks to it through the official client, like a service.

mod helpers;

mod http;
mod ownership;
mod projector;
mod repository;
mod store;
mod worker;
