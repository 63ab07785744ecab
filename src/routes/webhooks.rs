//! `POST /webhooks/stripe`: verified, stored once, acknowledged at once; the
//! event is applied by a job. 4xx only where a retry cannot help (a bad
//! signature, a body that is not an event); 5xx where it can (the database is
//! down, webhooks are not configured yet), so Stripe keeps the event.

use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::error::{AppError, AppResult};
use crate::services::billing::webhook::{self, Parsed, StoreError, WebhookError};
use crate::startup::AppState;

fn rejected(e: WebhookError) -> AppError {
    match e {
        WebhookError::NotConfigured => {
            tracing::error!("a Stripe webhook arrived but STRIPE_WEBHOOK_SECRET is not set");
            AppError::Unavailable(e.to_string())
        }
        other => {
            tracing::warn!(reason = %other, "Stripe webhook refused");
            AppError::BadRequest(other.to_string())
        }
    }
}

pub async fn stripe(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    let signature = req
        .headers()
        .get("Stripe-Signature")
        .and_then(|v| v.to_str().ok());
    let counters = &state.metrics.webhooks;
    let stored = match verify_and_store(&state, signature, body).await {
        Ok(stored) => stored,
        Err(e) => {
            if matches!(e, AppError::BadRequest(_)) {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
            }
            return Err(e);
        }
    };
    let counter = if stored.duplicate {
        &counters.duplicate
    } else {
        &counters.stored
    };
    counter.fetch_add(1, Ordering::Relaxed);
    tracing::info!(event = %stored.id, kind = %stored.event_type, duplicate = stored.duplicate, "Stripe event received");
    Ok(HttpResponse::Ok().json(json!({
        "received": true,
        "id": stored.id,
        "duplicate": stored.duplicate,
    })))
}

async fn verify_and_store(
    state: &AppState,
    signature: Option<&str>,
    body: web::Bytes,
) -> AppResult<Parsed> {
    webhook::verify(
        &body,
        signature,
        &state.config.stripe.webhook_secrets,
        chrono::Utc::now().timestamp(),
    )
    .map_err(rejected)?;
    let payload = String::from_utf8(body.to_vec())
        .map_err(|_| rejected(WebhookError::Malformed("the body is not UTF-8".into())))?;
    state
        .db(move |conn| {
            webhook::store(conn, &payload).map_err(|e| match e {
                StoreError::Rejected(why) => rejected(why),
                StoreError::Db(db) => AppError::internal(db),
            })
        })
        .await
}
