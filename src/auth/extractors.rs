//! Extractors that establish who is calling. Handlers get a [`TenantScope`] only
//! from here.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_session::{Session, SessionExt as _};
use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use super::session_store::USER_KEY;
use super::{csrf, tokens};
use crate::db::models::{ApiKey, Membership, Organization, User};
use crate::domain::{OrganizationId, Permission, Role, TenantScope, UserId};
use crate::error::AppError;
use crate::startup::AppState;

/// Session keys besides the user.
pub const ORG_KEY: &str = "org";
pub const AUTH_AT_KEY: &str = "auth_at";
pub const SEEN_KEY: &str = "seen";

/// A session lives at most this long after sign-in, however active.
pub const ABSOLUTE_LIFETIME_SECS: i64 = 30 * 24 * 3600;
/// Idle sessions end after this (the store's TTL), renewed as the user is active.
pub const IDLE_LIFETIME_SECS: i64 = 7 * 24 * 3600;
const SEEN_REFRESH_SECS: i64 = 600;

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::internal("application state missing"))
}

/// The client's address: the TCP peer, or, when the peer is one of
/// `TRUSTED_PROXIES`, the address that proxy saw (never a header the client wrote).
pub fn client_ip(req: &HttpRequest) -> String {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return "unknown".into();
    };
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.config.trusted_proxies.as_slice())
        .unwrap_or_default();
    if trusted.is_empty() {
        return peer.to_string();
    }
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    client_address(peer, &forwarded.join(","), trusted).to_string()
}

/// The address a per-address limit counts against: an IPv6 client is its /64,
/// the block one subscriber line usually gets, or each of its 2^64 addresses
/// would have a budget of its own. IPv4 (and anything unparsable) as given.
pub fn address_bucket(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => ipnet::Ipv6Net::new(v6, 64)
            .map(|net| net.trunc().to_string())
            .unwrap_or_else(|_| ip.to_string()),
        Ok(IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map_or_else(|| ip.to_string(), |v4| v4.to_string()),
        _ => ip.to_string(),
    }
}

/// The client behind trusted proxies: `X-Forwarded-For` read from the right (the
/// hop our own proxy appended) past every trusted address. Anything further left
/// was written by the client and is not believed.
fn client_address(peer: IpAddr, forwarded_for: &str, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded_for.rsplit(',').map(str::trim) {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// A signed-in, enabled user.
pub struct SignedIn {
    pub user: User,
    pub session: Session,
}

impl SignedIn {
    async fn extract(req: HttpRequest) -> Result<Self, AppError> {
        let session = req.get_session();
        super::session_store::ensure_readable(&session)?;
        let Some(user_id) = session.get::<i64>(USER_KEY).ok().flatten() else {
            return Err(AppError::Unauthorized);
        };
        let now = chrono::Utc::now().timestamp();
        let auth_at = session.get::<i64>(AUTH_AT_KEY).ok().flatten().unwrap_or(0);
        if now - auth_at > ABSOLUTE_LIFETIME_SECS {
            session.purge();
            return Err(AppError::Unauthorized);
        }
        let state = state(&req)?;
        let user = state
            .db(move |conn| User::find(conn, UserId(user_id)).map_err(AppError::internal))
            .await?;
        let Some(user) = user.filter(|u| u.disabled_at.is_none()) else {
            session.purge();
            return Err(AppError::Unauthorized);
        };
        // Renewing the idle timeout costs a write, so do it only now and then.
        let seen = session.get::<i64>(SEEN_KEY).ok().flatten().unwrap_or(0);
        if now - seen > SEEN_REFRESH_SECS {
            let _ = session.insert(SEEN_KEY, now);
        }
        Ok(Self { user, session })
    }
}

impl FromRequest for SignedIn {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Ok(Self::extract(req).await?) })
    }
}

/// A signed-in member acting in their current organization.
pub struct Member {
    pub user: User,
    pub organization: Organization,
    pub memberships: Vec<(Organization, Membership)>,
    pub scope: TenantScope,
    pub session: Session,
}

impl Member {
    pub fn role(&self) -> Role {
        self.scope.role()
    }

    /// `writes` refuses a write when the organization the session named is
    /// not the one it is in now (see below); switching is the one write that
    /// must go through then.
    async fn extract(req: HttpRequest, writes: bool) -> Result<Self, AppError> {
        let SignedIn { user, session } = SignedIn::extract(req.clone()).await?;
        let state = state(&req)?;
        let user_id = user.id;
        let memberships = state
            .db(move |conn| Membership::organizations_of(conn, user_id).map_err(AppError::internal))
            .await?;
        let wanted = session
            .get::<i64>(ORG_KEY)
            .ok()
            .flatten()
            .map(OrganizationId);
        // A disabled organization is left for another one the user belongs to,
        // so its members are not locked out of the rest (nor of the switcher).
        let find = |id: OrganizationId| memberships.iter().find(|(o, _)| o.id == id);
        let current = wanted
            .and_then(find)
            .filter(|(o, _)| !o.is_disabled())
            .or_else(|| memberships.iter().find(|(o, _)| !o.is_disabled()))
            .or_else(|| wanted.and_then(find))
            .cloned();
        let Some((organization, membership)) = current else {
            return Err(AppError::NoOrganization);
        };
        if organization.is_disabled() {
            return Err(AppError::Forbidden(
                "This organization has been disabled. Contact support.".into(),
            ));
        }
        if wanted != Some(organization.id) {
            // The session names the organization its pages are for, which
            // their forms are checked against (`csrf::organization_token`).
            session
                .insert(ORG_KEY, organization.id.0)
                .map_err(AppError::internal)?;
            // A write meant for the organization the session named (since
            // disabled, or left) must not land in the one it falls back to;
            // the form's own check cannot tell, as it may run first.
            if writes && !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
                return Err(AppError::Conflict(csrf::OTHER_ORGANIZATION.into()));
            }
        }
        let scope = TenantScope::verified(organization.id, Some(user.id), membership.role());
        Ok(Self {
            user,
            organization,
            memberships,
            scope,
            session,
        })
    }
}

impl FromRequest for Member {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Ok(Self::extract(req, true).await?) })
    }
}

/// A member switching organizations: unlike [`Member`], allowed to write
/// when the session's organization was left behind (disabled, or left).
pub struct Switching(pub Member);

impl FromRequest for Switching {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Ok(Self(Member::extract(req, false).await?)) })
    }
}

/// Someone at their own account's pages, in an organization or in none: who
/// left their last one still changes their password, signs out everywhere or
/// deletes the account.
pub struct AccountHolder {
    pub user: User,
    pub session: Session,
    /// The organization the page's header and navigation are for.
    pub member: Option<Member>,
}

impl FromRequest for AccountHolder {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            // Account forms are not bound to an organization, so a write from
            // a session whose organization changed is fine here.
            match Member::extract(req.clone(), false).await {
                Ok(member) => Ok(Self {
                    user: member.user.clone(),
                    session: member.session.clone(),
                    member: Some(member),
                }),
                // None, or only disabled ones.
                Err(AppError::NoOrganization | AppError::Forbidden(_)) => {
                    let SignedIn { user, session } = SignedIn::extract(req).await?;
                    Ok(Self {
                        user,
                        session,
                        member: None,
                    })
                }
                Err(e) => Err(e.into()),
            }
        })
    }
}

/// A platform administrator (`frontdesk admin create`).
pub struct PlatformAdmin {
    pub user: User,
    pub session: Session,
}

impl FromRequest for PlatformAdmin {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let SignedIn { user, session } = SignedIn::extract(req).await?;
            if !user.is_platform_admin {
                return Err(AppError::NotFound.into());
            }
            Ok(Self { user, session })
        })
    }
}

/// Who calls the JSON API: an organization API key (`Authorization: Bearer fd_…`)
/// or a browser session (which must send `X-CSRF-Token` on writes).
pub struct ApiCaller {
    pub scope: TenantScope,
    pub can_write: bool,
    /// Called with an API key rather than a browser session.
    pub via_key: bool,
    /// The person it acts for (a key's creator) confirmed their email address.
    pub verified: bool,
    /// The person it acts for: the signed-in member, or the key's creator.
    pub acts_for: Option<UserId>,
    /// How the audit log names the caller.
    pub label: String,
}

impl ApiCaller {
    /// Who the caller is, for per-caller budgets: the key, or the member.
    pub fn budget_key(&self) -> String {
        match self.scope.user_id() {
            Some(user) if !self.via_key => crate::rate_limit::member_key(user),
            _ => format!("caller:{}", self.label),
        }
    }

    pub fn require_write(&self) -> Result<(), AppError> {
        if self.can_write {
            Ok(())
        } else {
            Err(AppError::Forbidden("This API key is read-only.".into()))
        }
    }

    async fn extract(req: HttpRequest) -> Result<Self, AppError> {
        let bearer = crate::auth::bearer_token(req.headers());
        if let Some(key) = bearer {
            if !key.starts_with("fd_") {
                return Err(AppError::Unauthorized);
            }
            let hash = tokens::hash(key);
            let state = state(&req)?;
            let found = state
                .db(move |conn| {
                    let Some(key) =
                        ApiKey::authenticate(conn, &hash).map_err(AppError::internal)?
                    else {
                        return Ok(None);
                    };
                    let org = Organization::find(conn, key.organization_id)
                        .map_err(AppError::internal)?;
                    // A key speaks for whoever made it, with no more rights than
                    // they have now: disabling that account, removing it from the
                    // organization or demoting it reaches its keys too.
                    let (creator_role, creator_verified) = match key.created_by {
                        Some(id) => {
                            let creator = User::find(conn, id).map_err(AppError::internal)?;
                            let enabled = creator.as_ref().is_some_and(|u| u.disabled_at.is_none());
                            let verified = creator
                                .as_ref()
                                .is_some_and(|u| u.email_verified_at.is_some());
                            let membership = Membership::of_user_in(conn, id, key.organization_id)
                                .map_err(AppError::internal)?;
                            (membership.filter(|_| enabled).map(|m| m.role()), verified)
                        }
                        None => (None, false),
                    };
                    Ok(Some((key, org, creator_role, creator_verified)))
                })
                .await?;
            let Some((key, Some(org), creator_role, creator_verified)) = found else {
                return Err(AppError::Unauthorized);
            };
            if org.is_disabled() {
                return Err(AppError::Forbidden(
                    "This organization has been disabled.".into(),
                ));
            }
            let Some(creator_role) = creator_role.filter(|r| r.can(Permission::ManageApiKeys))
            else {
                return Err(AppError::Forbidden(
                    "The account that created this API key no longer manages this organization's keys (disabled, removed or demoted); ask an admin for a new key.".into(),
                ));
            };
            let role = if key.can_write() {
                Role::Admin.weaker(creator_role)
            } else {
                Role::Viewer
            };
            return Ok(Self {
                scope: TenantScope::verified(org.id, None, role),
                can_write: key.can_write(),
                via_key: true,
                verified: creator_verified,
                acts_for: key.created_by,
                label: format!("API key {}…", key.prefix),
            });
        }

        let member = Member::extract(req.clone(), true).await?;
        if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            let presented = req
                .headers()
                .get(csrf::HEADER)
                .and_then(|v| v.to_str().ok());
            // Said for a program, not for someone looking at a form.
            csrf::verify(&member.session, presented).map_err(|e| match e {
                AppError::Forbidden(_) => AppError::Forbidden(
                    "A write with a signed-in session needs the session's CSRF token in the X-CSRF-Token header (the one the app's forms carry); or call with an API key."
                        .into(),
                ),
                other => other,
            })?;
        }
        Ok(Self {
            can_write: true,
            via_key: false,
            verified: member.user.email_verified_at.is_some(),
            acts_for: Some(member.user.id),
            label: member.user.email.clone(),
            scope: member.scope,
        })
    }
}

impl FromRequest for ApiCaller {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Ok(Self::extract(req).await?) })
    }
}

#[cfg(test)]
mod tests {
    use super::{address_bucket, client_address};

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        assert_eq!(address_bucket("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            address_bucket("2001:db8:1:2:bbbb::9"),
            address_bucket("2001:db8:1:2:aaaa::1")
        );
        assert_ne!(
            address_bucket("2001:db8:1:3::1"),
            address_bucket("2001:db8:1:2::1")
        );
        assert_eq!(address_bucket("203.0.113.7"), "203.0.113.7");
        assert_eq!(address_bucket("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(address_bucket("unknown"), "unknown");
    }

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let peer = "10.0.0.5".parse().unwrap();
        let trusted = nets(&["10.0.0.0/8"]);
        // The client wrote the first entry itself; the proxy appended the real one.
        assert_eq!(
            client_address(peer, "1.2.3.4, 203.0.113.9", &trusted).to_string(),
            "203.0.113.9"
        );
        // Chained proxies are skipped.
        assert_eq!(
            client_address(peer, "203.0.113.9, 10.0.0.7", &trusted).to_string(),
            "203.0.113.9"
        );
        // An untrusted peer's header is ignored.
        let outsider = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_address(outsider, "203.0.113.9", &trusted).to_string(),
            "198.51.100.1"
        );
        // Garbage stops the walk at the last good hop.
        assert_eq!(
            client_address(peer, "not-an-ip", &trusted).to_string(),
            "10.0.0.5"
        );
        assert_eq!(client_address(peer, "", &trusted).to_string(), "10.0.0.5");
    }
}
