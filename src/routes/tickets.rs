//! `/app/tickets`: the team's queue of conversations handed to it, and the
//! page where one is answered, noted, assigned and closed.

use actix_web::{Either, HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::agents::transcript_row;
use super::app::{act, chrome, other_organization, when};
use crate::auth::csrf::CsrfForm;
use crate::auth::extractors::Member;
use crate::csrf_protected;
use crate::db::models::ticket::{Assigned, STATUSES, TicketFilter};
use crate::db::models::{Agent, Conversation, Membership, Ticket};
use crate::domain::{Permission, TicketId, UserId};
use crate::error::{AppError, AppResult};
use crate::routes::auth::see_other;
use crate::routes::{flash, keep_page, page_number, unprocessable};
use crate::services::tickets::{self, TicketError};
use crate::startup::AppState;
use crate::views::Pager;
use crate::views::account::{FieldErrors, SwitchOrganizationPage};
use crate::views::tickets::{
    AssigneeChoice, EventRow, StatusTab, TicketPage, TicketRow, TicketsPage,
};

pub const DEFAULT_PER_PAGE: i64 = 50;
pub const MAX_PER_PAGE: i64 = 200;

/// The list filters, as the page and the API take them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TicketQuery {
    /// `open`, `pending`, `solved` or `all`.
    pub status: Option<String>,
    /// `anyone`, `me`, `nobody` or a user id.
    pub assigned: Option<String>,
    #[serde(default, deserialize_with = "crate::routes::blank_as_none")]
    pub page: Option<i64>,
    #[serde(default, deserialize_with = "crate::routes::blank_as_none")]
    pub per_page: Option<i64>,
}

impl TicketQuery {
    /// The filter to load one more row than a page shows (see [`keep_page`]);
    /// `me` is the signed-in member, if the caller is one.
    pub fn filter(&self, me: Option<UserId>, default_status: &str) -> AppResult<TicketFilter> {
        let status = match self.status.as_deref().map(str::trim) {
            None | Some("") => default_status,
            Some(s) => s,
        };
        let status = match status {
            "all" => None,
            s => Some(STATUSES.into_iter().find(|x| *x == s).ok_or_else(|| {
                AppError::Validation("status must be open, pending, solved or all".into())
            })?),
        };
        let assigned = match self.assigned.as_deref().map(str::trim) {
            None | Some("") | Some("anyone") => Assigned::Anyone,
            Some("nobody") => Assigned::Nobody,
            Some("me") => Assigned::To(me.ok_or_else(|| {
                AppError::Validation(
                    "assigned=me needs a signed-in member; an API key can give a user id".into(),
                )
            })?),
            Some(id) => Assigned::To(UserId(id.parse().map_err(|_| {
                AppError::Validation("assigned must be anyone, me, nobody or a user id".into())
            })?)),
        };
        let per_page = self.per_page.unwrap_or(DEFAULT_PER_PAGE);
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(AppError::Validation(format!(
                "per_page must be a number from 1 to {MAX_PER_PAGE}"
            )));
        }
        let page = page_number(self.page)?;
        Ok(TicketFilter {
            status,
            assigned,
            limit: per_page + 1,
            offset: (page - 1) * per_page,
        })
    }

    pub fn page(&self) -> i64 {
        self.page.unwrap_or(1)
    }

    pub fn per_page(&self) -> i64 {
        self.per_page.unwrap_or(DEFAULT_PER_PAGE)
    }
}

fn require(member: &Member) -> AppResult<()> {
    if member.role().can(Permission::Respond) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "Your role does not allow working on tickets.".into(),
        ))
    }
}

/// `GET /app/tickets`: the queue, open tickets first.
pub async fn list(
    state: web::Data<AppState>,
    member: Member,
    query: web::Query<TicketQuery>,
) -> AppResult<TicketsPage> {
    // A refused filter (an address edited by hand) shows the open tickets and
    // says why, as the conversation list does.
    let (query, filter, error) = match query.filter(Some(member.user.id), "open") {
        Ok(filter) => (query.into_inner(), filter, None),
        Err(e) => {
            let plain = TicketQuery::default();
            let filter = plain.filter(Some(member.user.id), "open")?;
            (plain, filter, Some(e.to_string()))
        }
    };
    let scope = member.scope.clone();
    let (mut rows, counts) = state
        .db(move |conn| {
            Ok((
                Ticket::list(conn, &scope, &filter)?,
                Ticket::count_by_status(conn, &scope)?,
            ))
        })
        .await?;
    let status = query
        .status
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "open".into());
    let assigned = query
        .assigned
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "anyone".into());
    let more = keep_page(&mut rows, query.per_page());
    let pager = {
        let (status, assigned) = (status.clone(), assigned.clone());
        Pager::new(query.page(), more, move |n| {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("status", &status)
                .append_pair("assigned", &assigned);
            if let Some(per_page) = query.per_page {
                q.append_pair("per_page", &per_page.to_string());
            }
            q.append_pair("page", &n.to_string());
            format!("/app/tickets?{}", q.finish())
        })
    };
    let count = |s: &str| counts.iter().find(|(x, _)| x == s).map_or(0, |(_, n)| *n);
    let tabs = [
        ("open", "Open"),
        ("pending", "Pending"),
        ("solved", "Solved"),
        ("all", "All"),
    ]
    .into_iter()
    .map(|(value, label)| StatusTab {
        value,
        label,
        count: count(value),
        current: status == value,
    })
    .collect();
    Ok(TicketsPage {
        chrome: chrome(&member, "tickets", flash::take(&member.session))?,
        tabs,
        status,
        assigned,
        rows: rows
            .into_iter()
            .map(|r| TicketRow {
                id: r.ticket.id.0,
                subject: r.ticket.subject,
                status: r.ticket.status,
                agent_name: r.agent_name,
                assignee: r.assignee_name.unwrap_or_default(),
                updated: when(r.ticket.updated_at),
            })
            .collect(),
        pager,
        error,
    })
}

/// What the ticket page shows besides the forms.
async fn ticket_page(
    state: &AppState,
    member: &Member,
    id: TicketId,
    errors: FieldErrors,
    typed: (String, String),
) -> AppResult<TicketPage> {
    let scope = member.scope.clone();
    let (ticket, conversation, agent, messages, events, members) = state
        .db(move |conn| {
            let ticket = Ticket::find(conn, &scope, id)?.ok_or(AppError::NotFound)?;
            let conversation = Conversation::find(conn, &scope, ticket.conversation_id)?
                .ok_or(AppError::NotFound)?;
            let agent =
                Agent::find(conn, &scope, conversation.agent_id)?.ok_or(AppError::NotFound)?;
            let messages = conversation.messages(conn)?;
            let events = ticket.events(conn)?;
            let members = Membership::list(conn, &scope)?;
            Ok((ticket, conversation, agent, messages, events, members))
        })
        .await?;
    let name = |m: &crate::db::models::MemberWithUser| m.user.display_name().to_string();
    let assignee = members
        .iter()
        .find(|m| Some(m.user.id) == ticket.assignee_id)
        .map(name)
        .unwrap_or_default();
    let assignees = members
        .iter()
        .filter(|m| m.membership.role().can(Permission::Respond) && m.user.disabled_at.is_none())
        .map(|m| AssigneeChoice {
            id: m.user.id.0,
            name: name(m),
            selected: Some(m.user.id) == ticket.assignee_id,
        })
        .collect();
    Ok(TicketPage {
        chrome: chrome(member, "tickets", flash::take(&member.session))?,
        id: ticket.id.0,
        subject: ticket.subject,
        status: ticket.status,
        assignee,
        assignees,
        conversation_id: conversation.id.0,
        agent_name: agent.name,
        channel: conversation.channel,
        summary: conversation.summary.unwrap_or_default(),
        started: when(ticket.created_at),
        messages: messages.into_iter().map(transcript_row).collect(),
        events: events
            .into_iter()
            .map(|e| {
                // A visitor asks for a person; the team (or a key) opens it.
                let staff = e.actor_id.is_some() || e.actor_label != tickets::VISITOR_LABEL;
                let what = match e.kind.as_str() {
                    "opened" if staff => "opened it".to_string(),
                    "opened" => "asked for a person".to_string(),
                    "reopened" if staff => "reopened it".to_string(),
                    "reopened" => "asked for a person again".to_string(),
                    "assigned" => format!("assigned it to {}", e.body),
                    "unassigned" if e.body.is_empty() => "unassigned it".to_string(),
                    "unassigned" => format!("unassigned it: {}", e.body),
                    "status" if staff => format!("set it to {}", e.body),
                    // The visitor's message is what moved it.
                    "status" => format!("wrote again, so it is {} again", e.body),
                    "note" => "noted".to_string(),
                    "reply" => "replied".to_string(),
                    other => other.to_string(),
                };
                let text = if matches!(e.kind.as_str(), "note" | "reply") {
                    e.body
                } else {
                    String::new()
                };
                // Members by the name the rest of the app uses; a key, a
                // visitor or a former member by the label kept at the time.
                let who = e
                    .actor_id
                    .and_then(|id| members.iter().find(|m| m.user.id == id))
                    .map_or(e.actor_label, name);
                EventRow {
                    who,
                    what,
                    text,
                    when: when(e.created_at),
                    note: e.kind == "note",
                }
            })
            .collect(),
        can_respond: member.role().can(Permission::Respond),
        errors,
        reply: typed.0,
        note: typed.1,
    })
}

/// `GET /app/tickets/{id}`.
/// `?org=` in an emailed link: the ticket's organization.
#[derive(Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    org: Option<String>,
}

pub async fn show(
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    query: web::Query<ShowQuery>,
) -> AppResult<Either<SwitchOrganizationPage, TicketPage>> {
    let id = TicketId(path.into_inner());
    // A link from an email names the ticket's organization: when the person
    // has another open, they are asked to switch (a link alone changes
    // nothing: forms open in other tabs would act on another organization).
    if let Some((target_id, target_name)) = other_organization(&member, query.org.as_deref()) {
        let page = SwitchOrganizationPage {
            chrome: chrome(&member, "tickets", None)?,
            target_id,
            target_name,
            what: format!("ticket #{}", id.0),
            next: format!("/app/tickets/{}", id.0),
        };
        return Ok(Either::Left(page));
    }
    let page = ticket_page(
        &state,
        &member,
        id,
        FieldErrors::default(),
        Default::default(),
    )
    .await?;
    Ok(Either::Right(page))
}

/// A refused form: the ticket page again, the message beside the field and
/// what was typed kept.
async fn refused(
    req: &HttpRequest,
    state: &AppState,
    member: &Member,
    id: TicketId,
    error: TicketError,
    typed: (String, String),
) -> AppResult<HttpResponse> {
    let Some(field) = error.field() else {
        return Err(error.into());
    };
    let subject = match field {
        "content" => "The reply",
        "note" => "The note",
        "assignee" => "The assignee",
        _ => "This",
    };
    let mut errors = FieldErrors::default();
    errors.add(field, format!("{subject} {}.", error.message()));
    let page = ticket_page(state, member, id, errors, typed).await?;
    Ok(unprocessable(page, req))
}

#[derive(Deserialize)]
pub struct ReplyForm {
    csrf_token: String,
    #[serde(default)]
    content: String,
}
csrf_protected!(ReplyForm);

/// `POST /app/tickets/{id}/reply`.
pub async fn reply(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<ReplyForm>,
) -> AppResult<HttpResponse> {
    require(&member)?;
    let id = TicketId(path.into_inner());
    let content = form.content.clone();
    let scope = member.scope.clone();
    // Only for the wording below: a solved ticket's chat was closed to the visitor.
    let was_solved = state
        .db(move |conn| Ok(Ticket::find(conn, &scope, id)?))
        .await?
        .is_some_and(|t| t.status == crate::db::models::ticket::SOLVED);
    let summarize_after = state.config.conversation_idle;
    match act(&state, &member, &req, move |conn, scope, actor| {
        tickets::reply(conn, scope, actor, id, &content, summarize_after)
    })
    .await?
    {
        Ok(_) => {
            flash::set(
                &member.session,
                "success",
                if was_solved {
                    "Reply sent; the ticket waits for the visitor again. Their chat showed the conversation as closed: if their page is still open (up to 30 minutes after), the reply appears there and they can answer; otherwise they will not see it."
                } else {
                    "Reply sent: the visitor sees it in their chat."
                },
            );
            Ok(see_other(&format!("/app/tickets/{}", id.0)))
        }
        Err(e) => refused(&req, &state, &member, id, e, (form.content, String::new())).await,
    }
}

#[derive(Deserialize)]
pub struct NoteForm {
    csrf_token: String,
    #[serde(default)]
    note: String,
}
csrf_protected!(NoteForm);

/// `POST /app/tickets/{id}/notes`.
pub async fn note(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<NoteForm>,
) -> AppResult<HttpResponse> {
    require(&member)?;
    let id = TicketId(path.into_inner());
    let text = form.note.clone();
    match act(&state, &member, &req, move |conn, scope, actor| {
        tickets::note(conn, scope, actor, id, &text)
    })
    .await?
    {
        Ok(_) => {
            flash::set(&member.session, "success", "Note added.");
            Ok(see_other(&format!("/app/tickets/{}", id.0)))
        }
        Err(e) => refused(&req, &state, &member, id, e, (String::new(), form.note)).await,
    }
}

#[derive(Deserialize)]
pub struct AssignForm {
    csrf_token: String,
    /// A user id, or empty for nobody.
    #[serde(default)]
    assignee: String,
}
csrf_protected!(AssignForm);

/// `POST /app/tickets/{id}/assign`.
pub async fn assign(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<AssignForm>,
) -> AppResult<HttpResponse> {
    require(&member)?;
    let id = TicketId(path.into_inner());
    let assignee = match form.assignee.trim() {
        "" => None,
        raw => match raw.parse() {
            Ok(user) => Some(UserId(user)),
            Err(_) => {
                let error = tickets::TicketError::not_a_responder();
                return refused(&req, &state, &member, id, error, Default::default()).await;
            }
        },
    };
    let base_url = state.config.base_url.clone();
    match act(&state, &member, &req, move |conn, scope, actor| {
        tickets::assign(conn, scope, actor, id, assignee, &base_url)
    })
    .await?
    {
        Ok(_) => {
            flash::set(
                &member.session,
                "success",
                if assignee.is_some() {
                    "Assigned."
                } else {
                    "Nobody has it now."
                },
            );
            Ok(see_other(&format!("/app/tickets/{}", id.0)))
        }
        Err(e) => refused(&req, &state, &member, id, e, Default::default()).await,
    }
}

#[derive(Deserialize)]
pub struct TicketStatusForm {
    csrf_token: String,
    #[serde(default)]
    status: String,
}
csrf_protected!(TicketStatusForm);

/// `POST /app/tickets/{id}/status`.
pub async fn set_status(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<TicketStatusForm>,
) -> AppResult<HttpResponse> {
    require(&member)?;
    let id = TicketId(path.into_inner());
    let status = tickets::parse_status(&form.status)?;
    act(&state, &member, &req, move |conn, scope, actor| {
        tickets::set_status(conn, scope, actor, id, status)
    })
    .await??;
    flash::set(
        &member.session,
        "success",
        if status == crate::db::models::ticket::SOLVED {
            "Solved: the conversation is closed; the visitor starts a new one to write again."
        } else {
            "Status changed."
        },
    );
    Ok(see_other(&format!("/app/tickets/{}", id.0)))
}
