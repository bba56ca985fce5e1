//! data-seeder's one integration-test binary: seeds an in-memory eventstore-lite through the official client.

mod helpers;

mod seeding;
mod users;
