//! The public chat page.

use askama::Template;
use askama_web::WebTemplate;

#[derive(Template, WebTemplate)]
#[template(path = "chat.html")]
pub struct ChatPage {
    pub org_name: String,
    pub org_slug: String,
    pub agent_name: String,
    pub agent_slug: String,
    /// A former address of this agent the visitor came through
    /// (`org/agent`), checked by the server.
    pub from: Option<String>,
}
