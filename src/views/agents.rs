//! Pages for agents, their knowledge base and their conversations.

use askama::Template;
use askama_web::WebTemplate;

use super::account::{AppChrome, FieldErrors};

#[derive(Debug, Clone)]
pub struct AgentRow {
    pub id: i64,
    pub name: String,
    pub slug: String,
    pub provider: String,
    pub enabled: bool,
    pub chat_url: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "app/agents.html")]
pub struct AgentsPage {
    pub chrome: AppChrome,
    pub agents: Vec<AgentRow>,
    pub can_edit: bool,
    /// What was typed into the new-agent form.
    pub new_agent: NewAgentTyped,
    pub errors: FieldErrors,
    /// A chat address without its last part: `https://…/c/{organization}/`.
    pub chat_base: String,
    pub provider_keys: Vec<ProviderKeyRow>,
    /// What was typed into the provider key form (never the key itself).
    pub key_form: ProviderKeyTyped,
}

#[derive(Debug, Clone, Default)]
pub struct NewAgentTyped {
    pub name: String,
    pub slug: String,
}

/// An organization's stored provider key, as far as it is ever shown.
#[derive(Debug, Clone)]
pub struct ProviderKeyRow {
    pub provider: String,
    pub key_hint: String,
    pub base_url: String,
    pub updated: String,
}

#[derive(Debug, Clone, Default)]
pub struct ProviderKeyTyped {
    pub provider: String,
    pub base_url: String,
}

#[derive(Debug, Clone)]
pub struct DocumentRow {
    pub id: i64,
    pub title: String,
    pub format: String,
    pub size: String,
    pub status: String,
    pub chunks: i32,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PassageRow {
    pub title: String,
    pub heading: String,
    pub content: String,
    pub score: String,
}

/// The agent's settings as shown in its form (what was typed, after an error).
#[derive(Debug, Clone, Default)]
pub struct AgentFields {
    pub name: String,
    pub slug: String,
    pub greeting: String,
    pub instructions: String,
    pub provider: String,
    pub model: String,
    pub temperature: String,
    pub handoff_threshold: String,
    pub allowed_origins: String,
    pub enabled: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "app/agent.html")]
pub struct AgentPage {
    pub chrome: AppChrome,
    pub id: i64,
    pub slug: String,
    /// Addresses it had before that still lead to it, newest first.
    pub former_slugs: Vec<String>,
    /// How many new former addresses it may leave behind in 30 days.
    pub max_changes: i64,
    pub chat_url: String,
    pub embed: String,
    /// The saved list of sites allowed to embed it is empty: the widget answers nowhere yet.
    pub embeddable_nowhere: bool,
    pub fields: AgentFields,
    pub errors: FieldErrors,
    pub documents: Vec<DocumentRow>,
    pub indexing: bool,
    pub accepted: String,
    pub query: String,
    pub passages: Option<Vec<PassageRow>>,
    pub can_edit: bool,
    /// What was pasted, kept when it was refused.
    pub paste_title: String,
    pub paste_text: String,
}

#[derive(Debug, Clone)]
pub struct ConversationRow {
    pub id: i64,
    pub agent_name: String,
    pub channel: String,
    pub status: String,
    pub visitor: String,
    /// The visitor's first message, on one line (when there is no summary yet).
    pub question: String,
    pub summary: String,
    pub updated: String,
}

#[derive(Debug, Clone)]
pub struct AgentChoice {
    pub id: i64,
    pub name: String,
    pub selected: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "app/conversations.html")]
pub struct ConversationsPage {
    pub chrome: AppChrome,
    pub rows: Vec<ConversationRow>,
    pub agents: Vec<AgentChoice>,
    pub status: String,
    pub from: String,
    pub to: String,
    pub q: String,
    pub error: Option<String>,
    pub pager: super::Pager,
}

impl ConversationsPage {
    /// Some filter is set: an empty list says so, not "no conversations yet".
    pub fn filtered(&self) -> bool {
        self.agents.iter().any(|a| a.selected)
            || !self.status.is_empty()
            || !self.from.is_empty()
            || !self.to.is_empty()
            || !self.q.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct TranscriptRow {
    pub visitor: bool,
    /// A reply written by someone from the team.
    pub staff: bool,
    pub content: String,
    pub meta: String,
    pub citations: Vec<String>,
    pub handoff: bool,
}

impl TranscriptRow {
    /// The agent's Markdown as safe HTML (visitors' messages stay plain text).
    pub fn formatted(&self) -> String {
        super::markdown::to_safe_html(&self.content)
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "app/conversation.html")]
pub struct ConversationPage {
    pub chrome: AppChrome,
    /// May resolve or reopen it.
    pub can_respond: bool,
    /// Owners and admins may erase it.
    pub can_delete: bool,
    pub id: i64,
    pub agent_name: String,
    pub channel: String,
    pub status: String,
    pub visitor: String,
    pub summary: String,
    pub started: String,
    pub messages: Vec<TranscriptRow>,
    /// Its ticket's id and status, once it was handed to the team.
    pub ticket: Option<(i64, String)>,
}
