#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
//! Black-box tests of the real server over HTTP, on SQLite and PostgreSQL.

mod helpers;

mod accounts;
mod addresses;
mod agents;
mod api_edge;
mod assets;
mod backup;
mod billing;
mod chat;
mod errors;
mod fake_llm;
mod fake_stripe;
mod fuzz;
mod headers;
mod jobs;
mod metrics;
mod probes;
mod schema;
mod smtp;
mod tenancy;
mod tickets;

mod browser;
mod cli;
