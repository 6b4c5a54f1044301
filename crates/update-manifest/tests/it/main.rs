//! update-manifest's integration tests: fixtures named for intent, key
//! rotation, and property tests with adversarial inputs.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod adversarial;
mod common;
mod fixtures;
mod rotation;
