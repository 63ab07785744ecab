//! The product's work behind the routes: accounts, the knowledge base and chat
//! engine, the team's tickets, the job queue and the email it carries.

pub mod accounts;
pub mod agents;
pub mod billing;
pub mod chat;
pub mod demo;
pub mod export;
pub mod jobs;
pub mod knowledge;
pub mod mail;
pub mod tickets;
