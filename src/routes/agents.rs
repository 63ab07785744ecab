//! Pages under /app for agents, their knowledge base and their conversations.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt as _;
use serde::Deserialize;

use super::api_agents::{ConversationQuery, conversation_status};
use super::app::{act, chrome, require, when};
use crate::auth::csrf::{self, CsrfForm};
use crate::auth::extractors::Member;
use crate::csrf_protected;
use crate::db::models::former_slug;
use crate::db::models::{Agent, AgentFormerSlug, Conversation, Document, ProviderCredential};
use crate::domain::{AgentId, ConversationId, DocumentId, Permission, Slug};
use crate::error::{AppError, AppResult};
use crate::routes::auth::see_other;
use crate::routes::{flash, unprocessable};
use crate::services::agents::{self, AgentError, AgentForm};
use crate::services::chat::{self, Citation};
use crate::services::knowledge::{self, KnowledgeError, SourceFormat, Upload};
use crate::startup::AppState;
use crate::views::Pager;
use crate::views::account::FieldErrors;
use crate::views::agents::{
    AgentChoice, AgentFields, AgentPage, AgentRow, AgentsPage, ConversationPage, ConversationRow,
    ConversationsPage, DocumentRow, NewAgentTyped, PassageRow, ProviderKeyRow, ProviderKeyTyped,
    TranscriptRow,
};

fn chat_url(state: &AppState, org: &str, agent: &str) -> String {
    format!(
        "{}/c/{org}/{agent}",
        state.config.base_url.as_str().trim_end_matches('/')
    )
}

pub async fn list(state: web::Data<AppState>, member: Member) -> AppResult<AgentsPage> {
    agents_page(
        &state,
        &member,
        NewAgentTyped::default(),
        FieldErrors::default(),
        ProviderKeyTyped::default(),
    )
    .await
}

async fn agents_page(
    state: &AppState,
    member: &Member,
    new_agent: NewAgentTyped,
    errors: FieldErrors,
    key_form: ProviderKeyTyped,
) -> AppResult<AgentsPage> {
    let scope = member.scope.clone();
    let can_edit = member.role().can(Permission::ManageSettings);
    let (list, keys) = state
        .db(move |conn| {
            let keys = if can_edit {
                ProviderCredential::list(conn, &scope)?
            } else {
                Vec::new()
            };
            Ok((Agent::list(conn, &scope)?, keys))
        })
        .await?;
    let org = member.organization.slug.clone();
    Ok(AgentsPage {
        chrome: chrome(member, "agents", flash::take(&member.session))?,
        agents: list
            .into_iter()
            .map(|a| AgentRow {
                id: a.id.0,
                chat_url: chat_url(state, &org, &a.slug),
                provider: a.provider.unwrap_or_else(|| "server default".into()),
                name: a.name,
                slug: a.slug,
                enabled: a.enabled,
            })
            .collect(),
        can_edit,
        new_agent,
        errors,
        // The hint shows a new agent's address as it will be, up to its slug.
        chat_base: chat_url(state, &org, ""),
        provider_keys: keys
            .into_iter()
            .map(|k| ProviderKeyRow {
                provider: k.provider,
                key_hint: k.key_hint,
                base_url: k.base_url.unwrap_or_default(),
                updated: when(k.updated_at),
            })
            .collect(),
        key_form,
    })
}

#[derive(Deserialize)]
pub struct ProviderKeyPageForm {
    csrf_token: String,
    provider: String,
    api_key: String,
    #[serde(default)]
    base_url: String,
}

csrf_protected!(ProviderKeyPageForm);

/// `POST /app/provider-keys`: the organization's own key for a model provider,
/// sealed under `ENCRYPTION_KEY`; only its last characters are shown again.
/// `POST /app/provider-keys/{provider}/remove`.
pub async fn remove_provider_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<String>,
    CsrfForm(_): CsrfForm<TokenForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageSettings)?;
    let provider = path.into_inner();
    let removed = act(&state, &member, &req, move |conn, scope, actor| {
        agents::remove_provider_key(conn, scope, actor, &provider)
    })
    .await??;
    if !removed {
        return Err(AppError::NotFound);
    }
    flash::set(
        &member.session,
        "success",
        "Key removed: agents on that provider use the server's key again.",
    );
    Ok(see_other("/app/agents"))
}

pub async fn save_provider_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    CsrfForm(form): CsrfForm<ProviderKeyPageForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageSettings)?;
    let keyring = state.chat.keyring().clone();
    let allow_private = state.config.llm.allow_private_urls;
    let (provider, base_url) = (form.provider.clone(), form.base_url.clone());
    let saved = act(&state, &member, &req, move |conn, scope, actor| {
        agents::save_provider_key(
            conn,
            scope,
            actor,
            &keyring,
            &provider,
            &form.api_key,
            Some(base_url.as_str()),
            allow_private,
        )
    })
    .await?;
    match saved {
        Ok(key) => {
            flash::set(
                &member.session,
                "success",
                &format!(
                    "The {} key ending in {} was saved. Agents set to {} now use it.",
                    provider_label(&key.provider),
                    key.key_hint,
                    provider_label(&key.provider)
                ),
            );
            Ok(see_other("/app/agents"))
        }
        Err(AgentError::Invalid { field, message }) => {
            let mut errors = FieldErrors::default();
            let (field, subject) = match field {
                "apiKey" => ("api_key", "This"),
                "baseUrl" => ("base_url", "The base URL"),
                _ => ("provider", "The provider"),
            };
            errors.add(field, format!("{subject} {message}."));
            let typed = ProviderKeyTyped {
                provider: form.provider,
                base_url: form.base_url,
            };
            let page =
                agents_page(&state, &member, NewAgentTyped::default(), errors, typed).await?;
            Ok(unprocessable(page, &req))
        }
        Err(AgentError::Limit(limit)) => Ok(flash::limit(&member.session, &limit, "/app/agents")),
        // Not found, or the database failing: the one mapping to HTTP decides.
        Err(e) => Err(e.into()),
    }
}

fn provider_label(provider: &str) -> &'static str {
    match provider {
        "anthropic" => "Anthropic",
        _ => "OpenAI-compatible",
    }
}

#[derive(Deserialize)]
pub struct NewAgentForm {
    csrf_token: String,
    name: String,
    /// Empty: made from the name.
    #[serde(default)]
    slug: String,
}

#[derive(Deserialize)]
pub struct SettingsForm {
    csrf_token: String,
    name: String,
    /// Empty: unchanged.
    #[serde(default)]
    slug: String,
    #[serde(default)]
    greeting: String,
    #[serde(default)]
    instructions: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    temperature: String,
    #[serde(default)]
    handoff_threshold: String,
    #[serde(default)]
    allowed_origins: String,
    #[serde(default)]
    enabled: Option<String>,
}

#[derive(Deserialize)]
pub struct PasteForm {
    csrf_token: String,
    title: String,
    text: String,
}

#[derive(Deserialize)]
pub struct TokenForm {
    csrf_token: String,
}

/// A destructive action's form: its checkbox says the person meant it.
#[derive(Deserialize)]
pub struct ConfirmForm {
    csrf_token: String,
    #[serde(default)]
    confirm: Option<String>,
}

impl ConfirmForm {
    /// Without its box ticked, the way back to `page`, told that deleting
    /// `what` cannot be undone; `None` once ticked.
    fn unticked(&self, member: &Member, what: &str, page: &str) -> Option<HttpResponse> {
        (self.confirm.as_deref() != Some("yes")).then(|| {
            flash::set(
                &member.session,
                "error",
                &format!("Tick the box to confirm: deleting {what} cannot be undone."),
            );
            see_other(page)
        })
    }
}

csrf_protected!(
    NewAgentForm,
    SettingsForm,
    PasteForm,
    TokenForm,
    ConfirmForm
);

pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    CsrfForm(form): CsrfForm<NewAgentForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageSettings)?;
    let agent_form = AgentForm {
        name: form.name.clone(),
        slug: Some(form.slug.trim().to_string()).filter(|s| !s.is_empty()),
        ..AgentForm::default()
    };
    let billing = state.config.stripe.clone();
    match act(&state, &member, &req, move |conn, scope, actor| {
        agents::create(conn, scope, actor, &agent_form, &billing)
    })
    .await?
    {
        Ok(agent) => {
            flash::set(
                &member.session,
                "success",
                "Agent created. Add documents so it can answer.",
            );
            Ok(see_other(&format!("/app/agents/{}", agent.id)))
        }
        Err(AgentError::Limit(limit)) => Ok(flash::limit(&member.session, &limit, "/app/agents")),
        Err(e) => {
            let mut errors = FieldErrors::default();
            errors.add(e.field().map_or("name", form_field), sentence(&e));
            let page = agents_page(
                &state,
                &member,
                NewAgentTyped {
                    name: form.name,
                    slug: form.slug,
                },
                errors,
                ProviderKeyTyped::default(),
            )
            .await?;
            Ok(unprocessable(page, &req))
        }
    }
}

/// The API names fields in camelCase; the forms in snake_case.
fn form_field(api: &'static str) -> &'static str {
    match api {
        "handoffThreshold" => "handoffThreshold",
        "allowedOrigins" => "allowedOrigins",
        other => other,
    }
}

fn sentence(e: &AgentError) -> String {
    let message = match e {
        AgentError::Invalid { message, .. } => message.as_str(),
        AgentError::SlugTaken => agents::SLUG_TAKEN,
        other => return other.to_string(),
    };
    let mut m = message.to_string();
    if let Some(first) = m.get(..1) {
        m = first.to_uppercase() + &m[1..];
    }
    format!("{m}.")
}

#[derive(Deserialize, Default)]
pub struct TestQuery {
    q: Option<String>,
}

pub async fn show(
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    query: web::Query<TestQuery>,
) -> AppResult<AgentPage> {
    let id = AgentId(path.into_inner());
    let q = query.into_inner().q.filter(|q| !q.trim().is_empty());
    agent_page(&state, &member, id, None, FieldErrors::default(), q).await
}

async fn agent_page(
    state: &AppState,
    member: &Member,
    id: AgentId,
    typed: Option<AgentFields>,
    mut errors: FieldErrors,
    query: Option<String>,
) -> AppResult<AgentPage> {
    // Refused settings: the fields' messages sit far down the page, so the
    // top of it says the save did not happen.
    if typed.is_some() && !errors.is_empty() && errors.get("form").is_none() {
        errors.add(
            "form",
            "The settings were not saved: correct the fields marked below.",
        );
    }
    let scope = member.scope.clone();
    let (agent, documents, former_slugs) = state
        .db(move |conn| {
            let agent = Agent::find(conn, &scope, id)?.ok_or(AppError::NotFound)?;
            let docs = Document::list(conn, &scope, id)?;
            let former = AgentFormerSlug::slugs(conn, &scope, id)?;
            Ok((agent, docs, former))
        })
        .await?;
    let passages = match &query {
        Some(q) => Some(
            super::api_agents::search(state, member.scope.clone(), id, q.clone())
                .await?
                .into_iter()
                .map(|p| PassageRow {
                    title: p.passage.title,
                    heading: p.passage.heading.unwrap_or_default(),
                    content: p.passage.content,
                    score: format!("{:.2}", p.score),
                })
                .collect(),
        ),
        None => None,
    };
    let org = member.organization.slug.clone();
    let base = state
        .config
        .base_url
        .as_str()
        .trim_end_matches('/')
        .to_string();
    let fields = typed.unwrap_or_else(|| AgentFields {
        name: agent.name.clone(),
        slug: agent.slug.clone(),
        greeting: agent.greeting.clone(),
        instructions: agent.instructions.clone(),
        provider: agent.provider.clone().unwrap_or_default(),
        model: agent.model.clone().unwrap_or_default(),
        temperature: agent.temperature.to_string(),
        handoff_threshold: agent.handoff_threshold.to_string(),
        allowed_origins: agent.origins().collect::<Vec<_>>().join("\n"),
        enabled: agent.enabled,
    });
    let embeddable_nowhere = agent.origins().next().is_none();
    Ok(AgentPage {
        chrome: chrome(member, "agents", flash::take(&member.session))?,
        id: agent.id.0,
        embeddable_nowhere,
        chat_url: chat_url(state, &org, &agent.slug),
        embed: format!(
            "<script src=\"{base}/widget.js\" data-org=\"{org}\" data-agent=\"{}\" async></script>",
            agent.slug
        ),
        slug: agent.slug,
        former_slugs,
        max_changes: former_slug::MAX_NEW_PER_WINDOW,
        fields,
        errors,
        indexing: documents
            .iter()
            .any(|d| d.status == "pending" || d.status == "indexing"),
        documents: documents
            .into_iter()
            .map(|d| DocumentRow {
                id: d.id.0,
                title: d.title,
                format: d.format,
                size: human_size(d.size_bytes),
                status: d.status,
                chunks: d.chunk_count,
                error: d.error,
            })
            .collect(),
        accepted: knowledge::ACCEPTED.join(", "),
        query: query.unwrap_or_default(),
        passages,
        can_edit: member.role().can(Permission::ManageSettings),
        paste_title: String::new(),
        paste_text: String::new(),
    })
}

fn human_size(bytes: i32) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KB", f64::from(b) / 1024.0),
        b => format!("{:.1} MB", f64::from(b) / (1024.0 * 1024.0)),
    }
}

pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<SettingsForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageSettings)?;
    let id = AgentId(path.into_inner());
    let mut errors = FieldErrors::default();
    let number = |raw: &str, field: &'static str, errors: &mut FieldErrors| -> Option<f64> {
        if raw.trim().is_empty() {
            return None;
        }
        raw.trim()
            .parse::<f64>()
            .map_err(|_| errors.add(field, "Must be a number."))
            .ok()
    };
    let temperature = number(&form.temperature, "temperature", &mut errors);
    let threshold = number(&form.handoff_threshold, "handoffThreshold", &mut errors);
    let typed = AgentFields {
        name: form.name.clone(),
        slug: form.slug.trim().chars().take(Slug::MAX_LEN + 1).collect(),
        greeting: form.greeting.clone(),
        instructions: form.instructions.clone(),
        provider: form.provider.clone(),
        model: form.model.clone(),
        temperature: form.temperature.clone(),
        handoff_threshold: form.handoff_threshold.clone(),
        allowed_origins: form.allowed_origins.clone(),
        enabled: form.enabled.is_some(),
    };
    if !errors.is_empty() {
        let page = agent_page(&state, &member, id, Some(typed), errors, None).await?;
        return Ok(unprocessable(page, &req));
    }
    let agent_form = AgentForm {
        name: form.name,
        slug: Some(form.slug),
        greeting: Some(form.greeting),
        instructions: Some(form.instructions),
        provider: Some(form.provider),
        model: Some(form.model),
        temperature,
        handoff_threshold: threshold,
        allowed_origins: Some(
            form.allowed_origins
                .split(['\n', ',', ' '])
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        ),
        enabled: Some(form.enabled.is_some()),
    };
    match act(&state, &member, &req, move |conn, scope, actor| {
        agents::update(conn, scope, actor, id, &agent_form)
    })
    .await?
    {
        Ok(_) => {
            flash::set(&member.session, "success", "Settings saved.");
            Ok(see_other(&format!("/app/agents/{id}")))
        }
        Err(AgentError::NotFound) => Err(AppError::NotFound),
        Err(e) => {
            let mut errors = FieldErrors::default();
            errors.add(e.field().unwrap_or("form"), sentence(&e));
            let page = agent_page(&state, &member, id, Some(typed), errors, None).await?;
            Ok(unprocessable(page, &req))
        }
    }
}

async fn add_document(
    req: &HttpRequest,
    state: &AppState,
    member: &Member,
    id: AgentId,
    upload: Upload,
    field: &'static str,
    pasted: Option<(String, String)>,
) -> AppResult<HttpResponse> {
    let (scope, max) = (member.scope.clone(), state.config.max_upload_bytes);
    let billing = state.config.stripe.clone();
    let title = upload.title.clone();
    let added = match web::block(move || knowledge::prepare(upload, max)).await? {
        Ok(prepared) => {
            state
                .db(move |conn| Ok(knowledge::store(conn, &scope, id, prepared, &billing)))
                .await?
        }
        Err(e) => Err(e),
    };
    match added {
        Err(KnowledgeError::Limit(limit)) => match pasted {
            // Pasted text is kept (for a shorter try or after an upgrade); a
            // file is still on the user's disk.
            Some((title, text)) => {
                flash::set(&member.session, "limit", &limit.message);
                let mut page =
                    agent_page(state, member, id, None, FieldErrors::default(), None).await?;
                page.paste_title = title;
                page.paste_text = text;
                let mut res = actix_web::Responder::respond_to(page, req);
                *res.status_mut() = actix_web::http::StatusCode::PAYMENT_REQUIRED;
                Ok(res)
            }
            None => Ok(flash::limit(
                &member.session,
                &limit,
                &format!("/app/agents/{id}"),
            )),
        },
        Ok(_) => {
            flash::set(
                &member.session,
                "success",
                &format!("\u{201c}{title}\u{201d} was added and is being indexed."),
            );
            Ok(see_other(&format!("/app/agents/{id}")))
        }
        Err(KnowledgeError::NotFound) => Err(AppError::NotFound),
        Err(KnowledgeError::Db(e)) => Err(AppError::internal(e)),
        Err(e) => {
            let mut errors = FieldErrors::default();
            let field = if matches!(e, KnowledgeError::Title) {
                "title"
            } else {
                field
            };
            let message = match e {
                // Nothing was pasted: there is no file to speak of.
                KnowledgeError::Text(knowledge::TextError::Empty) if pasted.is_some() => {
                    "Paste the text to add.".to_string()
                }
                e => e.to_string(),
            };
            errors.add(field, message);
            let mut page = agent_page(state, member, id, None, errors, None).await?;
            // Pasted text is kept for another try, as any form keeps what was typed.
            if let Some((title, text)) = pasted {
                page.paste_title = title;
                page.paste_text = text;
            }
            Ok(unprocessable(page, req))
        }
    }
}

pub async fn paste(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<PasteForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageSettings)?;
    let pasted = (form.title.clone(), form.text.clone());
    let upload = Upload {
        title: form.title,
        format: SourceFormat::Markdown,
        bytes: form.text.into_bytes(),
    };
    add_document(
        &req,
        &state,
        &member,
        AgentId(path.into_inner()),
        upload,
        "text",
        Some(pasted),
    )
    .await
}

/// `multipart/form-data` with `csrf_token` and `file`; reading stops at the
/// upload limit, so an oversized file is refused without being held in memory.
pub async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    mut payload: Multipart,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageSettings)?;
    let id = AgentId(path.into_inner());
    let max = usize::try_from(state.config.max_upload_bytes).unwrap_or(usize::MAX);
    let mut token = None;
    let mut file: Option<(Option<String>, Option<String>, Vec<u8>)> = None;
    let mut too_large = false;
    // The whole request counts, not each field: other fields (any number of
    // them) may not stream on past the limit either. Room for the token.
    let mut total = 0usize;
    let total_max = max.saturating_add(64 * 1024);
    while let Some(field) = payload.next().await {
        let mut field = field.map_err(unreadable_upload)?;
        let name = field.name().unwrap_or_default().to_string();
        let filename = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(str::to_string);
        let content_type = field.content_type().map(|m| m.essence_str().to_string());
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(unreadable_upload)?;
            total = total.saturating_add(chunk.len());
            if bytes.len() + chunk.len() > max || total > total_max {
                too_large = true;
                break;
            }
            if matches!(name.as_str(), "csrf_token" | "file") {
                bytes.extend_from_slice(&chunk);
            }
        }
        match name.as_str() {
            "csrf_token" => token = Some(String::from_utf8_lossy(&bytes).into_owned()),
            "file" => file = Some((filename, content_type, bytes)),
            _ => {}
        }
        if too_large {
            break;
        }
    }
    csrf::verify(&member.session, token.as_deref())?;
    let fail = |message: String| async {
        let mut errors = FieldErrors::default();
        errors.add("file", message);
        let page = agent_page(&state, &member, id, None, errors, None).await?;
        Ok::<_, AppError>(unprocessable(page, &req))
    };
    if too_large {
        let too_large = KnowledgeError::TooLarge {
            limit: state.config.max_upload_bytes,
        };
        return fail(too_large.to_string()).await;
    }
    let Some((filename, content_type, bytes)) = file else {
        return fail("Choose a file to upload.".into()).await;
    };
    let format = match SourceFormat::from_upload(filename.as_deref(), content_type.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            return fail(e.to_string()).await;
        }
    };
    let title = filename
        .as_deref()
        .and_then(knowledge::title_from_filename)
        .unwrap_or_else(|| "Untitled document".into());
    add_document(
        &req,
        &state,
        &member,
        id,
        Upload {
            title,
            format,
            bytes,
        },
        "file",
        None,
    )
    .await
}

/// actix-multipart's errors print as their variant names
/// ("ContentTypeIncompatible"): said here in words.
fn unreadable_upload(err: actix_multipart::MultipartError) -> AppError {
    use actix_multipart::MultipartError as E;
    let why = match err {
        E::ContentTypeMissing
        | E::ContentTypeParse
        | E::ContentTypeIncompatible
        | E::BoundaryMissing => {
            "it must be sent as multipart/form-data, as the page's upload form does"
        }
        E::Incomplete | E::Payload(_) => "it ended before it was complete; please try again",
        _ => "it is not a well-formed multipart/form-data body",
    };
    AppError::BadRequest(format!("The upload could not be read: {why}."))
}

pub async fn reindex(
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(_): CsrfForm<TokenForm>,
) -> AppResult<HttpResponse> {
    document_action(&state, &member, DocumentId(path.into_inner()), true).await
}

/// Deletes the agent with everything that hangs on it, once the box is ticked.
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<ConfirmForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageSettings)?;
    let id = AgentId(path.into_inner());
    if let Some(back) = form.unticked(&member, "an agent", &format!("/app/agents/{id}")) {
        return Ok(back);
    }
    match act(&state, &member, &req, move |conn, scope, actor| {
        agents::delete(conn, scope, actor, id)
    })
    .await?
    {
        Ok(()) => {
            flash::set(
                &member.session,
                "success",
                "The agent was deleted with its knowledge base, conversations and tickets.",
            );
            Ok(see_other("/app/agents"))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_document(
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(_): CsrfForm<TokenForm>,
) -> AppResult<HttpResponse> {
    document_action(&state, &member, DocumentId(path.into_inner()), false).await
}

async fn document_action(
    state: &AppState,
    member: &Member,
    id: DocumentId,
    reindex: bool,
) -> AppResult<HttpResponse> {
    require(member, Permission::ManageSettings)?;
    let scope = member.scope.clone();
    let agent = state
        .db(move |conn| {
            let doc = Document::find(conn, &scope, id)?.ok_or(AppError::NotFound)?;
            if reindex {
                knowledge::reindex(conn, &scope, id)?;
            } else {
                knowledge::delete(conn, &scope, id)?;
            }
            Ok(doc.agent_id)
        })
        .await?;
    flash::set(
        &member.session,
        "success",
        if reindex {
            "Re-indexing the document."
        } else {
            "Document deleted."
        },
    );
    Ok(see_other(&format!("/app/agents/{agent}")))
}

/// How much of a visitor's first message the conversation list shows.
const QUESTION_CHARS: usize = 140;

pub async fn conversations(
    state: web::Data<AppState>,
    member: Member,
    query: web::Query<ConversationQuery>,
) -> AppResult<ConversationsPage> {
    let query = query.into_inner();
    let (mut filter, error) = match query.filter() {
        Ok(f) => (f, None),
        Err(e) => (ConversationQuery::default().filter()?, Some(e.to_string())),
    };
    filter.written_only = true;
    let scope = member.scope.clone();
    let (mut rows, agents, mut questions) = state
        .db(move |conn| {
            let rows = Conversation::list(conn, &scope, &filter)?;
            // Until its summary is written, a conversation is told apart by
            // what the visitor asked first.
            let unsummarized: Vec<_> = rows
                .iter()
                .filter(|r| r.conversation.summary.is_none())
                .map(|r| r.conversation.id)
                .collect();
            let questions = Conversation::first_visitor_messages(conn, &scope, &unsummarized)?;
            Ok((rows, Agent::list(conn, &scope)?, questions))
        })
        .await?;
    // A refused filter shows the unfiltered first page, at the default size.
    let (page, per_page) = if error.is_some() {
        (1, super::api_agents::DEFAULT_PER_PAGE)
    } else {
        (query.page(), query.per_page())
    };
    let more = super::keep_page(&mut rows, per_page);
    let pager = Pager::new(page, more, |n| {
        format!("/app/conversations?{}", query.on_page(n))
    });
    Ok(ConversationsPage {
        chrome: chrome(&member, "conversations", flash::take(&member.session))?,
        rows: rows
            .into_iter()
            .map(|r| ConversationRow {
                id: r.conversation.id.0,
                agent_name: r.agent_name,
                channel: r.conversation.channel,
                status: r.conversation.status,
                visitor: r.conversation.visitor_id,
                question: questions
                    .remove(&r.conversation.id)
                    .map(|q| crate::domain::text::one_line(&q, QUESTION_CHARS))
                    .unwrap_or_default(),
                summary: r.conversation.summary.unwrap_or_default(),
                updated: when(r.conversation.updated_at),
            })
            .collect(),
        agents: agents
            .into_iter()
            .map(|a| AgentChoice {
                selected: query.agent == Some(a.id.0),
                id: a.id.0,
                name: a.name,
            })
            .collect(),
        status: query.status.unwrap_or_default(),
        from: query.from.unwrap_or_default(),
        to: query.to.unwrap_or_default(),
        q: query.q.unwrap_or_default(),
        error,
        pager,
    })
}

#[derive(Deserialize)]
pub struct StatusForm {
    csrf_token: String,
    status: String,
}

csrf_protected!(StatusForm);

/// `POST /app/conversations/{id}/status`: resolve or reopen.
pub async fn set_conversation_status(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<StatusForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::Respond)?;
    let status = conversation_status(&form.status)?;
    let id = ConversationId(path.into_inner());
    act(&state, &member, &req, move |conn, scope, actor| {
        chat::set_status(conn, scope, actor, id, status)?.ok_or(AppError::NotFound)
    })
    .await??;
    flash::set(
        &member.session,
        "success",
        if status == crate::db::models::conversation::RESOLVED {
            "Marked resolved: the visitor starts a new conversation to write again."
        } else {
            "Reopened."
        },
    );
    Ok(see_other(&format!("/app/conversations/{}", id.0)))
}

/// `POST /app/conversations/{id}/delete`: owners and admins erase one.
pub async fn delete_conversation(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<ConfirmForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageSettings)?;
    let id = ConversationId(path.into_inner());
    let page = format!("/app/conversations/{}", id.0);
    if let Some(back) = form.unticked(&member, "a conversation", &page) {
        return Ok(back);
    }
    let deleted = act(&state, &member, &req, move |conn, scope, actor| {
        chat::delete_conversation(conn, scope, actor, id)
    })
    .await??;
    if !deleted {
        return Err(AppError::NotFound);
    }
    flash::set(
        &member.session,
        "success",
        &format!("Conversation {} and its messages were deleted.", id.0),
    );
    Ok(see_other("/app/conversations"))
}

pub async fn conversation(
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
) -> AppResult<ConversationPage> {
    let (scope, id) = (member.scope.clone(), ConversationId(path.into_inner()));
    let (c, agent, messages, ticket) = state
        .db(move |conn| {
            let c = Conversation::find(conn, &scope, id)?.ok_or(AppError::NotFound)?;
            let agent = Agent::find(conn, &scope, c.agent_id)?.ok_or(AppError::NotFound)?;
            let messages = c.messages(conn)?;
            let ticket = crate::db::models::Ticket::for_conversation(conn, &scope, c.id)?;
            Ok((c, agent, messages, ticket))
        })
        .await?;
    Ok(ConversationPage {
        can_respond: member.role().can(Permission::Respond),
        can_delete: member.role().can(Permission::ManageSettings),
        chrome: chrome(&member, "conversations", flash::take(&member.session))?,
        id: c.id.0,
        agent_name: agent.name,
        channel: c.channel,
        status: c.status,
        visitor: c.visitor_id,
        summary: c.summary.unwrap_or_default(),
        started: when(c.created_at),
        messages: messages.into_iter().map(transcript_row).collect(),
        ticket: ticket.map(|t| (t.id.0, t.status)),
    })
}

/// One message as the team reads it: who, what, and how it was made.
pub(crate) fn transcript_row(m: crate::db::models::Message) -> TranscriptRow {
    let citations: Vec<Citation> = serde_json::from_str(&m.citations).unwrap_or_default();
    let mut meta = when(m.created_at);
    if let Some(p) = &m.provider {
        meta.push_str(&format!(" · {p}"));
    }
    if let Some(ms) = m.latency_ms {
        meta.push_str(&format!(" · {ms} ms"));
    }
    if let (Some(i), Some(o)) = (m.tokens_in, m.tokens_out) {
        meta.push_str(&format!(" · {i}+{o} tokens"));
    }
    TranscriptRow {
        visitor: m.role == "visitor",
        staff: m.role == "staff",
        content: m.content,
        meta,
        citations: citations
            .into_iter()
            .map(|c| match c.heading {
                Some(h) => format!("[{}] {} › {h} (score {:.2})", c.n, c.title, c.score),
                None => format!("[{}] {} (score {:.2})", c.n, c.title, c.score),
            })
            .collect(),
        handoff: m.handoff_offered,
    }
}
