//! Work that outlives a request: the job queue and the email it carries.

pub mod accounts;
pub mod jobs;
pub mod mail;
