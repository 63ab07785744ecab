//! Pages of sign-up, sign-in, the organization app and the platform admin.

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;

/// Messages shown beside form fields, keyed by the field's name.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(pub BTreeMap<&'static str, String>);

impl FieldErrors {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.entry(field).or_insert_with(|| message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A one-line notice at the top of a page.
#[derive(Debug, Clone)]
pub struct Flash {
    /// `success`, `error` or `info`.
    pub kind: &'static str,
    pub message: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "auth/signup.html")]
pub struct SignupPage {
    pub csrf: String,
    pub organization: String,
    pub name: String,
    pub email: String,
    pub errors: FieldErrors,
    /// The email belongs to an account: the way to it is offered beside the field.
    pub email_taken: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "auth/login.html")]
pub struct LoginPage {
    pub csrf: String,
    /// Where to go once signed in: a path of this site (see `local_path`).
    pub next: String,
    pub email: String,
    pub errors: FieldErrors,
    pub flash: Option<Flash>,
}

#[derive(Template, WebTemplate)]
#[template(path = "auth/forgot_password.html")]
pub struct ForgotPasswordPage {
    pub csrf: String,
    pub email: String,
    pub errors: FieldErrors,
    pub flash: Option<Flash>,
}

/// `/app/welcome`: signed in, but in no active organization.
#[derive(Template, WebTemplate)]
#[template(path = "auth/welcome.html")]
pub struct WelcomePage {
    pub csrf: String,
    pub email: String,
    /// The account works in an active organization already: this is another.
    pub another: bool,
    pub organization: String,
    /// Organizations the account still belongs to that are disabled.
    pub disabled: Vec<String>,
    pub errors: FieldErrors,
    pub flash: Option<Flash>,
}

#[derive(Template, WebTemplate)]
#[template(path = "auth/reset_password.html")]
pub struct ResetPasswordPage {
    pub csrf: String,
    pub token: String,
    pub errors: FieldErrors,
}

/// A short outcome page: "check your inbox", "link expired", …
#[derive(Template, WebTemplate)]
#[template(path = "auth/message.html")]
pub struct MessagePage {
    pub title: String,
    pub message: String,
    pub link_href: String,
    pub link_label: String,
    /// Someone is signed in: the header leads back to the app, not to sign-up.
    pub in_app: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "auth/accept_invitation.html")]
pub struct AcceptInvitationPage {
    pub csrf: String,
    pub token: String,
    pub organization: String,
    pub role: String,
    pub email: String,
    /// Someone is signed in: accepting adds the organization to that account.
    pub signed_in_as: Option<String>,
    /// The invited address already has an account (sign in to accept).
    pub existing_user: bool,
    pub name: String,
    pub errors: FieldErrors,
}

impl AcceptInvitationPage {
    /// Sign-in that comes back to this invitation.
    pub fn sign_in_href(&self) -> String {
        let back = format!("/invitations/accept?token={}", self.token);
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("next", &back);
        format!("/login?{}", query.finish())
    }
}

/// One entry of the organization switcher.
#[derive(Debug, Clone)]
pub struct OrgChoice {
    pub id: i64,
    pub name: String,
    pub current: bool,
}

/// What every page under /app shows around its content.
#[derive(Debug, Clone)]
pub struct AppChrome {
    /// For the page's forms about the organization (bound to it).
    pub csrf: String,
    /// For forms about the person: switching, signing out, the account.
    pub csrf_session: String,
    pub user_name: String,
    pub user_email: String,
    pub email_verified: bool,
    /// False on the account pages of someone in no (active) organization:
    /// only what is about the person is offered.
    pub has_organization: bool,
    pub org_name: String,
    pub role: String,
    pub orgs: Vec<OrgChoice>,
    /// Owners and admins see the management links.
    pub can_manage: bool,
    pub is_platform_admin: bool,
    /// `dashboard`, `members`, `api-keys`, `audit` or `account`.
    pub active: &'static str,
    pub flash: Option<Flash>,
}

/// A link into another organization of the person's (a ticket in an
/// email): switching is asked for, never done by a link alone.
#[derive(Template, WebTemplate)]
#[template(path = "app/switch.html")]
pub struct SwitchOrganizationPage {
    pub chrome: AppChrome,
    pub target_id: i64,
    pub target_name: String,
    /// What the link opens ("ticket #12"), and where it goes after switching.
    pub what: String,
    pub next: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "app/dashboard.html")]
pub struct DashboardPage {
    pub chrome: AppChrome,
    pub member_count: i64,
    pub api_key_count: usize,
    pub agent_count: i64,
    /// Visitors who asked for a person and wait for the team.
    pub escalated_count: i64,
    pub open_count: i64,
    /// Set when this month's message allowance is used up.
    pub allowance_used_up: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MemberRow {
    pub membership_id: i64,
    pub name: String,
    pub email: String,
    pub role: String,
    pub is_you: bool,
    /// The viewer may change this member's role or remove them.
    pub editable: bool,
    /// The organization's only owner: cannot leave or be demoted.
    pub last_owner: bool,
}

#[derive(Debug, Clone)]
pub struct InvitationRow {
    pub id: i64,
    pub email: String,
    pub role: String,
    pub expires: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "app/members.html")]
pub struct MembersPage {
    pub chrome: AppChrome,
    pub members: Vec<MemberRow>,
    pub invitations: Vec<InvitationRow>,
    /// Roles the viewer may grant.
    pub roles: Vec<&'static str>,
    pub invite_email: String,
    pub invite_role: String,
    pub errors: FieldErrors,
}

#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub scopes: String,
    pub last_used: String,
    pub created: String,
    pub revoked: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "app/api_keys.html")]
pub struct ApiKeysPage {
    pub chrome: AppChrome,
    pub keys: Vec<ApiKeyRow>,
    /// The full key, shown once right after creation.
    pub new_key: Option<String>,
    pub name: String,
    /// The access chosen in a refused form ("Read and write" stays chosen).
    pub write: bool,
    pub errors: FieldErrors,
}

#[derive(Debug, Clone)]
pub struct AuditRow {
    pub when: String,
    pub actor: String,
    /// The code, as the API and the filter know it.
    pub action: String,
    /// The code said for people.
    pub action_label: String,
    pub target: String,
    pub ip: String,
    pub detail: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "app/audit.html")]
pub struct AuditPage {
    pub chrome: AppChrome,
    pub entries: Vec<AuditRow>,
    pub pager: super::Pager,
    /// The action filter in effect ("" for all).
    pub action: String,
    pub action_label: &'static str,
    /// Every action the filter offers: its code and what it reads as.
    pub actions: Vec<(&'static str, &'static str)>,
}

/// `/app/organization`: the organization's own settings.
#[derive(Template, WebTemplate)]
#[template(path = "app/organization.html")]
pub struct OrganizationPage {
    pub chrome: AppChrome,
    /// As typed (after a refused change) or as stored.
    pub name: String,
    pub slug: String,
    /// The address as typed (after a refused change) or as stored.
    pub new_slug: String,
    /// Where its agents' public chat pages live, e.g. `https://…/c/acme/`.
    pub chat_base: String,
    /// Addresses it had before that still lead to it, newest first.
    pub former_slugs: Vec<String>,
    /// How many new former addresses it may leave behind in 30 days.
    pub max_changes: i64,
    /// Owners may delete it.
    pub can_delete: bool,
    /// The deletion confirmation as typed.
    pub confirmation: String,
    pub errors: FieldErrors,
}

#[derive(Template, WebTemplate)]
#[template(path = "app/account.html")]
pub struct AccountPage {
    pub chrome: AppChrome,
    /// The name as stored, or as typed when it was refused.
    pub name: String,
    pub email: String,
    pub errors: FieldErrors,
}

#[derive(Debug, Clone)]
pub struct AdminOrgRow {
    pub id: i64,
    pub name: String,
    pub slug: String,
    pub members: i64,
    pub disabled: bool,
    pub created: String,
}

#[derive(Debug, Clone)]
pub struct AdminUserRow {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub disabled: bool,
    pub platform_admin: bool,
    pub created: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/index.html")]
pub struct AdminPage {
    pub csrf: String,
    pub user_email: String,
    pub organizations: Vec<AdminOrgRow>,
    pub users: Vec<AdminUserRow>,
    pub flash: Option<Flash>,
    /// The search in effect ("" for none).
    pub q: String,
    /// How many match in all (the lists show the newest of them).
    pub organization_total: i64,
    pub user_total: i64,
}
