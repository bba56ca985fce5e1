//! sanctions-api's one integration-test binary: each test starts eventstore-lite in memory and the service on a
//! random port, and talks to it over HTTP (and, for screening, appends the validated payments it consumes).

mod helpers;

mod held;
mod names;
