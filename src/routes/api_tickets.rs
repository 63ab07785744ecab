//! JSON API for the team's tickets (`/api/v1/tickets`): the queue, one ticket
//! with its timeline, and replying, noting, assigning and closing.

use actix_web::{HttpRequest, HttpResponse, web};

use super::json::Json;
use serde::{Deserialize, Deserializer, Serialize};

use super::api::{ErrorJson, iso};
use super::api_agents::actor;
use super::tickets::TicketQuery;
use crate::auth::extractors::{ApiCaller, client_ip};
use crate::db::models::{Ticket, TicketEvent};
use crate::domain::{Permission, TicketId, UserId};
use crate::error::{AppError, AppResult};
use crate::services::tickets;
use crate::startup::AppState;

fn require_respond(caller: &ApiCaller) -> AppResult<()> {
    caller.require_write()?;
    if caller.scope.role().can(Permission::Respond) {
        Ok(())
    } else {
        Err(AppError::Forbidden("Your role does not allow this.".into()))
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketJson {
    id: i64,
    conversation_id: i64,
    subject: String,
    /// `open` (the team owes an answer), `pending` (waiting for the visitor) or `solved`.
    status: String,
    /// The user it is assigned to.
    assignee_id: Option<i64>,
    created_at: String,
    updated_at: String,
    solved_at: Option<String>,
}

fn ticket_json(t: Ticket) -> TicketJson {
    TicketJson {
        id: t.id.0,
        conversation_id: t.conversation_id.0,
        subject: t.subject,
        status: t.status,
        assignee_id: t.assignee_id.map(|u| u.0),
        created_at: iso(t.created_at),
        updated_at: iso(t.updated_at),
        solved_at: t.solved_at.map(iso),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketEventJson {
    id: i64,
    /// `opened`, `reopened`, `assigned`, `unassigned`, `status`, `note` or `reply`.
    kind: String,
    actor: String,
    actor_id: Option<i64>,
    /// The reply or note, the new status, or the assignee's name.
    body: String,
    created_at: String,
}

fn event_json(e: TicketEvent) -> TicketEventJson {
    TicketEventJson {
        id: e.id,
        kind: e.kind,
        actor: e.actor_label,
        actor_id: e.actor_id.map(|u| u.0),
        body: e.body,
        created_at: iso(e.created_at),
    }
}

/// One page of tickets, latest activity first.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketPageJson {
    data: Vec<TicketJson>,
    page: i64,
    per_page: i64,
    /// Whether `page + 1` has more.
    has_more: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketDetailJson {
    #[serde(flatten)]
    ticket: TicketJson,
    /// The timeline, oldest first; notes are the team's only.
    events: Vec<TicketEventJson>,
}

#[utoipa::path(get, path = "/api/v1/tickets", tag = "tickets", security(("api_key" = [])),
    params(("status" = Option<String>, Query, description = "`open`, `pending`, `solved` or `all` (default)"),
        ("assigned" = Option<String>, Query, pattern = "^(anyone|nobody|me|[0-9]+)?$", description = "`anyone` (default), `nobody`, `me` (signed-in members) or a user id"),
        ("page" = Option<i64>, Query, minimum = 1, maximum = 100000, description = "1-based"), ("per_page" = Option<i64>, Query, minimum = 1, maximum = 200, description = "1 to 200, default 50")),
    responses((status = 200, body = TicketPageJson), (status = 422, body = ErrorJson)))]
pub async fn list(
    state: web::Data<AppState>,
    caller: ApiCaller,
    query: web::Query<TicketQuery>,
) -> AppResult<HttpResponse> {
    let query = query.into_inner();
    let filter = query.filter(caller.scope.user_id(), "all")?;
    let scope = caller.scope.clone();
    let mut rows = state
        .db(move |conn| Ok(Ticket::list(conn, &scope, &filter)?))
        .await?;
    let has_more = super::keep_page(&mut rows, query.per_page());
    Ok(HttpResponse::Ok().json(TicketPageJson {
        data: rows.into_iter().map(|r| ticket_json(r.ticket)).collect(),
        page: query.page(),
        per_page: query.per_page(),
        has_more,
    }))
}

#[utoipa::path(get, path = "/api/v1/tickets/{id}", tag = "tickets", security(("api_key" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = TicketDetailJson), (status = 404, body = ErrorJson)))]
pub async fn get(
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let (scope, id) = (caller.scope.clone(), TicketId(path.into_inner()));
    let (ticket, events) = state
        .db(move |conn| {
            let ticket = Ticket::find(conn, &scope, id)?.ok_or(AppError::NotFound)?;
            let events = ticket.events(conn)?;
            Ok((ticket, events))
        })
        .await?;
    Ok(HttpResponse::Ok().json(TicketDetailJson {
        ticket: ticket_json(ticket),
        events: events.into_iter().map(event_json).collect(),
    }))
}

/// `null` and absent are different here: `assigneeId: null` unassigns.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TicketUpdate {
    /// `open`, `pending` or `solved` (solving closes the conversation).
    #[serde(default)]
    status: Option<String>,
    /// A member who can answer conversations, or `null` for nobody.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    assignee_id: Option<Option<i64>>,
}

#[utoipa::path(patch, path = "/api/v1/tickets/{id}", tag = "tickets", security(("api_key" = [])), params(("id" = i64, Path)), request_body = TicketUpdate,
    responses((status = 200, body = TicketJson), (status = 403, body = ErrorJson), (status = 404, body = ErrorJson), (status = 422, body = ErrorJson)))]
pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
    body: Json<TicketUpdate>,
) -> AppResult<HttpResponse> {
    require_respond(&caller)?;
    let body = body.into_inner();
    let status = body
        .status
        .as_deref()
        .map(tickets::parse_status)
        .transpose()?;
    if status.is_none() && body.assignee_id.is_none() {
        return Err(AppError::Validation(
            "give status, assigneeId or both".into(),
        ));
    }
    let (scope, label, ip) = (caller.scope.clone(), caller.label.clone(), client_ip(&req));
    let id = TicketId(path.into_inner());
    let base_url = state.config.base_url.clone();
    let ticket = state
        .db(move |conn| {
            // Both changes or neither.
            crate::db::write_transaction(conn, |conn| {
                let who = actor(&scope, &label, &ip);
                let mut ticket = Ticket::find(conn, &scope, id)?.ok_or(AppError::NotFound)?;
                if let Some(assignee) = body.assignee_id {
                    ticket =
                        tickets::assign(conn, &scope, &who, id, assignee.map(UserId), &base_url)?;
                }
                if let Some(status) = status {
                    ticket = tickets::set_status(conn, &scope, &who, id, status)?;
                }
                Ok(ticket)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(ticket_json(ticket)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketText {
    /// Counted once trimmed.
    #[schema(min_length = 1, max_length = 8000)]
    content: String,
}

/// A reply or a note: the same checks, a different step.
async fn add_text(
    req: &HttpRequest,
    state: &AppState,
    caller: &ApiCaller,
    id: i64,
    content: String,
    step: impl FnOnce(
        &mut crate::db::DbConnection,
        &crate::domain::TenantScope,
        &crate::services::accounts::Actor<'_>,
        TicketId,
        &str,
    ) -> Result<Ticket, tickets::TicketError>
    + Send
    + 'static,
) -> AppResult<HttpResponse> {
    require_respond(caller)?;
    let (scope, label, ip) = (caller.scope.clone(), caller.label.clone(), client_ip(req));
    let ticket = state
        .db(move |conn| {
            Ok(step(
                conn,
                &scope,
                &actor(&scope, &label, &ip),
                TicketId(id),
                &content,
            )?)
        })
        .await?;
    Ok(HttpResponse::Created().json(ticket_json(ticket)))
}

#[utoipa::path(post, path = "/api/v1/tickets/{id}/replies", tag = "tickets", security(("api_key" = [])), params(("id" = i64, Path)), request_body = TicketText,
    responses((status = 201, description = "Sent: the visitor sees it in their chat; the ticket is pending", body = TicketJson),
        (status = 403, body = ErrorJson), (status = 404, body = ErrorJson), (status = 422, body = ErrorJson)))]
pub async fn reply(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
    body: Json<TicketText>,
) -> AppResult<HttpResponse> {
    let content = body.into_inner().content;
    let summarize_after = state.config.conversation_idle;
    add_text(
        &req,
        &state,
        &caller,
        path.into_inner(),
        content,
        move |conn, scope, actor, id, text| {
            tickets::reply(conn, scope, actor, id, text, summarize_after)
        },
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/tickets/{id}/notes", tag = "tickets", security(("api_key" = [])), params(("id" = i64, Path)), request_body = TicketText,
    responses((status = 201, description = "Noted, for the team only", body = TicketJson),
        (status = 403, body = ErrorJson), (status = 404, body = ErrorJson), (status = 422, body = ErrorJson)))]
pub async fn note(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
    body: Json<TicketText>,
) -> AppResult<HttpResponse> {
    let content = body.into_inner().content;
    add_text(
        &req,
        &state,
        &caller,
        path.into_inner(),
        content,
        tickets::note,
    )
    .await
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, get, update, reply, note),
    components(schemas(TicketJson, TicketEventJson, TicketPageJson, TicketDetailJson, TicketUpdate, TicketText)),
    tags((name = "tickets", description = "Conversations handed to the team: replies reach the visitor's chat, notes stay in the team."))
)]
pub struct TicketsApiDoc;
