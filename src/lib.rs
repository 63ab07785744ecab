//! Frontdesk: AI customer-conversation agents, multi-tenant, in one binary.

pub mod assets;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod error;
pub mod files;
pub mod rate_limit;
pub mod routes;
pub mod security;
pub mod services;
pub mod startup;
pub mod telemetry;
pub mod views;
pub mod wording;
