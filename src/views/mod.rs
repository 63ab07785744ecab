//! One askama struct per page; templates never reach the database.

pub mod account;
pub mod agents;
pub mod billing;
pub mod chat;
pub mod markdown;

use askama::Template;
use askama_web::WebTemplate;

#[derive(Template, WebTemplate)]
#[template(path = "index.html")]
pub struct IndexPage;

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub title: String,
    pub message: String,
    pub correlation_id: String,
}
