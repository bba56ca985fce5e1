//! data-seeder's one integration-test binary: seeds an in-memory eventstore-lite through the official client.

mod helpers;

mod projections;
mod seeding;
mod users;
