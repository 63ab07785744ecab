//! JSON API for agents, their knowledge base and their conversations
//! (`/api/v1/agents`, `/documents`, `/conversations`), for API keys and sessions.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::json::Json;
use serde::{Deserialize, Serialize};

use super::api::{ErrorJson, List, iso};
use crate::auth::extractors::{ApiCaller, client_ip};
use crate::db::models::conversation::{self, STATUSES};
use crate::db::models::{
    Agent, AgentFormerSlug, Conversation, ConversationFilter, Document, NewConversation,
    ProviderCredential,
};
use crate::domain::{AgentId, ConversationId, DocumentId, Permission};
use crate::error::{AppError, AppResult};
use crate::services::accounts::Actor;
use crate::services::agents::{self, AgentForm};
use crate::services::chat::Citation;
use crate::services::knowledge::{self, ScoredPassage, SourceFormat, Upload};
use crate::startup::AppState;

pub(crate) fn actor<'a>(
    scope: &crate::domain::TenantScope,
    label: &'a str,
    ip: &'a str,
) -> Actor<'a> {
    Actor {
        user_id: scope.user_id(),
        label,
        ip,
    }
}

/// A 201 whose `Location` is where the new thing is read.
fn created(location: &str) -> actix_web::HttpResponseBuilder {
    let mut res = HttpResponse::Created();
    res.insert_header((header::LOCATION, location.to_string()));
    res
}

fn require(caller: &ApiCaller, permission: Permission) -> AppResult<()> {
    caller.require_write()?;
    may_read(caller, permission)
}

/// For reads only those who may change a thing see (a read-only key acts as a
/// viewer).
fn may_read(caller: &ApiCaller, permission: Permission) -> AppResult<()> {
    if caller.scope.role().can(permission) {
        Ok(())
    } else {
        Err(AppError::Forbidden("Your role does not allow this.".into()))
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentJson {
    id: i64,
    name: String,
    slug: String,
    /// Addresses it had before, newest first: they still lead to it.
    former_slugs: Vec<String>,
    greeting: String,
    instructions: String,
    provider: Option<String>,
    model: Option<String>,
    temperature: f64,
    handoff_threshold: f64,
    allowed_origins: Vec<String>,
    enabled: bool,
    chat_url: String,
    created_at: String,
}

/// What an agent's JSON needs besides the agent: its organization's slug and
/// the former slugs of the organization's agents.
struct Addresses {
    org_slug: String,
    former: HashMap<AgentId, Vec<String>>,
}

/// Read in the same database call as the agents they address (one trip to
/// the blocking pool per request, not two).
fn addresses(
    conn: &mut crate::db::DbConnection,
    scope: &crate::domain::TenantScope,
) -> AppResult<Addresses> {
    let org_slug = crate::db::models::Organization::find(conn, scope.organization_id())?
        .map(|o| o.slug)
        .ok_or(AppError::NotFound)?;
    let mut former: HashMap<AgentId, Vec<String>> = HashMap::new();
    for (agent, slug) in AgentFormerSlug::of_organization(conn, scope)? {
        former.entry(agent).or_default().push(slug);
    }
    Ok(Addresses { org_slug, former })
}

fn agent_json(a: Agent, addresses: &Addresses, base: &url::Url) -> AgentJson {
    AgentJson {
        chat_url: format!(
            "{}/c/{}/{}",
            base.as_str().trim_end_matches('/'),
            addresses.org_slug,
            a.slug
        ),
        allowed_origins: a.origins().map(str::to_string).collect(),
        former_slugs: addresses.former.get(&a.id).cloned().unwrap_or_default(),
        id: a.id.0,
        name: a.name,
        slug: a.slug,
        greeting: a.greeting,
        instructions: a.instructions,
        provider: a.provider,
        model: a.model,
        temperature: a.temperature,
        handoff_threshold: a.handoff_threshold,
        enabled: a.enabled,
        created_at: iso(a.created_at),
    }
}

#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", security(("api_key" = [])), responses((status = 200, body = List<AgentJson>)))]
pub async fn list_agents(state: web::Data<AppState>, caller: ApiCaller) -> AppResult<HttpResponse> {
    let scope = caller.scope.clone();
    let (list, addresses) = state
        .db(move |conn| Ok((Agent::list(conn, &scope)?, addresses(conn, &scope)?)))
        .await?;
    Ok(HttpResponse::Ok().json(List {
        data: list
            .into_iter()
            .map(|a| agent_json(a, &addresses, &state.config.base_url))
            .collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", security(("api_key" = [])), request_body = AgentForm,
    responses((status = 201, body = AgentJson, headers(("Location" = String, description = "`/api/v1/agents/{id}` of the new one"))), (status = 402, body = ErrorJson, description = "The plan's agent limit is reached"), (status = 409, body = ErrorJson, description = "Another agent uses or used the slug"), (status = 422, body = ErrorJson)))]
pub async fn create_agent(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    body: Json<AgentForm>,
) -> AppResult<HttpResponse> {
    require(&caller, Permission::ManageSettings)?;
    let (scope, label, ip) = (caller.scope.clone(), caller.label.clone(), client_ip(&req));
    let form = body.into_inner();
    let billing = state.config.stripe.clone();
    let (agent, addresses) = state
        .db(move |conn| {
            let agent = agents::create(conn, &scope, &actor(&scope, &label, &ip), &form, &billing)?;
            Ok((agent, addresses(conn, &scope)?))
        })
        .await?;
    Ok(
        created(&format!("/api/v1/agents/{}", agent.id)).json(agent_json(
            agent,
            &addresses,
            &state.config.base_url,
        )),
    )
}

#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "agents", security(("api_key" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = AgentJson), (status = 404, body = ErrorJson)))]
pub async fn get_agent(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let (scope, id) = (caller.scope.clone(), AgentId(path.into_inner()));
    let (agent, addresses) = state
        .db(move |conn| {
            let agent = Agent::find(conn, &scope, id)?.ok_or(AppError::NotFound)?;
            Ok((agent, addresses(conn, &scope)?))
        })
        .await?;
    Ok(HttpResponse::Ok().json(agent_json(agent, &addresses, &state.config.base_url)))
}

#[utoipa::path(put, path = "/api/v1/agents/{id}", tag = "agents", security(("api_key" = [])), params(("id" = i64, Path)), request_body = AgentForm,
    responses((status = 200, body = AgentJson), (status = 404, body = ErrorJson), (status = 409, body = ErrorJson, description = "Another agent uses or used the slug"), (status = 422, body = ErrorJson)))]
pub async fn update_agent(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
    body: Json<AgentForm>,
) -> AppResult<HttpResponse> {
    require(&caller, Permission::ManageSettings)?;
    let (scope, label, ip) = (caller.scope.clone(), caller.label.clone(), client_ip(&req));
    let (id, form) = (AgentId(path.into_inner()), body.into_inner());
    let (agent, addresses) = state
        .db(move |conn| {
            let agent = agents::update(conn, &scope, &actor(&scope, &label, &ip), id, &form)?;
            Ok((agent, addresses(conn, &scope)?))
        })
        .await?;
    Ok(HttpResponse::Ok().json(agent_json(agent, &addresses, &state.config.base_url)))
}

#[utoipa::path(delete, path = "/api/v1/agents/{id}", tag = "agents", security(("api_key" = [])), params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorJson)))]
pub async fn delete_agent(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    require(&caller, Permission::ManageSettings)?;
    let (scope, label, ip) = (caller.scope.clone(), caller.label.clone(), client_ip(&req));
    let id = AgentId(path.into_inner());
    state
        .db(move |conn| {
            agents::delete(conn, &scope, &actor(&scope, &label, &ip), id).map_err(AppError::from)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentJson {
    id: i64,
    agent_id: i64,
    title: String,
    format: String,
    size_bytes: i32,
    status: String,
    chunk_count: i32,
    error: Option<String>,
    created_at: String,
}

fn document_json(d: Document) -> DocumentJson {
    DocumentJson {
        id: d.id.0,
        agent_id: d.agent_id.0,
        title: d.title,
        format: d.format,
        size_bytes: d.size_bytes,
        status: d.status,
        chunk_count: d.chunk_count,
        error: d.error,
        created_at: iso(d.created_at),
    }
}

#[utoipa::path(get, path = "/api/v1/agents/{id}/documents", tag = "knowledge", security(("api_key" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = List<DocumentJson>), (status = 404, body = ErrorJson)))]
pub async fn list_documents(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let (scope, id) = (caller.scope.clone(), AgentId(path.into_inner()));
    let docs = state
        .db(move |conn| {
            Agent::find(conn, &scope, id)?.ok_or(AppError::NotFound)?;
            Ok(Document::list(conn, &scope, id)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(List {
        data: docs.into_iter().map(document_json).collect(),
    }))
}

#[derive(Deserialize)]
pub struct UploadQuery {
    title: Option<String>,
    filename: Option<String>,
}

/// `POST /api/v1/agents/{id}/documents`: the file itself is the body, its type
/// from `Content-Type` (or `?filename=`), its title from `?title=`.
#[utoipa::path(post, path = "/api/v1/agents/{id}/documents", tag = "knowledge", security(("api_key" = [])),
    params(("id" = i64, Path), ("title" = Option<String>, Query, max_length = 200, description = "Up to 200 characters; by default the file's name without its extension"),
        ("filename" = Option<String>, Query, description = "The file's name: its extension gives the type when `Content-Type` does not")),
    request_body(content = String, content_type = "text/plain", description = "The document: text/plain, text/markdown, text/html or application/pdf"),
    responses((status = 201, body = DocumentJson, headers(("Location" = String, description = "`/api/v1/documents/{id}` of the new one"))), (status = 402, body = ErrorJson, description = "The plan's knowledge storage is full"), (status = 413, body = ErrorJson), (status = 415, body = ErrorJson), (status = 422, body = ErrorJson)))]
pub async fn upload_document(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
    query: web::Query<UploadQuery>,
    body: Result<web::Bytes, actix_web::Error>,
) -> AppResult<HttpResponse> {
    require(&caller, Permission::ManageSettings)?;
    // Too large is said with the limit, as the page says it.
    let body = body.map_err(|e| match e.as_error::<actix_web::error::PayloadError>() {
        Some(actix_web::error::PayloadError::Overflow) => {
            crate::services::knowledge::KnowledgeError::TooLarge {
                limit: state.config.max_upload_bytes,
            }
            .into()
        }
        Some(other) => crate::error::unreadable_body(other),
        None => AppError::BadRequest(e.to_string()),
    })?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let query = query.into_inner();
    let format = SourceFormat::from_upload(query.filename.as_deref(), content_type.as_deref())?;
    // A blank `?title=` is one left empty, not a title: the file's name names it.
    let title = query
        .title
        .filter(|t| !t.trim().is_empty())
        .or_else(|| {
            query
                .filename
                .as_deref()
                .and_then(crate::services::knowledge::title_from_filename)
        })
        .unwrap_or_else(|| "Untitled document".into());
    let upload = Upload {
        title,
        format,
        bytes: body.to_vec(),
    };
    let doc = add(&state, &caller, AgentId(path.into_inner()), upload).await?;
    Ok(created(&format!("/api/v1/documents/{}", doc.id)).json(document_json(doc)))
}

pub(crate) async fn add(
    state: &AppState,
    caller: &ApiCaller,
    agent: AgentId,
    upload: Upload,
) -> AppResult<Document> {
    let (scope, max) = (caller.scope.clone(), state.config.max_upload_bytes);
    let billing = state.config.stripe.clone();
    let prepared = web::block(move || knowledge::prepare(upload, max))
        .await?
        .map_err(AppError::from)?;
    state
        .db(move |conn| {
            knowledge::store(conn, &scope, agent, prepared, &billing).map_err(AppError::from)
        })
        .await
}

#[utoipa::path(delete, path = "/api/v1/documents/{id}", tag = "knowledge", security(("api_key" = [])), params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorJson)))]
pub async fn delete_document(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    require(&caller, Permission::ManageSettings)?;
    let (scope, id) = (caller.scope.clone(), DocumentId(path.into_inner()));
    state
        .db(move |conn| knowledge::delete(conn, &scope, id).map_err(AppError::from))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/documents/{id}/reindex", tag = "knowledge", security(("api_key" = [])), params(("id" = i64, Path)),
    responses((status = 202, body = DocumentStatusJson, description = "Queued: `{\"status\": \"pending\"}`; the document's status follows its indexing"), (status = 404, body = ErrorJson)))]
pub async fn reindex_document(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    require(&caller, Permission::ManageSettings)?;
    let (scope, id) = (caller.scope.clone(), DocumentId(path.into_inner()));
    state
        .db(move |conn| knowledge::reindex(conn, &scope, id).map_err(AppError::from))
        .await?;
    Ok(HttpResponse::Accepted().json(DocumentStatusJson {
        status: crate::db::models::knowledge::PENDING,
    }))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PassageJson {
    document_id: i64,
    title: String,
    heading: Option<String>,
    content: String,
    /// Share of the question's words in the passage, 0 to 1. (The full-text
    /// engine's own rank only orders the passages: its scale differs by
    /// backend and by knowledge base, so a threshold could not be set on it.)
    score: f64,
}

pub(crate) async fn search(
    state: &AppState,
    scope: crate::domain::TenantScope,
    agent: AgentId,
    q: String,
) -> AppResult<Vec<ScoredPassage>> {
    state
        .db(move |conn| {
            let agent = Agent::find(conn, &scope, agent)?.ok_or(AppError::NotFound)?;
            Ok(knowledge::retrieve(
                conn,
                scope.organization_id(),
                agent.id,
                &q,
                5,
            )?)
        })
        .await
}

#[utoipa::path(get, path = "/api/v1/agents/{id}/search", tag = "knowledge", security(("api_key" = [])),
    params(("id" = i64, Path), ("q" = String, Query)),
    responses((status = 200, body = List<PassageJson>), (status = 404, body = ErrorJson)))]
pub async fn search_agent(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
    query: web::Query<SearchQuery>,
) -> AppResult<HttpResponse> {
    let found = search(
        &state,
        caller.scope.clone(),
        AgentId(path.into_inner()),
        query.into_inner().q,
    )
    .await?;
    Ok(HttpResponse::Ok().json(List {
        data: found
            .into_iter()
            .map(|p| PassageJson {
                document_id: p.passage.document_id.0,
                title: p.passage.title,
                heading: p.passage.heading,
                content: p.passage.content,
                score: p.score,
            })
            .collect(),
    }))
}

/// Where a conversation stands after a call that changed it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusJson {
    pub(crate) status: &'static str,
}

/// Where a document stands after a call that started its indexing.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DocumentStatusJson {
    status: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationJson {
    id: i64,
    agent_id: i64,
    agent_name: String,
    channel: String,
    visitor_id: String,
    status: String,
    summary: Option<String>,
    created_at: String,
    updated_at: String,
}

/// One conversation as the list shows it, its agent's name read.
fn with_agent_name(
    conn: &mut crate::db::DbConnection,
    scope: &crate::domain::TenantScope,
    c: Conversation,
) -> AppResult<ConversationJson> {
    // Its agent is there: deleting an agent deletes its conversations.
    let agent = Agent::find(conn, scope, c.agent_id)?
        .ok_or_else(|| AppError::internal("a conversation without its agent"))?;
    Ok(conversation_json(c, agent.name))
}

fn conversation_json(c: Conversation, agent_name: String) -> ConversationJson {
    ConversationJson {
        id: c.id.0,
        agent_id: c.agent_id.0,
        agent_name,
        channel: c.channel,
        visitor_id: c.visitor_id,
        status: c.status,
        summary: c.summary,
        created_at: iso(c.created_at),
        updated_at: iso(c.updated_at),
    }
}

#[derive(Deserialize, Default)]
pub struct ConversationQuery {
    #[serde(default, deserialize_with = "crate::routes::blank_as_none")]
    pub agent: Option<i64>,
    pub status: Option<String>,
    /// `YYYY-MM-DD`, inclusive.
    pub from: Option<String>,
    /// `YYYY-MM-DD`, inclusive.
    pub to: Option<String>,
    pub q: Option<String>,
    /// 1-based.
    #[serde(default, deserialize_with = "crate::routes::blank_as_none")]
    pub page: Option<i64>,
    /// Conversations per page, 1 to [`MAX_PER_PAGE`].
    #[serde(default, deserialize_with = "crate::routes::blank_as_none")]
    pub per_page: Option<i64>,
}

pub const DEFAULT_PER_PAGE: i64 = 50;
pub const MAX_PER_PAGE: i64 = 200;

impl ConversationQuery {
    pub fn page(&self) -> i64 {
        self.page.unwrap_or(1)
    }

    pub fn per_page(&self) -> i64 {
        self.per_page.unwrap_or(DEFAULT_PER_PAGE)
    }

    /// The query string of the same filters on another page.
    pub fn on_page(&self, page: i64) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        let text = [
            ("status", &self.status),
            ("from", &self.from),
            ("to", &self.to),
            ("q", &self.q),
        ];
        if let Some(agent) = self.agent {
            query.append_pair("agent", &agent.to_string());
        }
        for (name, value) in text {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                query.append_pair(name, v);
            }
        }
        if let Some(per_page) = self.per_page {
            query.append_pair("per_page", &per_page.to_string());
        }
        query.append_pair("page", &page.to_string());
        query.finish()
    }

    pub fn filter(&self) -> AppResult<ConversationFilter> {
        let day = |raw: &Option<String>, name: &str| -> AppResult<Option<chrono::NaiveDate>> {
            match raw.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                // chrono reads years BC and past 9999, which PostgreSQL's
                // timestamps do not all reach: four-digit years only.
                Some(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .filter(|d| (1..=9999).contains(&chrono::Datelike::year(d)))
                    .map(Some)
                    .ok_or_else(|| {
                        AppError::Validation(format!("{name} must be a date like 2026-11-23"))
                    }),
            }
        };
        let status = self.status.clone().filter(|s| !s.is_empty());
        if let Some(s) = &status
            && !STATUSES.contains(&s.as_str())
        {
            return Err(AppError::Validation(
                "status must be open, escalated or resolved".into(),
            ));
        }
        let (page, per_page) = (crate::routes::page_number(self.page)?, self.per_page());
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(AppError::Validation(format!(
                "per_page must be a number from 1 to {MAX_PER_PAGE}"
            )));
        }
        let (from, to) = (day(&self.from, "from")?, day(&self.to, "to")?);
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(AppError::Validation(format!(
                "from ({from}) is after to ({to}): no day is in between"
            )));
        }
        Ok(ConversationFilter {
            agent_id: self.agent.map(AgentId),
            status,
            since: from.and_then(|d| d.and_hms_opt(0, 0, 0)),
            until: to
                .and_then(|d| d.succ_opt())
                .and_then(|d| d.and_hms_opt(0, 0, 0)),
            search: self
                .q
                .as_deref()
                .map(|q| crate::domain::text::clean(q, false).trim().to_string())
                .filter(|q| !q.is_empty()),
            written_only: false,
            // One more than shown tells whether another page follows.
            limit: per_page + 1,
            offset: (page - 1) * per_page,
        })
    }
}

#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations", security(("api_key" = [])),
    params(("agent" = Option<i64>, Query, description = "An agent's id"), ("status" = Option<String>, Query, description = "`open`, `escalated` or `resolved`; empty for all"),
        ("from" = Option<String>, Query, format = Date, description = "Started on this day (UTC) or later, like 2026-11-23"), ("to" = Option<String>, Query, format = Date, description = "Started on this day (UTC) or earlier"),
        ("q" = Option<String>, Query, description = "Words in the messages (up to 8)"),
        ("page" = Option<i64>, Query, minimum = 1, maximum = 100000, description = "1-based; newest first"), ("per_page" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1 to 200, default 50")),
    responses((status = 200, body = ConversationPageJson), (status = 422, body = ErrorJson)))]
pub async fn list_conversations(
    state: web::Data<AppState>,
    caller: ApiCaller,
    query: web::Query<ConversationQuery>,
) -> AppResult<HttpResponse> {
    let filter = query.filter()?;
    let scope = caller.scope.clone();
    let mut rows = state
        .db(move |conn| Ok(Conversation::list(conn, &scope, &filter)?))
        .await?;
    let has_more = crate::routes::keep_page(&mut rows, query.per_page());
    Ok(HttpResponse::Ok().json(ConversationPageJson {
        data: rows
            .into_iter()
            .map(|r| conversation_json(r.conversation, r.agent_name))
            .collect(),
        page: query.page(),
        per_page: query.per_page(),
        has_more,
    }))
}

/// One page of conversations, newest activity first.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationPageJson {
    data: Vec<ConversationJson>,
    page: i64,
    per_page: i64,
    /// Whether `page + 1` has more.
    has_more: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageJson {
    id: i64,
    role: String,
    content: String,
    provider: Option<String>,
    latency_ms: Option<i32>,
    tokens_in: Option<i32>,
    tokens_out: Option<i32>,
    citations: Vec<Citation>,
    handoff_offered: bool,
    created_at: String,
}

#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "conversations", security(("api_key" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = ConversationJson), (status = 404, body = ErrorJson)))]
pub async fn get_conversation(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let (scope, id) = (caller.scope.clone(), ConversationId(path.into_inner()));
    let conversation = state
        .db(move |conn| {
            let c = Conversation::find(conn, &scope, id)?.ok_or(AppError::NotFound)?;
            with_agent_name(conn, &scope, c)
        })
        .await?;
    Ok(HttpResponse::Ok().json(conversation))
}

#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "conversations", security(("api_key" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = List<MessageJson>), (status = 404, body = ErrorJson)))]
pub async fn list_messages(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let (scope, id) = (caller.scope.clone(), ConversationId(path.into_inner()));
    let messages = state
        .db(move |conn| {
            let c = Conversation::find(conn, &scope, id)?.ok_or(AppError::NotFound)?;
            Ok(c.messages(conn)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(List {
        data: messages
            .into_iter()
            .map(|m| MessageJson {
                id: m.id,
                citations: serde_json::from_str(&m.citations).unwrap_or_default(),
                role: m.role,
                content: m.content,
                provider: m.provider,
                latency_ms: m.latency_ms,
                tokens_in: m.tokens_in,
                tokens_out: m.tokens_out,
                handoff_offered: m.handoff_offered,
                created_at: iso(m.created_at),
            })
            .collect(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartConversation {
    agent_id: i64,
    /// Your id for the end user (8–64 letters, digits, `-`, `_`).
    #[schema(min_length = 8, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    visitor_id: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/conversations", tag = "conversations", security(("api_key" = [])), request_body = StartConversation,
    responses((status = 201, body = ConversationJson, headers(("Location" = String, description = "`/api/v1/conversations/{id}` of the new one"))), (status = 404, body = ErrorJson), (status = 422, body = ErrorJson)))]
pub async fn start_conversation(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    body: Json<StartConversation>,
) -> AppResult<HttpResponse> {
    require(&caller, Permission::Respond)?;
    let body = body.into_inner();
    let scope = caller.scope.clone();
    let ip = client_ip(&req);
    // Each conversation without a visitor id of the caller's is its own
    // visitor: the per-visitor message limit is per end user, not per key.
    let visitor = match body.visitor_id {
        Some(v) if super::chat::valid_visitor_id(&v) => v,
        Some(_) => {
            return Err(AppError::Validation(
                "visitorId must be 8 to 64 letters, digits, - or _".into(),
            ));
        }
        None => format!("api_{}", hex::encode(rand::random::<[u8; 12]>())),
    };
    let agent_id = AgentId(body.agent_id);
    let conversation = state
        .db(move |conn| {
            let agent = Agent::find(conn, &scope, agent_id)?.ok_or(AppError::NotFound)?;
            if !agent.enabled {
                return Err(AppError::Validation("This agent is disabled.".into()));
            }
            // API conversations are reached with the key, not a visitor token.
            let unusable = format!("api:{}", hex::encode(rand::random::<[u8; 16]>()));
            let started = Conversation::start(
                conn,
                scope.organization_id(),
                &NewConversation {
                    agent_id,
                    channel: conversation::API,
                    visitor_id: &visitor,
                    visitor_ip: &ip,
                    token_hash: &unusable,
                },
            )?;
            Ok(conversation_json(started, agent.name))
        })
        .await?;
    Ok(created(&format!("/api/v1/conversations/{}", conversation.id)).json(conversation))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationStatus {
    /// `open`, `escalated` or `resolved` (closed to the visitor).
    status: String,
}

/// A conversation status as the team may set it, or a 422 that names the three.
pub(crate) fn conversation_status(raw: &str) -> AppResult<&'static str> {
    crate::services::chat::parse_status(raw)
        .ok_or_else(|| AppError::Validation("status must be open, escalated or resolved".into()))
}

#[utoipa::path(put, path = "/api/v1/conversations/{id}/status", tag = "conversations", security(("api_key" = [])), params(("id" = i64, Path)), request_body = ConversationStatus,
    responses((status = 200, body = ConversationJson), (status = 403, body = ErrorJson), (status = 404, body = ErrorJson), (status = 422, body = ErrorJson)))]
pub async fn set_conversation_status(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
    body: Json<ConversationStatus>,
) -> AppResult<HttpResponse> {
    require(&caller, Permission::Respond)?;
    let status = conversation_status(&body.status)?;
    let (scope, label, ip) = (caller.scope.clone(), caller.label.clone(), client_ip(&req));
    let id = ConversationId(path.into_inner());
    let conversation = state
        .db(move |conn| {
            let conversation = crate::services::chat::set_status(
                conn,
                &scope,
                &actor(&scope, &label, &ip),
                id,
                status,
            )?
            .ok_or(AppError::NotFound)?;
            with_agent_name(conn, &scope, conversation)
        })
        .await?;
    Ok(HttpResponse::Ok().json(conversation))
}

#[utoipa::path(delete, path = "/api/v1/conversations/{id}", tag = "conversations", security(("api_key" = [])), params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted with its messages"), (status = 403, body = ErrorJson), (status = 404, body = ErrorJson)))]
pub async fn delete_conversation(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    require(&caller, Permission::ManageSettings)?;
    let (scope, label, ip) = (caller.scope.clone(), caller.label.clone(), client_ip(&req));
    let id = ConversationId(path.into_inner());
    let deleted = state
        .db(move |conn| {
            Ok(crate::services::chat::delete_conversation(
                conn,
                &scope,
                &actor(&scope, &label, &ip),
                id,
            )?)
        })
        .await?;
    if !deleted {
        return Err(AppError::NotFound);
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiMessage {
    /// Counted once trimmed.
    #[schema(min_length = 1, max_length = 4000)]
    content: String,
}

#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "conversations", security(("api_key" = [])), params(("id" = i64, Path)), request_body = ApiMessage,
    responses((status = 200, description = "The reply as JSON, or as Server-Sent Events with `Accept: text/event-stream`", body = crate::services::chat::ReplyOutcome),
        (status = 402, body = ErrorJson, description = "The month's message allowance is used up"),
        (status = 403, body = ErrorJson, description = "A read-only key, or a role that does not answer conversations"),
        (status = 404, body = ErrorJson),
        (status = 409, body = ErrorJson, description = "The conversation came in through the chat page or the widget, not the API"),
        (status = 410, body = ErrorJson, description = "The conversation was resolved (or erased while its reply was written)"),
        (status = 422, body = ErrorJson), (status = 429, body = ErrorJson)))]
pub async fn send_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
    body: Json<ApiMessage>,
) -> AppResult<HttpResponse> {
    require(&caller, Permission::Respond)?;
    let (scope, id) = (caller.scope.clone(), ConversationId(path.into_inner()));
    let (conversation, agent) = state
        .db(move |conn| {
            let c = Conversation::find(conn, &scope, id)?.ok_or(AppError::NotFound)?;
            // Messages sent here are the end user's words: a page or widget
            // conversation has its own visitor, whom no API caller speaks for.
            if c.channel != conversation::API {
                return Err(AppError::Conflict(format!(
                    "This conversation came in through the {}; only conversations started through the API take messages here. Answer it from its ticket.",
                    c.channel
                )));
            }
            let agent = Agent::find(conn, &scope, c.agent_id)?.ok_or(AppError::NotFound)?;
            Ok((c, agent))
        })
        .await?;
    if !agent.enabled {
        return Err(AppError::Validation("This agent is disabled.".into()));
    }
    let content = body.into_inner().content;
    // The API budget's headers describe this caller (the middleware sets them).
    let accepted = super::chat::accept_visitor_message(
        &state,
        conversation,
        content.clone(),
        client_ip(&req),
        None,
    )
    .await?;
    super::chat::respond(&req, &state, accepted, agent, content).await
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderKeyJson {
    provider: String,
    base_url: Option<String>,
    /// Only the last characters; the key itself is never shown again.
    key_hint: String,
    updated_at: String,
}

#[utoipa::path(get, path = "/api/v1/provider-keys", tag = "agents", security(("api_key" = [])),
    responses((status = 200, body = List<ProviderKeyJson>), (status = 403, body = ErrorJson)))]
pub async fn list_provider_keys(
    state: web::Data<AppState>,
    caller: ApiCaller,
) -> AppResult<HttpResponse> {
    // The page shows them only to who may change them: a key's base URL can
    // name a host inside the organization's network.
    may_read(&caller, Permission::ManageSettings)?;
    let scope = caller.scope.clone();
    let keys = state
        .db(move |conn| Ok(ProviderCredential::list(conn, &scope)?))
        .await?;
    Ok(HttpResponse::Ok().json(List {
        data: keys
            .into_iter()
            .map(|k| ProviderKeyJson {
                provider: k.provider,
                base_url: k.base_url,
                key_hint: k.key_hint,
                updated_at: iso(k.updated_at),
            })
            .collect(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderKeyForm {
    #[schema(min_length = 8, max_length = 400)]
    pub api_key: String,
    /// For OpenAI-compatible servers other than OpenAI (Mistral, Ollama, vLLM…).
    pub base_url: Option<String>,
}

/// The providers a key can be stored for, as the OpenAPI document names them.
/// Only described: the path is read as text, so a wrong name gets the
/// settings' own message.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum RemoteProvider {
    OpenAi,
    Anthropic,
}

#[utoipa::path(put, path = "/api/v1/provider-keys/{provider}", tag = "agents", security(("api_key" = [])),
    params(("provider" = RemoteProvider, Path)), request_body = ProviderKeyForm,
    responses((status = 200, body = ProviderKeyJson), (status = 422, body = ErrorJson)))]
pub async fn put_provider_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<String>,
    body: Json<ProviderKeyForm>,
) -> AppResult<HttpResponse> {
    require(&caller, Permission::ManageSettings)?;
    let (scope, label, ip) = (caller.scope.clone(), caller.label.clone(), client_ip(&req));
    let provider = path.into_inner();
    let form = body.into_inner();
    let keyring = state.chat.keyring().clone();
    let allow_private = state.config.llm.allow_private_urls;
    let saved = state
        .db(move |conn| {
            let actor = actor(&scope, &label, &ip);
            agents::save_provider_key(
                conn,
                &scope,
                &actor,
                &keyring,
                &provider,
                &form.api_key,
                form.base_url.as_deref(),
                allow_private,
            )
            .map_err(AppError::from)
        })
        .await?;
    Ok(HttpResponse::Ok().json(ProviderKeyJson {
        provider: saved.provider,
        base_url: saved.base_url,
        key_hint: saved.key_hint,
        updated_at: iso(saved.updated_at),
    }))
}

#[utoipa::path(delete, path = "/api/v1/provider-keys/{provider}", tag = "agents", security(("api_key" = [])), params(("provider" = String, Path, description = "`openai` or `anthropic`")),
    responses((status = 204, description = "Removed: agents on this provider use the server's key again"), (status = 403, body = ErrorJson), (status = 404, body = ErrorJson)))]
pub async fn delete_provider_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    require(&caller, Permission::ManageSettings)?;
    let (scope, label, ip) = (caller.scope.clone(), caller.label.clone(), client_ip(&req));
    let provider = path.into_inner();
    let removed = state
        .db(move |conn| {
            agents::remove_provider_key(conn, &scope, &actor(&scope, &label, &ip), &provider)
                .map_err(AppError::from)
        })
        .await?;
    if !removed {
        return Err(AppError::NotFound);
    }
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/documents/{id}", tag = "knowledge", security(("api_key" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = DocumentJson, description = "Poll it after an upload or a re-index: `status` goes pending, indexing, ready (or failed)"), (status = 404, body = ErrorJson)))]
pub async fn get_document(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let (scope, id) = (caller.scope.clone(), DocumentId(path.into_inner()));
    let doc = state
        .db(move |conn| Document::find(conn, &scope, id)?.ok_or(AppError::NotFound))
        .await?;
    Ok(HttpResponse::Ok().json(document_json(doc)))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_agents, create_agent, get_agent, update_agent, delete_agent, list_documents, upload_document, get_document, delete_provider_key,
        delete_document, reindex_document, search_agent, list_conversations, list_messages, start_conversation,
        send_message, set_conversation_status, get_conversation, delete_conversation, list_provider_keys, put_provider_key,
        super::chat::start, super::chat::transcript, super::chat::send, super::chat::escalate),
    components(schemas(AgentJson, AgentForm, DocumentJson, PassageJson, StatusJson, DocumentStatusJson, ConversationJson, ConversationPageJson, MessageJson,
        StartConversation, ApiMessage, ConversationStatus, ProviderKeyJson, ProviderKeyForm, RemoteProvider, Citation, crate::services::chat::ReplyOutcome,
        super::chat::StartChat, super::chat::ChatStarted, super::chat::PublicTranscript, super::chat::PublicMessage,
        super::chat::SendMessage)),
    tags((name = "agents"), (name = "knowledge"), (name = "conversations"), (name = "chat", description = "Public, for the chat page and the widget: no API key, a conversation token instead."))
)]
pub struct AgentsApiDoc;
