//! End-to-end tests of the whole bank through its HTTP APIs, with eventstore-lite in-process.

mod compose;
mod pipeline;
mod projections;
mod security;
