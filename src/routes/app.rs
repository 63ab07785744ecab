//! The organization app under /app: dashboard, members, API keys, audit log, account.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::auth::csrf::{self, CsrfForm};
use crate::auth::extractors::{AccountHolder, Member, ORG_KEY, SignedIn, Switching, client_ip};
use crate::auth::password::Password;
use crate::csrf_protected;
use crate::db::DbConnection;
use crate::db::models::former_slug;
use crate::db::models::{
    ApiKey, AuditEntry, Invitation, Membership, OrganizationFormerSlug, SessionRow, User,
};
use crate::domain::{Email, MembershipId, OrganizationId, Permission, Role, Slug, TenantScope};
use crate::error::{AppError, AppResult};
use crate::routes::auth::{NAME_MAX, see_other, text_field};
use crate::routes::{flash, unprocessable};
use crate::services::accounts::{self, AccountError, Actor, NewInvite, PasswordCheck};
use crate::startup::AppState;
use crate::views::Pager;
use crate::views::account::{
    AccountPage, ApiKeyRow, ApiKeysPage, AppChrome, AuditPage, AuditRow, DashboardPage,
    FieldErrors, Flash, InvitationRow, MemberRow, MembersPage, OrgChoice, OrganizationPage,
    WelcomePage,
};
use crate::wording::plural;

pub(crate) fn when(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub(crate) fn chrome(
    member: &Member,
    active: &'static str,
    flash: Option<Flash>,
) -> AppResult<AppChrome> {
    let role = member.role();
    Ok(AppChrome {
        csrf: csrf::organization_token(&member.session, member.organization.id)?,
        csrf_session: csrf::token(&member.session)?,
        user_name: member.user.name.clone(),
        user_email: member.user.email.clone(),
        email_verified: member.user.email_verified_at.is_some(),
        has_organization: true,
        org_name: member.organization.name.clone(),
        role: role.as_str().into(),
        orgs: member
            .memberships
            .iter()
            .filter(|(o, _)| !o.is_disabled())
            .map(|(o, _)| OrgChoice {
                id: o.id.0,
                name: o.name.clone(),
                current: o.id == member.organization.id,
            })
            .collect(),
        can_manage: role.can(Permission::ManageMembers),
        is_platform_admin: member.user.is_platform_admin,
        active,
        flash,
    })
}

/// The header and navigation of an account page: the organization's when
/// there is one, else the person's alone.
fn account_chrome(holder: &AccountHolder, flash: Option<Flash>) -> AppResult<AppChrome> {
    if let Some(member) = &holder.member {
        return chrome(member, "account", flash);
    }
    let csrf = csrf::token(&holder.session)?;
    Ok(AppChrome {
        csrf: csrf.clone(),
        csrf_session: csrf,
        user_name: holder.user.name.clone(),
        user_email: holder.user.email.clone(),
        email_verified: holder.user.email_verified_at.is_some(),
        has_organization: false,
        org_name: String::new(),
        role: String::new(),
        orgs: Vec::new(),
        can_manage: false,
        is_platform_admin: holder.user.is_platform_admin,
        active: "account",
        flash,
    })
}

pub(crate) fn require(member: &Member, permission: Permission) -> AppResult<()> {
    if member.role().can(permission) {
        Ok(())
    } else {
        Err(AppError::Forbidden("Your role does not allow this.".into()))
    }
}

pub async fn dashboard(state: web::Data<AppState>, member: Member) -> AppResult<DashboardPage> {
    use crate::db::models::conversation::OPEN;
    let scope = member.scope.clone();
    let billing = state.config.stripe.clone();
    let (members, keys, agents, by_status, tickets, allowance) = state
        .db(move |conn| {
            Ok((
                Membership::count(conn, &scope)?,
                ApiKey::list(conn, &scope)?.len(),
                crate::db::models::Agent::count(conn, &scope)?,
                crate::db::models::Conversation::count_by_status(conn, &scope)?,
                crate::db::models::Ticket::count_by_status(conn, &scope)?,
                crate::services::billing::limits::messages_used_up(conn, &billing, &scope)?,
            ))
        })
        .await?;
    let in_status = |wanted: &str| {
        by_status
            .iter()
            .find(|(status, _)| status == wanted)
            .map_or(0, |(_, n)| *n)
    };
    let flash = flash::take(&member.session);
    Ok(DashboardPage {
        chrome: chrome(&member, "dashboard", flash)?,
        member_count: members,
        api_key_count: keys,
        agent_count: agents,
        // Tickets the team owes an answer (not those waiting for the visitor).
        escalated_count: tickets
            .iter()
            .find(|(status, _)| status == crate::db::models::ticket::OPEN)
            .map_or(0, |(_, n)| *n),
        open_count: in_status(OPEN),
        allowance_used_up: allowance.map(|(plan, limit)| {
            format!(
                "Your agents have answered the {} visitor messages the {} plan includes this month; visitors are now told to contact you another way.",
                crate::views::billing::grouped(limit),
                plan.label()
            )
        }),
    })
}

#[derive(Deserialize)]
pub struct SwitchForm {
    #[serde(default)]
    csrf_token: String,
    organization_id: i64,
    /// Where to go once switched: a page of the app, never another site.
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    role: String,
}

#[derive(Deserialize)]
pub struct PlainForm {
    #[serde(default)]
    csrf_token: String,
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope: String,
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

#[derive(Deserialize)]
pub struct NameForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
pub struct ChangeEmailForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    current_password: String,
}

csrf_protected!(
    SwitchForm,
    InviteForm,
    RoleForm,
    PlainForm,
    KeyForm,
    PasswordForm,
    NameForm,
    ChangeEmailForm
);

/// `POST /app/switch`: only to an organization the user belongs to.
pub async fn switch(
    Switching(member): Switching,
    CsrfForm(form): CsrfForm<SwitchForm>,
) -> AppResult<HttpResponse> {
    switch_to(&member, OrganizationId(form.organization_id))?;
    let next = form
        .next
        .as_deref()
        .filter(|n| is_app_path(n))
        .unwrap_or("/app");
    Ok(see_other(next))
}

/// A path inside `/app` only: no other host (`//evil`), no other scheme.
fn is_app_path(path: &str) -> bool {
    path.starts_with("/app/")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_?=&.".contains(&b))
        && !path.contains("//")
}

/// The organization of the person's, other than the current one, that a link
/// names; `None` when it is the current one or not theirs (the page then
/// answers as it would without it).
pub(crate) fn other_organization(member: &Member, org: Option<&str>) -> Option<(i64, String)> {
    let id = org?.parse::<i64>().ok()?;
    if id == member.organization.id.0 {
        return None;
    }
    member
        .memberships
        .iter()
        .find(|(o, _)| o.id.0 == id && !o.is_disabled())
        .map(|(o, _)| (id, o.name.clone()))
}

/// Makes `target` the organization the person works in, if they belong to it
/// and it is not disabled.
fn switch_to(member: &Member, target: OrganizationId) -> AppResult<()> {
    let Some((organization, _)) = member.memberships.iter().find(|(o, _)| o.id == target) else {
        return Err(AppError::NotFound);
    };
    if organization.is_disabled() {
        return Err(AppError::Forbidden(
            "This organization has been disabled. Contact support.".into(),
        ));
    }
    member
        .session
        .insert(ORG_KEY, target.0)
        .map_err(AppError::internal)
}

async fn members_page(
    state: &web::Data<AppState>,
    member: &Member,
    invite_email: String,
    invite_role: String,
    errors: FieldErrors,
) -> AppResult<MembersPage> {
    let scope = member.scope.clone();
    let (members, invitations) = state
        .db(move |conn| {
            let members = Membership::list(conn, &scope)?;
            let invitations = if scope.role().can(Permission::ManageMembers) {
                Invitation::pending(conn, &scope)?
            } else {
                Vec::new()
            };
            Ok((members, invitations))
        })
        .await?;
    let role = member.role();
    let roles = role.grantable();
    let flash = flash::take(&member.session);
    let owners = members
        .iter()
        .filter(|m| m.membership.role() == Role::Owner)
        .count();
    Ok(MembersPage {
        chrome: chrome(member, "members", flash)?,
        members: members
            .into_iter()
            .map(|m| {
                let their_role = m.membership.role();
                // Offered no change the server would refuse: an organization
                // keeps at least one owner.
                let last_owner = their_role == Role::Owner && owners == 1;
                MemberRow {
                    membership_id: m.membership.id.0,
                    name: m.user.name,
                    email: m.user.email,
                    role: their_role.as_str().into(),
                    is_you: m.user.id == member.user.id,
                    editable: role.can(Permission::ManageMembers)
                        && (their_role != Role::Owner || role.can(Permission::ManageOwners))
                        && !last_owner,
                    last_owner,
                }
            })
            .collect(),
        invitations: invitations
            .into_iter()
            .map(|i| InvitationRow {
                id: i.id,
                email: i.email,
                role: i.role,
                expires: when(i.expires_at),
            })
            .collect(),
        roles,
        invite_email,
        invite_role: if invite_role.is_empty() {
            "agent".into()
        } else {
            invite_role
        },
        errors,
    })
}

pub async fn members(state: web::Data<AppState>, member: Member) -> AppResult<MembersPage> {
    members_page(
        &state,
        &member,
        String::new(),
        String::new(),
        FieldErrors::default(),
    )
    .await
}

/// Runs an audited operation for a member, with the actor filled in; the
/// operation's own error comes back for the page to show beside its field.
pub(crate) async fn act<T: Send + 'static, E: Send + 'static>(
    state: &AppState,
    member: &Member,
    req: &HttpRequest,
    op: impl FnOnce(&mut DbConnection, &TenantScope, &Actor<'_>) -> Result<T, E> + Send + 'static,
) -> AppResult<Result<T, E>> {
    let scope = member.scope.clone();
    let (user_id, label, ip) = (member.user.id, member.user.email.clone(), client_ip(req));
    state
        .db(move |conn| {
            let actor = Actor {
                user_id: Some(user_id),
                label: &label,
                ip: &ip,
            };
            Ok(op(conn, &scope, &actor))
        })
        .await
}

pub async fn invite(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    CsrfForm(form): CsrfForm<InviteForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageMembers)?;
    let mut errors = FieldErrors::default();
    let email = Email::parse(&form.email)
        .map_err(|e| errors.add("email", format!("Email {e}.")))
        .ok();
    let role = Role::parse(&form.role)
        .ok()
        .filter(|r| member.role().grantable().contains(&r.as_str()));
    if role.is_none() {
        errors.add("role", "Choose a role you are allowed to grant.");
    }
    let email = email.filter(|_| spend_email_budget(&state, &member.user, &mut errors));
    let (Some(email), Some(role)) = (email, role) else {
        let page = members_page(
            &state,
            &member,
            form.email.trim().into(),
            form.role.clone(),
            errors,
        )
        .await?;
        return Ok(unprocessable(page, &req));
    };
    let base_url = state.config.base_url.clone();
    let billing = state.config.stripe.clone();
    let invited = email.clone();
    let inviter = member.user.display_name().to_string();
    let inviter_verified = member.user.email_verified_at.is_some();
    let inviter_id = Some(member.user.id);
    match act(&state, &member, &req, move |conn, scope, actor| {
        let invite = NewInvite {
            inviter: &inviter,
            inviter_id,
            inviter_verified,
            email: &invited,
            role,
        };
        accounts::invite(conn, scope, actor, &invite, &base_url, &billing)
    })
    .await?
    {
        Err(AccountError::Limit(limit)) => {
            Ok(flash::limit(&member.session, &limit, "/app/members"))
        }
        Ok(_) => {
            flash::set(
                &member.session,
                "success",
                &format!("Invitation sent to {}.", email.as_str()),
            );
            Ok(see_other("/app/members"))
        }
        Err(
            e @ (AccountError::AlreadyMember
            | AccountError::AlreadyInvited
            | AccountError::InviterUnverified),
        ) => {
            let mut errors = FieldErrors::default();
            errors.add("email", e.to_string());
            let page = members_page(
                &state,
                &member,
                form.email.trim().into(),
                form.role.clone(),
                errors,
            )
            .await?;
            Ok(unprocessable(page, &req))
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs a member-management action and reports its outcome on the members page.
async fn member_action(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    done: &str,
    op: impl FnOnce(&mut DbConnection, &TenantScope, &Actor<'_>) -> Result<(), AccountError>
    + Send
    + 'static,
) -> AppResult<HttpResponse> {
    match act(&state, &member, &req, op).await? {
        Ok(()) => flash::set(&member.session, "success", done),
        Err(e @ (AccountError::LastOwner | AccountError::Forbidden(_))) => {
            flash::set(&member.session, "error", &e.to_string())
        }
        Err(e) => return Err(e.into()),
    }
    Ok(see_other("/app/members"))
}

pub async fn change_role(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<RoleForm>,
) -> AppResult<HttpResponse> {
    let id = MembershipId(path.into_inner());
    let role = Role::parse(&form.role).map_err(|e| AppError::Validation(format!("Role {e}.")))?;
    member_action(
        req,
        state,
        member,
        "Role saved.",
        move |conn, scope, actor| accounts::change_role(conn, scope, actor, id, role).map(drop),
    )
    .await
}

pub async fn remove_member(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(_): CsrfForm<PlainForm>,
) -> AppResult<HttpResponse> {
    let id = MembershipId(path.into_inner());
    let own = member
        .memberships
        .iter()
        .any(|(o, m)| o.id == member.organization.id && m.id == id);
    if !own {
        return member_action(
            req,
            state,
            member,
            "Member removed.",
            move |conn, scope, actor| accounts::remove_member(conn, scope, actor, id),
        )
        .await;
    }
    // Leaving: the members page is no longer theirs; /app picks another organization.
    let left = act(&state, &member, &req, move |conn, scope, actor| {
        accounts::remove_member(conn, scope, actor, id)
    })
    .await?;
    match left {
        Ok(()) => {
            let _ = member.session.remove(ORG_KEY);
            flash::set(
                &member.session,
                "success",
                &format!("You left {}.", member.organization.name),
            );
            Ok(see_other("/app"))
        }
        Err(e @ AccountError::LastOwner) => {
            flash::set(&member.session, "error", &e.to_string());
            Ok(see_other("/app/members"))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke_invitation(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(_): CsrfForm<PlainForm>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    member_action(
        req,
        state,
        member,
        "Invitation revoked.",
        move |conn, scope, actor| accounts::revoke_invitation(conn, scope, actor, id),
    )
    .await
}

async fn api_keys_page(
    state: &web::Data<AppState>,
    member: &Member,
    new_key: Option<String>,
    (name, write): (String, bool),
    errors: FieldErrors,
) -> AppResult<ApiKeysPage> {
    let scope = member.scope.clone();
    let keys = state
        .db(move |conn| Ok(ApiKey::list(conn, &scope)?))
        .await?;
    let flash = flash::take(&member.session);
    Ok(ApiKeysPage {
        chrome: chrome(member, "api-keys", flash)?,
        keys: keys
            .into_iter()
            .map(|k| ApiKeyRow {
                id: k.id,
                name: k.name,
                prefix: k.prefix,
                scopes: k.scopes,
                last_used: k.last_used_at.map(when).unwrap_or_else(|| "never".into()),
                created: when(k.created_at),
                revoked: k.revoked_at.is_some(),
            })
            .collect(),
        new_key,
        name,
        write,
        errors,
    })
}

/// The key just created, kept in the session only until the page after the
/// redirect shows it (so reloading that page creates nothing). Sealed under
/// ENCRYPTION_KEY: session state is stored in the database, where a working
/// key must never be readable (backups, a read-only database user).
const NEW_API_KEY: &str = "new_api_key";

/// Binds the sealed key to this organization's session entry.
fn new_key_context(member: &Member) -> String {
    format!(
        "session:{NEW_API_KEY}:org:{}",
        member.scope.organization_id()
    )
}

pub async fn api_keys(state: web::Data<AppState>, member: Member) -> AppResult<ApiKeysPage> {
    require(&member, Permission::ManageApiKeys)?;
    let new_key = member
        .session
        .remove_as::<String>(NEW_API_KEY)
        .and_then(Result::ok)
        .and_then(|sealed| {
            state
                .chat
                .keyring()
                .open(&sealed, &new_key_context(&member))
                .map_err(|e| tracing::warn!(error = %e, "the new API key cannot be shown"))
                .ok()
        });
    api_keys_page(
        &state,
        &member,
        new_key,
        (String::new(), false),
        FieldErrors::default(),
    )
    .await
}

pub async fn create_api_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    CsrfForm(form): CsrfForm<KeyForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageApiKeys)?;
    let mut errors = FieldErrors::default();
    let name = text_field(&mut errors, "name", "Name", &form.name, 80);
    let write = match form.scope.as_str() {
        "write" => true,
        "read" | "" => false,
        _ => {
            errors.add("scope", "Choose read or write.");
            false
        }
    };
    if !errors.is_empty() {
        return Ok(unprocessable(
            api_keys_page(&state, &member, None, (name, write), errors).await?,
            &req,
        ));
    }
    let key_name = name.clone();
    let (secret, _) = act(&state, &member, &req, move |conn, scope, actor| {
        accounts::create_api_key(conn, scope, actor, &key_name, write)
    })
    .await??;
    // Shown once, on the page the redirect leads to; only its hash is stored.
    let sealed = state
        .chat
        .keyring()
        .seal(&secret, &new_key_context(&member))
        .map_err(AppError::internal)?;
    member
        .session
        .insert(NEW_API_KEY, sealed)
        .map_err(AppError::internal)?;
    Ok(see_other("/app/api-keys"))
}

pub async fn revoke_api_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    path: web::Path<i64>,
    CsrfForm(_): CsrfForm<PlainForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageApiKeys)?;
    let id = path.into_inner();
    act(&state, &member, &req, move |conn, scope, actor| {
        accounts::revoke_api_key(conn, scope, actor, id)
    })
    .await??;
    flash::set(&member.session, "success", "API key revoked.");
    Ok(see_other("/app/api-keys"))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    action: String,
    /// 1-based.
    #[serde(default, deserialize_with = "crate::routes::blank_as_none")]
    page: Option<i64>,
}

const AUDIT_PER_PAGE: i64 = 100;

pub async fn audit(
    state: web::Data<AppState>,
    member: Member,
    query: web::Query<AuditQuery>,
) -> AppResult<AuditPage> {
    require(&member, Permission::ViewAudit)?;
    let action = accounts::AUDIT_ACTIONS
        .iter()
        .map(|(code, _)| *code)
        .find(|code| *code == query.action);
    let page = crate::routes::page_number(query.page)?;
    let scope = member.scope.clone();
    let mut entries = state
        .db(move |conn| {
            // One more than shown tells whether another page follows.
            Ok(AuditEntry::for_organization(
                conn,
                &scope,
                action,
                AUDIT_PER_PAGE + 1,
                (page - 1) * AUDIT_PER_PAGE,
            )?)
        })
        .await?;
    let more = crate::routes::keep_page(&mut entries, AUDIT_PER_PAGE);
    let pager = Pager::new(page, more, |n| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(action) = action {
            query.append_pair("action", action);
        }
        query.append_pair("page", &n.to_string());
        format!("/app/audit?{}", query.finish())
    });
    Ok(AuditPage {
        chrome: chrome(&member, "audit", None)?,
        pager,
        entries: entries
            .into_iter()
            .map(|e| AuditRow {
                when: e.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                actor: e.actor_label,
                action_label: accounts::audit_label(&e.action)
                    .map_or_else(|| e.action.clone(), str::to_string),
                action: e.action,
                target: e.target.unwrap_or_default(),
                ip: e.ip.unwrap_or_default(),
                detail: e.detail.unwrap_or_default(),
            })
            .collect(),
        action: action.unwrap_or("").into(),
        actions: accounts::AUDIT_ACTIONS.to_vec(),
        action_label: action.and_then(accounts::audit_label).unwrap_or(""),
    })
}

pub async fn account(holder: AccountHolder) -> AppResult<AccountPage> {
    let flash = flash::take(&holder.session);
    Ok(AccountPage {
        chrome: account_chrome(&holder, flash)?,
        name: holder.user.name.clone(),
        email: String::new(),
        errors: FieldErrors::default(),
    })
}

async fn account_unprocessable(
    req: &HttpRequest,
    holder: &AccountHolder,
    email: String,
    errors: FieldErrors,
) -> AppResult<HttpResponse> {
    let page = AccountPage {
        chrome: account_chrome(holder, None)?,
        name: holder.user.name.clone(),
        email,
        errors,
    };
    Ok(unprocessable(page, req))
}

/// `POST /app/account/name`.
pub async fn rename_account(
    req: HttpRequest,
    state: web::Data<AppState>,
    holder: AccountHolder,
    CsrfForm(form): CsrfForm<NameForm>,
) -> AppResult<HttpResponse> {
    let mut errors = FieldErrors::default();
    let name = text_field(&mut errors, "name", "Your name", &form.name, NAME_MAX);
    if !errors.is_empty() {
        let page = AccountPage {
            chrome: account_chrome(&holder, None)?,
            name,
            email: String::new(),
            errors,
        };
        return Ok(unprocessable(page, &req));
    }
    if name != holder.user.name {
        let (user, ip) = (holder.user.clone(), client_ip(&req));
        state
            .db(move |conn| Ok(accounts::rename_account(conn, &user, &name, &ip)?))
            .await?;
    }
    flash::set(&holder.session, "success", "Name saved.");
    Ok(see_other("/app/account"))
}

/// Spends one of the emails the person may have sent to addresses they type
/// (an invitation, a new address), once the form is otherwise valid; when
/// none is left, says beside the address how long to wait, and `false`.
fn spend_email_budget(state: &AppState, user: &User, errors: &mut FieldErrors) -> bool {
    if !errors.is_empty() {
        return true;
    }
    let key = crate::rate_limit::member_key(user.id);
    match state.member_email_rate_limit.check(&key) {
        Ok(_) => true,
        Err(standing) => {
            errors.add(
                "email",
                format!(
                    "You have sent many emails in the last minute. Please wait {} second{} and try again.",
                    standing.reset_secs,
                    plural(standing.reset_secs)
                ),
            );
            false
        }
    }
}

/// Checks the current password off the async workers, throttled like
/// sign-in; `Err` holds the message for the field.
async fn confirm_password(
    state: &AppState,
    req: &HttpRequest,
    user: &User,
    candidate: &str,
) -> AppResult<Result<(), String>> {
    // Left empty is not a wrong guess: said so, and not counted against the
    // throttle.
    if candidate.is_empty() {
        return Ok(Err("Enter your current password.".into()));
    }
    let (user, ip) = (user.clone(), client_ip(req));
    let candidate = candidate.to_string();
    let check = state
        .db(move |conn| -> AppResult<PasswordCheck> {
            Ok(accounts::confirm_password(conn, &user, &candidate, &ip)?)
        })
        .await?;
    Ok(match check {
        PasswordCheck::Correct => Ok(()),
        PasswordCheck::Wrong => Err("This is not your current password.".into()),
        PasswordCheck::Throttled(wait) => {
            let minutes = (wait + 59) / 60;
            Err(format!(
                "Too many wrong passwords. Wait {minutes} minute{} and try again.",
                plural(minutes.unsigned_abs())
            ))
        }
    })
}

pub async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    holder: AccountHolder,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> AppResult<HttpResponse> {
    let mut errors = FieldErrors::default();
    if let Err(message) =
        confirm_password(&state, &req, &holder.user, &form.current_password).await?
    {
        errors.add("current_password", message);
    }
    let password = Password::parse(&form.new_password, Some(&holder.user.email))
        .map_err(|e| errors.add("new_password", e.0))
        .ok();
    let (Some(password), true) = (password, errors.is_empty()) else {
        return account_unprocessable(&req, &holder, String::new(), errors).await;
    };
    let hash = web::block(move || password.hash())
        .await?
        .map_err(AppError::internal)?;
    let user = holder.user.clone();
    let ip = client_ip(&req);
    state
        .db(move |conn| Ok(accounts::change_password(conn, &user, &hash, &ip)?))
        .await?;
    // This browser stays signed in, under a fresh session id.
    holder.session.renew();
    flash::set(
        &holder.session,
        "success",
        "Password changed. Other devices were signed out.",
    );
    Ok(see_other("/app/account"))
}

pub async fn change_email(
    req: HttpRequest,
    state: web::Data<AppState>,
    holder: AccountHolder,
    CsrfForm(form): CsrfForm<ChangeEmailForm>,
) -> AppResult<HttpResponse> {
    let mut errors = FieldErrors::default();
    let email = Email::parse(&form.email)
        .map_err(|e| errors.add("email", format!("Email {e}.")))
        .ok()
        .filter(|e| {
            // Not another account's, and not a change at all.
            let same = e.as_str().eq_ignore_ascii_case(&holder.user.email);
            if same {
                errors.add("email", "This is already your address.");
            }
            !same
        });
    if let Err(message) =
        confirm_password(&state, &req, &holder.user, &form.current_password).await?
    {
        errors.add("email_password", message);
    }
    let email = email.filter(|_| spend_email_budget(&state, &holder.user, &mut errors));
    let (Some(email), true) = (email, errors.is_empty()) else {
        return account_unprocessable(&req, &holder, form.email.trim().into(), errors).await;
    };
    let user = holder.user.clone();
    let ip = client_ip(&req);
    let base_url = state.config.base_url.clone();
    let new_email = email.clone();
    let changed = state
        .db(move |conn| {
            Ok(accounts::change_email(
                conn, &user, &new_email, &ip, &base_url,
            ))
        })
        .await?;
    match changed {
        Ok(()) => {}
        Err(AccountError::EmailTaken) => {
            let mut errors = FieldErrors::default();
            errors.add("email", "Another account uses this address.");
            return account_unprocessable(&req, &holder, form.email.trim().into(), errors).await;
        }
        Err(e) => return Err(e.into()),
    }
    flash::set(
        &holder.session,
        "success",
        &format!(
            "Email changed. We sent a confirmation link to {}.",
            email.as_str()
        ),
    );
    Ok(see_other("/app/account"))
}

pub async fn sign_out_everywhere(
    req: HttpRequest,
    state: web::Data<AppState>,
    holder: AccountHolder,
    CsrfForm(_): CsrfForm<PlainForm>,
) -> AppResult<HttpResponse> {
    let user = holder.user.clone();
    let ip = client_ip(&req);
    state
        .db(move |conn| {
            SessionRow::delete_for_user(conn, user.id)?;
            accounts::audit_account(conn, &user, &ip, "account.signed_out_everywhere", None)?;
            Ok(())
        })
        .await?;
    holder.session.purge();
    Ok(see_other("/login"))
}

/// Sends a fresh confirmation link (the banner's "Send it again").
pub async fn resend_verification(
    state: web::Data<AppState>,
    holder: AccountHolder,
    CsrfForm(_): CsrfForm<PlainForm>,
) -> AppResult<HttpResponse> {
    let (user_id, base_url) = (holder.user.id, state.config.base_url.clone());
    let sent = state
        .db(move |conn| {
            accounts::resend_verification(conn, user_id, &base_url).map_err(AppError::from)
        })
        .await?;
    let message = if sent {
        format!(
            "We sent a new confirmation link to {}. Earlier links no longer work.",
            holder.user.email
        )
    } else {
        "Your email address is already confirmed.".to_string()
    };
    flash::set(&holder.session, "success", &message);
    Ok(see_other("/app/account"))
}

#[derive(Deserialize)]
pub struct WelcomeForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    organization: String,
}

csrf_protected!(WelcomeForm);

async fn welcome_page(
    state: &AppState,
    signed_in: &SignedIn,
    organization: String,
    errors: FieldErrors,
) -> AppResult<WelcomePage> {
    let user_id = signed_in.user.id;
    let memberships = state
        .db(move |conn| Ok(Membership::organizations_of(conn, user_id)?))
        .await?;
    Ok(WelcomePage {
        csrf: csrf::token(&signed_in.session)?,
        email: signed_in.user.email.clone(),
        another: memberships.iter().any(|(o, _)| !o.is_disabled()),
        organization,
        disabled: memberships
            .into_iter()
            .filter(|(o, _)| o.is_disabled())
            .map(|(o, _)| o.name)
            .collect(),
        errors,
        flash: flash::take(&signed_in.session),
    })
}

/// `GET /app/welcome`: where /app sends someone who belongs to no active
/// organization (say, after leaving their last one).
pub async fn welcome(state: web::Data<AppState>, signed_in: SignedIn) -> AppResult<HttpResponse> {
    let user_id = signed_in.user.id;
    let has_one = state
        .db(move |conn| {
            Ok(Membership::organizations_of(conn, user_id)?
                .iter()
                .any(|(o, _)| !o.is_disabled()))
        })
        .await?;
    if has_one {
        return Ok(see_other("/app"));
    }
    let page = welcome_page(&state, &signed_in, String::new(), FieldErrors::default()).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(askama::Template::render(&page).map_err(AppError::internal)?))
}

/// `GET /app/organizations/new`: the same form for someone who already works
/// in an organization and starts another (a second shop, a client's desk).
pub async fn new_organization(
    state: web::Data<AppState>,
    signed_in: SignedIn,
) -> AppResult<WelcomePage> {
    welcome_page(&state, &signed_in, String::new(), FieldErrors::default()).await
}

/// `POST /app/welcome`: a new organization with the signed-in account as owner.
pub async fn create_organization(
    req: HttpRequest,
    state: web::Data<AppState>,
    signed_in: SignedIn,
    CsrfForm(form): CsrfForm<WelcomeForm>,
) -> AppResult<HttpResponse> {
    let mut errors = FieldErrors::default();
    let name = text_field(
        &mut errors,
        "organization",
        "Organization name",
        &form.organization,
        NAME_MAX,
    );
    if !errors.is_empty() {
        let page = welcome_page(&state, &signed_in, name, errors).await?;
        return Ok(unprocessable(page, &req));
    }
    let (user, ip) = (signed_in.user.clone(), client_ip(&req));
    let org = state
        .db(move |conn| {
            accounts::create_organization(conn, &user, &name, &ip).map_err(AppError::from)
        })
        .await?;
    signed_in
        .session
        .insert(ORG_KEY, org.id.0)
        .map_err(AppError::internal)?;
    flash::set(
        &signed_in.session,
        "success",
        &format!("{} is ready: you are its owner.", org.name),
    );
    Ok(see_other("/app"))
}

/// What the organization page's forms hold: as stored, or as typed when a
/// change was refused.
struct OrganizationFields {
    name: String,
    slug: String,
    confirmation: String,
}

impl OrganizationFields {
    fn stored(member: &Member) -> Self {
        Self {
            name: member.organization.name.clone(),
            slug: member.organization.slug.clone(),
            confirmation: String::new(),
        }
    }
}

async fn organization_page(
    state: &AppState,
    member: &Member,
    fields: OrganizationFields,
    errors: FieldErrors,
    flash: Option<Flash>,
) -> AppResult<OrganizationPage> {
    let scope = member.scope.clone();
    let former_slugs = state
        .db(move |conn| Ok(OrganizationFormerSlug::slugs(conn, &scope)?))
        .await?;
    let slug = member.organization.slug.clone();
    Ok(OrganizationPage {
        chrome: chrome(member, "organization", flash)?,
        name: fields.name,
        new_slug: fields.slug,
        chat_base: format!(
            "{}/c/{slug}/",
            state.config.base_url.as_str().trim_end_matches('/')
        ),
        slug,
        former_slugs,
        max_changes: former_slug::MAX_NEW_PER_WINDOW,
        can_delete: member.role().can(Permission::ManageOwners),
        confirmation: fields.confirmation,
        errors,
    })
}

/// `GET /app/organization`: the organization's settings (owners and admins).
pub async fn organization(
    state: web::Data<AppState>,
    member: Member,
) -> AppResult<OrganizationPage> {
    require(&member, Permission::ManageSettings)?;
    let flash = flash::take(&member.session);
    let fields = OrganizationFields::stored(&member);
    organization_page(&state, &member, fields, FieldErrors::default(), flash).await
}

#[derive(Deserialize)]
pub struct OrganizationForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
}

csrf_protected!(OrganizationForm);

/// `POST /app/organization`: rename it.
pub async fn rename_organization(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    CsrfForm(form): CsrfForm<OrganizationForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageSettings)?;
    let mut errors = FieldErrors::default();
    let name = text_field(
        &mut errors,
        "name",
        "Organization name",
        &form.name,
        NAME_MAX,
    );
    if !errors.is_empty() {
        let fields = OrganizationFields {
            name,
            ..OrganizationFields::stored(&member)
        };
        let page = organization_page(&state, &member, fields, errors, None).await?;
        return Ok(unprocessable(page, &req));
    }
    let new_name = name.clone();
    let renamed = act(&state, &member, &req, move |conn, scope, actor| {
        accounts::rename_organization(conn, scope, actor, &new_name)
    })
    .await??;
    let message = if renamed {
        format!("The organization is now called {name}.")
    } else {
        "Nothing changed: that is already its name.".to_string()
    };
    flash::set(&member.session, "success", &message);
    Ok(see_other("/app/organization"))
}

#[derive(Deserialize)]
pub struct AddressForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    slug: String,
}

csrf_protected!(AddressForm);

/// `POST /app/organization/address`: move the chat pages to a new slug.
pub async fn change_organization_address(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    CsrfForm(form): CsrfForm<AddressForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageSettings)?;
    let refusal = match Slug::parse(&form.slug) {
        Err(e) => format!("The address {}.", e.0),
        Ok(slug) => {
            let new_slug = slug.clone();
            let changed = act(&state, &member, &req, move |conn, scope, actor| {
                accounts::change_organization_slug(conn, scope, actor, &new_slug)
            })
            .await?;
            match changed {
                Ok(changed) => {
                    let message = if changed {
                        format!(
                            "Your chat pages now live at /c/{}/…; links and widgets that use /c/{}/… keep working.",
                            slug.as_str(),
                            member.organization.slug
                        )
                    } else {
                        "Nothing changed: that is already the address.".to_string()
                    };
                    flash::set(&member.session, "success", &message);
                    return Ok(see_other("/app/organization"));
                }
                Err(e @ (AccountError::SlugTaken | AccountError::SlugChangedTooOften)) => {
                    e.to_string()
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let mut errors = FieldErrors::default();
    errors.add("slug", refusal);
    let fields = OrganizationFields {
        slug: form.slug.trim().chars().take(Slug::MAX_LEN + 1).collect(),
        ..OrganizationFields::stored(&member)
    };
    let page = organization_page(&state, &member, fields, errors, None).await?;
    Ok(unprocessable(page, &req))
}

#[derive(Deserialize)]
pub struct DeleteOrganizationForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    confirmation: String,
}

csrf_protected!(DeleteOrganizationForm);

/// `POST /app/organization/delete`: owners only, confirmed by the slug.
pub async fn delete_organization(
    req: HttpRequest,
    state: web::Data<AppState>,
    member: Member,
    CsrfForm(form): CsrfForm<DeleteOrganizationForm>,
) -> AppResult<HttpResponse> {
    require(&member, Permission::ManageOwners)?;
    let (confirmation, base_url) = (form.confirmation.clone(), state.config.base_url.clone());
    let deleted = act(&state, &member, &req, move |conn, scope, actor| {
        accounts::delete_organization(conn, scope, actor, &confirmation, &base_url)
    })
    .await?;
    match deleted {
        Ok(org) => {
            let _ = member.session.remove(ORG_KEY);
            flash::set(
                &member.session,
                "success",
                &format!("{} and everything in it were deleted.", org.name),
            );
            Ok(see_other("/app"))
        }
        Err(e @ (AccountError::ConfirmationMismatch(_) | AccountError::LiveSubscription)) => {
            let mut errors = FieldErrors::default();
            errors.add("confirmation", e.to_string());
            let fields = OrganizationFields {
                confirmation: form.confirmation.trim().chars().take(120).collect(),
                ..OrganizationFields::stored(&member)
            };
            let page = organization_page(&state, &member, fields, errors, None).await?;
            Ok(unprocessable(page, &req))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct DeleteAccountForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    current_password: String,
}

csrf_protected!(DeleteAccountForm);

/// `POST /app/account/delete`: the account itself, after the password.
pub async fn delete_account(
    req: HttpRequest,
    state: web::Data<AppState>,
    holder: AccountHolder,
    CsrfForm(form): CsrfForm<DeleteAccountForm>,
) -> AppResult<HttpResponse> {
    let one_error = |field: &'static str, message: String| {
        let mut errors = FieldErrors::default();
        errors.add(field, message);
        errors
    };
    if let Err(message) =
        confirm_password(&state, &req, &holder.user, &form.current_password).await?
    {
        let errors = one_error("delete_password", message);
        return account_unprocessable(&req, &holder, String::new(), errors).await;
    }
    let (user, ip) = (holder.user.clone(), client_ip(&req));
    let deleted = state
        .db(move |conn| Ok(accounts::delete_account(conn, &user, &ip)))
        .await?;
    match deleted {
        Ok(()) => {
            holder.session.purge();
            let page = crate::views::account::MessagePage {
                title: "Your account has been deleted".into(),
                message: "Your account and its sign-ins are gone. Thank you for using Frontdesk."
                    .into(),
                link_href: "/".into(),
                link_label: "Back to the home page".into(),
                in_app: false,
            };
            Ok(HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .body(askama::Template::render(&page).map_err(AppError::internal)?))
        }
        Err(e @ AccountError::SoleOwner(_)) => {
            let errors = one_error("delete", e.to_string());
            account_unprocessable(&req, &holder, String::new(), errors).await
        }
        Err(e) => Err(e.into()),
    }
}
