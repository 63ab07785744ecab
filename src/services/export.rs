//! One organization's data as a JSON document (`frontdesk export`): what a
//! business is owed under GDPR/DPDP access and portability requests, and what it
//! takes along when it leaves.
//!
//! Read in one snapshot (a read-only repeatable-read transaction on PostgreSQL,
//! one read transaction on SQLite), so a conversation written mid-export is
//! either whole or absent. Conversations are streamed a page at a time, so a
//! large organization does not have to fit in memory. Secrets never leave:
//! every record below lists the fields it exports, and password hashes, token
//! hashes, API key hashes and sealed provider keys are not among them.

use std::collections::HashMap;
use std::io::Write;

use chrono::NaiveDateTime;
use diesel::{Connection as _, RunQueryDsl as _};
use serde::Serialize;

use crate::db::models::{
    Agent, AgentFormerSlug, ApiKey, AuditEntry, BillingAccount, Conversation, Document, Invitation,
    Invoice, Membership, Organization, OrganizationFormerSlug, ProviderCredential, UsageCounter,
};
use crate::db::{Backend, DbConnection};
use crate::domain::{AgentId, ConversationId, Role, Slug, TenantScope};
use crate::services::accounts::{Actor, audit};

/// Names the document, so tools can tell what they were given.
pub const FORMAT: &str = "frontdesk.organization-export";
/// Raised when a field changes meaning or disappears; new fields keep it.
pub const VERSION: u32 = 1;
const CONVERSATION_PAGE: i64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no organization has the slug {0:?}")]
    UnknownOrganization(String),
    #[error("cannot read the organization's data: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot encode the export: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What was exported, for the operator's terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub organization_id: crate::domain::OrganizationId,
    pub organization: String,
    pub members: usize,
    pub agents: usize,
    pub documents: usize,
    pub conversations: usize,
    pub messages: usize,
}

/// Writes the organization `slug` to `out` as one JSON object. Once the file is
/// in place, [`record_export`] puts it in the organization's audit log.
pub fn export_organization(
    conn: &mut DbConnection,
    slug: &Slug,
    out: &mut impl Write,
) -> Result<ExportSummary, ExportError> {
    // A former address names it too (an operator may only know the old one).
    let unknown = || ExportError::UnknownOrganization(slug.as_str().to_string());
    let (org, _) = Organization::public(conn, slug)?.ok_or_else(unknown)?;
    // An operator at the command line speaks for the organization as its owner would.
    let scope = TenantScope::verified(org.id, None, Role::Owner);
    let summary = conn.transaction(|conn| {
        if conn.backend() == Backend::Postgres {
            diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(conn)?;
        }
        // Read again in the snapshot, so its slug agrees with its former ones.
        let org = Organization::find(conn, org.id)?.ok_or_else(unknown)?;
        write_document(conn, &scope, &org, out)
    })?;
    out.flush()?;
    Ok(summary)
}

/// The audit log's line for an export that was delivered (written in full and
/// given its name), so a failed one is never recorded as made.
pub fn record_export(conn: &mut DbConnection, summary: &ExportSummary) -> diesel::QueryResult<()> {
    let detail = format!(
        "{} members, {} agents, {} documents, {} conversations, {} messages",
        summary.members, summary.agents, summary.documents, summary.conversations, summary.messages
    );
    let operator = Actor {
        user_id: None,
        label: "operator (command line)",
        ip: "",
    };
    audit(
        conn,
        Some(summary.organization_id),
        &operator,
        "organization.exported",
        Some(&summary.organization),
        Some(&detail),
    )
}

fn write_document(
    conn: &mut DbConnection,
    scope: &TenantScope,
    org: &Organization,
    out: &mut impl Write,
) -> Result<ExportSummary, ExportError> {
    let members = Membership::list(conn, scope)?;
    let agents = Agent::list(conn, scope)?;
    let mut documents = Vec::new();
    for agent in &agents {
        documents.extend(Document::list(conn, scope, agent.id)?);
    }
    let slugs: HashMap<AgentId, &str> = agents.iter().map(|a| (a.id, a.slug.as_str())).collect();
    let slug_of = |id: AgentId| slugs.get(&id).copied().unwrap_or_default().to_string();

    let mut summary = ExportSummary {
        organization_id: org.id,
        organization: org.slug.clone(),
        members: members.len(),
        agents: agents.len(),
        documents: documents.len(),
        conversations: 0,
        messages: 0,
    };

    out.write_all(b"{")?;
    field(out, "format", &FORMAT, true)?;
    field(out, "version", &VERSION, false)?;
    field(out, "exportedAt", &iso(crate::domain::now()), false)?;
    field(
        out,
        "organization",
        &ExportedOrganization {
            id: org.id.0,
            slug: &org.slug,
            former_slugs: OrganizationFormerSlug::slugs(conn, scope)?,
            name: &org.name,
            disabled_at: org.disabled_at.map(iso),
            created_at: iso(org.created_at),
        },
        false,
    )?;
    let members: Vec<_> = members
        .iter()
        .map(|m| ExportedMember {
            user_id: m.user.id.0,
            email: &m.user.email,
            name: &m.user.name,
            role: &m.membership.role,
            email_verified_at: m.user.email_verified_at.map(iso),
            member_since: iso(m.membership.created_at),
        })
        .collect();
    field(out, "members", &members, false)?;
    let invitations: Vec<_> = Invitation::all(conn, scope)?
        .into_iter()
        .map(|i| ExportedInvitation {
            email: i.email,
            role: i.role,
            invited_by_user_id: i.invited_by.map(|u| u.0),
            created_at: iso(i.created_at),
            expires_at: iso(i.expires_at),
            accepted_at: i.accepted_at.map(iso),
            revoked_at: i.revoked_at.map(iso),
        })
        .collect();
    field(out, "invitations", &invitations, false)?;
    let exported_agents = agents
        .iter()
        .map(|a| {
            let former_slugs = AgentFormerSlug::slugs(conn, scope, a.id)?;
            Ok(ExportedAgent {
                id: a.id.0,
                name: &a.name,
                slug: &a.slug,
                former_slugs,
                greeting: &a.greeting,
                instructions: &a.instructions,
                provider: a.provider.as_deref(),
                model: a.model.as_deref(),
                temperature: a.temperature,
                handoff_threshold: a.handoff_threshold,
                allowed_origins: a.origins().collect(),
                enabled: a.enabled,
                created_at: iso(a.created_at),
                updated_at: iso(a.updated_at),
            })
        })
        .collect::<Result<Vec<_>, ExportError>>()?;
    field(out, "agents", &exported_agents, false)?;
    let exported_documents: Vec<_> = documents
        .iter()
        .map(|d| ExportedDocument {
            id: d.id.0,
            agent: slug_of(d.agent_id),
            title: &d.title,
            format: &d.format,
            size_bytes: d.size_bytes,
            status: &d.status,
            content: &d.content,
            created_at: iso(d.created_at),
        })
        .collect();
    field(out, "knowledgeDocuments", &exported_documents, false)?;
    let keys: Vec<_> = ApiKey::list(conn, scope)?
        .into_iter()
        .map(|k| ExportedApiKey {
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes,
            created_by_user_id: k.created_by.map(|u| u.0),
            created_at: iso(k.created_at),
            last_used_at: k.last_used_at.map(iso),
            revoked_at: k.revoked_at.map(iso),
        })
        .collect();
    field(out, "apiKeys", &keys, false)?;
    let credentials: Vec<_> = ProviderCredential::list(conn, scope)?
        .into_iter()
        .map(|c| ExportedCredential {
            provider: c.provider,
            base_url: c.base_url,
            key_hint: c.key_hint,
            updated_at: iso(c.updated_at),
        })
        .collect();
    field(out, "providerKeys", &credentials, false)?;
    let billing = BillingAccount::find(conn, scope)?.map(|b| ExportedBilling {
        plan: b.plan,
        status: b.status,
        stripe_customer_id: b.stripe_customer_id,
        stripe_subscription_id: b.stripe_subscription_id,
        current_period_start: b.current_period_start.map(iso),
        current_period_end: b.current_period_end.map(iso),
        cancel_at_period_end: b.cancel_at_period_end,
        trial_end: b.trial_end.map(iso),
        past_due_since: b.past_due_since.map(iso),
    });
    field(out, "billing", &billing, false)?;
    let invoices: Vec<_> = Invoice::recent(conn, scope, i64::MAX)?
        .into_iter()
        .map(|i| ExportedInvoice {
            stripe_invoice_id: i.stripe_invoice_id,
            number: i.number,
            status: i.status,
            currency: i.currency,
            amount_due: i.amount_due,
            amount_paid: i.amount_paid,
            hosted_invoice_url: i.hosted_invoice_url,
            created: i.stripe_created,
        })
        .collect();
    field(out, "invoices", &invoices, false)?;
    let usage: Vec<_> = UsageCounter::history(conn, scope)?
        .into_iter()
        .map(|(period, messages)| ExportedUsage { period, messages })
        .collect();
    field(out, "usage", &usage, false)?;
    let audit_log: Vec<_> = AuditEntry::for_organization(conn, scope, None, i64::MAX, 0)?
        .into_iter()
        .map(|e| ExportedAuditEntry {
            action: e.action,
            actor: e.actor_label,
            actor_user_id: e.actor_user_id.map(|u| u.0),
            target: e.target,
            detail: e.detail,
            ip: e.ip,
            at: iso(e.created_at),
        })
        .collect();
    field(out, "auditLog", &audit_log, false)?;
    let tickets: Vec<_> = crate::db::models::Ticket::all_with_events(conn, scope)?
        .into_iter()
        .map(|(t, events)| ExportedTicket {
            id: t.id.0,
            conversation_id: t.conversation_id.0,
            subject: t.subject,
            status: t.status,
            assignee_user_id: t.assignee_id.map(|u| u.0),
            created_at: iso(t.created_at),
            solved_at: t.solved_at.map(iso),
            events: events
                .into_iter()
                .map(|e| ExportedTicketEvent {
                    kind: e.kind,
                    actor: e.actor_label,
                    actor_user_id: e.actor_id.map(|u| u.0),
                    body: e.body,
                    at: iso(e.created_at),
                })
                .collect(),
        })
        .collect();
    field(out, "tickets", &tickets, false)?;

    out.write_all(b",\"conversations\":[")?;
    let mut after: Option<ConversationId> = None;
    loop {
        let page = Conversation::page_after(conn, scope, after, CONVERSATION_PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for conversation in &page {
            let messages = conversation.messages(conn)?;
            summary.messages += messages.len();
            if summary.conversations > 0 {
                out.write_all(b",")?;
            }
            summary.conversations += 1;
            serde_json::to_writer(
                &mut *out,
                &ExportedConversation {
                    id: conversation.id.0,
                    agent: slug_of(conversation.agent_id),
                    channel: &conversation.channel,
                    visitor_id: &conversation.visitor_id,
                    visitor_ip: &conversation.visitor_ip,
                    status: &conversation.status,
                    summary: conversation.summary.as_deref(),
                    created_at: iso(conversation.created_at),
                    updated_at: iso(conversation.updated_at),
                    messages: messages
                        .iter()
                        .map(|m| ExportedMessage {
                            role: &m.role,
                            visitor_id: m.visitor_id.as_deref(),
                            visitor_ip: m.visitor_ip.as_deref(),
                            content: &m.content,
                            provider: m.provider.as_deref(),
                            latency_ms: m.latency_ms,
                            tokens_in: m.tokens_in,
                            tokens_out: m.tokens_out,
                            citations: serde_json::from_str(&m.citations)
                                .unwrap_or(serde_json::Value::Null),
                            handoff_offered: m.handoff_offered,
                            created_at: iso(m.created_at),
                        })
                        .collect(),
                },
            )?;
        }
    }
    out.write_all(b"]}\n")?;
    Ok(summary)
}

/// Writes `"name":value`, preceded by a comma unless it is the first field.
fn field(
    out: &mut impl Write,
    name: &str,
    value: &impl Serialize,
    first: bool,
) -> Result<(), ExportError> {
    if !first {
        out.write_all(b",")?;
    }
    serde_json::to_writer(&mut *out, name)?;
    out.write_all(b":")?;
    serde_json::to_writer(&mut *out, value)?;
    Ok(())
}

/// Stored times are naive UTC; the export says so.
fn iso(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedOrganization<'a> {
    id: i64,
    slug: &'a str,
    /// Addresses it had before that still lead to it, newest first.
    former_slugs: Vec<String>,
    name: &'a str,
    disabled_at: Option<String>,
    created_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedMember<'a> {
    user_id: i64,
    email: &'a str,
    name: &'a str,
    role: &'a str,
    email_verified_at: Option<String>,
    member_since: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedInvitation {
    email: String,
    role: String,
    invited_by_user_id: Option<i64>,
    created_at: String,
    expires_at: String,
    accepted_at: Option<String>,
    revoked_at: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedAgent<'a> {
    id: i64,
    name: &'a str,
    slug: &'a str,
    former_slugs: Vec<String>,
    greeting: &'a str,
    instructions: &'a str,
    provider: Option<&'a str>,
    model: Option<&'a str>,
    temperature: f64,
    handoff_threshold: f64,
    allowed_origins: Vec<&'a str>,
    enabled: bool,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedDocument<'a> {
    id: i64,
    agent: String,
    title: &'a str,
    format: &'a str,
    size_bytes: i32,
    status: &'a str,
    /// The extracted text the agent answers from.
    content: &'a str,
    created_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedApiKey {
    name: String,
    prefix: String,
    scopes: String,
    created_by_user_id: Option<i64>,
    created_at: String,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedCredential {
    provider: String,
    base_url: Option<String>,
    /// The last characters only; the key itself stays sealed on the server.
    key_hint: String,
    updated_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedBilling {
    plan: String,
    status: String,
    stripe_customer_id: Option<String>,
    stripe_subscription_id: Option<String>,
    current_period_start: Option<String>,
    current_period_end: Option<String>,
    cancel_at_period_end: bool,
    trial_end: Option<String>,
    past_due_since: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedInvoice {
    stripe_invoice_id: String,
    number: Option<String>,
    status: String,
    currency: String,
    amount_due: i64,
    amount_paid: i64,
    hosted_invoice_url: Option<String>,
    /// Unix seconds, as Stripe gives it.
    created: i64,
}

#[derive(Serialize)]
struct ExportedUsage {
    period: String,
    messages: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedAuditEntry {
    action: String,
    actor: String,
    actor_user_id: Option<i64>,
    target: Option<String>,
    detail: Option<String>,
    ip: Option<String>,
    at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedTicket {
    id: i64,
    conversation_id: i64,
    subject: String,
    status: String,
    assignee_user_id: Option<i64>,
    created_at: String,
    solved_at: Option<String>,
    events: Vec<ExportedTicketEvent>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedTicketEvent {
    kind: String,
    actor: String,
    actor_user_id: Option<i64>,
    body: String,
    at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedConversation<'a> {
    id: i64,
    agent: String,
    channel: &'a str,
    visitor_id: &'a str,
    visitor_ip: &'a str,
    status: &'a str,
    summary: Option<&'a str>,
    created_at: String,
    updated_at: String,
    messages: Vec<ExportedMessage<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportedMessage<'a> {
    role: &'a str,
    /// Who sent a visitor's message, and from where: personal data, which an
    /// access request covers (each message keeps its own).
    visitor_id: Option<&'a str>,
    visitor_ip: Option<&'a str>,
    content: &'a str,
    provider: Option<&'a str>,
    latency_ms: Option<i32>,
    tokens_in: Option<i32>,
    tokens_out: Option<i32>,
    citations: serde_json::Value,
    handoff_offered: bool,
    created_at: String,
}
