//! Platform administration: every organization and user; disable and enable.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::csrf::{self, CsrfForm};
use crate::auth::extractors::{PlatformAdmin, client_ip};
use crate::db::models::user_token::{RESET_PASSWORD, VERIFY_EMAIL};
use crate::db::models::{Membership, Organization, SessionRow, User, UserToken};
use crate::db::write_transaction;
use crate::domain::{OrganizationId, UserId};
use crate::error::{AppError, AppResult};
use crate::routes::auth::see_other;
use crate::routes::flash;
use crate::services::accounts::{self, Actor};
use crate::startup::AppState;
use crate::views::account::{AdminOrgRow, AdminPage, AdminUserRow};

/// Rows per list; the search box reaches the rest.
const LIST_LIMIT: i64 = 100;

#[derive(serde::Deserialize)]
pub struct AdminQuery {
    #[serde(default)]
    q: String,
}

pub async fn index(
    state: web::Data<AppState>,
    admin: PlatformAdmin,
    query: web::Query<AdminQuery>,
) -> AppResult<AdminPage> {
    let search = crate::domain::text::clean(query.into_inner().q.trim(), false)
        .chars()
        .take(100)
        .collect::<String>();
    let wanted = search.clone();
    let ((orgs, org_total), (users, user_total)) = state
        .db(move |conn| {
            let search = Some(wanted.as_str());
            Ok::<_, AppError>((
                Organization::search_with_member_counts(conn, search, LIST_LIMIT)?,
                User::search(conn, search, LIST_LIMIT)?,
            ))
        })
        .await?;
    let date = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d").to_string();
    Ok(AdminPage {
        csrf: csrf::token(&admin.session)?,
        user_email: admin.user.email.clone(),
        organizations: orgs
            .into_iter()
            .map(|(o, members)| AdminOrgRow {
                id: o.id.0,
                disabled: o.is_disabled(),
                name: o.name,
                slug: o.slug,
                members,
                created: date(o.created_at),
            })
            .collect(),
        users: users
            .into_iter()
            .map(|u| AdminUserRow {
                id: u.id.0,
                disabled: u.disabled_at.is_some(),
                email: u.email,
                name: u.name,
                platform_admin: u.is_platform_admin,
                created: date(u.created_at),
            })
            .collect(),
        flash: flash::take(&admin.session),
        q: search,
        organization_total: org_total,
        user_total,
    })
}

pub async fn toggle_organization(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: PlatformAdmin,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<SetDisabledForm>,
) -> AppResult<HttpResponse> {
    let id = OrganizationId(path.into_inner());
    let (ip, label, admin_id) = (client_ip(&req), admin.user.email.clone(), admin.user.id);
    let message = state
        .db(move |conn| {
            let org = Organization::find(conn, id)?.ok_or(AppError::NotFound)?;
            let disable = form.disable;
            if disable == org.is_disabled() {
                // A repeated or stale submit: already so, nothing to record.
                return Ok(format!("{} is already {}.", org.name, state_word(disable)));
            }
            // The change and its audit entry land together or not at all.
            write_transaction(conn, |conn| {
                Organization::set_disabled(conn, id, disable)?;
                let action = if disable {
                    "organization.disabled"
                } else {
                    "organization.enabled"
                };
                let actor = Actor {
                    user_id: Some(admin_id),
                    label: &label,
                    ip: &ip,
                };
                accounts::audit(
                    conn,
                    Some(id),
                    &actor,
                    action,
                    Some(&org.name),
                    Some("platform admin"),
                )?;
                Ok::<_, AppError>(())
            })?;
            Ok::<_, AppError>(format!("{} is now {}.", org.name, state_word(disable)))
        })
        .await?;
    flash::set(&admin.session, "success", &message);
    Ok(see_other("/admin"))
}

pub async fn toggle_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: PlatformAdmin,
    path: web::Path<i64>,
    CsrfForm(form): CsrfForm<SetDisabledForm>,
) -> AppResult<HttpResponse> {
    let id = UserId(path.into_inner());
    if id == admin.user.id {
        flash::set(
            &admin.session,
            "error",
            "You cannot disable your own account.",
        );
        return Ok(see_other("/admin"));
    }
    let (ip, label, admin_id) = (client_ip(&req), admin.user.email.clone(), admin.user.id);
    let message = state
        .db(move |conn| {
            write_transaction(conn, |conn| {
                // Read under a lock: a double submit records one change, and
                // a membership that joined meanwhile gives up its tickets too.
                crate::db::lock_until_commit(conn, &format!("admin:user:{id}"))?;
                // An owner demoting themselves counts on the others being
                // active: that count and this change come one after the other.
                accounts::lock_memberships_of(conn, id)?;
                let user = User::find(conn, id)?.ok_or(AppError::NotFound)?;
                let disable = form.disable;
                if disable == user.disabled_at.is_some() {
                    return Ok(format!(
                        "{} is already {}.",
                        user.email,
                        state_word(disable)
                    ));
                }
                let organizations = Membership::organizations_of(conn, id)?;
                User::set_disabled(conn, id, disable)?;
                if disable {
                    // A disabled account is signed out at once, everywhere.
                    SessionRow::delete_for_user(conn, id)?;
                    // Nor can a reset link sent before choose the password the
                    // account would have when enabled again.
                    UserToken::discard_unused(conn, id, &[RESET_PASSWORD, VERIFY_EMAIL])?;
                }
                let actor = Actor {
                    user_id: Some(admin_id),
                    label: &label,
                    ip: &ip,
                };
                let action = if disable {
                    "user.disabled"
                } else {
                    "user.enabled"
                };
                // Each organization's owners see it in their log; an account in
                // none is recorded at platform level.
                let scopes: Vec<Option<OrganizationId>> = if organizations.is_empty() {
                    vec![None]
                } else {
                    organizations.iter().map(|(o, _)| Some(o.id)).collect()
                };
                if disable {
                    for (organization, _) in &organizations {
                        crate::services::tickets::release_assignments(
                            conn,
                            organization.id,
                            &user,
                            &actor,
                            "was disabled by a platform admin",
                        )?;
                    }
                }
                for org in scopes {
                    accounts::audit(
                        conn,
                        org,
                        &actor,
                        action,
                        Some(user.email.as_str()),
                        Some("platform admin"),
                    )?;
                }
                Ok::<_, AppError>(format!("{} is now {}.", user.email, state_word(disable)))
            })
        })
        .await?;
    flash::set(&admin.session, "success", &message);
    Ok(see_other("/admin"))
}

/// What the admin asked for, not a flip: a double submit changes nothing.
#[derive(serde::Deserialize)]
pub struct SetDisabledForm {
    #[serde(default)]
    csrf_token: String,
    disable: bool,
}

crate::csrf_protected!(SetDisabledForm);

fn state_word(disabled: bool) -> &'static str {
    if disabled { "disabled" } else { "enabled" }
}
