//! Every route the server answers, registered in one place.

mod admin;
mod agents;
mod api;
mod api_agents;
mod api_tickets;
mod app;
mod auth;
mod billing;
mod chat;
mod csp_reports;
pub mod flash;
mod json;
mod metrics;
mod openapi;
mod pages;
mod probes;
pub use probes::{ChecksInFlight, QueueStatsCache, until_migrated};
mod tickets;
mod webhooks;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, Responder, web};

use crate::assets;

/// Resources (not bare routes) so a wrong method answers 405, not 404.
pub fn configure(cfg: &mut web::ServiceConfig, upload_limit: usize, cors_origins: &[String]) {
    // HEAD is routed as GET everywhere (`security::head_as_get`).
    cfg.service(web::resource("/live").get(probes::live))
        .service(web::resource(["/ready", "/readiness"]).get(probes::ready))
        .service(web::resource("/health").get(probes::health))
        .service(web::resource("/health/db").get(probes::health_db))
        .service(web::resource("/metrics").get(metrics::prometheus))
        .service(web::resource("/metrics/json").get(metrics::json))
        .service(web::resource("/static/{file}").get(assets::serve))
        .service(web::resource("/").get(pages::index))
        .service(web::resource(["/widget.js", "/widget.css"]).get(assets::serve_stable))
        .service(web::resource("/c/{org}/{agent}").get(chat::page))
        .service(
            web::resource("/webhooks/stripe")
                .app_data(web::PayloadConfig::new(
                    crate::services::billing::webhook::MAX_BODY_BYTES,
                ))
                .post(webhooks::stripe),
        )
        .service(
            web::resource("/signup")
                .wrap(actix_web::middleware::from_fn(
                    crate::rate_limit::limit_public_forms,
                ))
                .wrap(actix_web::middleware::from_fn(
                    crate::rate_limit::limit_public_form_views,
                ))
                .get(auth::signup_page)
                .post(auth::signup),
        )
        .service(
            web::resource("/login")
                .wrap(actix_web::middleware::from_fn(
                    crate::rate_limit::limit_public_form_views,
                ))
                .get(auth::login_page)
                .post(auth::login),
        )
        .service(web::resource("/logout").post(auth::logout))
        .service(web::resource("/verify-email").get(auth::verify_email))
        .service(
            web::resource("/forgot-password")
                .wrap(actix_web::middleware::from_fn(
                    crate::rate_limit::limit_public_forms,
                ))
                .wrap(actix_web::middleware::from_fn(
                    crate::rate_limit::limit_public_form_views,
                ))
                .get(auth::forgot_password_page)
                .post(auth::forgot_password),
        )
        .service(
            web::resource("/reset-password")
                .wrap(actix_web::middleware::from_fn(
                    crate::rate_limit::limit_public_forms,
                ))
                .wrap(actix_web::middleware::from_fn(
                    crate::rate_limit::limit_public_form_views,
                ))
                .get(auth::reset_password_page)
                .post(auth::reset_password),
        )
        .service(
            web::resource("/invitations/accept")
                .wrap(actix_web::middleware::from_fn(
                    crate::rate_limit::limit_public_forms,
                ))
                .wrap(actix_web::middleware::from_fn(
                    crate::rate_limit::limit_public_form_views,
                ))
                .get(auth::invitation)
                .post(auth::accept_invitation),
        )
        .service(
            web::scope("/app")
                .service(web::resource("").get(app::dashboard))
                .service(
                    web::resource("/welcome")
                        .wrap(actix_web::middleware::from_fn(
                            crate::rate_limit::limit_public_forms,
                        ))
                        .get(app::welcome)
                        .post(app::create_organization),
                )
                .service(web::resource("/switch").post(app::switch))
                .service(web::resource("/provider-keys").post(agents::save_provider_key))
                .service(
                    web::resource("/provider-keys/{provider}/remove")
                        .post(agents::remove_provider_key),
                )
                .service(
                    web::resource("/agents")
                        .get(agents::list)
                        .post(agents::create),
                )
                .service(
                    web::resource("/agents/{id}")
                        .get(agents::show)
                        .post(agents::update),
                )
                .service(
                    web::resource("/agents/{id}/documents")
                        .app_data(
                            web::FormConfig::default()
                                .limit(upload_limit)
                                .error_handler(crate::error::form_error),
                        )
                        .post(agents::paste),
                )
                .service(web::resource("/agents/{id}/upload").post(agents::upload))
                .service(web::resource("/agents/{id}/delete").post(agents::delete))
                .service(web::resource("/documents/{id}/reindex").post(agents::reindex))
                .service(web::resource("/documents/{id}/delete").post(agents::delete_document))
                .service(web::resource("/conversations").get(agents::conversations))
                .service(web::resource("/conversations/{id}").get(agents::conversation))
                .service(
                    web::resource("/conversations/{id}/delete").post(agents::delete_conversation),
                )
                .service(
                    web::resource("/conversations/{id}/status")
                        .post(agents::set_conversation_status),
                )
                .service(web::resource("/tickets").get(tickets::list))
                .service(web::resource("/tickets/{id}").get(tickets::show))
                .service(
                    web::resource("/tickets/{id}/reply")
                        .app_data(long_text_form())
                        .post(tickets::reply),
                )
                .service(
                    web::resource("/tickets/{id}/notes")
                        .app_data(long_text_form())
                        .post(tickets::note),
                )
                .service(web::resource("/tickets/{id}/assign").post(tickets::assign))
                .service(web::resource("/tickets/{id}/status").post(tickets::set_status))
                .service(web::resource("/members").get(app::members))
                .service(web::resource("/members/invite").post(app::invite))
                .service(web::resource("/members/{id}/role").post(app::change_role))
                .service(web::resource("/members/{id}/remove").post(app::remove_member))
                .service(web::resource("/invitations/{id}/revoke").post(app::revoke_invitation))
                .service(
                    web::resource("/api-keys")
                        .get(app::api_keys)
                        .post(app::create_api_key),
                )
                .service(web::resource("/api-keys/{id}/revoke").post(app::revoke_api_key))
                .service(web::resource("/audit").get(app::audit))
                .service(web::resource("/billing").get(billing::page))
                .service(web::resource("/billing/checkout").post(billing::start_checkout))
                .service(web::resource("/billing/portal").post(billing::open_portal))
                .service(
                    web::resource("/organization")
                        .get(app::organization)
                        .post(app::rename_organization),
                )
                .service(
                    web::resource("/organization/address").post(app::change_organization_address),
                )
                .service(web::resource("/organization/delete").post(app::delete_organization))
                .service(web::resource("/account/delete").post(app::delete_account))
                .service(web::resource("/account").get(app::account))
                .service(web::resource("/account/password").post(app::change_password))
                .service(web::resource("/account/name").post(app::rename_account))
                .service(web::resource("/organizations/new").get(app::new_organization))
                .service(web::resource("/account/email").post(app::change_email))
                .service(
                    web::resource("/account/verification")
                        .wrap(actix_web::middleware::from_fn(
                            crate::rate_limit::limit_public_forms,
                        ))
                        .post(app::resend_verification),
                )
                .service(web::resource("/account/sessions/revoke").post(app::sign_out_everywhere)),
        )
        .service(
            web::scope("/admin")
                .service(web::resource("").get(admin::index))
                .service(
                    web::resource("/organizations/{id}/toggle").post(admin::toggle_organization),
                )
                .service(web::resource("/users/{id}/toggle").post(admin::toggle_user)),
        )
        // Before the /api/v1 scope, which would otherwise take these paths: the
        // public chat answers the agent's own allowed origins and has its own limits.
        .service(
            web::scope("/api/v1/chat/{org}/{agent}")
                .wrap(actix_web::middleware::from_fn(
                    openapi::refuse_unknown_query_parameters,
                ))
                // Inside CORS, so a refusal reaches the widget's script readable.
                .wrap(actix_web::middleware::from_fn(
                    crate::rate_limit::limit_public_chat,
                ))
                .wrap(actix_web::middleware::from_fn(chat::cors))
                .service(
                    web::resource("/conversations")
                        .route(web::route().method(Method::OPTIONS).to(chat::preflight))
                        .post(chat::start),
                )
                .service(
                    web::resource("/conversations/{id}/messages")
                        .route(web::route().method(Method::OPTIONS).to(chat::preflight))
                        .get(chat::transcript)
                        .post(chat::send),
                )
                .service(
                    web::resource("/conversations/{id}/escalate")
                        .route(web::route().method(Method::OPTIONS).to(chat::preflight))
                        .post(chat::escalate),
                ),
        )
        .service(
            web::scope("/api/v1")
                .wrap(actix_web::middleware::from_fn(
                    openapi::refuse_unknown_query_parameters,
                ))
                .wrap(actix_web::middleware::from_fn(crate::rate_limit::limit_api))
                .wrap(actix_web::middleware::Condition::new(
                    !cors_origins.is_empty(),
                    api_cors(cors_origins),
                ))
                .service(web::resource("/openapi.json").get(openapi::document))
                .service(
                    web::resource("/agents")
                        .get(api_agents::list_agents)
                        .post(api_agents::create_agent),
                )
                .service(
                    web::resource("/agents/{id}")
                        .get(api_agents::get_agent)
                        .put(api_agents::update_agent)
                        .delete(api_agents::delete_agent),
                )
                .service(
                    web::resource("/agents/{id}/documents")
                        .app_data(web::PayloadConfig::new(upload_limit))
                        .get(api_agents::list_documents)
                        .post(api_agents::upload_document),
                )
                .service(web::resource("/agents/{id}/search").get(api_agents::search_agent))
                .service(
                    web::resource("/documents/{id}")
                        .get(api_agents::get_document)
                        .delete(api_agents::delete_document),
                )
                .service(
                    web::resource("/documents/{id}/reindex").post(api_agents::reindex_document),
                )
                .service(
                    web::resource("/conversations")
                        .get(api_agents::list_conversations)
                        .post(api_agents::start_conversation),
                )
                .service(
                    web::resource("/conversations/{id}/messages")
                        .get(api_agents::list_messages)
                        .post(api_agents::send_message),
                )
                .service(
                    web::resource("/conversations/{id}")
                        .get(api_agents::get_conversation)
                        .delete(api_agents::delete_conversation),
                )
                .service(
                    web::resource("/conversations/{id}/status")
                        .put(api_agents::set_conversation_status),
                )
                .service(web::resource("/tickets").get(api_tickets::list))
                .service(
                    web::resource("/tickets/{id}")
                        .get(api_tickets::get)
                        .patch(api_tickets::update),
                )
                .service(web::resource("/tickets/{id}/replies").post(api_tickets::reply))
                .service(web::resource("/tickets/{id}/notes").post(api_tickets::note))
                .service(web::resource("/provider-keys").get(api_agents::list_provider_keys))
                .service(
                    web::resource("/provider-keys/{provider}")
                        .put(api_agents::put_provider_key)
                        .delete(api_agents::delete_provider_key),
                )
                .service(web::resource("/csp-reports").post(csp_reports::receive))
                .service(
                    web::resource("/organization")
                        .get(api::get_organization)
                        .patch(api::update_organization),
                )
                .service(web::resource("/members").get(api::list_members))
                .service(
                    web::resource("/members/{id}")
                        .patch(api::update_member)
                        .delete(api::remove_member),
                )
                .service(
                    web::resource("/invitations")
                        .get(api::list_invitations)
                        .post(api::create_invitation),
                )
                .service(web::resource("/invitations/{id}").delete(api::revoke_invitation))
                .service(
                    web::resource("/api-keys")
                        .get(api::list_api_keys)
                        .post(api::create_api_key),
                )
                .service(web::resource("/api-keys/{id}").delete(api::revoke_api_key))
                .service(web::resource("/billing").get(billing::api_summary)),
        );
}

/// A reply or note may be as long as a ticket text can be in any script: each
/// character up to four bytes, each byte `%XX` in the form body.
fn long_text_form() -> web::FormConfig {
    web::FormConfig::default()
        .limit(crate::services::tickets::MAX_TEXT_CHARS * 12 + 4096)
        .error_handler(crate::error::form_error)
}

/// `CORS_ORIGINS`: browser pages on those origins may call the API with an API
/// key. Never with cookies: a session is only good on Frontdesk's own pages.
fn api_cors(origins: &[String]) -> actix_cors::Cors {
    use actix_web::http::header;
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            crate::telemetry::CORRELATION_HEADER,
        ])
        .expose_headers([
            crate::telemetry::CORRELATION_HEADER,
            crate::rate_limit::LIMIT,
            crate::rate_limit::REMAINING,
            crate::rate_limit::RESET,
            header::RETRY_AFTER,
        ])
        .max_age(600);
    for origin in origins {
        cors = if origin == "*" {
            cors.allow_any_origin().send_wildcard()
        } else {
            cors.allowed_origin(origin)
        };
    }
    cors
}

/// A form page rendered again with its errors: 422, so scripts and tests can tell.
/// A number from a query string where an empty value means "not given": an
/// HTML form sends `agent=` for its "All agents" choice.
pub(crate) fn blank_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    use serde::Deserialize as _;
    let raw: Option<String> = Option::deserialize(deserializer)?;
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => value.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// A 1-based page number from a query, or the 422 that says what is allowed.
pub(crate) fn page_number(raw: Option<i64>) -> crate::error::AppResult<i64> {
    let page = raw.unwrap_or(1);
    if (1..=100_000).contains(&page) {
        Ok(page)
    } else {
        Err(crate::error::AppError::Validation(
            "page must be a number from 1 to 100000".into(),
        ))
    }
}

/// Lists load one row more than a page shows: this drops it and says whether
/// it was there, i.e. whether another page follows.
pub(crate) fn keep_page<T>(rows: &mut Vec<T>, per_page: i64) -> bool {
    let shown = usize::try_from(per_page).unwrap_or(usize::MAX);
    let more = rows.len() > shown;
    rows.truncate(shown);
    more
}

pub(crate) fn unprocessable(
    page: impl Responder<Body = actix_web::body::BoxBody>,
    req: &HttpRequest,
) -> HttpResponse {
    let mut res = page.respond_to(req);
    *res.status_mut() = actix_web::http::StatusCode::UNPROCESSABLE_ENTITY;
    res
}
