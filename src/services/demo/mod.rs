//! A demo organization so a newcomer can chat at once: Lighthouse Coffee
//! Roasters, a fictional roastery, with an agent and a small knowledge base.
//! Never in production.

use crate::auth::password::Password;
use crate::config::Config;
use crate::db::models::{Membership, Organization, User};
use crate::db::{DbConnection, write_transaction};
use crate::domain::{Email, Role, TenantScope};
use crate::services::accounts::{self, AccountError, Actor, Signup};
use crate::services::agents::{self, AgentError, AgentForm};
use crate::services::knowledge::{self, KnowledgeError, SourceFormat, Upload};

pub const ORGANIZATION: &str = "Lighthouse Coffee Roasters";
pub const AGENT_SLUG: &str = "barista";
/// The demo sign-in, printed at start-up: it guards nothing but demo data.
pub const EMAIL: &str = "demo@lighthouse-coffee.example";
pub const PASSWORD: &str = "harbour-beans-espresso";

const DOCUMENTS: [(&str, &str); 5] = [
    ("Shipping and delivery", include_str!("shipping.md")),
    ("Returns and refunds", include_str!("returns.md")),
    ("Coffee subscriptions", include_str!("subscriptions.md")),
    ("Brewing guide", include_str!("brewing.md")),
    ("About us", include_str!("about.md")),
];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the demo is not available in production (APP_ENV=production)")]
    Production,
    #[error("cannot create the demo account: {0}")]
    Account(#[from] AccountError),
    #[error("cannot create the demo agent: {0}")]
    Agent(#[from] AgentError),
    #[error("cannot add the demo knowledge base: {0}")]
    Knowledge(#[from] KnowledgeError),
    #[error("cannot hash the demo password: {0}")]
    Password(String),
    #[error("database: {0}")]
    Db(#[from] diesel::result::Error),
}

/// Where the demo lives.
#[derive(Debug, Clone)]
pub struct Demo {
    pub organization_slug: String,
    /// False when it was loaded before.
    pub created: bool,
}

impl Demo {
    pub fn chat_url(&self, config: &Config) -> String {
        format!(
            "{}{}",
            config.base_url.as_str().trim_end_matches('/'),
            self.chat_path()
        )
    }

    pub fn chat_path(&self) -> String {
        format!("/c/{}/{AGENT_SLUG}", self.organization_slug)
    }

    pub fn sign_in_url(config: &Config) -> String {
        format!("{}/login", config.base_url.as_str().trim_end_matches('/'))
    }
}

/// The demo organization if it exists (its owner is the demo account).
pub fn find(conn: &mut DbConnection) -> diesel::QueryResult<Option<Demo>> {
    let Ok(email) = Email::parse(EMAIL) else {
        return Ok(None);
    };
    let Some(user) = User::find_by_email(conn, &email)? else {
        return Ok(None);
    };
    Ok(Membership::organizations_of(conn, user.id)?
        .into_iter()
        .find(|(org, m)| org.name == ORGANIZATION && m.role() == Role::Owner)
        .map(|(org, _)| Demo {
            organization_slug: org.slug,
            created: false,
        }))
}

/// Loads the demo once: the organization and its verified owner, the agent, and
/// five documents (indexed by the job workers, within a second of `serve`).
/// Loading again changes nothing.
pub fn load(conn: &mut DbConnection, config: &Config) -> Result<Demo, DemoError> {
    if config.environment.is_production() {
        return Err(DemoError::Production);
    }
    if let Some(demo) = find(conn)? {
        return Ok(demo);
    }
    let email = Email::parse(EMAIL).map_err(|e| DemoError::Password(e.0))?;
    let password_hash = Password::parse(PASSWORD, Some(EMAIL))
        .map_err(|e| DemoError::Password(e.0))?
        .hash()
        .map_err(|e| DemoError::Password(e.to_string()))?;
    write_transaction(conn, |conn| {
        let (user, org): (User, Organization) = accounts::signup(
            conn,
            &Signup {
                organization: ORGANIZATION,
                name: "Dana Demo",
                email: &email,
                password_hash: &password_hash,
            },
            &config.base_url,
            "127.0.0.1",
        )?;
        User::mark_verified(conn, user.id)?;
        // The membership was made a moment ago in this transaction.
        let scope = TenantScope::verified(org.id, Some(user.id), Role::Owner);
        let actor = Actor {
            user_id: Some(user.id),
            label: &user.email,
            ip: "127.0.0.1",
        };
        let agent = agents::create(
            conn,
            &scope,
            &actor,
            &AgentForm {
                name: "Barista".into(),
                slug: Some(AGENT_SLUG.into()),
                greeting: Some(
                    "Hi! I'm the Lighthouse Coffee assistant. Ask me about delivery, returns, subscriptions or brewing."
                        .into(),
                ),
                instructions: Some(
                    "Answer questions from Lighthouse Coffee Roasters' customers using only the knowledge base. Be brief and friendly."
                        .into(),
                ),
                handoff_threshold: Some(0.35),
                ..AgentForm::default()
            },
            &config.stripe,
        )?;
        for (title, text) in DOCUMENTS {
            knowledge::add_document(
                conn,
                &scope,
                agent.id,
                Upload {
                    title: title.into(),
                    format: SourceFormat::Markdown,
                    bytes: text.as_bytes().to_vec(),
                },
                config.max_upload_bytes,
                &config.stripe,
            )?;
        }
        Ok(Demo {
            organization_slug: org.slug,
            created: true,
        })
    })
}

/// The lines a newcomer needs, logged at start-up and printed by `frontdesk demo`.
pub fn announcement(demo: &Demo, config: &Config) -> String {
    format!(
        "demo: chat with the Lighthouse Coffee agent at {} ; sign in at {} as {EMAIL} / {PASSWORD}",
        demo.chat_url(config),
        Demo::sign_in_url(config)
    )
}
