//! `POST /webhooks/stripe`: verify the signature, store the event under its
//! unique id with the job that will apply it, and answer at once.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use super::events::ProcessStripeEvent;
use crate::config::Secret;
use crate::db::models::{NewStripeEvent, StripeEvent};
use crate::db::{DbConnection, write_transaction};
use crate::domain::text::clean;
use crate::services::jobs::{self, EnqueueOptions};

/// Stripe's own libraries accept signatures up to five minutes old.
pub const TOLERANCE_SECS: i64 = 300;
/// The largest event body accepted (Stripe's events are far smaller).
pub const MAX_BODY_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("The Stripe-Signature header is missing.")]
    MissingSignature,
    #[error("The Stripe-Signature header is malformed: expected t=TIMESTAMP,v1=SIGNATURE.")]
    MalformedSignature,
    #[error("The signature timestamp is more than {TOLERANCE_SECS} seconds away from now.")]
    StaleSignature,
    #[error("No signature matches a configured webhook secret.")]
    BadSignature,
    #[error("Webhooks are not configured: set STRIPE_WEBHOOK_SECRET.")]
    NotConfigured,
    #[error("The body is not a Stripe event: {0}")]
    Malformed(String),
}

/// Checks `Stripe-Signature` against every configured secret (several during
/// a rotation) and every `v1` signature in the header (Stripe sends one per
/// active secret), in constant time.
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[Secret<String>],
    now: i64,
) -> Result<(), WebhookError> {
    if secrets.is_empty() {
        return Err(WebhookError::NotConfigured);
    }
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(WebhookError::MissingSignature)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            return Err(WebhookError::MalformedSignature);
        };
        match key {
            "t" => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| WebhookError::MalformedSignature)?,
                );
            }
            "v1" => {
                signatures.push(hex::decode(value).map_err(|_| WebhookError::MalformedSignature)?)
            }
            // v0 (test mode's old scheme) and future schemes are not trusted.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::MalformedSignature)?;
    if signatures.is_empty() {
        return Err(WebhookError::MalformedSignature);
    }
    // abs_diff: a timestamp near i64::MIN must not overflow (it is read
    // before any signature is checked).
    if now.abs_diff(timestamp) > TOLERANCE_SECS.unsigned_abs() {
        return Err(WebhookError::StaleSignature);
    }
    let matched = secrets.iter().any(|secret| {
        let expected = sign(secret.expose(), timestamp, payload);
        signatures
            .iter()
            .any(|candidate| bool::from(candidate.as_slice().ct_eq(&expected)))
    });
    if matched {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// HMAC-SHA256 of `"{timestamp}.{payload}"` under the secret, as Stripe signs.
pub fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().to_vec()
}

/// A `Stripe-Signature` header for `payload`, as Stripe would send it.
pub fn signature_header(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(sign(secret, timestamp, payload))
    )
}

#[derive(Debug, serde::Deserialize)]
struct Head {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(deserialize_with = "super::objects::event_time")]
    created: i64,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    livemode: bool,
}

/// The fields every event has, read before it is stored.
pub struct Parsed {
    pub id: String,
    pub event_type: String,
    pub duplicate: bool,
}

/// Stores the event and enqueues its processing, in one transaction. A replay
/// (or the same event delivered to another instance at the same moment) finds
/// its id taken and changes nothing.
pub fn store(conn: &mut DbConnection, payload: &str) -> Result<Parsed, StoreError> {
    let head: Head = serde_json::from_str(payload)
        .map_err(|e| StoreError::Rejected(WebhookError::Malformed(e.to_string())))?;
    // The id names the event in SQL, logs and URLs: plain ASCII only (a NUL,
    // which JSON can carry, is one PostgreSQL cannot store).
    if !head.id.starts_with("evt_")
        || head.id.len() > 255
        || !head.id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(StoreError::Rejected(WebhookError::Malformed(
            "the event id must look like evt_…".into(),
        )));
    }
    let inserted = write_transaction(conn, |conn| {
        let inserted = StripeEvent::insert(
            conn,
            &NewStripeEvent {
                id: &head.id,
                event_type: &clean(&head.event_type, false),
                api_version: head
                    .api_version
                    .as_deref()
                    .map(|v| clean(v, false))
                    .as_deref(),
                livemode: head.livemode,
                stripe_created: head.created,
                payload,
            },
        )?;
        if inserted {
            let key = format!("stripe-event:{}", head.id);
            jobs::enqueue(
                conn,
                &ProcessStripeEvent {
                    event_id: head.id.clone(),
                },
                EnqueueOptions {
                    idempotency_key: Some(&key),
                    ..EnqueueOptions::default()
                },
            )?;
        }
        Ok::<_, diesel::result::Error>(inserted)
    })?;
    Ok(Parsed {
        id: head.id,
        event_type: head.event_type,
        duplicate: !inserted,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Rejected(WebhookError),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid","created":1}"#;

    fn secrets(list: &[&str]) -> Vec<Secret<String>> {
        list.iter().map(|s| Secret::new((*s).to_string())).collect()
    }

    #[test]
    fn a_valid_signature_within_tolerance_passes() {
        let header = signature_header("whsec_a", 1000, BODY);
        assert_eq!(
            verify(BODY, Some(&header), &secrets(&["whsec_a"]), 1000 + 299),
            Ok(())
        );
    }

    #[test]
    fn timestamps_at_the_ends_of_the_range_are_stale_not_a_panic() {
        let s = secrets(&["whsec_a"]);
        for t in [i64::MIN, i64::MAX] {
            let header = format!("t={t},v1=00");
            assert_eq!(
                verify(BODY, Some(&header), &s, 1_700_000_000),
                Err(WebhookError::StaleSignature)
            );
        }
    }

    #[test]
    fn stale_tampered_and_unsigned_requests_fail() {
        let s = secrets(&["whsec_a"]);
        let header = signature_header("whsec_a", 1000, BODY);
        assert_eq!(
            verify(BODY, Some(&header), &s, 1301),
            Err(WebhookError::StaleSignature)
        );
        assert_eq!(
            verify(b"{}", Some(&header), &s, 1000),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(BODY, None, &s, 1000),
            Err(WebhookError::MissingSignature)
        );
        assert_eq!(
            verify(BODY, Some("v1=abc"), &s, 1000),
            Err(WebhookError::MalformedSignature)
        );
        assert_eq!(
            verify(BODY, Some("t=1000,v1=zz"), &s, 1000),
            Err(WebhookError::MalformedSignature)
        );
        let wrong = signature_header("whsec_b", 1000, BODY);
        assert_eq!(
            verify(BODY, Some(&wrong), &s, 1000),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn several_signatures_and_a_rotated_secret_are_accepted() {
        let old = hex::encode(sign("whsec_old", 1000, BODY));
        let new = hex::encode(sign("whsec_new", 1000, BODY));
        let header = format!("t=1000,v1={new},v1={old},v0=ignored");
        assert_eq!(
            verify(BODY, Some(&header), &secrets(&["whsec_old"]), 1000),
            Ok(())
        );
        let only_old = format!("t=1000,v1={old}");
        assert_eq!(
            verify(
                BODY,
                Some(&only_old),
                &secrets(&["whsec_new", "whsec_old"]),
                1000
            ),
            Ok(())
        );
    }
}
