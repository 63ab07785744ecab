//! The API's request budget (`RATE_LIMIT_PER_MINUTE`): per API key, or per
//! client address for calls without one. Every answer under `/api/v1` says where
//! the caller stands (`X-RateLimit-Limit`, `-Remaining`, `-Reset`); a caller over
//! budget gets 429 with `Retry-After` and the JSON error shape.
//!
//! Budgets are kept in memory, per instance (GCRA through `governor`): with N
//! instances behind a balancer a client may get up to N times the budget. The
//! limits that protect shared state (sign-in attempts, chat messages per visitor
//! and address) are counted in the database and hold across instances.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::error::AppError;
use crate::startup::AppState;

pub const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Idle budgets are forgotten this often, so one-off clients do not pile up.
const FORGET_EVERY_SECS: u64 = 60;

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

pub struct ApiRateLimit {
    limiter: Keyed,
    per_minute: u32,
    /// Seconds after `started` of the last clean-up.
    forgotten_at: AtomicU64,
    started: Instant,
    clock: DefaultClock,
}

/// Where a caller stands after one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the budget is whole again (or, when refused, until the next
    /// request is allowed).
    pub reset_secs: u64,
}

impl ApiRateLimit {
    /// `None` when `per_minute` is 0 (limit off).
    pub fn new(per_minute: u32) -> Option<Self> {
        NonZeroU32::new(per_minute).map(Self::per_minute)
    }

    pub fn per_minute(per_minute: NonZeroU32) -> Self {
        let quota = Quota::per_minute(per_minute);
        let clock = DefaultClock::default();
        Self {
            limiter: RateLimiter::dashmap_with_clock(quota, clock.clone())
                .with_middleware::<StateInformationMiddleware>(),
            per_minute: per_minute.get(),
            forgotten_at: AtomicU64::new(0),
            started: Instant::now(),
            clock,
        }
    }

    /// Spends one request from `key`'s budget.
    pub fn check(&self, key: &str) -> Result<Standing, Standing> {
        self.forget_idle();
        let refill = Duration::from_secs(60) / self.per_minute;
        match self.limiter.check_key(&key.to_string()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = self.per_minute.saturating_sub(remaining);
                Ok(Standing {
                    limit: self.per_minute,
                    remaining,
                    reset_secs: ceil_secs(refill * used),
                })
            }
            Err(not_until) => Err(Standing {
                limit: self.per_minute,
                remaining: 0,
                reset_secs: ceil_secs(not_until.wait_time_from(self.clock.now())).max(1),
            }),
        }
    }

    fn forget_idle(&self) {
        let now = self.started.elapsed().as_secs();
        let last = self.forgotten_at.load(Ordering::Relaxed);
        if now >= last + FORGET_EVERY_SECS
            && self
                .forgotten_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Writes where the caller stands (`X-RateLimit-*`).
pub fn set_headers(headers: &mut HeaderMap, standing: Standing) {
    headers.insert(LIMIT, HeaderValue::from(standing.limit));
    headers.insert(REMAINING, HeaderValue::from(standing.remaining));
    headers.insert(RESET, HeaderValue::from(standing.reset_secs));
}

/// [`set_headers`], unless the endpoint already said where the caller stands
/// against a tighter budget of its own (or one that refused the call): that
/// is the budget the caller runs into.
fn set_headers_unless_told(headers: &mut HeaderMap, standing: Standing) {
    if !headers.contains_key(REMAINING) {
        set_headers(headers, standing);
    }
}

/// Keys that failed to authenticate, per address. A made-up key names a budget
/// of its own before any key is checked, so what made-up keys cost is counted
/// against the address they come from once they fail (`RATE_LIMIT_PER_MINUTE`
/// a minute); an address past that is refused before its keys are looked up.
/// Valid keys are never charged here, so tenants whose integrations share an
/// address (a cloud NAT) cannot use up each other's budgets.
pub struct FailedKeys {
    budget: ApiRateLimit,
    /// Addresses refused until then.
    refused: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

impl FailedKeys {
    /// `None` when `per_minute` is 0 (limit off).
    pub fn new(per_minute: u32) -> Option<Self> {
        Some(Self {
            budget: ApiRateLimit::new(per_minute)?,
            refused: Default::default(),
        })
    }

    /// Seconds until `address` may present keys again, if it is refused now.
    fn refused_for(&self, address: &str) -> Option<u64> {
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = *refused.get(address)?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(left.as_secs().max(1))
    }

    fn failed(&self, address: &str) {
        if let Err(standing) = self.budget.check(address) {
            let mut refused = self
                .refused
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            if refused.len() > 10_000 {
                refused.retain(|_, until| *until > now);
            }
            refused.insert(
                address.to_string(),
                now + Duration::from_secs(standing.reset_secs),
            );
        }
    }
}

/// The caller's budget key: a digest of the API key when a well-formed one is
/// presented (checked by the handler; a forged one still spends from the budget
/// it names, and once it fails from its address's [`FailedKeys`]), otherwise the
/// client address. A digest, not the key's text: budget names are logged.
fn key_of(req: &ServiceRequest) -> (String, Option<String>) {
    use sha2::Digest as _;
    let bearer = crate::auth::bearer_token(req.headers())
        .filter(|token| token.starts_with("fd_") && token.len() >= 12);
    let address = client_address(req);
    match bearer {
        Some(token) => {
            let digest = hex::encode(sha2::Sha256::digest(token.as_bytes()));
            (
                format!("key:{}", &digest[..16]),
                Some(format!("keys:{address}")),
            )
        }
        // Browsers send CSP reports on their own: a budget apart from the
        // page's API calls.
        None if req.path() == "/api/v1/csp-reports" => (format!("csp:{address}"), None),
        None => (format!("ip:{address}"), None),
    }
}

/// Middleware for the `/api/v1` scope.
pub async fn limit_api(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let Some(limits) = state.as_ref().and_then(|s| s.api_rate_limit.as_ref()) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    // (The public chat is outside the /api/v1 scope: its limits are per
    // visitor and address, in the database, and per address here.)
    let (key, address) = key_of(&req);
    let failed_keys = state.as_ref().and_then(|s| s.failed_key_limit.as_ref());
    if let (Some(address), Some(failed_keys)) = (&address, failed_keys)
        && let Some(wait) = failed_keys.refused_for(address)
    {
        tracing::warn!(client = %address, "too many failed API keys from one address");
        let standing = Standing {
            limit: limits.per_minute,
            remaining: 0,
            reset_secs: wait,
        };
        let message = format!(
            "Too many requests with API keys that do not work from your address; try again in {wait} s."
        );
        return Ok(refuse(req, standing, message));
    }
    match limits.check(&key) {
        Ok(standing) => {
            let mut res = next.call(req).await?;
            if let (Some(address), Some(failed_keys)) = (&address, failed_keys)
                && res.status() == actix_web::http::StatusCode::UNAUTHORIZED
            {
                failed_keys.failed(address);
            }
            // Invitations a minute have a budget of their own.
            set_headers_unless_told(res.headers_mut(), standing);
            Ok(res.map_into_left_body())
        }
        Err(standing) => {
            tracing::warn!(client = %key, "API rate limit reached");
            let message = format!(
                "Rate limit of {} requests per minute reached; try again in {} s.",
                standing.limit, standing.reset_secs
            );
            Ok(refuse(req, standing, message))
        }
    }
}

/// The 429 for a caller over budget: a response carrying the error, so the
/// error middleware renders it (JSON shape under `/api`, a page elsewhere).
fn refuse<B>(
    req: ServiceRequest,
    standing: Standing,
    message: String,
) -> ServiceResponse<EitherBody<B, BoxBody>> {
    let error = AppError::TooManyRequests {
        message,
        limit: standing.limit,
        retry_after_secs: standing.reset_secs,
    };
    let (req, _) = req.into_parts();
    ServiceResponse::from_err(error, req).map_into_right_body()
}

/// Posts per minute and client address to the public forms that create
/// accounts or send email (sign-up, forgotten password, reset, invitation):
/// enough for a person who mistypes, too few to mail-bomb an address or fill
/// the database. Sign-in has its own throttle, per account and address.
pub const PUBLIC_FORM_POSTS_PER_MINUTE: NonZeroU32 = NonZeroU32::MIN.saturating_add(9);

/// Views per minute and client address of the signed-out form pages (sign-in,
/// sign-up, forgotten password, reset, invitation). Each view by a client
/// without a cookie stores a session for the form's CSRF token: plenty for
/// people, too few for a script to fill the sessions table.
pub const PUBLIC_FORM_VIEWS_PER_MINUTE: NonZeroU32 = NonZeroU32::MIN.saturating_add(59);

/// Emails per minute a signed-in person can have sent to addresses they type
/// (invitations, a new address of their own): a person's pace, not a mail
/// cannon. Per person, not per address: a team behind one office address
/// does not share it.
pub const MEMBER_EMAILS_PER_MINUTE: NonZeroU32 = NonZeroU32::MIN.saturating_add(9);

/// A signed-in member's key in per-person budgets: one budget whether they
/// act from a page or through the API with their session.
pub fn member_key(user: crate::domain::UserId) -> String {
    format!("user:{user}")
}

/// The public chat API's budget per client address (an IPv6 client by its
/// /64), as a multiple of `RATE_LIMIT_PER_MINUTE`: every request there costs a
/// few queries however wrong its token, so none comes free. Generous enough
/// for a whole office behind one address, each open chat polling at most 12
/// times a minute. Sending and starting also have their own budgets, counted
/// in the database across instances; this one is per instance.
pub const PUBLIC_CHAT_BUDGETS: u32 = 5;

/// Middleware for the public chat API: spends one request from the address's budget.
pub async fn limit_public_chat(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let Some(limits) = state.as_ref().and_then(|s| s.chat_rate_limit.as_ref()) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let key = format!("chat:{}", client_address(&req));
    match limits.check(&key) {
        Ok(standing) => {
            let mut res = next.call(req).await?;
            // Starting and sending have budgets of their own.
            set_headers_unless_told(res.headers_mut(), standing);
            Ok(res.map_into_left_body())
        }
        Err(standing) => Ok(refused_by_address(req, standing, &key, "Too many requests")),
    }
}

/// Spends one request of `key`'s budget and passes the request on, or answers
/// 429 saying "`what` from your address", and logs whose budget ran out.
async fn spend_by_address<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
    limits: &ApiRateLimit,
    key: &str,
    what: &str,
) -> Result<ServiceResponse<EitherBody<B, BoxBody>>, actix_web::Error> {
    match limits.check(key) {
        Ok(_) => Ok(next.call(req).await?.map_into_left_body()),
        Err(standing) => Ok(refused_by_address(req, standing, key, what)),
    }
}

/// The 429 saying "`what` from your address", with the budget's wait logged.
fn refused_by_address<B>(
    req: ServiceRequest,
    standing: Standing,
    key: &str,
    what: &str,
) -> ServiceResponse<EitherBody<B, BoxBody>> {
    tracing::warn!(client = %key, path = req.path(), "{what} from one address: rate limit reached");
    let message = format!(
        "{what} from your address. Please try again in {} second{}.",
        standing.reset_secs,
        crate::wording::plural(standing.reset_secs)
    );
    refuse(req, standing, message)
}

/// The caller's address as budgets count it: an IPv6 client by its /64.
fn client_address(req: &ServiceRequest) -> String {
    crate::auth::extractors::address_bucket(&crate::auth::extractors::client_ip(req.request()))
}

/// Middleware for the public forms: spends one post from the address's budget.
pub async fn limit_public_forms(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    limit_forms(req, next, actix_web::http::Method::POST).await
}

/// Middleware for the public form pages: spends one view from the address's budget.
pub async fn limit_public_form_views(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    limit_forms(req, next, actix_web::http::Method::GET).await
}

async fn limit_forms(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    method: actix_web::http::Method,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let limits = state.as_ref().map(|s| {
        if method == actix_web::http::Method::POST {
            &s.form_rate_limit
        } else {
            &s.form_view_rate_limit
        }
    });
    let (Some(limits), true) = (limits, *req.method() == method) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let key = format!("ip:{}", client_address(&req));
    spend_by_address(req, next, limits, &key, "Too many attempts").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_counts_down_then_refuses_with_a_wait() {
        let limits = ApiRateLimit::new(3).unwrap();
        let first = limits.check("ip:198.51.100.7").unwrap();
        assert_eq!((first.limit, first.remaining, first.reset_secs), (3, 2, 20));
        assert_eq!(limits.check("ip:198.51.100.7").unwrap().remaining, 1);
        assert_eq!(limits.check("ip:198.51.100.7").unwrap().remaining, 0);
        let refused = limits.check("ip:198.51.100.7").unwrap_err();
        assert_eq!(refused.remaining, 0);
        assert!((1..=20).contains(&refused.reset_secs), "{refused:?}");
        // Another caller has its own budget.
        assert_eq!(limits.check("key:fd_abcdefghi").unwrap().remaining, 2);
    }

    #[test]
    fn zero_turns_the_limit_off() {
        assert!(ApiRateLimit::new(0).is_none());
    }
}
