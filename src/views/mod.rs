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

/// Links to the neighbouring pages of a list shown newest first
/// (`templates/app/pager.html`).
#[derive(Debug, Clone, Default)]
pub struct Pager {
    pub page: i64,
    pub newer: Option<String>,
    pub older: Option<String>,
}

impl Pager {
    /// `href(n)` is the address of page `n`; `has_more` says whether rows
    /// follow this page's.
    pub fn new(page: i64, has_more: bool, href: impl Fn(i64) -> String) -> Self {
        Self {
            page,
            newer: (page > 1).then(|| href(page - 1)),
            older: has_more.then(|| href(page + 1)),
        }
    }

    pub fn is_needed(&self) -> bool {
        self.newer.is_some() || self.older.is_some()
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub title: String,
    pub message: String,
    pub correlation_id: String,
}
