//! JSON API (`/api/v1`): the organization itself, its members, invitations and API keys.
//! Callers authenticate with an API key or a browser session (see `ApiCaller`).

use actix_web::{HttpRequest, HttpResponse, web};

use super::json::Json;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::auth::extractors::{ApiCaller, client_ip};
use crate::db::DbConnection;
use crate::db::models::{
    ApiKey, Invitation, MemberWithUser, Membership, Organization, OrganizationFormerSlug,
};
use crate::domain::{Email, MembershipId, Slug, TenantScope};
use crate::error::{AppError, AppResult};
use crate::services::accounts::{self, AccountError, Actor};
use crate::startup::AppState;

/// Stored times are naive UTC; the API says so (RFC 3339, to the second).
pub(crate) fn iso(t: chrono::NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberJson {
    id: i64,
    user_id: i64,
    name: String,
    email: String,
    role: String,
    joined_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationJson {
    id: i64,
    email: String,
    role: String,
    expires_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyJson {
    id: i64,
    name: String,
    prefix: String,
    scopes: Vec<String>,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
    created_at: String,
    /// Only in the response that created the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
}

fn invitation_json(i: Invitation) -> InvitationJson {
    InvitationJson {
        id: i.id,
        role: i.role,
        email: i.email,
        expires_at: iso(i.expires_at),
    }
}

fn key_json(k: ApiKey, secret: Option<String>) -> ApiKeyJson {
    ApiKeyJson {
        id: k.id,
        scopes: k.scopes.split(',').map(str::to_string).collect(),
        name: k.name,
        prefix: k.prefix,
        last_used_at: k.last_used_at.map(iso),
        revoked_at: k.revoked_at.map(iso),
        created_at: iso(k.created_at),
        key: secret,
    }
}

/// Runs an account operation for an API caller.
async fn act<T: Send + 'static>(
    state: &web::Data<AppState>,
    caller: &ApiCaller,
    req: &HttpRequest,
    op: impl FnOnce(&mut DbConnection, &TenantScope, &Actor<'_>) -> Result<T, AccountError>
    + Send
    + 'static,
) -> AppResult<T> {
    let (scope, label, ip) = (caller.scope.clone(), caller.label.clone(), client_ip(req));
    state
        .db(move |conn| {
            let actor = Actor {
                user_id: scope.user_id(),
                label: &label,
                ip: &ip,
            };
            op(conn, &scope, &actor).map_err(AppError::from)
        })
        .await
}

#[utoipa::path(get, path = "/api/v1/members", tag = "members", security(("api_key" = [])), responses((status = 200, body = List<MemberJson>), (status = 401, body = ErrorJson)))]
pub async fn list_members(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
) -> AppResult<HttpResponse> {
    let members = act(&state, &caller, &req, |conn, scope, _| {
        Ok(Membership::list(conn, scope)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(List {
        data: members.into_iter().map(member_json).collect(),
    }))
}

fn member_json(m: MemberWithUser) -> MemberJson {
    MemberJson {
        id: m.membership.id.0,
        user_id: m.user.id.0,
        role: m.membership.role().as_str().into(),
        name: m.user.name,
        email: m.user.email,
        joined_at: iso(m.membership.created_at),
    }
}

/// The other fields `GET /api/v1/members` answers with are ignored, so what
/// was read can be sent back changed; any other field is refused (422).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// The `IgnoredAny` fields exist to be accepted, never read.
#[allow(dead_code)]
pub struct MemberUpdate {
    /// `owner`, `admin`, `agent` or `viewer`.
    role: String,
    #[serde(default)]
    #[schema(ignore)]
    id: IgnoredAny,
    #[serde(default)]
    #[schema(ignore)]
    user_id: IgnoredAny,
    #[serde(default)]
    #[schema(ignore)]
    name: IgnoredAny,
    #[serde(default)]
    #[schema(ignore)]
    email: IgnoredAny,
    #[serde(default)]
    #[schema(ignore)]
    joined_at: IgnoredAny,
}

/// A key may bring in or promote people who answer conversations, never one
/// who manages members or keys: like a key made by a key, that access would
/// outlive the key's revocation.
fn key_may_grant(caller: &ApiCaller, role: crate::domain::Role) -> AppResult<()> {
    use crate::domain::Permission;
    if caller.via_key
        && (role.can(Permission::ManageMembers) || role.can(Permission::ManageApiKeys))
    {
        return Err(AppError::Forbidden(format!(
            "An API key cannot make anyone {} (that access would outlive the key); sign in to Frontdesk to do it.",
            role.as_str()
        )));
    }
    Ok(())
}

#[utoipa::path(patch, path = "/api/v1/members/{id}", tag = "members", security(("api_key" = [])), params(("id" = i64, Path, description = "The membership id")), request_body = MemberUpdate,
    responses((status = 200, body = MemberJson), (status = 403, body = ErrorJson), (status = 404, body = ErrorJson), (status = 409, body = ErrorJson, description = "The last owner would be demoted"), (status = 422, body = ErrorJson, description = "Unknown role")))]
pub async fn update_member(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
    body: Json<MemberUpdate>,
) -> AppResult<HttpResponse> {
    caller.require_write()?;
    let id = MembershipId(path.into_inner());
    let role = crate::domain::Role::parse(&body.role)
        .map_err(|e| AppError::Validation(format!("role {e}")))?;
    key_may_grant(&caller, role)?;
    let via_key = caller.via_key;
    let member = act(&state, &caller, &req, move |conn, scope, actor| {
        accounts::change_role(conn, scope, actor, id, role)
    })
    .await
    .map_err(|e| owners_are_out_of_a_keys_reach(e, via_key))?;
    Ok(HttpResponse::Ok().json(member_json(member)))
}

/// A key acts as an admin, whom owners are out of reach of: said so, instead
/// of "your role" to a caller who has no role but the key's.
fn owners_are_out_of_a_keys_reach(err: AppError, via_key: bool) -> AppError {
    match err {
        AppError::Forbidden(_) if via_key => AppError::Forbidden(
            "An API key acts as an admin, and an admin cannot change or remove an owner; sign in to Frontdesk as an owner to do it.".into(),
        ),
        other => other,
    }
}

/// Removes a member; a session caller removing their own membership leaves.
#[utoipa::path(delete, path = "/api/v1/members/{id}", tag = "members", security(("api_key" = [])), params(("id" = i64, Path, description = "The membership id")),
    responses((status = 204), (status = 403, body = ErrorJson), (status = 404, body = ErrorJson), (status = 409, body = ErrorJson, description = "The last owner cannot leave or be removed")))]
pub async fn remove_member(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    caller.require_write()?;
    let id = MembershipId(path.into_inner());
    let via_key = caller.via_key;
    act(&state, &caller, &req, move |conn, scope, actor| {
        accounts::remove_member(conn, scope, actor, id)
    })
    .await
    .map_err(|e| owners_are_out_of_a_keys_reach(e, via_key))?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/invitations", tag = "invitations", security(("api_key" = [])), responses((status = 200, body = List<InvitationJson>), (status = 403, body = ErrorJson)))]
pub async fn list_invitations(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
) -> AppResult<HttpResponse> {
    if !caller
        .scope
        .role()
        .can(crate::domain::Permission::ManageMembers)
    {
        return Err(AppError::Forbidden(
            "Listing invitations needs a write key or an admin.".into(),
        ));
    }
    let list = act(&state, &caller, &req, |conn, scope, _| {
        Ok(Invitation::pending(conn, scope)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(List {
        data: list.into_iter().map(invitation_json).collect(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// `owner`, `admin`, `agent` or `viewer`; through an API key only `agent`
    /// or `viewer`.
    role: String,
}

#[utoipa::path(post, path = "/api/v1/invitations", tag = "invitations", security(("api_key" = [])), request_body = NewInvitation, responses((status = 201, body = InvitationJson), (status = 402, body = ErrorJson, description = "The plan's seats are taken"), (status = 403, body = ErrorJson), (status = 409, body = ErrorJson, description = "Already a member, or already invited"), (status = 422, body = ErrorJson), (status = 429, body = ErrorJson, description = "More than 10 invitations a minute from one member or key")))]
pub async fn create_invitation(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    body: Json<NewInvitation>,
) -> AppResult<HttpResponse> {
    caller.require_write()?;
    let body = body.into_inner();
    let email =
        Email::parse(&body.email).map_err(|e| AppError::Validation(format!("email {e}")))?;
    let role = crate::domain::Role::parse(&body.role)
        .map_err(|e| AppError::Validation(format!("role {e}")))?;
    key_may_grant(&caller, role)?;
    // The same pace as the members page: invitations are email to addresses
    // the caller typed.
    if let Err(standing) = state.member_email_rate_limit.check(&caller.budget_key()) {
        return Err(AppError::TooManyRequests {
            message: format!(
                "Too many invitations sent in the last minute; try again in {} s.",
                standing.reset_secs
            ),
            limit: standing.limit,
            retry_after_secs: standing.reset_secs,
        });
    }
    let base_url = state.config.base_url.clone();
    let billing = state.config.stripe.clone();
    let inviter_verified = caller.verified;
    let inviter_id = caller.acts_for;
    let invitation = act(&state, &caller, &req, move |conn, scope, actor| {
        let invite = accounts::NewInvite {
            inviter: actor.label,
            inviter_id,
            inviter_verified,
            email: &email,
            role,
        };
        accounts::invite(conn, scope, actor, &invite, &base_url, &billing)
    })
    .await?;
    Ok(HttpResponse::Created().json(invitation_json(invitation)))
}

#[utoipa::path(delete, path = "/api/v1/invitations/{id}", tag = "invitations", security(("api_key" = [])), params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorJson)))]
pub async fn revoke_invitation(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    caller.require_write()?;
    let id = path.into_inner();
    act(&state, &caller, &req, move |conn, scope, actor| {
        accounts::revoke_invitation(conn, scope, actor, id)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationJson {
    id: i64,
    name: String,
    /// In chat addresses (`/c/{slug}/{agent}`) and widget snippets.
    slug: String,
    /// Addresses it had before, newest first: they still lead to it.
    former_slugs: Vec<String>,
    created_at: String,
}

/// The scope's organization as the API shows it.
fn organization_json(
    conn: &mut DbConnection,
    scope: &TenantScope,
) -> Result<OrganizationJson, AccountError> {
    let org = Organization::find(conn, scope.organization_id())?.ok_or(AccountError::NotFound)?;
    let former_slugs = OrganizationFormerSlug::slugs(conn, scope)?;
    Ok(OrganizationJson {
        id: org.id.0,
        name: org.name,
        slug: org.slug,
        former_slugs,
        created_at: iso(org.created_at),
    })
}

#[utoipa::path(get, path = "/api/v1/organization", tag = "organization", security(("api_key" = [])), responses((status = 200, body = OrganizationJson), (status = 401, body = ErrorJson)))]
pub async fn get_organization(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
) -> AppResult<HttpResponse> {
    let org = act(&state, &caller, &req, |conn, scope, _| {
        organization_json(conn, scope)
    })
    .await?;
    Ok(HttpResponse::Ok().json(org))
}

/// The other fields `GET` answers with are ignored, so what was read can be
/// sent back changed; any other field is refused (422).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// The `IgnoredAny` fields exist to be accepted, never read.
#[allow(dead_code)]
pub struct OrganizationUpdate {
    /// 1 to 120 characters.
    #[schema(min_length = 1, max_length = 120)]
    name: Option<String>,
    /// 2 to 63 lower-case letters, digits and single hyphens. The old address
    /// keeps leading to the organization and stays reserved for it; 5 new
    /// addresses in 30 days at most.
    #[schema(min_length = 2, max_length = 63, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    slug: Option<String>,
    #[serde(default)]
    #[schema(ignore)]
    id: IgnoredAny,
    #[serde(default)]
    #[schema(ignore)]
    former_slugs: IgnoredAny,
    #[serde(default)]
    #[schema(ignore)]
    created_at: IgnoredAny,
}

#[utoipa::path(patch, path = "/api/v1/organization", tag = "organization", security(("api_key" = [])), request_body = OrganizationUpdate,
    responses((status = 200, body = OrganizationJson), (status = 403, body = ErrorJson), (status = 409, body = ErrorJson, description = "Another organization uses or used the slug"), (status = 422, body = ErrorJson)))]
pub async fn update_organization(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    body: Json<OrganizationUpdate>,
) -> AppResult<HttpResponse> {
    caller.require_write()?;
    let OrganizationUpdate { name, slug, .. } = body.into_inner();
    if name.is_none() && slug.is_none() {
        return Err(AppError::Validation("send name, slug or both".into()));
    }
    let name = name
        .map(|n| one_line_name(&n, crate::routes::auth::NAME_MAX))
        .transpose()?;
    let slug = slug
        .map(|s| Slug::parse(&s).map_err(|e| AppError::Validation(format!("slug {}", e.0))))
        .transpose()?;
    let org = act(&state, &caller, &req, move |conn, scope, actor| {
        accounts::update_organization(conn, scope, actor, name.as_deref(), slug.as_ref())?;
        organization_json(conn, scope)
    })
    .await?;
    Ok(HttpResponse::Ok().json(org))
}

#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", security(("api_key" = [])), responses((status = 200, body = List<ApiKeyJson>), (status = 403, body = ErrorJson)))]
pub async fn list_api_keys(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
) -> AppResult<HttpResponse> {
    if !caller
        .scope
        .role()
        .can(crate::domain::Permission::ManageApiKeys)
    {
        return Err(AppError::Forbidden(
            "Listing API keys needs a write key or an admin.".into(),
        ));
    }
    let keys = act(&state, &caller, &req, |conn, scope, _| {
        Ok(ApiKey::list(conn, scope)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(List {
        data: keys.into_iter().map(|k| key_json(k, None)).collect(),
    }))
}

/// What a key may do: read only, or read and write.
pub(super) const API_KEY_SCOPES: [&str; 2] = ["read", "write"];

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// On one line.
    #[schema(min_length = 1, max_length = 80)]
    name: String,
    /// `read` (the default) or `write`.
    #[serde(default)]
    scope: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", security(("api_key" = [])), request_body = NewApiKey, responses((status = 201, body = ApiKeyJson, description = "The key is in `key`, shown only here"), (status = 422, body = ErrorJson)))]
pub async fn create_api_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    body: Json<NewApiKey>,
) -> AppResult<HttpResponse> {
    caller.require_write()?;
    // Otherwise a leaked key could mint a successor that outlives its revocation.
    if caller.via_key {
        return Err(AppError::Forbidden(
            "An API key cannot create API keys; sign in to Frontdesk to make one.".into(),
        ));
    }
    let body = body.into_inner();
    let name = one_line_name(&body.name, 80)?;
    let [read_only, read_write] = API_KEY_SCOPES;
    let write = match body.scope.as_deref() {
        None => false,
        Some(scope) if scope == read_only => false,
        Some(scope) if scope == read_write => true,
        Some(_) => return Err(AppError::Validation("scope must be read or write".into())),
    };
    let (secret, key) = act(&state, &caller, &req, move |conn, scope, actor| {
        accounts::create_api_key(conn, scope, actor, &name, write)
    })
    .await?;
    Ok(HttpResponse::Created().json(key_json(key, Some(secret))))
}

#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", security(("api_key" = [])), params(("id" = i64, Path)), responses((status = 204), (status = 404, body = ErrorJson)))]
pub async fn revoke_api_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: ApiCaller,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    caller.require_write()?;
    let id = path.into_inner();
    act(&state, &caller, &req, move |conn, scope, actor| {
        accounts::revoke_api_key(conn, scope, actor, id)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The error shape every `/api` failure uses.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorJson {
    /// The HTTP status text, e.g. "Not Found".
    error: String,
    /// Machine-readable, e.g. "NOT_FOUND".
    code: String,
    message: String,
    correlation_id: String,
    timestamp: String,
}

struct ApiKeyAuth;

impl utoipa::Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An organization API key (`fd_…`). Browser sessions work too and must send `X-CSRF-Token` on writes.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Frontdesk API", description = "The organization's members, invitations, API keys, agents, knowledge, conversations, tickets and billing.\n\nRate limits: every answer carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds until the budget is whole again). Over budget the answer is 429 (`RATE_LIMITED`) with `Retry-After`, which `X-RateLimit-Reset` then equals: the seconds until the next request is let through. The budget is per API key, or per client address without one.\n\nErrors share one shape: `error`, `code`, `message`, `correlationId`, `timestamp`.\n\nBodies are JSON objects; a field the schema does not list is refused (422), except by the two `PATCH`es of what a `GET` answered (organization, member), which ignore the fields they do not change. A query parameter the operation does not list is refused (400)."),
    paths(get_organization, update_organization, list_members, update_member, remove_member, list_invitations, create_invitation, revoke_invitation, list_api_keys, create_api_key, revoke_api_key,
        super::billing::api_summary),
    components(schemas(OrganizationJson, OrganizationUpdate, MemberJson, MemberUpdate, InvitationJson, ApiKeyJson, NewInvitation, NewApiKey, ErrorJson,
        super::billing::BillingJson, super::billing::UsageJson)),
    modifiers(&ApiKeyAuth),
    tags((name = "organization"), (name = "members"), (name = "invitations"), (name = "api-keys"), (name = "billing"))
)]
pub struct ApiDoc;

/// A name sent to the API, trimmed: 1 to `max` characters on one line (it
/// travels into page titles, email subjects and the audit log).
fn one_line_name(raw: &str, max: usize) -> AppResult<String> {
    let name = crate::domain::text::undisguised(raw);
    let name = name.trim();
    if name.is_empty() || name.chars().count() > max || name.chars().any(char::is_control) {
        return Err(AppError::Validation(format!(
            "name must be 1 to {max} characters on one line"
        )));
    }
    Ok(name.to_string())
}
