//! Accounts, organizations, invitations and API keys: every change in one
//! transaction with its audit entry and the email job it causes.

use chrono::TimeDelta;
use url::Url;

use crate::auth::tokens;
use crate::config::StripeConfig;
use crate::db::DbConnection;
use crate::db::models::former_slug::MAX_NEW_PER_WINDOW;
use crate::db::models::user_token::{RESET_PASSWORD, VERIFY_EMAIL};
use crate::db::models::{
    ApiKey, AuditEntry, BillingAccount, Invitation, MemberWithUser, Membership, NewAuditEntry,
    NewMembership, NewOrganization, NewUser, Organization, OrganizationFormerSlug, SessionRow,
    TokenProblem, User, UserToken,
};
use crate::domain::{
    Email, MembershipId, OrganizationId, Permission, Role, Slug, TenantScope, UserId,
};
use crate::services::billing::limits::{self, LimitError, LimitReached, Resource};
use crate::services::jobs::{self, EnqueueOptions, SendEmail};
use crate::services::mail::{MailTemplate, OutgoingEmail};

const VERIFY_TTL: TimeDelta = TimeDelta::hours(24);
const RESET_TTL: TimeDelta = TimeDelta::hours(1);
/// One reset email per account this often, at most.
const RESET_RESEND_AFTER: TimeDelta = TimeDelta::minutes(1);
const INVITATION_TTL: TimeDelta = TimeDelta::days(7);
/// Sign-in throttling window and limits (shared by every instance: it is in the database).
pub const THROTTLE_WINDOW_SECS: i64 = 15 * 60;
/// Failures per account from one address: a person who mistypes, or one
/// machine guessing.
const MAX_FAILURES_PER_ACCOUNT_AND_IP: i64 = 5;
/// Failures per account from all addresses together: guessing spread over
/// many machines. Higher, so that shutting an owner out of their own account
/// takes that many machines (and a password reset lets them in again).
const MAX_FAILURES_PER_ACCOUNT: i64 = 30;
/// Failures per address over all accounts: one machine trying many accounts.
const MAX_FAILURES_PER_IP: i64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("An account with this email address already exists.")]
    EmailTaken,
    #[error("{}", token_message(*.0))]
    Token(TokenProblem),
    #[error("An organization needs at least one owner: make someone else owner first.")]
    LastOwner,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("This person is already a member of the organization.")]
    AlreadyMember,
    #[error("This address already has an open invitation; revoke it to send a new one.")]
    AlreadyInvited,
    #[error(
        "Confirm your email address first (with the link we sent you): invitations go out in your name."
    )]
    InviterUnverified,
    #[error("Another organization uses or used this address: choose another.")]
    SlugTaken,
    #[error(
        "The address already changed {} times in the last 30 days, and each former one stays reserved: change it again later.",
        crate::db::models::former_slug::MAX_NEW_PER_WINDOW
    )]
    SlugChangedTooOften,
    #[error("Type the organization's slug, {0}, to confirm.")]
    ConfirmationMismatch(String),
    #[error(
        "The organization still has a subscription: cancel it on the billing page first, so nothing more is charged."
    )]
    LiveSubscription,
    #[error(
        "You are the only owner of {0}: make someone else owner or delete the organization first."
    )]
    SoleOwner(String),
    #[error(transparent)]
    Limit(LimitReached),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

impl From<LimitError> for AccountError {
    fn from(err: LimitError) -> Self {
        match err {
            LimitError::Reached(limit) => Self::Limit(limit),
            LimitError::Db(e) => Self::Db(e),
        }
    }
}

fn token_message(problem: TokenProblem) -> &'static str {
    match problem {
        TokenProblem::Unknown => "This link is not valid. Request a new one.",
        TokenProblem::Used => "This link was already used. Request a new one if you still need it.",
        TokenProblem::Expired => "This link has expired. Request a new one.",
    }
}

/// Who did something, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor<'a> {
    pub user_id: Option<UserId>,
    pub label: &'a str,
    pub ip: &'a str,
}

pub fn audit(
    conn: &mut DbConnection,
    organization_id: Option<OrganizationId>,
    actor: &Actor<'_>,
    action: &str,
    target: Option<&str>,
    detail: Option<&str>,
) -> diesel::QueryResult<()> {
    // The log's filter offers exactly AUDIT_ACTIONS: an action missing there
    // could be written but never filtered for. Every test run checks it.
    debug_assert!(
        audit_label(action).is_some(),
        "audit action {action:?} is not in AUDIT_ACTIONS"
    );
    AuditEntry::record(
        conn,
        &NewAuditEntry {
            organization_id,
            actor_user_id: actor.user_id,
            actor_label: actor.label,
            action,
            target,
            detail,
            ip: Some(actor.ip),
        },
    )
    .map(|_| ())
}

fn send(
    conn: &mut DbConnection,
    to: &Email,
    template: MailTemplate,
    base_url: &Url,
) -> diesel::QueryResult<()> {
    jobs::enqueue(
        conn,
        &SendEmail(OutgoingEmail::new(to, template, base_url)),
        EnqueueOptions::default(),
    )
    .map(|_| ())
}

/// A write that lost a race with a concurrent one for the same unique value
/// (an address checked free a moment before) answers `taken`, not an
/// internal error.
fn or_taken<T>(written: diesel::QueryResult<T>, taken: AccountError) -> Result<T, AccountError> {
    match written {
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Err(taken),
        other => Ok(other?),
    }
}

/// A slug from the organization's name, made unique with a number if needed.
/// Organizations are created one at a time (until the transaction ends), so
/// two named alike at once do not both pick the same free slug.
fn unique_slug(conn: &mut DbConnection, name: &str) -> diesel::QueryResult<Slug> {
    crate::db::lock_until_commit(conn, "organizations:slug")?;
    Slug::from_name(name, "org").first_free(|slug| Organization::slug_taken(conn, None, slug))
}

pub struct Signup<'a> {
    pub organization: &'a str,
    pub name: &'a str,
    pub email: &'a Email,
    pub password_hash: &'a str,
}

/// Creates the organization, its owner and the verification email, or nothing.
pub fn signup(
    conn: &mut DbConnection,
    input: &Signup<'_>,
    base_url: &Url,
    ip: &str,
) -> Result<(User, Organization), AccountError> {
    crate::db::write_transaction(conn, |conn| {
        if User::find_by_email(conn, input.email)?.is_some() {
            return Err(AccountError::EmailTaken);
        }
        let slug = unique_slug(conn, input.organization)?;
        let org = Organization::create(conn, &NewOrganization::new(&slug, input.organization))?;
        let user = or_taken(
            User::create(
                conn,
                &NewUser::new(input.email, input.name, Some(input.password_hash)),
            ),
            AccountError::EmailTaken,
        )?;
        Membership::create(conn, &NewMembership::new(org.id, user.id, Role::Owner))?;
        send_verification(conn, &user, base_url)?;
        let actor = Actor {
            user_id: Some(user.id),
            label: &user.email,
            ip,
        };
        audit(
            conn,
            Some(org.id),
            &actor,
            "account.signup",
            Some(&user.email),
            Some(&org.name),
        )?;
        Ok((user, org))
    })
}

/// A new organization owned by an existing account (one that left or lost its
/// organizations, or runs a second business).
pub fn create_organization(
    conn: &mut DbConnection,
    user: &User,
    name: &str,
    ip: &str,
) -> Result<Organization, AccountError> {
    crate::db::write_transaction(conn, |conn| {
        let slug = unique_slug(conn, name)?;
        let org = Organization::create(conn, &NewOrganization::new(&slug, name))?;
        Membership::create(conn, &NewMembership::new(org.id, user.id, Role::Owner))?;
        let actor = Actor {
            user_id: Some(user.id),
            label: &user.email,
            ip,
        };
        audit(
            conn,
            Some(org.id),
            &actor,
            "organization.created",
            Some(&org.name),
            None,
        )?;
        Ok(org)
    })
}

/// Renames the organization; `false` when the name was already this.
pub fn rename_organization(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    name: &str,
) -> Result<bool, AccountError> {
    require(scope, Permission::ManageSettings)?;
    crate::db::write_transaction(conn, |conn| {
        let org =
            Organization::find(conn, scope.organization_id())?.ok_or(AccountError::NotFound)?;
        if org.name == name {
            return Ok(false);
        }
        Organization::rename(conn, scope, name)?;
        let detail = format!("{} → {name}", org.name);
        audit(
            conn,
            Some(scope.organization_id()),
            actor,
            "organization.renamed",
            Some(name),
            Some(&detail),
        )?;
        Ok(true)
    })
}

/// Moves the organization to a new address (the slug in its chat pages and
/// widgets). The old address keeps leading to it, so pages and snippets
/// already out there go on working. `false` when it already is the address.
pub fn change_organization_slug(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    slug: &Slug,
) -> Result<bool, AccountError> {
    require(scope, Permission::ManageSettings)?;
    crate::db::write_transaction(conn, |conn| {
        // The lock new organizations take to pick theirs, taken before the
        // organization is read, so a concurrent move of it is seen.
        crate::db::lock_until_commit(conn, "organizations:slug")?;
        let org =
            Organization::find(conn, scope.organization_id())?.ok_or(AccountError::NotFound)?;
        if org.slug == slug.as_str() {
            return Ok(false);
        }
        if Organization::slug_taken(conn, Some(org.id), slug)? {
            return Err(AccountError::SlugTaken);
        }
        let taking_back = OrganizationFormerSlug::owner(conn, slug)? == Some(org.id);
        if !taking_back && OrganizationFormerSlug::recent(conn, scope)? >= MAX_NEW_PER_WINDOW {
            return Err(AccountError::SlugChangedTooOften);
        }
        or_taken(
            OrganizationFormerSlug::retire(conn, scope, &org.slug, slug),
            AccountError::SlugTaken,
        )?;
        or_taken(
            Organization::set_slug(conn, scope, slug),
            AccountError::SlugTaken,
        )?;
        let detail = format!("{} → {}", org.slug, slug.as_str());
        audit(
            conn,
            Some(scope.organization_id()),
            actor,
            "organization.address_changed",
            Some(slug.as_str()),
            Some(&detail),
        )?;
        Ok(true)
    })
}

/// Renames the organization and/or moves it to a new address, both or
/// neither (the API's `PATCH`).
pub fn update_organization(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    name: Option<&str>,
    slug: Option<&Slug>,
) -> Result<(), AccountError> {
    crate::db::write_transaction(conn, |conn| {
        if let Some(slug) = slug {
            change_organization_slug(conn, scope, actor, slug)?;
        }
        if let Some(name) = name {
            rename_organization(conn, scope, actor, name)?;
        }
        Ok(())
    })
}

/// Deletes the organization with its agents, knowledge, conversations, keys
/// and audit log (owners only, confirmed by typing its slug). One with a live
/// subscription is refused: Stripe would go on charging for it.
pub fn delete_organization(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    confirmation: &str,
    base_url: &Url,
) -> Result<Organization, AccountError> {
    require(scope, Permission::ManageOwners)?;
    crate::db::write_transaction(conn, |conn| {
        let org =
            Organization::find(conn, scope.organization_id())?.ok_or(AccountError::NotFound)?;
        if confirmation.trim() != org.slug {
            return Err(AccountError::ConfirmationMismatch(org.slug));
        }
        // Its agents go too: each is locked as its own deletion locks it, so
        // an indexing job writing an agent's passages finishes first or finds
        // it gone (before the billing lock, as an agent's edit takes them).
        for agent in crate::db::models::Agent::list(conn, scope)? {
            crate::db::models::Agent::lock(conn, agent.id)?;
        }
        // Locked like a webhook that settles a subscription: one arriving
        // meanwhile waits for this deletion, or this one sees what it set.
        let billing = BillingAccount::lock(conn, scope.organization_id())?;
        if crate::services::billing::checkout::has_live_subscription(&billing) {
            return Err(AccountError::LiveSubscription);
        }
        // The other members learn why it is gone (queued with the deletion).
        for member in Membership::list(conn, scope)? {
            if Some(member.user.id) == actor.user_id || member.user.disabled_at.is_some() {
                continue;
            }
            let Ok(to) = Email::parse(&member.user.email) else {
                continue;
            };
            send(
                conn,
                &to,
                MailTemplate::OrganizationDeleted {
                    organization: org.name.clone(),
                    by: actor.label.to_string(),
                },
                base_url,
            )?;
        }
        Organization::delete(conn, scope)?;
        // The organization's own log goes with it; this entry, outside any
        // organization, is for the platform's operators.
        audit(
            conn,
            None,
            actor,
            "organization.deleted",
            Some(&org.name),
            Some(&org.slug),
        )?;
        tracing::info!(organization = %org.slug, actor = actor.label, "organization deleted");
        Ok(org)
    })
}

/// Takes the membership lock of every organization `user` belongs to, as
/// every membership change does, in one order so two callers cannot wait on
/// each other. A change to the account that counts for "is another owner
/// still active" (its deletion, an admin disabling it) then cannot interleave
/// with a demotion counting on it; read the memberships again after this.
pub fn lock_memberships_of(conn: &mut DbConnection, user: UserId) -> diesel::QueryResult<()> {
    let mut orgs: Vec<_> = Membership::organizations_of(conn, user)?
        .into_iter()
        .map(|(org, _)| org.id)
        .collect();
    orgs.sort_by_key(|id| id.0);
    for org in orgs {
        crate::db::lock_until_commit(conn, &format!("memberships:{org}"))?;
    }
    Ok(())
}

/// Deletes the signed-in account (GDPR erasure). Refused while it is the only
/// owner of an organization, which would be left with nobody in charge.
pub fn delete_account(conn: &mut DbConnection, user: &User, ip: &str) -> Result<(), AccountError> {
    crate::db::write_transaction(conn, |conn| {
        lock_memberships_of(conn, user.id)?;
        for (org, membership) in Membership::organizations_of(conn, user.id)? {
            if membership.role() != Role::Owner {
                continue;
            }
            let scope = TenantScope::verified(org.id, Some(user.id), Role::Owner);
            if Membership::other_active_owners(conn, &scope, membership.id)? == 0 {
                return Err(AccountError::SoleOwner(org.name));
            }
        }
        audit_account(conn, user, ip, "account.deleted", None)?;
        User::delete(conn, user.id)?;
        Ok(())
    })
}

pub fn send_verification(
    conn: &mut DbConnection,
    user: &User,
    base_url: &Url,
) -> diesel::QueryResult<()> {
    let token = tokens::generate();
    UserToken::create(
        conn,
        user.id,
        VERIFY_EMAIL,
        &tokens::hash(&token),
        crate::domain::now() + VERIFY_TTL,
    )?;
    let email = Email::parse(&user.email)
        .map_err(|e| diesel::result::Error::QueryBuilderError(e.0.into()))?;
    send(
        conn,
        &email,
        MailTemplate::VerifyEmail {
            name: user.name.clone(),
            token,
        },
        base_url,
    )
}

/// A new confirmation link for an account whose address is not confirmed yet;
/// earlier links stop working. `false` when there is nothing to confirm.
pub fn resend_verification(
    conn: &mut DbConnection,
    user_id: UserId,
    base_url: &Url,
) -> Result<bool, AccountError> {
    crate::db::write_transaction(conn, |conn| {
        let user = User::find(conn, user_id)?.ok_or(AccountError::NotFound)?;
        if user.email_verified_at.is_some() {
            return Ok(false);
        }
        UserToken::discard_unused(conn, user.id, &[VERIFY_EMAIL])?;
        send_verification(conn, &user, base_url)?;
        Ok(true)
    })
}

/// Moves the account to a new address and asks it to be confirmed. Links sent
/// to the old address stop working: a confirmation link must not confirm an
/// address it was never sent to, and the old inbox can no longer reset the
/// password.
pub fn change_email(
    conn: &mut DbConnection,
    user: &User,
    new_email: &Email,
    ip: &str,
    base_url: &Url,
) -> Result<(), AccountError> {
    crate::db::write_transaction(conn, |conn| {
        crate::db::lock_until_commit(conn, &account_lock(user.id))?;
        // As it is now, under the lock: two changes at once each see the
        // address the other left.
        let user = &User::find(conn, user.id)?.ok_or(AccountError::NotFound)?;
        if User::find_by_email(conn, new_email)?.is_some() {
            return Err(AccountError::EmailTaken);
        }
        let detail = format!("{} → {}", user.email, new_email.as_str());
        audit_account(conn, user, ip, "account.email_changed", Some(&detail))?;
        or_taken(
            User::set_email(conn, user.id, new_email),
            AccountError::EmailTaken,
        )?;
        UserToken::discard_unused(conn, user.id, &[VERIFY_EMAIL, RESET_PASSWORD])?;
        let updated = User::find(conn, user.id)?.ok_or(AccountError::NotFound)?;
        send_verification(conn, &updated, base_url)?;
        if let Ok(old) = Email::parse(&user.email) {
            send(
                conn,
                &old,
                MailTemplate::email_changed(&user.name, new_email),
                base_url,
            )?;
        }
        Ok(())
    })
}

/// Writes an account-level action (the user acting on their own account) to
/// the audit log of every organization they belong to.
pub fn audit_account(
    conn: &mut DbConnection,
    user: &User,
    ip: &str,
    action: &str,
    detail: Option<&str>,
) -> diesel::QueryResult<()> {
    let actor = Actor {
        user_id: Some(user.id),
        label: &user.email,
        ip,
    };
    for (org, _) in Membership::organizations_of(conn, user.id)? {
        audit(
            conn,
            Some(org.id),
            &actor,
            action,
            Some(&user.email),
            detail,
        )?;
    }
    Ok(())
}

/// What a confirmation link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    Now,
    /// A used link of an account whose address is confirmed: opened twice.
    Already,
}

pub fn verify_email(conn: &mut DbConnection, token: &str) -> Result<Confirmed, AccountError> {
    let hash = tokens::hash(token);
    crate::db::write_transaction(conn, |conn| {
        match UserToken::consume(conn, VERIFY_EMAIL, &hash)? {
            Ok(user_id) => {
                User::mark_verified(conn, user_id)?;
                Ok(Confirmed::Now)
            }
            Err(TokenProblem::Used) => {
                let verified = match UserToken::owner(conn, VERIFY_EMAIL, &hash)? {
                    Some(id) => {
                        User::find(conn, id)?.is_some_and(|u| u.email_verified_at.is_some())
                    }
                    None => false,
                };
                if verified {
                    Ok(Confirmed::Already)
                } else {
                    Err(AccountError::Token(TokenProblem::Used))
                }
            }
            Err(problem) => Err(AccountError::Token(problem)),
        }
    })
}

/// Serializes the changes that decide where an account's links go.
fn account_lock(user: UserId) -> String {
    format!("account:{user}")
}

/// Sends a reset link if the address belongs to an enabled account; the caller
/// answers the same either way, so the form does not reveal who has an account.
pub fn request_password_reset(
    conn: &mut DbConnection,
    email: &Email,
    base_url: &Url,
) -> Result<(), AccountError> {
    crate::db::write_transaction(conn, |conn| {
        let Some(found) = User::find_by_email(conn, email)? else {
            return Ok(());
        };
        // Read again under the account's lock: an email change committing in
        // between must not leave a link to the account at its old address.
        crate::db::lock_until_commit(conn, &account_lock(found.id))?;
        let Some(user) = User::find(conn, found.id)?
            .filter(|u| u.disabled_at.is_none() && u.email == email.as_str())
        else {
            return Ok(());
        };
        // The link sent moments ago is on its way: asking again and again
        // must not fill someone's inbox (whoever typed the address).
        let now = crate::domain::now();
        if UserToken::newest_live_at(conn, user.id, RESET_PASSWORD)?
            .is_some_and(|sent| now - sent < RESET_RESEND_AFTER)
        {
            return Ok(());
        }
        // Only the newest link works: asking again does not pile up live ones.
        UserToken::discard_unused(conn, user.id, &[RESET_PASSWORD])?;
        let token = tokens::generate();
        UserToken::create(
            conn,
            user.id,
            RESET_PASSWORD,
            &tokens::hash(&token),
            crate::domain::now() + RESET_TTL,
        )?;
        send(
            conn,
            email,
            MailTemplate::PasswordReset {
                name: user.name.clone(),
                token,
            },
            base_url,
        )?;
        Ok(())
    })
}

/// Sets a new password chosen by its signed-in owner. Other browsers signed in
/// with the old one are signed out, and a reset link asked for before no longer
/// undoes the change.
/// The name colleagues see: in member lists, ticket timelines, emails.
pub fn rename_account(
    conn: &mut DbConnection,
    user: &User,
    name: &str,
    ip: &str,
) -> Result<(), AccountError> {
    crate::db::write_transaction(conn, |conn| {
        User::set_name(conn, user.id, name)?;
        audit_account(conn, user, ip, "account.renamed", Some(name))?;
        Ok(())
    })
}

pub fn change_password(
    conn: &mut DbConnection,
    user: &User,
    password_hash: &str,
    ip: &str,
) -> Result<(), AccountError> {
    crate::db::write_transaction(conn, |conn| {
        User::set_password(conn, user.id, password_hash)?;
        SessionRow::delete_for_user(conn, user.id)?;
        UserToken::discard_unused(conn, user.id, &[RESET_PASSWORD])?;
        audit_account(conn, user, ip, "account.password_changed", None)?;
        Ok(())
    })
}

pub fn check_reset_token(conn: &mut DbConnection, token: &str) -> Result<UserId, AccountError> {
    UserToken::check(conn, RESET_PASSWORD, &tokens::hash(token))?.map_err(AccountError::Token)
}

/// Uses the link, sets the password, and signs the account out everywhere.
pub fn reset_password(
    conn: &mut DbConnection,
    token: &str,
    password_hash: &str,
    ip: &str,
) -> Result<UserId, AccountError> {
    crate::db::write_transaction(conn, |conn| {
        let user_id = UserToken::consume(conn, RESET_PASSWORD, &tokens::hash(token))?
            .map_err(AccountError::Token)?;
        User::set_password(conn, user_id, password_hash)?;
        // Other reset links sent earlier are spent with this one.
        UserToken::discard_unused(conn, user_id, &[RESET_PASSWORD])?;
        // Whoever can read the inbox proved it: the address is verified too.
        User::mark_verified(conn, user_id)?;
        SessionRow::delete_for_user(conn, user_id)?;
        let user = User::find(conn, user_id)?.ok_or(AccountError::NotFound)?;
        // Whoever kept the account throttled with wrong passwords no longer
        // keeps its owner out.
        forget_login_failures(conn, &user.email)?;
        audit_account(conn, &user, ip, "account.password_reset", None)?;
        Ok(user_id)
    })
}

/// `Some(seconds)` to wait when sign-in is throttled for this account or address.
/// A `known_device` (one that signed in to the account before, see
/// [`crate::auth::device`]) is not held to the account's limit over all
/// addresses, which others can use up; the limits per address still apply.
pub fn throttled(
    conn: &mut DbConnection,
    email: &str,
    ip: &str,
    known_device: bool,
) -> diesel::QueryResult<Option<i64>> {
    use crate::db::schema::login_failures as lf;
    use diesel::prelude::*;
    let since = crate::domain::now() - TimeDelta::seconds(THROTTLE_WINDOW_SECS);
    let recent = lf::table.filter(lf::created_at.gt(since));
    let tally = (diesel::dsl::count_star(), diesel::dsl::min(lf::created_at));
    let by_account_and_ip: (i64, Option<chrono::NaiveDateTime>) = recent
        .filter(lf::email.eq(email).and(lf::ip.eq(ip)))
        .select(tally)
        .first(conn)?;
    let by_account: (i64, Option<chrono::NaiveDateTime>) = recent
        .filter(lf::email.eq(email))
        .select(tally)
        .first(conn)?;
    let by_ip: (i64, Option<chrono::NaiveDateTime>) =
        recent.filter(lf::ip.eq(ip)).select(tally).first(conn)?;
    let wait = |(count, oldest): (i64, Option<chrono::NaiveDateTime>), max: i64| {
        (count >= max).then(|| {
            let oldest = oldest.unwrap_or_else(crate::domain::now);
            (THROTTLE_WINDOW_SECS - (crate::domain::now() - oldest).num_seconds()).max(1)
        })
    };
    Ok([
        wait(by_account_and_ip, MAX_FAILURES_PER_ACCOUNT_AND_IP),
        wait(by_account, MAX_FAILURES_PER_ACCOUNT).filter(|_| !known_device),
        wait(by_ip, MAX_FAILURES_PER_IP),
    ]
    .into_iter()
    .max()
    .flatten())
}

/// Counts this sign-in attempt as a failure before the password is checked, or
/// says how long to wait when the account or address is throttled. Counting
/// first means parallel guesses cannot all slip through one free slot; a
/// success takes its failure back ([`record_login_success`]).
pub fn begin_login_attempt(
    conn: &mut DbConnection,
    email: &str,
    ip: &str,
    known_device: bool,
) -> diesel::QueryResult<Option<i64>> {
    use crate::db::schema::login_failures as lf;
    use diesel::prelude::*;
    // An IPv6 host has a whole /64 to rotate through: it is one address here.
    let ip = crate::auth::extractors::address_bucket(ip);
    let ip = ip.as_str();
    crate::db::write_transaction(conn, |conn| {
        crate::db::lock_until_commit(conn, &format!("login:account:{email}"))?;
        crate::db::lock_until_commit(conn, &format!("login:address:{ip}"))?;
        if let Some(wait) = throttled(conn, email, ip, known_device)? {
            return Ok(Some(wait));
        }
        diesel::insert_into(lf::table)
            .values((
                lf::email.eq(email),
                lf::ip.eq(ip),
                lf::created_at.eq(crate::domain::now()),
            ))
            .execute(conn)?;
        Ok(None)
    })
}

/// The failure itself was counted by [`begin_login_attempt`]; an existing
/// account also gets it in its organizations' audit logs.
pub fn record_login_failure(
    conn: &mut DbConnection,
    ip: &str,
    user: Option<&User>,
) -> diesel::QueryResult<()> {
    match user {
        Some(user) => audit_account(conn, user, ip, "auth.sign_in_failed", None),
        None => Ok(()),
    }
}

/// Failures older than the throttling window no longer count.
pub fn forget_old_login_failures(conn: &mut DbConnection) -> diesel::QueryResult<usize> {
    use crate::db::schema::login_failures as lf;
    use diesel::prelude::*;
    let before = crate::domain::now() - TimeDelta::seconds(THROTTLE_WINDOW_SECS);
    diesel::delete(lf::table.filter(lf::created_at.lt(before))).execute(conn)
}

pub fn record_login_success(
    conn: &mut DbConnection,
    user: &User,
    ip: &str,
) -> diesel::QueryResult<()> {
    forget_login_failures(conn, &user.email)?;
    audit_account(conn, user, ip, "auth.sign_in", None)
}

/// What asking for the password again came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Correct,
    Wrong,
    /// Too many wrong passwords lately: this many seconds to wait.
    Throttled(i64),
}

/// Checks the password a signed-in user types to confirm a sensitive change
/// (email, password, deleting the account). Counted like a sign-in attempt,
/// so a session left open is no way to guess the password. Blocking: the
/// hash is checked here.
pub fn confirm_password(
    conn: &mut DbConnection,
    user: &User,
    candidate: &str,
    ip: &str,
) -> diesel::QueryResult<PasswordCheck> {
    // Signed in: the session vouches for the browser as a device cookie would.
    if let Some(wait) = begin_login_attempt(conn, &user.email, ip, true)? {
        return Ok(PasswordCheck::Throttled(wait));
    }
    if crate::auth::password::verify(candidate, user.password_hash.as_deref()) {
        forget_login_failures(conn, &user.email)?;
        Ok(PasswordCheck::Correct)
    } else {
        Ok(PasswordCheck::Wrong)
    }
}

/// The account's failed sign-ins stop counting: its owner proved who they are.
fn forget_login_failures(conn: &mut DbConnection, email: &str) -> diesel::QueryResult<usize> {
    use crate::db::schema::login_failures as lf;
    use diesel::prelude::*;
    diesel::delete(lf::table.filter(lf::email.eq(email))).execute(conn)
}

fn require(scope: &TenantScope, permission: Permission) -> Result<(), AccountError> {
    if scope.role().can(permission) {
        Ok(())
    } else {
        Err(AccountError::Forbidden("Your role does not allow this."))
    }
}

/// Who is invited, with which role, and by whom (the name in the email).
pub struct NewInvite<'a> {
    pub inviter: &'a str,
    /// Who vouches for it (a key's creator for a key): the invitation lapses
    /// when they can no longer invite.
    pub inviter_id: Option<UserId>,
    /// The inviter (a key's creator) confirmed their own email address.
    /// Invitations carry the organization's name to any address: only someone
    /// who showed they own a mailbox may send them.
    pub inviter_verified: bool,
    pub email: &'a Email,
    pub role: Role,
}

/// Invites `email` into the scope's organization and emails the link; the
/// invitation holds a seat of the plan until it is accepted, revoked or expires.
pub fn invite(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    invite: &NewInvite<'_>,
    base_url: &Url,
    billing: &StripeConfig,
) -> Result<Invitation, AccountError> {
    let NewInvite {
        inviter,
        inviter_id,
        email,
        role,
        ..
    } = *invite;
    require(scope, Permission::ManageMembers)?;
    if role == Role::Owner {
        require(scope, Permission::ManageOwners)?;
    }
    if !invite.inviter_verified {
        return Err(AccountError::InviterUnverified);
    }
    crate::db::write_transaction(conn, |conn| {
        if let Some(user) = User::find_by_email(conn, email)?
            && Membership::of_user_in(conn, user.id, scope.organization_id())?.is_some()
        {
            return Err(AccountError::AlreadyMember);
        }
        // One open invitation per address: asking again would only mail the
        // same person again (and again). Two asks at once: one at a time.
        crate::db::lock_until_commit(
            conn,
            &format!("invitations:{}:{}", scope.organization_id(), email.as_str()),
        )?;
        if Invitation::is_pending_for(conn, scope, email)? {
            return Err(AccountError::AlreadyInvited);
        }
        limits::ensure_room(conn, billing, scope, Resource::Seat)?;
        let org =
            Organization::find(conn, scope.organization_id())?.ok_or(AccountError::NotFound)?;
        let token = tokens::generate();
        let invitation = Invitation::create(
            conn,
            scope,
            inviter_id,
            email,
            role,
            &tokens::hash(&token),
            crate::domain::now() + INVITATION_TTL,
        )?;
        send(
            conn,
            email,
            MailTemplate::Invitation {
                organization: org.name.clone(),
                inviter: inviter.to_string(),
                role: role.as_str().to_string(),
                token,
            },
            base_url,
        )?;
        audit(
            conn,
            Some(org.id),
            actor,
            "member.invited",
            Some(email.as_str()),
            Some(role.as_str()),
        )?;
        Ok(invitation)
    })
}

pub fn revoke_invitation(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    id: i64,
) -> Result<(), AccountError> {
    require(scope, Permission::ManageMembers)?;
    crate::db::write_transaction(conn, |conn| {
        let invitation = Invitation::find(conn, scope, id)?.ok_or(AccountError::NotFound)?;
        if !Invitation::revoke(conn, scope, id)? {
            return Err(AccountError::NotFound);
        }
        audit(
            conn,
            Some(scope.organization_id()),
            actor,
            "member.invitation_revoked",
            Some(&invitation.email),
            None,
        )?;
        Ok(())
    })
}

/// A usable invitation, by the raw token from the link.
pub fn find_invitation(
    conn: &mut DbConnection,
    token: &str,
) -> Result<(Invitation, Organization), AccountError> {
    let invitation = Invitation::by_token(conn, &tokens::hash(token))?
        .ok_or(AccountError::Token(TokenProblem::Unknown))?;
    if invitation.accepted_at.is_some() {
        return Err(AccountError::Token(TokenProblem::Used));
    }
    if invitation.revoked_at.is_some() {
        return Err(AccountError::Token(TokenProblem::Unknown));
    }
    if invitation.expires_at <= crate::domain::now() {
        return Err(AccountError::Token(TokenProblem::Expired));
    }
    if !inviter_still_vouches(conn, &invitation)? {
        return Err(AccountError::Token(TokenProblem::Unknown));
    }
    let org =
        Organization::find(conn, invitation.organization_id)?.ok_or(AccountError::NotFound)?;
    // A disabled organization gains no one (and a newcomer would get an
    // account whose only organization they cannot open).
    if org.is_disabled() {
        return Err(AccountError::Forbidden(
            "This organization has been disabled, so its invitations cannot be accepted.",
        ));
    }
    Ok((invitation, org))
}

/// An invitation is good while whoever sent it could still send it: someone
/// removed, disabled or demoted since cannot leave a way in behind them (an
/// admin about to go, inviting a second address of their own).
fn inviter_still_vouches(
    conn: &mut DbConnection,
    invitation: &Invitation,
) -> diesel::QueryResult<bool> {
    let Some(inviter) = invitation.invited_by else {
        return Ok(false);
    };
    let active = User::find(conn, inviter)?.is_some_and(|u| u.disabled_at.is_none());
    let role = Membership::of_user_in(conn, inviter, invitation.organization_id)?.map(|m| m.role());
    let may = role.is_some_and(|r| {
        r.can(Permission::ManageMembers)
            && (invitation.role() != Role::Owner || r.can(Permission::ManageOwners))
    });
    Ok(active && may)
}

pub enum Joiner<'a> {
    Existing(&'a User),
    New {
        name: &'a str,
        password_hash: &'a str,
    },
}

/// Accepts an invitation as an existing or a new user; returns the user and organization.
pub fn accept_invitation(
    conn: &mut DbConnection,
    token: &str,
    joiner: Joiner<'_>,
    ip: &str,
    billing: &StripeConfig,
) -> Result<(UserId, OrganizationId), AccountError> {
    crate::db::write_transaction(conn, |conn| {
        let (invitation, org) = find_invitation(conn, token)?;
        // The link is the invitee's: someone signed in who got hold of it
        // (a forwarded email) does not join in their place.
        if let Joiner::Existing(user) = &joiner
            && user.email != invitation.email
        {
            return Err(AccountError::Forbidden(
                "This invitation was sent to another email address: sign out and open the link again.",
            ));
        }
        let joining = TenantScope::verified(org.id, None, invitation.role());
        limits::ensure_room(conn, billing, &joining, Resource::Joining)?;
        let email = Email::parse(&invitation.email).map_err(|_| AccountError::NotFound)?;
        let user = match joiner {
            Joiner::Existing(user) => user.clone(),
            Joiner::New {
                name,
                password_hash,
            } => {
                if User::find_by_email(conn, &email)?.is_some() {
                    return Err(AccountError::EmailTaken);
                }
                let user = or_taken(
                    User::create(conn, &NewUser::new(&email, name, Some(password_hash))),
                    AccountError::EmailTaken,
                )?;
                // The link arrived at this address: it is verified.
                User::mark_verified(conn, user.id)?;
                user
            }
        };
        if Membership::of_user_in(conn, user.id, org.id)?.is_some() {
            return Err(AccountError::AlreadyMember);
        }
        if !Invitation::mark_accepted(conn, invitation.id)? {
            return Err(AccountError::Token(TokenProblem::Used));
        }
        Membership::create(
            conn,
            &NewMembership::new(org.id, user.id, invitation.role()),
        )?;
        let actor = Actor {
            user_id: Some(user.id),
            label: &user.email,
            ip,
        };
        audit(
            conn,
            Some(org.id),
            &actor,
            "member.joined",
            Some(&user.email),
            Some(invitation.role().as_str()),
        )?;
        Ok((user.id, org.id))
    })
}

/// Taken first by every change to an organization's memberships, so each one
/// decides on what the one before it left (roles read before another change
/// committed could otherwise leave it without an owner, or let an admin
/// remove a member just made owner); returns the caller's scope held to the
/// role the caller has now, which may have changed since the request began.
fn memberships_locked(
    conn: &mut DbConnection,
    scope: &TenantScope,
) -> Result<TenantScope, AccountError> {
    crate::db::lock_until_commit(conn, &format!("memberships:{}", scope.organization_id()))?;
    let Some(user) = scope.user_id() else {
        return Ok(scope.clone());
    };
    let current = Membership::of_user_in(conn, user, scope.organization_id())?.ok_or(
        AccountError::Forbidden("You are no longer a member of this organization."),
    )?;
    Ok(scope.narrowed(current.role()))
}

pub fn change_role(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    id: MembershipId,
    role: Role,
) -> Result<MemberWithUser, AccountError> {
    require(scope, Permission::ManageMembers)?;
    crate::db::write_transaction(conn, |conn| {
        let scope = &memberships_locked(conn, scope)?;
        require(scope, Permission::ManageMembers)?;
        let membership = Membership::find(conn, scope, id)?.ok_or(AccountError::NotFound)?;
        let touches_owner = membership.role() == Role::Owner || role == Role::Owner;
        if touches_owner {
            require(scope, Permission::ManageOwners)?;
        }
        if membership.role() == Role::Owner
            && role != Role::Owner
            && Membership::other_active_owners(conn, scope, id)? == 0
        {
            return Err(AccountError::LastOwner);
        }
        let user = User::find(conn, membership.user_id)?.ok_or(AccountError::NotFound)?;
        if membership.role() == role {
            // Saved as it was: nothing to record, no one to notify.
            return Ok(MemberWithUser { membership, user });
        }
        Membership::set_role(conn, scope, id, role)?;
        if membership.role().can(Permission::Respond) && !role.can(Permission::Respond) {
            let why = format!("can no longer answer (now {})", role.as_str());
            crate::services::tickets::release_assignments(
                conn,
                scope.organization_id(),
                &user,
                actor,
                &why,
            )?;
        }
        let detail = format!("{} → {}", membership.role().as_str(), role.as_str());
        audit(
            conn,
            Some(scope.organization_id()),
            actor,
            "member.role_changed",
            Some(&user.email),
            Some(&detail),
        )?;
        let membership = Membership::find(conn, scope, id)?.ok_or(AccountError::NotFound)?;
        Ok(MemberWithUser { membership, user })
    })
}

pub fn remove_member(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    id: MembershipId,
) -> Result<(), AccountError> {
    crate::db::write_transaction(conn, |conn| {
        let scope = &memberships_locked(conn, scope)?;
        let membership = Membership::find(conn, scope, id)?.ok_or(AccountError::NotFound)?;
        let leaving_self = Some(membership.user_id) == scope.user_id();
        if !leaving_self {
            require(scope, Permission::ManageMembers)?;
            if membership.role() == Role::Owner {
                require(scope, Permission::ManageOwners)?;
            }
        }
        if membership.role() == Role::Owner
            && Membership::other_active_owners(conn, scope, id)? == 0
        {
            return Err(AccountError::LastOwner);
        }
        Membership::remove(conn, scope, id)?;
        let user = User::find(conn, membership.user_id)?.ok_or(AccountError::NotFound)?;
        let (action, why) = if leaving_self {
            ("member.left", "left the organization")
        } else {
            ("member.removed", "was removed from the organization")
        };
        crate::services::tickets::release_assignments(
            conn,
            scope.organization_id(),
            &user,
            actor,
            why,
        )?;
        audit(
            conn,
            Some(scope.organization_id()),
            actor,
            action,
            Some(&user.email),
            None,
        )?;
        Ok(())
    })
}

/// Creates a key and returns it whole, the only time it is ever shown.
pub fn create_api_key(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    name: &str,
    write: bool,
) -> Result<(String, ApiKey), AccountError> {
    require(scope, Permission::ManageApiKeys)?;
    let secret = format!("fd_{}", tokens::generate());
    let prefix: String = secret.chars().take(10).collect();
    let scopes = if write { "read,write" } else { "read" };
    crate::db::write_transaction(conn, |conn| {
        let key = ApiKey::create(conn, scope, name, &prefix, &tokens::hash(&secret), scopes)?;
        let target = format!("{name} ({prefix}…)");
        audit(
            conn,
            Some(scope.organization_id()),
            actor,
            "api_key.created",
            Some(&target),
            Some(scopes),
        )?;
        Ok((secret, key))
    })
}

pub fn revoke_api_key(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    id: i64,
) -> Result<(), AccountError> {
    require(scope, Permission::ManageApiKeys)?;
    crate::db::write_transaction(conn, |conn| {
        let key = ApiKey::find(conn, scope, id)?.ok_or(AccountError::NotFound)?;
        // Revoked already (the list still shows it): done, as asked.
        if key.revoked_at.is_some() {
            return Ok(());
        }
        if !ApiKey::revoke(conn, scope, id)? {
            return Err(AccountError::NotFound);
        }
        let target = format!("{} ({}…)", key.name, key.prefix);
        audit(
            conn,
            Some(scope.organization_id()),
            actor,
            "api_key.revoked",
            Some(&target),
            None,
        )?;
        Ok(())
    })
}

/// Every action the audit log records, for the filter.
pub const AUDIT_ACTIONS: &[(&str, &str)] = &[
    ("account.signup", "Signed up"),
    ("account.password_changed", "Password changed"),
    ("account.renamed", "Name changed"),
    ("account.password_reset", "Password reset by email"),
    ("account.email_changed", "Email address changed"),
    ("account.signed_out_everywhere", "Signed out everywhere"),
    ("account.deleted", "Account deleted"),
    ("auth.sign_in", "Signed in"),
    ("auth.sign_in_failed", "Sign-in failed"),
    ("member.invited", "Member invited"),
    ("member.invitation_revoked", "Invitation revoked"),
    ("member.joined", "Member joined"),
    ("member.role_changed", "Role changed"),
    ("member.removed", "Member removed"),
    ("member.left", "Member left"),
    ("api_key.created", "API key created"),
    ("api_key.revoked", "API key revoked"),
    ("agent.created", "Agent created"),
    ("agent.updated", "Agent settings changed"),
    ("agent.deleted", "Agent deleted"),
    ("agent.address_changed", "Agent address changed"),
    ("provider_key.saved", "Provider key saved"),
    ("provider_key.removed", "Provider key removed"),
    ("conversation.deleted", "Conversation erased"),
    ("billing.customer_created", "Stripe customer created"),
    ("billing.customer_linked", "Stripe customer linked"),
    ("billing.checkout_started", "Checkout started"),
    ("billing.portal_opened", "Billing portal opened"),
    ("billing.subscription_changed", "Subscription changed"),
    ("billing.subscription_canceled", "Subscription canceled"),
    ("billing.invoice_paid", "Invoice paid"),
    ("billing.payment_failed", "Payment failed"),
    ("billing.trial_will_end", "Trial ending soon"),
    ("organization.created", "Organization created"),
    ("organization.renamed", "Organization renamed"),
    (
        "organization.address_changed",
        "Organization address changed",
    ),
    ("organization.deleted", "Organization deleted"),
    ("organization.disabled", "Organization disabled"),
    ("organization.enabled", "Organization re-enabled"),
    ("organization.exported", "Organization data exported"),
    ("user.disabled", "User disabled"),
    ("user.enabled", "User re-enabled"),
];

/// What an action code reads as in the log, for people; `None` for a code
/// this version never writes (an entry from a newer or older release).
pub fn audit_label(code: &str) -> Option<&'static str> {
    AUDIT_ACTIONS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, label)| *label)
}
