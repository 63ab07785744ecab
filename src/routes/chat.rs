//! End-user surfaces: the public chat page `/c/{org}/{agent}` and the public chat
//! API the page and the widget call (`/api/v1/chat/{org}/{agent}/…`). No cookies:
//! a conversation is reached with the bearer token handed out when it started,
//! and embedding sites are checked against the agent's allowed origins.

use std::convert::Infallible;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{Either, HttpRequest, HttpResponse, web};

use super::json::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::sync::mpsc;

#[allow(unused_imports)] // named by the OpenAPI annotations
use super::api::ErrorJson;
use crate::auth::extractors::client_ip;
use crate::db::models::conversation::{self, RESOLVED};
use crate::db::models::{Agent, Conversation, NewConversation, NewMessage, Organization};
use crate::db::write_transaction;
use crate::domain::{ConversationId, Slug};
use crate::error::{AppError, AppResult};
use crate::rate_limit::Standing;
use crate::services::billing::limits;
use crate::services::chat::{
    self, Citation, MAX_MESSAGE_CHARS, ReplyEvent, ReplyOutcome, VISITOR_MESSAGES_PER_MINUTE,
    schedule_summary,
};
use crate::startup::AppState;
use crate::views::chat::ChatPage;

pub const TOKEN_HEADER: &str = "X-Conversation-Token";

/// Where a public chat address leads.
struct Resolved {
    org: Organization,
    agent: Agent,
    /// Reached through a former address of the organization or the agent.
    moved: bool,
    /// The address it was reached at, `org/agent`, as parsed.
    address: String,
}

/// The organization and agent named in the path, if both exist and are
/// enabled; former addresses lead to them too, so snippets already embedded
/// keep working after a slug changes.
async fn resolve(state: &AppState, org: &str, agent: &str) -> AppResult<Resolved> {
    let (Ok(org_slug), Ok(agent_slug)) = (Slug::parse(org), Slug::parse(agent)) else {
        return Err(AppError::NotFound);
    };
    let found = state
        .db(move |conn| {
            let Some((org, org_moved)) = Organization::public(conn, &org_slug)? else {
                return Ok(None);
            };
            let agent = Agent::public(conn, org.id, &agent_slug)?;
            Ok(agent.map(|(agent, agent_moved)| Resolved {
                org,
                agent,
                moved: org_moved || agent_moved,
                address: format!("{}/{}", org_slug.as_str(), agent_slug.as_str()),
            }))
        })
        .await?;
    match found {
        Some(found) if !found.org.is_disabled() && found.agent.enabled => Ok(found),
        _ => Err(AppError::NotFound),
    }
}

/// Same-origin requests (our own chat page) and the agent's allowed origins pass;
/// a request without `Origin` is not from a browser page and passes too. Our
/// own origin is the request's host or `BASE_URL`'s: a reverse proxy that
/// rewrites `Host` (nginx's default `proxy_pass`) must not lock the chat page
/// out of its own API.
fn check_origin(req: &HttpRequest, state: &AppState, agent: &Agent) -> AppResult<()> {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    let host = req.connection_info().host().to_string();
    let same_origin = origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(&host))
        || origin.eq_ignore_ascii_case(&state.config.base_url.origin().ascii_serialization());
    if same_origin || agent.allows_origin(origin) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "This chat is not available on this site.".into(),
        ))
    }
}

/// Answers CORS preflights only for origins the agent allows.
pub async fn preflight(req: HttpRequest, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let org = req.match_info().get("org").unwrap_or_default().to_string();
    let agent = req
        .match_info()
        .get("agent")
        .unwrap_or_default()
        .to_string();
    let Resolved { agent, .. } = resolve(&state, &org, &agent).await?;
    check_origin(&req, &state, &agent)?;
    Ok(HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "content-type, accept, x-conversation-token",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish())
}

/// Middleware for the public chat API: lets the calling page read responses
/// (errors included, so the widget can show "slow down"). Which origins may
/// actually start or continue a conversation is decided by the handlers.
pub async fn cors(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(
                "Retry-After, X-Correlation-Id, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset",
            ),
        );
    }
    Ok(res)
}

/// The query parameter a redirect from a former address adds, naming it.
const FROM_PARAM: &str = "fd_from";

/// `GET /c/{org}/{agent}`: the public chat page. A former address redirects
/// to the current one, so the link people bookmark from then on is the new
/// one; the redirect names the former address, so the page's script can carry
/// the visitor's conversation kept under it over.
pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> AppResult<Either<HttpResponse, ChatPage>> {
    let (org_slug, agent_slug) = path.into_inner();
    let Resolved {
        org,
        agent,
        moved,
        address,
    } = resolve(&state, &org_slug, &agent_slug).await?;
    let query: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    if moved {
        let mut to = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in query.iter().filter(|(key, _)| key != FROM_PARAM) {
            to.append_pair(key, value);
        }
        to.append_pair(FROM_PARAM, &address);
        let to = format!("/c/{}/{}?{}", org.slug, agent.slug, to.finish());
        // Not cached even where headers elsewhere change: moving back to a
        // former address would otherwise loop in the browser.
        return Ok(Either::Left(
            HttpResponse::PermanentRedirect()
                .insert_header((header::LOCATION, to))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish(),
        ));
    }
    // Vouched for only when it really is a former address of this agent:
    // a link naming another business's address must not make the script
    // hand this one the visitor's id kept for that one.
    let named = query
        .iter()
        .rev()
        .find(|(key, _)| key == FROM_PARAM)
        .and_then(|(_, named)| named.split_once('/'));
    let from = match named {
        Some((o, a)) => resolve(&state, o, a)
            .await
            .ok()
            .filter(|former| former.moved && former.org.id == org.id && former.agent.id == agent.id)
            .map(|former| former.address),
        None => None,
    };
    Ok(Either::Right(ChatPage {
        org_name: org.name,
        org_slug: org.slug,
        agent_name: agent.name,
        agent_slug: agent.slug,
        from,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartChat {
    /// `page` or `widget`.
    channel: Option<String>,
    /// The browser's own id for the visitor, kept across conversations.
    #[schema(min_length = 8, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    visitor_id: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatStarted {
    conversation_id: i64,
    /// Send it as `X-Conversation-Token` with every later call.
    token: String,
    visitor_id: String,
    greeting: String,
    agent_name: String,
}

/// Messages, and conversations started, per client address and minute
/// (`RATE_LIMIT_PER_MINUTE`); 0 turns the per-address budget off, leaving the
/// per-visitor one.
fn per_address_budget(state: &AppState) -> i64 {
    match state.config.rate_limit_per_minute {
        0 => i64::MAX,
        n => i64::from(n),
    }
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn valid_visitor_id(id: &str) -> bool {
    (8..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[utoipa::path(post, path = "/api/v1/chat/{org}/{agent}/conversations", tag = "chat",
    params(("org" = String, Path), ("agent" = String, Path)), request_body = StartChat,
    responses((status = 201, body = ChatStarted, links(
            ("transcript" = (operation_id = "transcript", description = "With the started conversation's id and token",
                parameters(("org" = "$request.path.org"), ("agent" = "$request.path.agent"), ("id" = "$response.body#/conversationId"), ("X-Conversation-Token" = "$response.body#/token")))),
            ("send" = (operation_id = "send", description = "With the started conversation's id and token",
                parameters(("org" = "$request.path.org"), ("agent" = "$request.path.agent"), ("id" = "$response.body#/conversationId"), ("X-Conversation-Token" = "$response.body#/token")))),
            ("escalate" = (operation_id = "escalate", description = "With the started conversation's id and token",
                parameters(("org" = "$request.path.org"), ("agent" = "$request.path.agent"), ("id" = "$response.body#/conversationId"), ("X-Conversation-Token" = "$response.body#/token")))))),
        (status = 403, body = ErrorJson), (status = 404, body = ErrorJson)))]
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    let (org_slug, agent_slug) = path.into_inner();
    let Resolved { org, agent, .. } = resolve(&state, &org_slug, &agent_slug).await?;
    check_origin(&req, &state, &agent)?;
    // No body starts a conversation with the defaults; a body that is there
    // must be the documented one (not silently taken for no body).
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        StartChat {
            channel: None,
            visitor_id: None,
        }
    } else {
        super::json::from_slice::<StartChat>(&body).map_err(|e| crate::error::invalid_json(&e))?
    };
    let channel = match body.channel.as_deref() {
        None | Some(conversation::WIDGET) => conversation::WIDGET,
        Some(conversation::PAGE) => conversation::PAGE,
        Some(_) => {
            return Err(AppError::Validation(
                "channel must be page or widget".into(),
            ));
        }
    };
    let visitor_id = body
        .visitor_id
        .filter(|v| valid_visitor_id(v))
        .unwrap_or_else(|| format!("v_{}", hex::encode(rand::random::<[u8; 12]>())));
    let token = hex::encode(rand::random::<[u8; 24]>());
    // Kept, and counted, as the per-address limits see it: an IPv6 visitor by
    // its /64, so rotating through it does not start conversations unlimited.
    let ip = crate::auth::extractors::address_bucket(&client_ip(&req));
    let per_ip = per_address_budget(&state);
    let started = {
        let (visitor_id, hash) = (visitor_id.clone(), token_hash(&token));
        let org_id = org.id;
        let agent_id = agent.id;
        state
            .db(move |conn| {
                write_transaction(conn, |conn| {
                // Each start writes a row: one address may not fill the table.
                crate::db::lock_until_commit(conn, &format!("chat:address:{ip}"))?;
                let since = crate::domain::now() - chrono::TimeDelta::minutes(1);
                let started = Conversation::recently_started_from(conn, &ip, since)?;
                let limit = u32::try_from(per_ip).unwrap_or(u32::MAX);
                if started >= per_ip {
                    return Err(AppError::TooManyRequests {
                        message: "Too many conversations were started from this address. Please wait a moment and try again.".into(),
                        limit,
                        retry_after_secs: 60,
                    });
                }
                // Counted over the last minute, like the messages.
                let standing = Standing {
                    limit,
                    remaining: u32::try_from(per_ip - started - 1).unwrap_or(0),
                    reset_secs: 60,
                };
                Ok((standing, Conversation::start(
                    conn,
                    org_id,
                    &NewConversation {
                        agent_id,
                        channel,
                        visitor_id: &visitor_id,
                        visitor_ip: &ip,
                        token_hash: &hash,
                    },
                )?))
                })
            })
            .await?
    };
    let (standing, conversation) = started;
    let mut res = HttpResponse::Created().json(ChatStarted {
        conversation_id: conversation.id.0,
        token,
        visitor_id,
        greeting: agent.greeting,
        agent_name: agent.name,
    });
    // With the per-address budget off, the address middleware's is the one.
    if per_ip != i64::MAX {
        crate::rate_limit::set_headers(res.headers_mut(), standing);
    }
    Ok(res)
}

/// The conversation named in the path, if the caller holds its token.
async fn conversation(
    req: &HttpRequest,
    state: &AppState,
    org: &str,
    agent: &str,
    id: i64,
) -> AppResult<(Agent, Conversation)> {
    let Resolved { org, agent, .. } = resolve(state, org, agent).await?;
    check_origin(req, state, &agent)?;
    let token = req
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(AppError::NotFound)?;
    let expected = token_hash(token);
    let org_id = org.id;
    let found = state
        .db(move |conn| Ok(Conversation::find_in(conn, org_id, ConversationId(id))?))
        .await?
        .filter(|c| c.agent_id == agent.id)
        .filter(|c| bool::from(c.token_hash.as_bytes().ct_eq(expected.as_bytes())));
    // A wrong token and a wrong id look the same: nothing to probe.
    found.map(|c| (agent, c)).ok_or(AppError::NotFound)
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicMessage {
    role: String,
    content: String,
    citations: Vec<Citation>,
    handoff_offered: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicTranscript {
    status: String,
    messages: Vec<PublicMessage>,
}

#[utoipa::path(get, path = "/api/v1/chat/{org}/{agent}/conversations/{id}/messages", tag = "chat",
    params(("org" = String, Path), ("agent" = String, Path), ("id" = i64, Path), ("X-Conversation-Token" = String, Header, description = "The `token` the conversation started with")),
    responses((status = 200, body = PublicTranscript), (status = 404, body = ErrorJson)))]
pub async fn transcript(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String, i64)>,
) -> AppResult<HttpResponse> {
    let (org, agent, id) = path.into_inner();
    let (_, conversation) = self::conversation(&req, &state, &org, &agent, id).await?;
    let status = conversation.status.clone();
    let messages = state
        .db(move |conn| Ok(conversation.messages(conn)?))
        .await?;
    Ok(HttpResponse::Ok().json(PublicTranscript {
        status,
        messages: messages
            .into_iter()
            .map(|m| PublicMessage {
                citations: serde_json::from_str(&m.citations).unwrap_or_default(),
                role: m.role,
                content: m.content,
                handoff_offered: m.handoff_offered,
            })
            .collect(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// Counted once trimmed.
    #[schema(min_length = 1, max_length = 4000)]
    content: String,
}

#[utoipa::path(post, path = "/api/v1/chat/{org}/{agent}/conversations/{id}/messages", tag = "chat",
    params(("org" = String, Path), ("agent" = String, Path), ("id" = i64, Path), ("X-Conversation-Token" = String, Header, description = "The `token` the conversation started with")), request_body = SendMessage,
    responses((status = 200, description = "The reply: JSON, or Server-Sent Events (`delta` pieces, then `done` with this body, or `error` with the error shape if the reply failed) with `Accept: text/event-stream`", body = ReplyOutcome),
        (status = 402, body = ErrorJson), (status = 404, body = ErrorJson), (status = 410, description = "The conversation was resolved (or erased while its reply was written): start a new one", body = ErrorJson), (status = 422, body = ErrorJson), (status = 429, description = "Too many messages from this visitor or address (a minute), or from this address today", body = ErrorJson)))]
pub async fn send(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String, i64)>,
    body: Json<SendMessage>,
) -> AppResult<HttpResponse> {
    let (org, agent, id) = path.into_inner();
    let (agent, conversation) = self::conversation(&req, &state, &org, &agent, id).await?;
    let content = body.into_inner().content;
    let ip = client_ip(&req);
    let limits = AddressLimits {
        per_minute: per_address_budget(&state),
        per_day: match state.config.chat_messages_per_address_per_day {
            0 => None,
            n => Some(i64::from(n)),
        },
    };
    let accepted =
        accept_visitor_message(&state, conversation, content.clone(), ip, Some(limits)).await?;
    let standing = accepted.standing;
    let mut res = respond(&req, &state, accepted, agent, content).await?;
    crate::rate_limit::set_headers(res.headers_mut(), standing);
    Ok(res)
}

/// A resolved conversation takes no more from the visitor.
fn closed() -> AppError {
    AppError::Gone(crate::error::CONVERSATION_CLOSED.into())
}

/// A visitor's message, stored.
pub(crate) struct Accepted {
    pub conversation: Conversation,
    /// Where the visitor stands against the tighter of its two limits.
    pub standing: Standing,
    /// The stored message's id.
    pub message_id: i64,
    /// A person from the team answers this conversation now, not the agent.
    pub team_has_it: bool,
}

/// What one address may send through the public chat.
pub(crate) struct AddressLimits {
    pub per_minute: i64,
    /// What one address spends of the organization's messages in 24 hours:
    /// fresh conversations are free to start, so without it one address could
    /// use up a month's allowance in minutes.
    pub per_day: Option<i64>,
}

/// Validates, rate-limits and stores a visitor's message; says where the
/// visitor stands against the tighter of its two limits (per visitor, per address).
/// `address_limits` are the public chat's; the API, called by the
/// organization's own servers on behalf of many people, has none (its API key
/// has a budget).
pub(crate) async fn accept_visitor_message(
    state: &AppState,
    conversation: Conversation,
    content: String,
    ip: String,
    address_limits: Option<AddressLimits>,
) -> AppResult<Accepted> {
    let cleaned = crate::domain::text::clean(&content, true);
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        return Err(AppError::Validation("The message is empty.".into()));
    }
    if trimmed.chars().count() > MAX_MESSAGE_CHARS {
        return Err(AppError::Validation(format!(
            "A message can be at most {MAX_MESSAGE_CHARS} characters."
        )));
    }
    if conversation.status == RESOLVED {
        return Err(closed());
    }
    let per_ip = address_limits.as_ref().map_or(i64::MAX, |l| l.per_minute);
    let daily_per_address = address_limits.and_then(|l| l.per_day);
    // Counted where each message comes from, not where the conversation began:
    // conversations started from one address cannot carry another's flood.
    let address = crate::auth::extractors::address_bucket(&ip);
    let summarize_after = state.config.conversation_idle;
    let billing = state.config.stripe.clone();
    let base_url = state.config.base_url.clone();
    let content = trimmed.to_string();
    state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                // Visitor before address, always: see `lock_until_commit`.
                crate::db::lock_until_commit(
                    conn,
                    &format!("chat:visitor:{}:{}", conversation.organization_id, conversation.visitor_id),
                )?;
                crate::db::lock_until_commit(conn, &format!("chat:address:{address}"))?;
                // Resolved by the team since it was read?
                Conversation::lock(conn, conversation.id)?;
                let conversation =
                    Conversation::find_in(conn, conversation.organization_id, conversation.id)?
                        .filter(|c| c.status != RESOLVED)
                        .ok_or_else(closed)?;
                let since = crate::domain::now() - chrono::TimeDelta::minutes(1);
                let (by_visitor, by_ip) = Conversation::recent_visitor_messages(
                    conn,
                    conversation.organization_id,
                    &conversation.visitor_id,
                    &address,
                    since,
                )?;
                if by_visitor >= VISITOR_MESSAGES_PER_MINUTE || by_ip >= per_ip {
                    let limit = if by_visitor >= VISITOR_MESSAGES_PER_MINUTE {
                        VISITOR_MESSAGES_PER_MINUTE
                    } else {
                        per_ip
                    };
                    return Err(AppError::TooManyRequests {
                        message: "You are sending messages too quickly. Please wait a moment and try again.".into(),
                        limit: u32::try_from(limit).unwrap_or(u32::MAX),
                        retry_after_secs: 60,
                    });
                }
                if let Some(cap) = daily_per_address {
                    let day = chrono::TimeDelta::days(1);
                    let now = crate::domain::now();
                    let (today, first) = Conversation::messages_from_address(
                        conn,
                        conversation.organization_id,
                        &address,
                        now - day,
                        cap,
                    )?;
                    if today >= cap {
                        // Whole again once the oldest of them is a day old.
                        let wait = first.map_or(day, |first| first + day - now);
                        return Err(AppError::TooManyRequests {
                            message: "Many messages were sent from your network today. Please try again later.".into(),
                            limit: u32::try_from(cap).unwrap_or(u32::MAX),
                            retry_after_secs: u64::try_from(wait.num_seconds().max(1)).unwrap_or(60),
                        });
                    }
                }
                // Counted over the last minute, so the budget is whole again a
                // minute after this message at the latest.
                let (limit, used) = if VISITOR_MESSAGES_PER_MINUTE - by_visitor <= per_ip - by_ip {
                    (VISITOR_MESSAGES_PER_MINUTE, by_visitor)
                } else {
                    (per_ip, by_ip)
                };
                let standing = Standing {
                    limit: u32::try_from(limit).unwrap_or(u32::MAX),
                    remaining: u32::try_from(limit - used - 1).unwrap_or(0),
                    reset_secs: 60,
                };
                limits::count_message(conn, &billing, conversation.organization_id, &base_url)?;
                let team_has_it = crate::services::tickets::visitor_wrote(conn, &conversation)?;
                let message =
                    conversation.add_message(conn, &NewMessage::from_visitor(&content, &address))?;
                // No agent reply follows (whose turn would schedule it): the
                // summary catches up with the visitor's side of the talk.
                if team_has_it {
                    schedule_summary(conn, &conversation, message.id, summarize_after)?;
                }
                Ok(Accepted {
                    conversation,
                    standing,
                    message_id: message.id,
                    team_has_it,
                })
            })
        })
        .await
}

/// Starts the reply and answers with its stream (SSE) or, when the caller does
/// not accept a stream, with the finished reply as JSON.
pub(crate) async fn respond(
    req: &HttpRequest,
    state: &AppState,
    accepted: Accepted,
    agent: Agent,
    question: String,
) -> AppResult<HttpResponse> {
    let wants_stream = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let (tx, rx) = mpsc::channel::<ReplyEvent>(64);
    if accepted.team_has_it {
        // The team took over: the agent does not talk over them.
        let outcome = ReplyOutcome {
            message_id: accepted.message_id,
            content: TEAM_HAS_IT.into(),
            citations: Vec::new(),
            handoff_offered: false,
            latency_ms: 0,
            provider: "team".into(),
        };
        if !wants_stream {
            return Ok(HttpResponse::Ok().json(outcome));
        }
        let _ = tx.send(ReplyEvent::Done(outcome)).await;
        drop(tx);
        return Ok(event_stream(rx, None));
    }
    let conversation = accepted.conversation;
    // The reply runs on its own: a visitor who closes the tab still gets an
    // answer stored for the team to read.
    let engine = state.chat.clone();
    let pool = state.pool.clone();
    let task = actix_web::rt::spawn(async move {
        let reply = engine.reply(pool, conversation, agent, question, tx).await;
        match &reply {
            Ok(_) => {}
            Err(e @ chat::ChatError::Erased) => tracing::info!(error = %e, "reply not kept"),
            Err(e) => tracing::error!(error = %e, "reply failed"),
        }
        reply.map_err(AppError::from)
    });
    if wants_stream {
        let correlation_id = crate::telemetry::CorrelationId::of(req);
        return Ok(event_stream(
            rx,
            Some(Reply {
                task,
                correlation_id,
            }),
        ));
    }
    drop(rx);
    match task.await {
        Ok(reply) => Ok(HttpResponse::Ok().json(reply?)),
        Err(panicked) => Err(AppError::internal(panicked)),
    }
}

/// What a visitor reads when they write after the team took over.
const TEAM_HAS_IT: &str = "Thanks, the team has your message and will answer here.";

/// The task writing a reply (a stream dropped by its visitor leaves it
/// running), and the request's correlation id for an error event.
struct Reply {
    task: actix_web::rt::task::JoinHandle<AppResult<ReplyOutcome>>,
    correlation_id: String,
}

fn event_stream(rx: mpsc::Receiver<ReplyEvent>, reply: Option<Reply>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Explicit so the compression middleware does not buffer the stream.
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(sse(rx, reply, KEEP_ALIVE))
}

/// A provider may stay silent for a minute (timeouts and retries) before the
/// fallback answer comes; proxies cut a stream idle for about that long
/// (Heroku's router at 55 s, nginx at 60 s), so a comment line goes out when
/// nothing else has for this long.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// The reply's events as SSE frames. The status line went out with the first
/// byte, so a reply that fails after that says why in a last `error` event
/// (the API's error shape) instead of just stopping.
fn sse(
    rx: mpsc::Receiver<ReplyEvent>,
    reply: Option<Reply>,
    keep_alive: std::time::Duration,
) -> impl futures_util::Stream<Item = Result<web::Bytes, Infallible>> {
    futures_util::stream::unfold((rx, reply), move |(mut rx, mut reply)| async move {
        let Ok(event) = tokio::time::timeout(keep_alive, rx.recv()).await else {
            return Some((
                Ok(web::Bytes::from_static(b": keep-alive\n\n")),
                (rx, reply),
            ));
        };
        let frame = match event {
            Some(ReplyEvent::Delta(text)) => format!(
                "event: delta\ndata: {}\n\n",
                serde_json::json!({ "text": text })
            ),
            Some(ReplyEvent::Done(outcome)) => format!(
                "event: done\ndata: {}\n\n",
                serde_json::to_string(&outcome).unwrap_or_default()
            ),
            // The reply is over: said in full, or failed and says why.
            None => {
                let Reply {
                    task,
                    correlation_id,
                } = reply.take()?;
                let Ok(Err(error)) = task.await else {
                    return None;
                };
                format!("event: error\ndata: {}\n\n", error.body(&correlation_id))
            }
        };
        Some((Ok(web::Bytes::from(frame)), (rx, reply)))
    })
}

#[utoipa::path(post, path = "/api/v1/chat/{org}/{agent}/conversations/{id}/escalate", tag = "chat",
    params(("org" = String, Path), ("agent" = String, Path), ("id" = i64, Path), ("X-Conversation-Token" = String, Header, description = "The `token` the conversation started with")),
    responses((status = 200, body = super::api_agents::StatusJson, description = "The team is asked: `{\"status\": \"escalated\"}`"), (status = 404, body = ErrorJson),
        (status = 410, body = ErrorJson, description = "The conversation is closed; start a new one")))]
pub async fn escalate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String, i64)>,
) -> AppResult<HttpResponse> {
    let (org, agent, id) = path.into_inner();
    let (_, conversation) = self::conversation(&req, &state, &org, &agent, id).await?;
    let escalated = state
        .db(move |conn| Ok(chat::escalate(conn, &conversation)?))
        .await?;
    if !escalated {
        return Err(closed());
    }
    Ok(HttpResponse::Ok().json(super::api_agents::StatusJson {
        status: "escalated",
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt as _;
    use tokio::sync::mpsc;

    use super::{ReplyEvent, sse};

    #[actix_web::test]
    async fn a_silent_reply_keeps_its_stream_alive_with_comments() {
        let (tx, rx) = mpsc::channel(4);
        let mut stream = Box::pin(sse(rx, None, Duration::from_millis(40)));
        let frame = |b: Option<Result<actix_web::web::Bytes, _>>| {
            let bytes: actix_web::web::Bytes = b.expect("a frame").unwrap_or_else(|e| match e {});
            String::from_utf8(bytes.to_vec()).unwrap_or_default()
        };
        // Nothing said yet: a comment, which every SSE reader skips.
        assert_eq!(frame(stream.next().await), ": keep-alive\n\n");
        tx.send(ReplyEvent::Delta("Hello".into())).await.unwrap();
        assert_eq!(
            frame(stream.next().await),
            "event: delta\ndata: {\"text\":\"Hello\"}\n\n"
        );
        drop(tx);
        assert!(stream.next().await.is_none(), "ends with its reply");
    }

    #[actix_web::test]
    async fn a_reply_that_fails_after_its_first_byte_ends_with_an_error_event() {
        let (tx, rx) = mpsc::channel(4);
        let failing = super::Reply {
            task: actix_web::rt::spawn(async {
                Err(crate::error::AppError::Unavailable(
                    crate::error::DATABASE_UNAVAILABLE.into(),
                ))
            }),
            correlation_id: "c0ffee".into(),
        };
        let mut stream = Box::pin(sse(rx, Some(failing), Duration::from_secs(5)));
        tx.send(ReplyEvent::Delta("Half".into())).await.unwrap();
        drop(tx);
        let frames: Vec<String> = stream
            .by_ref()
            .map(|b| {
                String::from_utf8(b.unwrap_or_else(|e| match e {}).to_vec()).unwrap_or_default()
            })
            .collect()
            .await;
        assert_eq!(frames.len(), 2, "{frames:?}");
        let error = frames[1]
            .strip_prefix("event: error\ndata: ")
            .and_then(|f| f.strip_suffix("\n\n"))
            .expect("an error event");
        let error: serde_json::Value = serde_json::from_str(error).unwrap();
        assert_eq!(error["code"], "SERVICE_UNAVAILABLE");
        assert_eq!(error["error"], "Service Unavailable");
        assert_eq!(error["message"], crate::error::DATABASE_UNAVAILABLE);
        assert_eq!(error["correlationId"], "c0ffee");
        assert!(error["timestamp"].is_string());
    }
}
