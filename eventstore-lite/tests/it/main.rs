//! Integration tests: eventstore-lite started in-process on a random port, driven only through the official
//! `eventstore` client (and raw HTTP/1.1 for the HTTP endpoints).

mod helpers;

mod append;
mod bad_input;
mod delete;
mod http_endpoints;
mod metadata;
mod persistent;
mod projections;
mod projections_js;
mod read;
mod security;
mod server_features;
mod storage;
mod subscriptions;
