//! Accounts, sessions, CSRF, invitations, API keys and tenant isolation, over HTTP.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use frontdesk::db::schema::{invitations, memberships, organizations, user_tokens, users};
use reqwest::StatusCode;
use serde_json::Value;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, spawn_app};

backend_tests!(
    two_requests_changing_one_session_both_keep_their_change,
    a_busy_api_key_is_not_written_on_every_request,
    a_disabled_organizations_invitations_cannot_be_accepted,
    a_new_api_key_is_never_readable_in_the_session_store,
    only_a_confirmed_address_sends_invitations,
    a_page_opened_for_one_organization_cannot_act_on_another,
    signup_sends_a_single_use_verification_link,
    signup_rejects_bad_input_and_creates_nothing,
    csrf_is_required_on_forms_and_cookie_authenticated_api_calls,
    signing_in_rotates_the_session_id_and_signing_out_ends_it,
    sign_in_is_throttled_per_account,
    wrong_passwords_from_elsewhere_do_not_shut_the_owner_out,
    an_ipv6_host_is_one_address_to_sign_in_throttling,
    an_api_key_cannot_make_admins_or_owners,
    a_disabled_owner_does_not_count_as_someone_in_charge,
    an_invitation_lapses_when_its_sender_can_no_longer_invite,
    invitations_go_out_at_a_persons_pace,
    links_sent_to_an_old_address_stop_working,
    password_reset_answers_the_same_and_links_work_once,
    reset_emails_go_out_at_most_once_a_minute,
    public_forms_are_rate_limited_per_address,
    invitations_are_accepted_once_and_expire,
    another_organizations_ids_answer_404,
    api_keys_authenticate_are_scoped_and_revocable,
    an_api_key_answers_for_its_creator_and_cannot_make_keys,
    the_last_owner_cannot_be_demoted_or_removed,
    members_are_managed_over_the_api_and_anyone_can_leave,
    the_audit_log_pages_through_everything_it_recorded,
    owners_and_admins_rename_the_organization_and_its_address_stays,
    an_owner_deletes_the_organization_and_only_it,
    people_delete_their_account_unless_they_alone_own_an_organization,
    two_owners_demoting_each_other_at_once_leave_one_owner,
    platform_admin_disables_accounts_and_organizations,
    the_openapi_document_describes_the_api,
    account_changes_and_session_lifetimes,
    signed_out_form_pages_keep_few_short_sessions,
    people_change_the_name_colleagues_see,
    a_member_starts_another_organization_and_switches_between_them,
    revoking_a_revoked_key_again_is_done_not_missing,
);

async fn people_change_the_name_colleagues_see(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, _) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    let (_, page) = owner.get("/app/account").await;
    assert!(page.contains(r#"value="Test Person""#), "{page}");

    // Refused: the message beside the field, what was typed kept.
    for (typed, message) in [
        ("   ", "Your name is required."),
        (
            &*"n".repeat(121),
            "Your name must be at most 120 characters.",
        ),
    ] {
        let res = owner
            .submit("/app/account", "/app/account/name", &[("name", typed)])
            .await;
        assert_eq!(res.status(), 422, "{typed:?}");
        let html = res.text().await.unwrap();
        assert!(
            html.contains("account-name-error") && html.contains(message),
            "{html}"
        );
    }
    let (_, page) = owner.get("/app/account").await;
    assert!(
        page.contains(r#"value="Test Person""#),
        "nothing saved: {page}"
    );

    let res = owner
        .submit(
            "/app/account",
            "/app/account/name",
            &[("name", "  Dana Q. Person ")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let (_, page) = owner.get("/app/account").await;
    assert!(page.contains("Name saved."), "{page}");
    assert!(page.contains(r#"value="Dana Q. Person""#), "{page}");
    let (_, members) = owner.get("/app/members").await;
    assert!(members.contains("Dana Q. Person"), "{members}");
    let (_, audit) = owner.get("/app/audit?action=account.renamed").await;
    assert!(audit.contains("Dana Q. Person"), "{audit}");
}

async fn a_member_starts_another_organization_and_switches_between_them(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, _) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    let (_, account) = owner.get("/app/account").await;
    assert!(
        account.contains(r#"href="/app/organizations/new""#),
        "{account}"
    );
    let (status, page) = owner.get("/app/organizations/new").await;
    assert_eq!(status, 200);
    assert!(page.contains("Start another organization"), "{page}");
    assert!(!page.contains("do not belong to any"), "{page}");

    let res = owner
        .submit(
            "/app/organizations/new",
            "/app/welcome",
            &[("organization", " ")],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Organization name is required.") && html.contains("Start another"),
        "{html}"
    );
    let res = owner
        .submit(
            "/app/organizations/new",
            "/app/welcome",
            &[("organization", "Harbor Rentals")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let (_, dashboard) = owner.get("/app").await;
    assert!(dashboard.contains("Harbor Rentals is ready"), "{dashboard}");
    // Both are offered in the switcher, the new one current.
    assert!(dashboard.contains(r#"id="org-switch""#), "{dashboard}");
    assert!(
        dashboard.contains("Harbor Bikes") && dashboard.contains("selected>Harbor Rentals"),
        "{dashboard}"
    );
}

pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// A browser: its own cookie jar, following no redirects.
pub(crate) struct Browser {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
}

impl Browser {
    pub(crate) fn new(app: &TestApp) -> Self {
        Self {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.address.clone(),
        }
    }

    /// A browser at `ip`, as the trusted proxy in front of the server
    /// (`TRUSTED_PROXIES`) reports it.
    pub(crate) fn behind_proxy(app: &TestApp, ip: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", ip.parse().unwrap());
        Self {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .default_headers(headers)
                .build()
                .unwrap(),
            base: app.address.clone(),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, String) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    }

    /// The CSRF token of the first form on a page.
    pub(crate) async fn csrf(&self, path: &str) -> String {
        let (_, html) = self.get(path).await;
        csrf_in(&html).unwrap_or_else(|| panic!("no csrf_token on {path}: {html}"))
    }

    pub(crate) async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// A cookie-authenticated JSON API call, with the CSRF header a page of
    /// the app would send.
    pub(crate) async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        let token = self.csrf("/app/members").await;
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("x-csrf-token", token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Fetches a token from `page`, then posts the form with it.
    pub(crate) async fn submit(
        &self,
        page: &str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let token = self.csrf(page).await;
        let mut all = vec![("csrf_token", token.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all).await
    }

    pub(crate) async fn signup(&self, org: &str, email: &str) -> reqwest::Response {
        self.submit(
            "/signup",
            "/signup",
            &[
                ("organization", org),
                ("name", "Test Person"),
                ("email", email),
                ("password", PASSWORD),
            ],
        )
        .await
    }

    /// Creates an API key on the API keys page and returns it whole, as the
    /// page after the redirect shows it, once.
    pub(crate) async fn api_key(&self, name: &str, scope: &str) -> String {
        let res = self
            .submit(
                "/app/api-keys",
                "/app/api-keys",
                &[("name", name), ("scope", scope)],
            )
            .await;
        assert_eq!(res.status(), 303, "created, then shown after a redirect");
        let (_, html) = self.get("/app/api-keys").await;
        // Read from its own field: the page holds other random strings (the
        // CSRF token) that may contain "fd_" too.
        let marker = "id=\"new-key\" type=\"text\" class=\"mono\" value=\"";
        let start = html.find(marker).expect("the new key is shown once") + marker.len();
        let key = html[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(key.starts_with("fd_") && key.len() == 3 + 43, "{key}");
        let (_, again) = self.get("/app/api-keys").await;
        assert!(
            !again.contains(&key),
            "shown once: a reload does not show it"
        );
        key
    }

    pub(crate) async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.submit(
            "/login",
            "/login",
            &[("email", email), ("password", password)],
        )
        .await
    }
}

/// The page's last form token: that of its own content (the header's forms,
/// switching and signing out, come first and carry the session's plain one).
fn csrf_in(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.rfind(marker)? + marker.len();
    Some(html[start..start + html[start..].find('"')?].to_string())
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn mail_dir(app: &TestApp) -> PathBuf {
    app.data_dir().join("mail")
}

/// Text parts of every email to `to` whose subject contains `subject`.
fn all_mail(dir: &Path, to: &str, subject: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter(|raw| {
            let header = |name: &str| {
                raw.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or("")
                    .to_string()
            };
            header("To").contains(to) && header("Subject").contains(subject)
        })
        .map(|raw| {
            crate::smtp::parts(&raw.replace("\r\n", "\n").replace('\n', "\r\n"))[0]
                .1
                .clone()
        })
        .collect()
}

/// Waits for an email to `to` whose subject contains `subject`; returns its text part.
pub(crate) async fn wait_for_mail(dir: &Path, to: &str, subject: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(text) = all_mail(dir, to, subject).into_iter().next() {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no email to {to} about {subject:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits for a password reset email to `to` with a link not in `seen`;
/// returns the link.
async fn reset_link(app: &TestApp, to: &str, seen: &[&str]) -> String {
    next_link(
        &mail_dir(app),
        to,
        "Reset your Frontdesk password",
        "/reset-password?token=",
        seen,
    )
    .await
}

/// Asks for a password reset link for `email`, as the "forgot password" form does.
async fn request_reset(b: &Browser, email: &str) -> reqwest::Response {
    b.submit("/forgot-password", "/forgot-password", &[("email", email)])
        .await
}

/// Posts the reset-password form: `token` and the new password, typed twice.
async fn post_reset(b: &Browser, token: &str, password: &str) -> reqwest::Response {
    b.submit(
        "/forgot-password",
        "/reset-password",
        &[
            ("token", token),
            ("password", password),
            ("password_confirmation", password),
        ],
    )
    .await
}

/// Waits for an email to `to` about `subject` with a `path` link not in
/// `seen`; returns that link (a second or third reset link, say).
pub(crate) async fn next_link(
    dir: &Path,
    to: &str,
    subject: &str,
    path: &str,
    seen: &[&str],
) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = all_mail(dir, to, subject)
            .into_iter()
            .map(|text| link(&text, path))
            .find(|l| !seen.contains(&l.as_str()));
        if let Some(l) = fresh {
            return l;
        }
        assert!(Instant::now() < deadline, "no new {path} email to {to}");
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits for the invitation emailed to `to`; returns its accept link.
pub(crate) async fn invitation_link(app: &TestApp, to: &str) -> String {
    let mail = wait_for_mail(&mail_dir(app), to, "invited you").await;
    link(&mail, "/invitations/accept?token=")
}

/// The path and query of the first link to `path` in a text.
pub(crate) fn link(text: &str, path: &str) -> String {
    let start = text
        .find(path)
        .unwrap_or_else(|| panic!("no {path} link in {text}"));
    text[start..].split_whitespace().next().unwrap().to_string()
}

fn count(app: &TestApp, what: &str) -> i64 {
    let mut conn = app.pool().get().unwrap();
    match what {
        "organizations" => organizations::table.count().get_result(&mut conn).unwrap(),
        "users" => users::table.count().get_result(&mut conn).unwrap(),
        "memberships" => memberships::table.count().get_result(&mut conn).unwrap(),
        "invitations" => invitations::table.count().get_result(&mut conn).unwrap(),
        _ => unreachable!(),
    }
}

async fn signup_sends_a_single_use_verification_link(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    let res = owner.signup("Acme Support", "Olive@Acme.test").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/app");
    let (status, dashboard) = owner.get("/app").await;
    assert_eq!(status, 200);
    assert!(dashboard.contains("Acme Support"), "{dashboard}");
    assert!(
        dashboard.contains("Confirm your email address"),
        "unverified banner"
    );

    let mail = wait_for_mail(
        &mail_dir(&app),
        "olive@acme.test",
        "Confirm your email address",
    )
    .await;
    let verify = link(&mail, "/verify-email?token=");
    let (status, page) = Browser::new(&app).get(&verify).await;
    assert_eq!(status, 200);
    assert!(page.contains("Email confirmed"));
    assert!(page.contains("Start free"), "another browser is signed out");

    // Opened again: the address is confirmed, which is what it says.
    let (status, page) = owner.get(&verify).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("already confirmed"), "{page}");
    assert!(
        page.contains("Open the app") && !page.contains("Start free"),
        "the signed-in owner's header leads back to the app: {page}"
    );
    let (_, dashboard) = owner.get("/app").await;
    assert!(
        !dashboard.contains("we sent you a link"),
        "banner gone once verified"
    );

    let (status, page) = Browser::new(&app).get(&verify).await;
    assert_eq!(status, 200);
    assert!(page.contains("already confirmed"), "{page}");
    let (status, _) = Browser::new(&app).get("/verify-email?token=made-up").await;
    assert_eq!(status, 422);
}

async fn signup_rejects_bad_input_and_creates_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    assert_eq!(
        Browser::new(&app)
            .signup("First", "taken@acme.test")
            .await
            .status(),
        303
    );
    let before = (count(&app, "organizations"), count(&app, "users"));

    let b = Browser::new(&app);
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![("email", "taken@acme.test".into())], "already exists"),
        (vec![("email", "TAKEN@acme.test".into())], "already exists"),
        (vec![("email", "not-an-email".into())], "name@example.com"),
        (vec![("password", "short".into())], "10 to 128 characters"),
        (vec![("password", "password123".into())], "too common"),
        (vec![("organization", "x".repeat(121))], "at most 120"),
        (vec![("organization", "   ".into())], "is required"),
    ];
    for (overrides, expected) in cases {
        let mut fields: Vec<(&str, String)> = vec![
            ("organization", "Second".into()),
            ("name", "Sam".into()),
            ("email", "sam@acme.test".into()),
            ("password", PASSWORD.into()),
        ];
        for (k, v) in overrides {
            fields.iter_mut().find(|(f, _)| *f == k).unwrap().1 = v;
        }
        let token = b.csrf("/signup").await;
        let mut form: Vec<(&str, &str)> = vec![("csrf_token", &token)];
        form.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
        let res = b.post("/signup", &form).await;
        assert_eq!(res.status(), 422, "{expected}");
        let html = res.text().await.unwrap();
        assert!(html.contains(expected), "expected {expected:?} in the page");
        assert!(html.contains("value=\"Sam\""), "what was typed is kept");
        // The way into the existing account is beside the field, as links.
        assert_eq!(
            html.contains(r#"<a href="/login">Sign in instead</a>"#),
            expected == "already exists",
            "{html}"
        );
    }
    assert_eq!(
        (count(&app, "organizations"), count(&app, "users")),
        before,
        "nothing half-created"
    );
}

async fn a_disabled_organizations_invitations_cannot_be_accepted(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(
        owner.signup("Gone Co", "owner@gone.test").await.status(),
        303
    );
    confirm_email(&app, "owner@gone.test").await;
    let res = owner
        .submit(
            "/app/members",
            "/app/members/invite",
            &[("email", "late@gone.test"), ("role", "agent")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let accept = invitation_link(&app, "late@gone.test").await;
    let token = accept.split("token=").nth(1).unwrap().to_string();

    let mut conn = app.pool().get().unwrap();
    let org = frontdesk::domain::OrganizationId(app.org_id("gone-co"));
    frontdesk::db::models::Organization::set_disabled(&mut conn, org, true).unwrap();

    let newcomer = Browser::new(&app);
    let (status, page) = newcomer.get(&accept).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("has been disabled"), "{page}");
    let res = newcomer
        .post(
            "/invitations/accept",
            &[
                ("csrf_token", &newcomer.csrf("/login").await),
                ("token", &token),
                ("name", "Late"),
                ("password", "a long enough passphrase"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("has been disabled"));
    let created: i64 = users::table
        .filter(users::email.eq("late@gone.test"))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(
        created, 0,
        "no account is made for an organization nobody can use"
    );
}

async fn a_new_api_key_is_never_readable_in_the_session_store(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let b = Browser::new(&app);
    assert_eq!(b.signup("Acme", "keys@acme.test").await.status(), 303);

    // Refused for its name: the access chosen stays chosen.
    let refused = b
        .submit(
            "/app/api-keys",
            "/app/api-keys",
            &[("name", "   "), ("scope", "write")],
        )
        .await;
    assert_eq!(refused.status(), 422);
    let page = refused.text().await.unwrap();
    assert!(page.contains(r#"value="write" checked"#), "{page}");
    assert!(!page.contains(r#"value="read" checked"#), "{page}");

    // Between the creating POST and the page that shows it, the key waits in
    // the session, which is a database row: sealed there, never in clear.
    let key = b.api_key("ci", "write").await;
    let created = b
        .submit(
            "/app/api-keys",
            "/app/api-keys",
            &[("name", "deploy"), ("scope", "read")],
        )
        .await;
    assert_eq!(created.status(), 303);
    let states: Vec<String> = frontdesk::db::schema::sessions::table
        .select(frontdesk::db::schema::sessions::state)
        .load(&mut app.pool().get().unwrap())
        .unwrap();
    assert!(
        states.iter().any(|s| s.contains("new_api_key")),
        "{states:?}"
    );
    assert!(
        states
            .iter()
            .all(|s| !s.contains("fd_") && !s.contains(&key)),
        "{states:?}"
    );
    let (_, shown) = b.get("/app/api-keys").await;
    assert!(
        shown.contains("id=\"new-key\""),
        "the sealed key is shown once"
    );
    let marker = "id=\"new-key\" type=\"text\" class=\"mono\" value=\"";
    let start = shown.find(marker).unwrap() + marker.len();
    let deploy = &shown[start..start + shown[start..].find('"').unwrap()];
    assert_eq!(shown.matches(deploy).count(), 1, "in one place: {shown}");
    // Keys of one name are told apart by their prefix when revoked.
    let prefix: String = deploy.chars().take(10).collect();
    assert!(
        shown.contains(&format!("Revoke the key deploy ({prefix}…)")),
        "{shown}"
    );
}

async fn csrf_is_required_on_forms_and_cookie_authenticated_api_calls(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let b = Browser::new(&app);
    assert_eq!(b.signup("Acme", "csrf@acme.test").await.status(), 303);

    let no_token = b
        .post("/app/api-keys", &[("name", "ci"), ("scope", "read")])
        .await;
    assert_eq!(no_token.status(), 403);
    let wrong = b
        .post("/app/api-keys", &[("csrf_token", "forged"), ("name", "ci")])
        .await;
    assert_eq!(wrong.status(), 403);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("did not come from this site")
    );
    for path in [
        "/logout",
        "/app/switch",
        "/app/members/invite",
        "/app/account/password",
        "/app/account/sessions/revoke",
    ] {
        assert_eq!(
            b.post(path, &[("organization_id", "1")]).await.status(),
            403,
            "{path}"
        );
    }

    // Cookie-authenticated API writes need the header; reads do not.
    let api = format!("{}/api/v1/api-keys", app.address);
    assert_eq!(b.client.get(&api).send().await.unwrap().status(), 200);
    let res = b
        .client
        .post(&api)
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "FORBIDDEN");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("X-CSRF-Token header"),
        "says what a program must send: {body}"
    );
    let token = b.csrf("/app/api-keys").await;
    // A token, but not this session's.
    let forged: String = token
        .chars()
        .map(|c| if c == 'a' { 'b' } else { 'a' })
        .collect();
    let res = b
        .client
        .post(&api)
        .header("x-csrf-token", forged)
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a wrong token is refused like none");
    let res = b
        .client
        .post(&api)
        .header("x-csrf-token", token)
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

fn session_id(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("fd_session="))
        .map(|c| c.split(';').next().unwrap().to_string())
}

async fn signing_in_rotates_the_session_id_and_signing_out_ends_it(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    assert_eq!(
        Browser::new(&app)
            .signup("Acme", "fix@acme.test")
            .await
            .status(),
        303
    );

    let b = Browser::new(&app);
    let page = b
        .client
        .get(format!("{}/login", app.address))
        .send()
        .await
        .unwrap();
    let before = session_id(&page).expect("the login page starts a session for its CSRF token");
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let token = csrf_in(&page.text().await.unwrap()).unwrap();
    let res = b
        .post(
            "/login",
            &[
                ("csrf_token", &token),
                ("email", "fix@acme.test"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    // The device cookie (sign-in throttling) is as out of reach of scripts.
    let device = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("fd_device="))
        .expect("a device cookie at sign-in");
    assert!(
        device.contains("HttpOnly") && device.contains("SameSite=Lax") && device.contains("Path=/"),
        "{device}"
    );
    let after = session_id(&res).expect("a new session cookie at sign-in");
    assert_ne!(before, after, "session id changes at sign-in");
    let res = b.post("/logout", &[("csrf_token", &token)]).await;
    assert_eq!(
        res.status(),
        403,
        "the token handed out before sign-in is not the signed-in session's"
    );

    // The old id is worthless now.
    let stale = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = stale
        .get(format!("{}/app", app.address))
        .header("cookie", &before)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "a fixated id does not become signed in");

    let res = b.submit("/app", "/logout", &[]).await;
    assert_eq!(location(&res), "/login");
    let (status, _) = b.get("/app").await;
    assert_eq!(status, 303, "signed out");
    let res = stale
        .get(format!("{}/app", app.address))
        .header("cookie", &after)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        303,
        "the signed-out session is gone server-side too"
    );
}

/// Waits until `n` emails to `to` about `subject` exist; returns their text parts.
async fn wait_for_mails(dir: &Path, to: &str, subject: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = all_mail(dir, to, subject);
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} emails to {to}",
            found.len()
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn links_sent_to_an_old_address_stop_working(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let me = Browser::new(&app);
    assert_eq!(me.signup("Acme", "old@acme.test").await.status(), 303);
    let subject = "Confirm your email address";
    let first = link(
        &wait_for_mail(&mail_dir(&app), "old@acme.test", subject).await,
        "/verify-email?token=",
    );

    // The banner's button sends a fresh link; the first one stops working.
    let (_, dashboard) = me.get("/app").await;
    assert!(dashboard.contains("Send it again"), "{dashboard}");
    let res = me.submit("/app", "/app/account/verification", &[]).await;
    assert_eq!(res.status(), 303);
    let (_, page) = me.get("/app/account").await;
    assert!(
        page.contains("We sent a new confirmation link to old@acme.test"),
        "{page}"
    );
    let mails = wait_for_mails(&mail_dir(&app), "old@acme.test", subject, 2).await;
    let second = mails
        .iter()
        .map(|m| link(m, "/verify-email?token="))
        .find(|l| *l != first)
        .unwrap();
    let (status, page) = Browser::new(&app).get(&first).await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("not valid"), "{page}");

    // A reset link is asked for, then the address changes.
    request_reset(&Browser::new(&app), "old@acme.test").await;
    let reset = reset_link(&app, "old@acme.test", &[]).await;
    let res = me
        .submit(
            "/app/account",
            "/app/account/email",
            &[("email", "new@acme.test"), ("current_password", PASSWORD)],
        )
        .await;
    assert_eq!(res.status(), 303);

    // Nothing sent to the old address works any more: it cannot confirm the
    // new address, and the old inbox cannot take the account back.
    let (status, _) = Browser::new(&app).get(&second).await;
    assert_eq!(status, 422, "old confirmation link");
    let (status, _) = Browser::new(&app).get(&reset).await;
    assert_eq!(status, 422, "old reset link");
    let (_, dashboard) = me.get("/app").await;
    assert!(
        dashboard.contains("we sent you a link"),
        "still unconfirmed"
    );

    let fresh = link(
        &wait_for_mail(&mail_dir(&app), "new@acme.test", subject).await,
        "/verify-email?token=",
    );
    let (status, page) = Browser::new(&app).get(&fresh).await;
    assert_eq!(status, 200, "{page}");
    let res = me
        .submit("/app/account", "/app/account/verification", &[])
        .await;
    assert_eq!(res.status(), 303);
    let (_, page) = me.get("/app/account").await;
    assert!(page.contains("already confirmed"), "{page}");
    assert_eq!(
        all_mail(&mail_dir(&app), "new@acme.test", subject).len(),
        1,
        "nothing more is sent once confirmed"
    );
}

async fn sign_in_is_throttled_per_account(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    assert_eq!(
        Browser::new(&app)
            .signup("Acme", "slow@acme.test")
            .await
            .status(),
        303
    );
    let b = Browser::new(&app);
    // Spelled differently each time, one account all the same: control
    // characters and case do not buy fresh tries.
    for typed in [
        "slow@acme.test",
        "\u{1}slow@acme.test",
        "slow@acme.test\u{2}\u{3}",
        "SLOW@acme.test",
        " \u{7f}Slow@Acme.Test ",
    ] {
        let res = b.login(typed, "wrong password here").await;
        assert_eq!(res.status(), 422, "{typed:?}");
        assert!(res.text().await.unwrap().contains("not correct"));
    }
    let res = b.login("slow@acme.test", PASSWORD).await;
    assert_eq!(res.status(), 429, "even the right password waits");
    let retry: i64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Too many failed sign-ins")
    );

    // Guesses sent all at once get no more tries than one after the other.
    assert_eq!(
        Browser::new(&app)
            .signup("Rush", "rush@acme.test")
            .await
            .status(),
        303
    );
    let guesses = (0..12).map(|_| async {
        let b = Browser::new(&app);
        b.login("rush@acme.test", "wrong password here")
            .await
            .status()
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let tried = statuses.iter().filter(|s| s.as_u16() == 422).count();
    let refused = statuses.iter().filter(|s| s.as_u16() == 429).count();
    assert_eq!((tried, refused), (5, 7), "{statuses:?}");

    // Per address: 20 failures on any accounts (10 so far), then even a new one waits.
    for n in 0..10 {
        let res = b.login(&format!("nobody{n}@acme.test"), "wrong").await;
        assert_eq!(res.status(), 422, "failure {n}");
    }
    let res = b.login("fresh@acme.test", "whatever it is").await;
    assert_eq!(res.status(), 429, "the address used its 20 failures");
}

async fn an_ipv6_host_is_one_address_to_sign_in_throttling(backend: Backend) {
    let Some(app) = spawn_app(backend)
        .env("TRUSTED_PROXIES", "127.0.0.1")
        .start()
        .await
    else {
        return;
    };
    let owner = Browser::behind_proxy(&app, "198.51.100.7");
    assert_eq!(owner.signup("Acme", "target@acme.test").await.status(), 303);
    // A new address of the same /64 for every guess: still one guesser.
    for n in 1..=5 {
        let b = Browser::behind_proxy(&app, &format!("2001:db8:7:7::{n:x}"));
        assert_eq!(
            b.login("target@acme.test", "wrong guess").await.status(),
            422
        );
    }
    let b = Browser::behind_proxy(&app, "2001:db8:7:7:ffff::1");
    assert_eq!(
        b.login("target@acme.test", PASSWORD).await.status(),
        429,
        "five failures from the /64 for this account"
    );
    let next_door = Browser::behind_proxy(&app, "2001:db8:7:8::1");
    assert_eq!(
        next_door.login("target@acme.test", PASSWORD).await.status(),
        303,
        "another /64 is another address"
    );
}

async fn wrong_passwords_from_elsewhere_do_not_shut_the_owner_out(backend: Backend) {
    let Some(app) = spawn_app(backend)
        .env("TRUSTED_PROXIES", "127.0.0.1")
        .start()
        .await
    else {
        return;
    };
    let owner = Browser::behind_proxy(&app, "198.51.100.7");
    assert_eq!(owner.signup("Acme", "target@acme.test").await.status(), 303);
    let owner = Browser::behind_proxy(&app, "198.51.100.7");

    // Someone elsewhere guesses until refused: only they are refused.
    let guesser = Browser::behind_proxy(&app, "203.0.113.9");
    for _ in 0..5 {
        assert_eq!(
            guesser
                .login("target@acme.test", "wrong guess")
                .await
                .status(),
            422
        );
    }
    assert_eq!(
        guesser.login("target@acme.test", PASSWORD).await.status(),
        429
    );
    assert_eq!(
        owner.login("target@acme.test", PASSWORD).await.status(),
        303
    );

    // Guesses from many machines together shut the account for a while...
    let mut refused = None;
    for n in 0..40 {
        let b = Browser::behind_proxy(&app, &format!("203.0.113.{}", 100 + n));
        let status = b.login("target@acme.test", "wrong guess").await.status();
        if status == 429 {
            refused = Some(n);
            break;
        }
        assert_eq!(status, 422);
    }
    assert_eq!(refused, Some(30), "thirty failures from anywhere");
    let elsewhere = Browser::behind_proxy(&app, "198.51.100.8");
    assert_eq!(
        elsewhere.login("target@acme.test", PASSWORD).await.status(),
        429
    );
    // ...except for a browser that signed in to it before (its device
    // cookie): the guessers cannot shut the owner out.
    let res = owner.submit("/app", "/logout", &[]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        owner.login("target@acme.test", PASSWORD).await.status(),
        303
    );

    // ...until its owner resets the password, which proves who they are.
    let res = request_reset(&elsewhere, "target@acme.test").await;
    assert_eq!(res.status(), 200);
    let reset = reset_link(&app, "target@acme.test", &[]).await;
    let token = reset.split("token=").nth(1).unwrap().to_string();
    let new_password = "a brand new passphrase 42";
    assert_eq!(
        post_reset(&elsewhere, &token, new_password).await.status(),
        303
    );
    let (_, page) = elsewhere.get("/login").await;
    assert!(
        page.contains("Your password was changed. Sign in with the new one."),
        "{page}"
    );
    assert_eq!(
        elsewhere
            .login("target@acme.test", new_password)
            .await
            .status(),
        303
    );
}

async fn invitations_go_out_at_a_persons_pace(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(owner.signup("Acme", "boss@acme.test").await.status(), 303);
    confirm_email(&app, "boss@acme.test").await;
    for n in 0..10 {
        let res = owner
            .submit(
                "/app/members",
                "/app/members/invite",
                &[
                    ("email", &format!("person{n}@elsewhere.test")),
                    ("role", "agent"),
                ],
            )
            .await;
        assert_eq!(res.status(), 303, "invitation {n}");
    }
    // The eleventh within the minute waits, said beside the address, which
    // is kept; nothing is sent or stored.
    let res = owner
        .submit(
            "/app/members",
            "/app/members/invite",
            &[("email", "person10@elsewhere.test"), ("role", "agent")],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("sent many emails"), "{html}");
    assert!(html.contains("value=\"person10@elsewhere.test\""), "{html}");
    let stored: i64 = invitations::table
        .filter(invitations::email.eq("person10@elsewhere.test"))
        .count()
        .get_result(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(stored, 0);
    // Another person of the same address has a pace of their own.
    let other = Browser::new(&app);
    assert_eq!(other.signup("Other", "other@acme.test").await.status(), 303);
    confirm_email(&app, "other@acme.test").await;
    let res = other
        .submit(
            "/app/members",
            "/app/members/invite",
            &[("email", "person10@elsewhere.test"), ("role", "agent")],
        )
        .await;
    assert_eq!(res.status(), 303);
}

async fn password_reset_answers_the_same_and_links_work_once(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(owner.signup("Acme", "reset@acme.test").await.status(), 303);

    let b = Browser::new(&app);
    let known = request_reset(&b, "reset@acme.test").await;
    let unknown = request_reset(&b, "nobody@acme.test").await;
    assert_eq!(known.status(), 200);
    assert_eq!(unknown.status(), 200);
    let strip = |html: String, email: &str| {
        let html = html.replace(email, "EMAIL");
        let start = html.find("name=\"csrf_token\"").unwrap();
        html[..start].to_string()
    };
    assert_eq!(
        strip(known.text().await.unwrap(), "reset@acme.test"),
        strip(unknown.text().await.unwrap(), "nobody@acme.test"),
        "the answer does not reveal who has an account"
    );

    let reset = reset_link(&app, "reset@acme.test", &[]).await;
    let token = reset.split("token=").nth(1).unwrap().to_string();
    // Sent, the link is in the inbox only: the email's job keeps no copy.
    crate::helpers::eventually(
        "the reset token gone from the jobs table",
        Duration::from_secs(10),
        || {
            frontdesk::db::schema::jobs::table
                .filter(frontdesk::db::schema::jobs::payload.like(format!("%{token}%")))
                .count()
                .get_result::<i64>(&mut app.pool().get().unwrap())
                .unwrap()
                == 0
        },
    )
    .await;
    let (status, _) = b.get(&reset).await;
    assert_eq!(status, 200);
    // Asking again leaves only the newest link alive, never a pile of them.
    let live_links = || {
        use frontdesk::db::schema::user_tokens as t;
        t::table
            .filter(t::purpose.eq("reset_password"))
            .filter(t::used_at.is_null())
            .count()
            .get_result::<i64>(&mut app.pool().get().unwrap())
            .unwrap()
    };
    assert_eq!(live_links(), 1);
    let live_hash = || {
        use frontdesk::db::schema::user_tokens as t;
        t::table
            .filter(t::purpose.eq("reset_password"))
            .filter(t::used_at.is_null())
            .select(t::token_hash)
            .first::<String>(&mut app.pool().get().unwrap())
            .unwrap()
    };
    let first_hash = live_hash();
    // A minute later (the link just sent is not replaced sooner).
    {
        use frontdesk::db::schema::user_tokens as t;
        diesel::update(t::table.filter(t::purpose.eq("reset_password")))
            .set(t::created_at.eq(chrono::Utc::now().naive_utc() - chrono::TimeDelta::minutes(2)))
            .execute(&mut app.pool().get().unwrap())
            .unwrap();
    }
    let again = request_reset(&b, "reset@acme.test").await;
    assert_eq!(again.status(), 200);
    assert_eq!(live_links(), 1);
    assert_ne!(live_hash(), first_hash);
    let stale = post_reset(&b, &token, "a passphrase for the old link").await;
    assert_eq!(stale.status(), 422, "the earlier link was replaced");
    let second = reset_link(&app, "reset@acme.test", &[reset.as_str()]).await;
    let token = second.split("token=").nth(1).unwrap().to_string();
    let res = post_reset(&b, &token, "reset is what I did today").await;
    assert_eq!(
        res.status(),
        422,
        "the account's address is not in the password"
    );
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("cannot contain your email")
    );
    let new_password = "a brand new passphrase";
    let res = post_reset(&b, &token, new_password).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/login");

    let (status, _) = owner.get("/app").await;
    assert_eq!(status, 303, "a reset signs the account out everywhere");
    assert_eq!(
        Browser::new(&app)
            .login("reset@acme.test", PASSWORD)
            .await
            .status(),
        422
    );
    assert_eq!(
        Browser::new(&app)
            .login("reset@acme.test", new_password)
            .await
            .status(),
        303
    );

    let again = post_reset(&b, &token, "yet another passphrase").await;
    assert_eq!(again.status(), 422, "a reset link works once");
    assert!(again.text().await.unwrap().contains("already used"));

    // An expired link is refused.
    request_reset(&b, "reset@acme.test").await;
    let mut conn = app.pool().get().unwrap();
    diesel::update(user_tokens::table.filter(user_tokens::used_at.is_null()))
        .set(user_tokens::expires_at.eq(frontdesk::domain::now() - chrono::TimeDelta::minutes(1)))
        .execute(&mut conn)
        .unwrap();
    let expired = reset_link(&app, "reset@acme.test", &[&reset, &second]).await;
    let (status, page) = b.get(&expired).await;
    assert_eq!(status, 422);
    assert!(page.contains("expired"), "{page}");
    let expired_token = expired.split("token=").nth(1).unwrap();
    let res = post_reset(&b, expired_token, "yet another passphrase").await;
    assert_eq!(res.status(), 422, "an expired link cannot be posted either");
    assert!(res.text().await.unwrap().contains("expired"));

    // A link asked for before the password was changed no longer works after.
    request_reset(&b, "reset@acme.test").await;
    let pending = reset_link(&app, "reset@acme.test", &[&reset, &expired]).await;
    let signed_in = Browser::new(&app);
    assert_eq!(
        signed_in
            .login("reset@acme.test", new_password)
            .await
            .status(),
        303
    );
    let res = signed_in
        .submit(
            "/app/account",
            "/app/account/password",
            &[
                ("current_password", new_password),
                ("new_password", "the passphrase I chose myself"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let (status, page) = b.get(&pending).await;
    assert_eq!(status, 422, "{page}");
}

async fn reset_emails_go_out_at_most_once_a_minute(backend: Backend) {
    use frontdesk::db::schema::user_tokens as t;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(owner.signup("Acme", "flood@acme.test").await.status(), 303);
    let subject = "Reset your Frontdesk password";
    let ask = || async {
        let res = request_reset(&Browser::new(&app), "flood@acme.test").await;
        assert_eq!(res.status(), 200);
        assert!(res.text().await.unwrap().contains("we sent it a link"));
    };
    let live = || {
        t::table
            .filter(t::purpose.eq("reset_password"))
            .filter(t::used_at.is_null())
            .select(t::token_hash)
            .load::<String>(&mut app.pool().get().unwrap())
            .unwrap()
    };
    ask().await;
    let mail = wait_for_mail(&mail_dir(&app), "flood@acme.test", subject).await;
    let first = live();
    assert_eq!(first.len(), 1);
    // Asked again and again at once (by anyone who knows the address): the
    // link on its way stays the one, and no other email follows.
    for _ in 0..4 {
        ask().await;
    }
    assert_eq!(live(), first);
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        all_mail(&mail_dir(&app), "flood@acme.test", subject).len(),
        1
    );
    let (status, _) = owner.get(&link(&mail, "/reset-password?token=")).await;
    assert_eq!(status, 200, "the first link still works");
    // A minute on, asking sends a fresh link in place of the first.
    diesel::update(t::table.filter(t::purpose.eq("reset_password")))
        .set(t::created_at.eq(chrono::Utc::now().naive_utc() - chrono::TimeDelta::minutes(2)))
        .execute(&mut app.pool().get().unwrap())
        .unwrap();
    ask().await;
    let now_live = live();
    assert_eq!(now_live.len(), 1);
    assert_ne!(now_live, first);
}

async fn invitations_are_accepted_once_and_expire(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(
        owner
            .signup("Acme Support", "owner@acme.test")
            .await
            .status(),
        303
    );
    confirm_email(&app, "owner@acme.test").await;
    let res = owner
        .submit(
            "/app/members",
            "/app/members/invite",
            &[("email", "colin@acme.test"), ("role", "agent")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let mail = wait_for_mail(
        &mail_dir(&app),
        "colin@acme.test",
        "invited you to Acme Support",
    )
    .await;
    // Inviting the same address again mails no one: the open invitation stands.
    let again = owner
        .submit(
            "/app/members",
            "/app/members/invite",
            &[("email", "colin@acme.test"), ("role", "admin")],
        )
        .await;
    assert_eq!(again.status(), 422);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("already has an open invitation")
    );
    let accept = link(&mail, "/invitations/accept?token=");
    let token = accept.split("token=").nth(1).unwrap().to_string();

    // Opened by someone signed in as another account: said at once, with a
    // way out, instead of an "Accept" that is then refused.
    let (status, page) = owner.get(&accept).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("but you are signed in as owner@acme.test")
            && !page.contains("Accept and join"),
        "{page}"
    );
    assert!(
        page.contains("Open the app") && !page.contains("Start free"),
        "{page}"
    );
    // Sent anyway (a forwarded link, a form kept open): refused, and the
    // invitation is still the invitee's to accept.
    let res = owner
        .submit(&accept, "/invitations/accept", &[("token", &token)])
        .await;
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("sent to another email address")
    );

    let colin = Browser::new(&app);
    let (status, page) = colin.get(&accept).await;
    assert_eq!(status, 200);
    assert!(page.contains("Acme Support") && page.contains("agent"));
    assert!(
        page.contains("Start free"),
        "a stranger's header offers sign-up"
    );
    let res = colin
        .submit(
            &accept,
            "/invitations/accept",
            &[("token", &token), ("name", "Colin"), ("password", "short")],
        )
        .await;
    assert_eq!(res.status(), 422, "weak password refused, nothing created");
    let res = colin
        .submit(
            &accept,
            "/invitations/accept",
            &[
                ("token", &token),
                ("name", "Colin"),
                ("password", "colin rides bikes daily"),
            ],
        )
        .await;
    assert_eq!(
        res.status(),
        422,
        "the invited address is not in the password"
    );
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("cannot contain your email")
    );
    let res = colin
        .submit(
            &accept,
            "/invitations/accept",
            &[
                ("token", &token),
                ("name", "Colin"),
                ("password", "another long passphrase"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let (_, members) = owner.get("/app/members").await;
    assert!(members.contains("colin@acme.test"));
    let (status, page) = Browser::new(&app).get(&accept).await;
    assert_eq!(status, 422, "an invitation is accepted once");
    assert!(page.contains("already used"));

    // An existing user in another organization accepts while signed in.
    let dana = Browser::new(&app);
    assert_eq!(dana.signup("Dana Co", "dana@dana.test").await.status(), 303);
    owner
        .submit(
            "/app/members",
            "/app/members/invite",
            &[("email", "dana@dana.test"), ("role", "viewer")],
        )
        .await;
    let accept = invitation_link(&app, "dana@dana.test").await;
    let token = accept.split("token=").nth(1).unwrap().to_string();
    assert_eq!(
        dana.submit(&accept, "/invitations/accept", &[("token", &token)])
            .await
            .status(),
        303
    );
    let (_, dashboard) = dana.get("/app").await;
    assert!(
        dashboard.contains("Dana Co"),
        "the organization switcher lists both"
    );

    // An existing user, signed out, signs in from the invitation and comes
    // back to it; a sign-in link pointing elsewhere is not followed.
    let fay = Browser::new(&app);
    assert_eq!(fay.signup("Fay Co", "fay@fay.test").await.status(), 303);
    let fay = Browser::new(&app);
    owner
        .submit(
            "/app/members",
            "/app/members/invite",
            &[("email", "fay@fay.test"), ("role", "agent")],
        )
        .await;
    let accept = invitation_link(&app, "fay@fay.test").await;
    let back = accept[accept.find("/invitations/").unwrap()..].to_string();
    let (_, page) = fay.get(&back).await;
    let sign_in = format!(
        "/login?next={}",
        url::form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
    );
    assert!(page.contains(&sign_in), "{page}");
    let (_, login) = fay.get(&sign_in).await;
    assert!(login.contains(r#"name="next""#), "{login}");
    let res = fay
        .submit(
            &sign_in,
            "/login",
            &[
                ("email", "fay@fay.test"),
                ("password", PASSWORD),
                ("next", &back),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), back);
    let token = back.split("token=").nth(1).unwrap().to_string();
    assert_eq!(
        fay.submit(&back, "/invitations/accept", &[("token", &token)])
            .await
            .status(),
        303
    );
    let elsewhere = Browser::new(&app);
    let res = elsewhere
        .submit(
            "/login",
            "/login",
            &[
                ("email", "fay@fay.test"),
                ("password", PASSWORD),
                ("next", "//evil.example/phish"),
            ],
        )
        .await;
    assert_eq!(location(&res), "/app");

    // Revoked and expired invitations are refused.
    owner
        .submit(
            "/app/members",
            "/app/members/invite",
            &[("email", "eve@acme.test"), ("role", "agent")],
        )
        .await;
    let eve_link = invitation_link(&app, "eve@acme.test").await;
    let id: i64 = invitations::table
        .filter(invitations::email.eq("eve@acme.test"))
        .select(invitations::id)
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(
        owner
            .submit(
                "/app/members",
                &format!("/app/invitations/{id}/revoke"),
                &[]
            )
            .await
            .status(),
        303
    );
    assert_eq!(Browser::new(&app).get(&eve_link).await.0, 422);

    owner
        .submit(
            "/app/members",
            "/app/members/invite",
            &[("email", "fay@acme.test"), ("role", "agent")],
        )
        .await;
    let mail = wait_for_mail(&mail_dir(&app), "fay@acme.test", "invited you").await;
    diesel::update(invitations::table.filter(invitations::email.eq("fay@acme.test")))
        .set(invitations::expires_at.eq(frontdesk::domain::now() - chrono::TimeDelta::minutes(1)))
        .execute(&mut app.pool().get().unwrap())
        .unwrap();
    let (status, page) = Browser::new(&app)
        .get(&link(&mail, "/invitations/accept?token="))
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("expired"));
}

/// Ids of rows that belong to an organization, for the cross-tenant walk.
pub(crate) struct OrgRows {
    pub(crate) membership: i64,
    pub(crate) invitation: i64,
    pub(crate) api_key: i64,
    pub(crate) organization: i64,
}

pub(crate) async fn org_with_rows(
    app: &TestApp,
    b: &Browser,
    org: &str,
    owner: &str,
    invitee: &str,
) -> OrgRows {
    assert_eq!(b.signup(org, owner).await.status(), 303);
    confirm_email(app, owner).await;
    b.submit(
        "/app/members",
        "/app/members/invite",
        &[("email", invitee), ("role", "agent")],
    )
    .await;
    let res = b
        .submit(
            "/app/api-keys",
            "/app/api-keys",
            &[("name", "ci"), ("scope", "write")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let mut conn = app.pool().get().unwrap();
    use frontdesk::db::schema::api_keys;
    let organization: i64 = organizations::table
        .filter(organizations::name.eq(org))
        .select(organizations::id)
        .first(&mut conn)
        .unwrap();
    OrgRows {
        organization,
        membership: memberships::table
            .filter(memberships::organization_id.eq(organization))
            .select(memberships::id)
            .first(&mut conn)
            .unwrap(),
        invitation: invitations::table
            .filter(invitations::organization_id.eq(organization))
            .select(invitations::id)
            .first(&mut conn)
            .unwrap(),
        api_key: api_keys::table
            .filter(api_keys::organization_id.eq(organization))
            .select(api_keys::id)
            .first(&mut conn)
            .unwrap(),
    }
}

async fn another_organizations_ids_answer_404(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let alice = Browser::new(&app);
    let bob = Browser::new(&app);
    let _a = org_with_rows(&app, &alice, "Alpha", "alice@alpha.test", "a2@alpha.test").await;
    let b = org_with_rows(&app, &bob, "Beta", "bob@beta.test", "b2@beta.test").await;

    // Every organization-scoped route, with Beta's ids, from Alpha's owner.
    let forms: Vec<(String, Vec<(&str, String)>)> = vec![
        (
            format!("/app/members/{}/role", b.membership),
            vec![("role", "viewer".into())],
        ),
        (format!("/app/members/{}/remove", b.membership), vec![]),
        (format!("/app/invitations/{}/revoke", b.invitation), vec![]),
        (format!("/app/api-keys/{}/revoke", b.api_key), vec![]),
        (
            "/app/switch".into(),
            vec![("organization_id", b.organization.to_string())],
        ),
    ];
    for (path, fields) in forms {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = alice.submit("/app/members", &path, &fields).await;
        assert_eq!(res.status(), 404, "{path}");
    }
    let token = alice.csrf("/app/members").await;
    for path in [
        format!("/api/v1/invitations/{}", b.invitation),
        format!("/api/v1/api-keys/{}", b.api_key),
        format!("/api/v1/members/{}", b.membership),
    ] {
        let res = alice
            .client
            .delete(format!("{}{path}", app.address))
            .header("x-csrf-token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "NOT_FOUND");
    }
    let res = alice
        .client
        .patch(format!("{}/api/v1/members/{}", app.address, b.membership))
        .header("x-csrf-token", &token)
        .json(&serde_json::json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // Lists show only Alpha's rows.
    let members: Value = alice
        .client
        .get(format!("{}/api/v1/members", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = members.to_string();
    assert!(
        text.contains("alice@alpha.test") && !text.contains("beta.test"),
        "{text}"
    );

    // Beta's rows are untouched.
    let (_, page) = bob.get("/app/members").await;
    assert!(
        page.contains("b2@beta.test"),
        "Beta's invitation still pending"
    );
    let (_, keys) = bob.get("/app/api-keys").await;
    assert!(!keys.contains("Revoked"), "Beta's key still live");
    let (_, dashboard) = alice.get("/app").await;
    assert!(dashboard.contains("Alpha") && !dashboard.contains("Beta"));
}

async fn api_keys_authenticate_are_scoped_and_revocable(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(owner.signup("Acme", "keys@acme.test").await.status(), 303);
    confirm_email(&app, "keys@acme.test").await;
    let read_key = owner.api_key("read", "read").await;
    let write_key = owner.api_key("write", "write").await;
    let (_, list) = owner.get("/app/api-keys").await;
    assert!(!list.contains(&read_key), "a key is never shown again");

    let api = |key: &str, method: reqwest::Method, path: &str| {
        app.client
            .request(method, format!("{}{path}", app.address))
            .bearer_auth(key)
    };
    let res = api(&read_key, reqwest::Method::GET, "/api/v1/members")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"][0]["email"], "keys@acme.test");
    assert_eq!(body["data"][0]["role"], "owner");

    let invite = serde_json::json!({"email": "new@acme.test", "role": "agent"});
    let res = api(&read_key, reqwest::Method::POST, "/api/v1/invitations")
        .json(&invite)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "read-only key");
    let res = api(&write_key, reqwest::Method::POST, "/api/v1/invitations")
        .json(&invite)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = api(&write_key, reqwest::Method::POST, "/api/v1/invitations")
        .json(&serde_json::json!({"email": "nope", "role": "agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    // The same invitation again: refused, nobody is mailed twice.
    let res = api(&write_key, reqwest::Method::POST, "/api/v1/invitations")
        .json(&invite)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "CONFLICT", "{body}");
    // Ten invitations a minute per key (two spent above: a malformed address
    // is refused before it counts), then a wait.
    for n in 0..8 {
        let res = api(&write_key, reqwest::Method::POST, "/api/v1/invitations")
            .json(&serde_json::json!({"email": format!("many{n}@acme.test"), "role": "agent"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "invitation {n}");
    }
    let res = api(&write_key, reqwest::Method::POST, "/api/v1/invitations")
        .json(&serde_json::json!({"email": "one-more@acme.test", "role": "agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    // The budget that refused is the one reported, not the API's own.
    assert_eq!(res.headers()["x-ratelimit-limit"], "10");
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");

    let keys: Value = api(&write_key, reqwest::Method::GET, "/api/v1/api-keys")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let read_id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "read")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert!(keys.to_string().contains("lastUsedAt"));
    assert!(
        !keys.to_string().contains(&read_key[10..]),
        "only the prefix is listed"
    );
    let res = api(
        &write_key,
        reqwest::Method::DELETE,
        &format!("/api/v1/api-keys/{read_id}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 204);
    let res = api(&read_key, reqwest::Method::GET, "/api/v1/members")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a revoked key no longer works");
    let res = api("fd_not-a-real-key", reqwest::Method::GET, "/api/v1/members")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer realm=\"frontdesk\"",
        "the 401 names the scheme"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHORIZED");

    let (_, audit) = owner.get("/app/audit?action=api_key.revoked").await;
    // A row names its action for people and keeps the code in its title.
    assert!(
        audit.contains(r#"<span title="api_key.revoked">API key revoked</span>"#),
        "the revocation is listed"
    );
    assert!(
        !audit.contains(r#"title="api_key.created""#),
        "the filter applies"
    );
    assert!(
        audit.contains(r#"<option value="api_key.revoked" selected>API key revoked</option>"#),
        "the filter says what it shows"
    );
}

async fn an_api_key_answers_for_its_creator_and_cannot_make_keys(backend: Backend) {
    use frontdesk::domain::Role;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(
        owner.signup("Relay", "owner@relay.test").await.status(),
        303
    );
    let org: i64 = memberships::table
        .select(memberships::organization_id)
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    let (admin_membership, admin) =
        signed_in_member(&app, org, "admin@relay.test", Role::Admin).await;
    let key = admin.api_key("deploy", "write").await;
    let call = |method: reqwest::Method, path: &str| {
        app.client
            .request(method, format!("{}{path}", app.address))
            .bearer_auth(&key)
    };

    let res = call(reqwest::Method::POST, "/api/v1/api-keys")
        .json(&serde_json::json!({"name": "successor", "scope": "write"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        403,
        "a key cannot mint a key that outlives it"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "FORBIDDEN");
    let (_, keys) = owner.get("/app/api-keys").await;
    assert!(!keys.contains("successor"), "nothing was created");
    let res = call(reqwest::Method::GET, "/api/v1/members")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Demoted to agent, the admin no longer manages keys: neither does their key.
    let member = format!("/api/v1/members/{admin_membership}");
    let res = owner
        .api(
            reqwest::Method::PATCH,
            &member,
            serde_json::json!({"role": "agent"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = call(reqwest::Method::GET, "/api/v1/members")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("no longer"),
        "{body}"
    );

    // Promoted again it works; removed from the organization it stops for good.
    for (method, expected) in [
        (reqwest::Method::PATCH, 200),
        (reqwest::Method::DELETE, 204),
    ] {
        let res = owner
            .api(method, &member, serde_json::json!({"role": "admin"}))
            .await;
        assert_eq!(res.status(), expected);
        let res = call(reqwest::Method::GET, "/api/v1/members")
            .send()
            .await
            .unwrap();
        let want = if expected == 200 { 200 } else { 403 };
        assert_eq!(res.status(), want);
    }
}

async fn public_forms_are_rate_limited_per_address(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let b = Browser::new(&app);
    let token = b.csrf("/forgot-password").await;
    for n in 0..10 {
        let res = b
            .post(
                "/forgot-password",
                &[("csrf_token", &token), ("email", "victim@acme.test")],
            )
            .await;
        assert_eq!(res.status(), 200, "post {n}");
    }
    let refused = b
        .post(
            "/forgot-password",
            &[("csrf_token", &token), ("email", "victim@acme.test")],
        )
        .await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&wait), "{wait}");
    assert!(
        refused.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(refused.text().await.unwrap().contains("Too many attempts"));
    // The budget is shared by the forms that create accounts or send email.
    let res = b
        .submit("/signup", "/signup", &[("organization", "X")])
        .await;
    assert_eq!(res.status(), 429);
    // Reading the pages is not limited, and neither is anyone else.
    assert_eq!(b.get("/forgot-password").await.0, 200);
    let queued: i64 = frontdesk::db::schema::jobs::table
        .filter(frontdesk::db::schema::jobs::kind.eq("email.send"))
        .count()
        .get_result(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(queued, 0, "no email for an unknown address, limited or not");
}

async fn the_last_owner_cannot_be_demoted_or_removed(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(owner.signup("Solo", "solo@acme.test").await.status(), 303);
    let id: i64 = memberships::table
        .select(memberships::id)
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    // The page offers neither: it says why instead.
    let (_, page) = owner.get("/app/members").await;
    assert!(
        page.contains("The only owner: make someone else owner to leave"),
        "{page}"
    );
    assert!(!page.contains("aria-label=\"Leave Solo\""), "{page}");
    assert!(!page.contains(&format!("id=\"role-{id}\"")), "{page}");
    // Nor does the server, asked anyway.
    let res = owner
        .submit(
            "/app/members",
            &format!("/app/members/{id}/role"),
            &[("role", "admin")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let (_, page) = owner.get("/app/members").await;
    assert!(page.contains("at least one owner"), "{page}");
    owner
        .submit("/app/members", &format!("/app/members/{id}/remove"), &[])
        .await;
    let (_, page) = owner.get("/app/members").await;
    assert!(page.contains("at least one owner"));
    assert_eq!(count(&app, "memberships"), 1);
}

/// A user with [`PASSWORD`] who already belongs to `org`; returns the membership id.
/// A member with `role` in `org`, signed in in a browser of their own;
/// returns the membership id and the browser.
pub(crate) async fn signed_in_member(
    app: &TestApp,
    org: i64,
    email: &str,
    role: frontdesk::domain::Role,
) -> (i64, Browser) {
    let membership = add_member(&mut app.pool().get().unwrap(), org, email, role);
    let browser = Browser::new(app);
    assert_eq!(browser.login(email, PASSWORD).await.status(), 303);
    (membership, browser)
}

pub(crate) fn add_member(
    conn: &mut frontdesk::db::DbConnection,
    org: i64,
    email: &str,
    role: frontdesk::domain::Role,
) -> i64 {
    use frontdesk::db::models::{Membership, NewMembership, NewUser, User};
    let email = frontdesk::domain::Email::parse(email).unwrap();
    let hash = frontdesk::auth::password::Password::parse(PASSWORD, None)
        .unwrap()
        .hash()
        .unwrap();
    let user = User::create(conn, &NewUser::new(&email, "Colleague", Some(&hash))).unwrap();
    Membership::create(
        conn,
        &NewMembership::new(frontdesk::domain::OrganizationId(org), user.id, role),
    )
    .unwrap()
    .id
    .0
}

async fn members_are_managed_over_the_api_and_anyone_can_leave(backend: Backend) {
    use frontdesk::domain::Role;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(owner.signup("Crew", "owner@crew.test").await.status(), 303);
    let (org, owner_membership): (i64, i64) = memberships::table
        .select((memberships::organization_id, memberships::id))
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    let (agent, viewer) = {
        let mut conn = app.pool().get().unwrap();
        (
            add_member(&mut conn, org, "agent@crew.test", Role::Agent),
            add_member(&mut conn, org, "viewer@crew.test", Role::Viewer),
        )
    };
    let write_key = owner.api_key("ops", "write").await;
    let read_key = owner.api_key("dash", "read").await;
    let call = |key: &str, method: reqwest::Method, path: String| {
        app.client
            .request(method, format!("{}{path}", app.address))
            .bearer_auth(key)
    };

    let res = call(
        &write_key,
        reqwest::Method::PATCH,
        format!("/api/v1/members/{agent}"),
    )
    .json(&serde_json::json!({"role": "viewer"}))
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["role"], "viewer");
    assert_eq!(body["email"], "agent@crew.test");
    assert_eq!(body["id"], agent);
    // What was read, sent back changed: its other fields are ignored; a field
    // a member does not have is refused.
    let mut read = body.clone();
    read["role"] = serde_json::json!("agent");
    for (sent, status) in [
        (read, 200),
        (serde_json::json!({"role": "viewer", "bogus": 1}), 422),
    ] {
        let res = call(
            &write_key,
            reqwest::Method::PATCH,
            format!("/api/v1/members/{agent}"),
        )
        .json(&sent)
        .send()
        .await
        .unwrap();
        assert_eq!(res.status(), status, "{sent}");
    }
    let res = call(
        &write_key,
        reqwest::Method::PATCH,
        format!("/api/v1/members/{agent}"),
    )
    .json(&serde_json::json!({"role": "viewer"}))
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    // The same role again is no change: nothing more in the audit log.
    let role_changes = || {
        use frontdesk::db::schema::audit_log;
        audit_log::table
            .filter(audit_log::action.eq("member.role_changed"))
            .count()
            .get_result::<i64>(&mut app.pool().get().unwrap())
            .unwrap()
    };
    let before = role_changes();
    let res = call(
        &write_key,
        reqwest::Method::PATCH,
        format!("/api/v1/members/{agent}"),
    )
    .json(&serde_json::json!({"role": "viewer"}))
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["role"], "viewer");
    assert_eq!(role_changes(), before);

    for (key, role, status) in [(&read_key, "viewer", 403), (&write_key, "boss", 422)] {
        let res = call(
            key,
            reqwest::Method::PATCH,
            format!("/api/v1/members/{agent}"),
        )
        .json(&serde_json::json!({"role": role}))
        .send()
        .await
        .unwrap();
        assert_eq!(res.status(), status, "{role}");
        let body: Value = res.json().await.unwrap();
        assert!(body["code"].is_string(), "{body}");
    }
    // A key acts as an admin: owners are out of its reach, and it is told so.
    for method in [reqwest::Method::PATCH, reqwest::Method::DELETE] {
        let res = call(
            &write_key,
            method.clone(),
            format!("/api/v1/members/{owner_membership}"),
        )
        .json(&serde_json::json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
        assert_eq!(res.status(), 403, "{method}");
        let body: Value = res.json().await.unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("An API key acts as an admin"),
            "{method}: {body}"
        );
    }
    // The owner themself cannot step down while they are the last one.
    let res = owner
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/members/{owner_membership}"),
            serde_json::json!({"role": "admin"}),
        )
        .await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at least one owner"),
        "{body}"
    );
    let res = owner
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/members/{owner_membership}"),
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(res.status(), 409, "the last owner cannot leave");

    let res = call(
        &write_key,
        reqwest::Method::DELETE,
        format!("/api/v1/members/{viewer}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 204);
    let res = call(
        &write_key,
        reqwest::Method::DELETE,
        format!("/api/v1/members/{viewer}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 404, "already gone");

    // Demoted back to agent, the colleague leaves from the members page.
    let res = call(
        &write_key,
        reqwest::Method::PATCH,
        format!("/api/v1/members/{agent}"),
    )
    .json(&serde_json::json!({"role": "agent"}))
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let colleague = Browser::new(&app);
    assert_eq!(
        colleague.login("agent@crew.test", PASSWORD).await.status(),
        303
    );
    let (_, page) = colleague.get("/app/members").await;
    assert!(page.contains("aria-label=\"Leave Crew\""), "{page}");
    assert!(
        !page.contains("Remove owner@crew.test"),
        "an agent manages no one"
    );
    let res = colleague
        .submit("/app/members", &format!("/app/members/{agent}/remove"), &[])
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app");
    assert_eq!(count(&app, "memberships"), 1);
    // In no organization now, /app offers to start one.
    let res = colleague
        .client
        .get(format!("{}/app", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app/welcome");
    let (status, page) = colleague.get("/app/welcome").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("You left Crew.") && page.contains("Start an organization"),
        "{page}"
    );
    // Their account is still theirs to manage: the page, with only what is
    // about the person, and its forms work.
    assert!(page.contains("href=\"/app/account\""), "{page}");
    let (status, account) = colleague.get("/app/account").await;
    assert_eq!(status, 200, "{account}");
    assert!(
        account.contains("Change password") && account.contains("Delete your account"),
        "{account}"
    );
    assert!(!account.contains(">Dashboard<"), "{account}");
    assert!(!account.contains("badge-role"), "{account}");
    assert!(account.contains("href=\"/app/welcome\""), "{account}");
    let res = colleague
        .submit(
            "/app/account",
            "/app/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "a-new-and-longer-secret-42"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app/account");
    let (_, account) = colleague.get("/app/account").await;
    assert!(account.contains("Password changed."), "{account}");
    let res = colleague
        .submit(
            "/app/account",
            "/app/account/password",
            &[("current_password", "not-it-at-all"), ("new_password", "x")],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("This is not your current password.") && !html.contains(">Dashboard<"),
        "{html}"
    );
    // Left empty, on each form that asks for it: asked for, not called wrong.
    let empty: [(&str, &[(&str, &str)]); 3] = [
        (
            "/app/account/password",
            &[
                ("current_password", ""),
                ("new_password", "a-new-and-longer-secret-43"),
            ],
        ),
        (
            "/app/account/email",
            &[("current_password", ""), ("email", "elsewhere@crew.test")],
        ),
        ("/app/account/delete", &[("current_password", "")]),
    ];
    for (action, fields) in empty {
        let res = colleague.submit("/app/account", action, fields).await;
        assert_eq!(res.status(), 422, "{action}");
        let html = res.text().await.unwrap();
        assert!(
            html.contains("Enter your current password.")
                && !html.contains("This is not your current password."),
            "{action}: {html}"
        );
    }
    let res = colleague
        .submit("/app/welcome", "/app/welcome", &[("organization", "   ")])
        .await;
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Organization name is required.")
    );
    let res = colleague
        .submit(
            "/app/welcome",
            "/app/welcome",
            &[("organization", "Crew Two")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let (status, dashboard) = colleague.get("/app").await;
    assert_eq!(status, 200);
    assert!(dashboard.contains("Crew Two is ready"), "{dashboard}");
    let (_, members) = colleague.get("/app/members").await;
    assert!(
        members.contains("agent@crew.test") && members.contains(">owner<"),
        "{members}"
    );
    let res = colleague
        .client
        .get(format!("{}/app/welcome", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/app", "nothing to start once in one");

    let (_, audit) = owner.get("/app/audit").await;
    for action in ["member.left", "member.removed", "member.role_changed"] {
        assert!(
            audit.contains(&format!(r#"title="{action}""#)),
            "{action} is listed"
        );
    }
}

async fn the_audit_log_pages_through_everything_it_recorded(backend: Backend) {
    use frontdesk::db::models::{AuditEntry, NewAuditEntry};
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(owner.signup("Busy", "owner@busy.test").await.status(), 303);
    let org: i64 = organizations::table
        .select(organizations::id)
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    {
        let mut conn = app.pool().get().unwrap();
        for n in 0..230 {
            let target = format!("key-{n:03}");
            AuditEntry::record(
                &mut conn,
                &NewAuditEntry {
                    organization_id: Some(frontdesk::domain::OrganizationId(org)),
                    actor_user_id: None,
                    actor_label: "owner@busy.test",
                    action: "api_key.created",
                    target: Some(&target),
                    detail: None,
                    ip: Some("127.0.0.1"),
                },
            )
            .unwrap();
        }
    }
    let rows = |html: &str| html.matches("<tr>").count() - 1;
    let (_, first) = owner.get("/app/audit?action=api_key.created").await;
    assert_eq!(rows(&first), 100);
    assert!(
        first.contains("key-229") && !first.contains("key-129"),
        "newest first"
    );
    assert!(
        first.contains("href=\"/app/audit?action=api_key.created&#38;page=2\""),
        "{first}"
    );
    assert!(!first.contains("← Newer"));
    let (_, last) = owner.get("/app/audit?action=api_key.created&page=3").await;
    assert_eq!(rows(&last), 30);
    assert!(last.contains("key-000") && last.contains("← Newer") && !last.contains("Older →"));
    // The filter form's "All actions" sends an empty action and no page.
    let (status, all) = owner.get("/app/audit?action=&page=").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&all), 100);
    assert!(all.contains("Older →"), "{all}");
    let (status, _) = owner.get("/app/audit?page=0").await;
    assert_eq!(status, 422);
    // Past the last page: said so, not "nothing has been recorded".
    let (status, past) = owner.get("/app/audit?page=9999").await;
    assert_eq!(status, 200);
    assert!(
        past.contains("No entries on page 9999.") && !past.contains("Nothing has been recorded"),
        "{past}"
    );
}

async fn owners_and_admins_rename_the_organization_and_its_address_stays(backend: Backend) {
    use frontdesk::domain::Role;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(
        owner
            .signup("Acme Suport", "owner@acme.test")
            .await
            .status(),
        303
    );
    let (org, slug): (i64, String) = organizations::table
        .select((organizations::id, organizations::slug))
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    let (status, page) = owner.get("/app/organization").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("value=\"Acme Suport\"") && page.contains(&format!("/c/{slug}/")),
        "{page}"
    );

    // Refused beside the field, with what was typed kept.
    let long = "x".repeat(121);
    let res = owner
        .submit("/app/organization", "/app/organization", &[("name", &long)])
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("org-name-error") && html.contains(&long),
        "{html}"
    );
    let res = owner
        .submit("/app/organization", "/app/organization", &[("name", "  ")])
        .await;
    assert_eq!(res.status(), 422);
    let res = owner
        .submit(
            "/app/organization",
            "/app/organization",
            &[("name", "Acme\r\nBcc: someone@example.net")],
        )
        .await;
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("must be on one line"));

    let res = owner
        .submit(
            "/app/organization",
            "/app/organization",
            &[("name", "Acme Support")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let (_, page) = owner.get("/app/organization").await;
    assert!(
        page.contains("The organization is now called Acme Support."),
        "{page}"
    );
    let stored: (String, String) = organizations::table
        .find(org)
        .select((organizations::name, organizations::slug))
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(
        stored,
        ("Acme Support".to_string(), slug.clone()),
        "the slug stays"
    );
    let (_, audit) = owner.get("/app/audit?action=organization.renamed").await;
    assert!(audit.contains("Acme Suport → Acme Support"), "{audit}");

    // The same over the API.
    let read_key = owner.api_key("read", "read").await;
    let write_key = owner.api_key("write", "write").await;
    let call = |key: &str, method: reqwest::Method| {
        app.client
            .request(method, format!("{}/api/v1/organization", app.address))
            .bearer_auth(key)
    };
    let body: Value = call(&read_key, reqwest::Method::GET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["name"], "Acme Support");
    assert_eq!(body["slug"], slug.as_str());
    let res = call(&read_key, reqwest::Method::PATCH)
        .json(&serde_json::json!({"name": "Nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "read-only key");
    let res = call(&write_key, reqwest::Method::PATCH)
        .json(&serde_json::json!({"name": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let res = call(&write_key, reqwest::Method::PATCH)
        .json(&serde_json::json!({"name": "Acme Help"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["name"], "Acme Help");
    assert_eq!(body["slug"], slug.as_str());

    // Agents and viewers cannot change it.
    add_member(
        &mut app.pool().get().unwrap(),
        org,
        "agent@acme.test",
        Role::Agent,
    );
    let agent = Browser::new(&app);
    assert_eq!(agent.login("agent@acme.test", PASSWORD).await.status(), 303);
    let (_, app_page) = agent.get("/app").await;
    assert!(
        !app_page.contains("href=\"/app/organization\""),
        "no link for them"
    );
    assert_eq!(agent.get("/app/organization").await.0, 403);
    let res = agent
        .submit("/app", "/app/organization", &[("name", "Hijacked")])
        .await;
    assert_eq!(res.status(), 403);
    let name: String = organizations::table
        .find(org)
        .select(organizations::name)
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(name, "Acme Help");
}

async fn an_owner_deletes_the_organization_and_only_it(backend: Backend) {
    use frontdesk::db::schema::{api_keys, audit_log, billing_accounts};
    use frontdesk::domain::Role;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let alice = Browser::new(&app);
    let bob = Browser::new(&app);
    let doomed = org_with_rows(
        &app,
        &alice,
        "Doomed",
        "alice@doomed.test",
        "a2@doomed.test",
    )
    .await;
    let kept = org_with_rows(&app, &bob, "Kept", "bob@kept.test", "b2@kept.test").await;
    let slug: String = organizations::table
        .find(doomed.organization)
        .select(organizations::slug)
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    add_member(
        &mut app.pool().get().unwrap(),
        doomed.organization,
        "admin@doomed.test",
        Role::Admin,
    );
    // Both have an agent with an indexed document (full-text index included).
    let policy = b"# Returns\n\nBikes can be returned within 30 days.\n";
    let mut kept_agent = 0;
    for (browser, name) in [(&alice, "Doomed"), (&bob, "Kept")] {
        let api = crate::chat::Api {
            app: &app,
            key: browser.api_key(name, "write").await,
        };
        let agent = api.agent(serde_json::json!({"name": "Support"})).await;
        let id = agent["id"].as_i64().unwrap();
        api.indexed(id, "Returns", "text/markdown", policy).await;
        kept_agent = id;
    }

    // An admin may rename but not delete.
    let admin = Browser::new(&app);
    assert_eq!(
        admin.login("admin@doomed.test", PASSWORD).await.status(),
        303
    );
    let (_, page) = admin.get("/app/organization").await;
    assert!(
        !page.contains("/app/organization/delete"),
        "no delete form for admins"
    );
    let res = admin
        .submit(
            "/app/organization",
            "/app/organization/delete",
            &[("confirmation", &slug)],
        )
        .await;
    assert_eq!(res.status(), 403);

    // The slug must be typed, and a live subscription must be cancelled first.
    let res = alice
        .submit(
            "/app/organization",
            "/app/organization/delete",
            &[("confirmation", "Doomed")],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("delete-confirmation-error")
            && html.contains(&format!("Type the organization&#39;s slug, {slug}")),
        "{html}"
    );
    let now = chrono::Utc::now().naive_utc();
    diesel::insert_into(billing_accounts::table)
        .values((
            billing_accounts::organization_id.eq(doomed.organization),
            billing_accounts::stripe_customer_id.eq(Some("cus_doomed")),
            billing_accounts::stripe_subscription_id.eq(Some("sub_doomed")),
            billing_accounts::plan.eq("pro"),
            billing_accounts::status.eq("active"),
            billing_accounts::cancel_at_period_end.eq(false),
            billing_accounts::stripe_state_at.eq(1_i64),
            billing_accounts::created_at.eq(now),
            billing_accounts::updated_at.eq(now),
        ))
        .execute(&mut app.pool().get().unwrap())
        .unwrap();
    let res = alice
        .submit(
            "/app/organization",
            "/app/organization/delete",
            &[("confirmation", &slug)],
        )
        .await;
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("still has a subscription")
    );
    diesel::update(billing_accounts::table.find(doomed.organization))
        .set(billing_accounts::status.eq("canceled"))
        .execute(&mut app.pool().get().unwrap())
        .unwrap();

    let res = alice
        .submit(
            "/app/organization",
            "/app/organization/delete",
            &[("confirmation", &slug)],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/app");
    let (_, page) = alice.get("/app/welcome").await;
    assert!(
        page.contains("Doomed and everything in it were deleted."),
        "{page}"
    );

    let mut conn = app.pool().get().unwrap();
    let left = |org: i64, conn: &mut frontdesk::db::DbConnection| -> (i64, i64, i64, i64) {
        (
            memberships::table
                .filter(memberships::organization_id.eq(org))
                .count()
                .get_result(conn)
                .unwrap(),
            invitations::table
                .filter(invitations::organization_id.eq(org))
                .count()
                .get_result(conn)
                .unwrap(),
            api_keys::table
                .filter(api_keys::organization_id.eq(org))
                .count()
                .get_result(conn)
                .unwrap(),
            audit_log::table
                .filter(audit_log::organization_id.eq(org))
                .count()
                .get_result(conn)
                .unwrap(),
        )
    };
    assert_eq!(left(doomed.organization, &mut conn), (0, 0, 0, 0));
    let (members, invites, keys, audit) = left(kept.organization, &mut conn);
    assert!(
        members == 1 && invites == 1 && keys == 2 && audit > 0,
        "the other organization is untouched"
    );
    use frontdesk::db::schema::knowledge_chunks;
    let chunks: i64 = knowledge_chunks::table
        .filter(knowledge_chunks::organization_id.eq(doomed.organization))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(chunks, 0);
    let indexed: Vec<i64> = frontdesk::db::models::knowledge_index::indexed_agents(&mut conn)
        .unwrap()
        .into_iter()
        .map(|a| a.0)
        .collect();
    if backend == Backend::Sqlite {
        assert_eq!(
            indexed,
            [kept_agent],
            "the deleted agents' indexes went too"
        );
    }
    let (status, found) = bob
        .get(&format!("/app/agents/{kept_agent}?q=return%20a%20bike"))
        .await;
    assert_eq!(status, 200);
    assert!(
        found.contains("within 30 days"),
        "the other full-text index still answers: {found}"
    );
    let deleted: Option<String> = audit_log::table
        .filter(audit_log::action.eq("organization.deleted"))
        .select(audit_log::target)
        .first(&mut conn)
        .unwrap();
    assert_eq!(
        deleted.as_deref(),
        Some("Doomed"),
        "a record outside the organization remains"
    );
    assert_eq!(count(&app, "users"), 3, "the accounts themselves stay");
    let notice = wait_for_mail(&mail_dir(&app), "admin@doomed.test", "Doomed was deleted").await;
    assert!(
        notice.contains("alice@doomed.test deleted Doomed"),
        "{notice}"
    );
    assert!(
        all_mail(&mail_dir(&app), "alice@doomed.test", "was deleted").is_empty(),
        "not to the one who deleted it"
    );
    let (status, _) = bob.get("/app/members").await;
    assert_eq!(status, 200);
}

async fn people_delete_their_account_unless_they_alone_own_an_organization(backend: Backend) {
    use frontdesk::domain::Role;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(owner.signup("Solo", "owner@solo.test").await.status(), 303);
    let org: i64 = organizations::table
        .select(organizations::id)
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    let key = owner.api_key("ops", "write").await;
    add_member(
        &mut app.pool().get().unwrap(),
        org,
        "agent@solo.test",
        Role::Agent,
    );

    // The only owner is refused, beside the form.
    let res = owner
        .submit(
            "/app/account",
            "/app/account/delete",
            &[("current_password", PASSWORD)],
        )
        .await;
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("You are the only owner of Solo")
    );
    // A wrong password is refused beside its field.
    let agent = Browser::new(&app);
    assert_eq!(agent.login("agent@solo.test", PASSWORD).await.status(), 303);
    let res = agent
        .submit(
            "/app/account",
            "/app/account/delete",
            &[("current_password", "not my password")],
        )
        .await;
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("delete-password-error"));
    assert_eq!(count(&app, "users"), 2);

    let res = agent
        .submit(
            "/app/account",
            "/app/account/delete",
            &[("current_password", PASSWORD)],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Your account has been deleted")
    );
    assert_eq!(count(&app, "users"), 1);
    assert_eq!(count(&app, "memberships"), 1);
    let (status, _) = agent.get("/app").await;
    assert_eq!(status, 303, "signed out");
    let res = Browser::new(&app).login("agent@solo.test", PASSWORD).await;
    assert_eq!(res.status(), 422, "the account is gone");

    // The owner's keys and records stay with the organization.
    let res = app
        .client
        .get(format!("{}/api/v1/members", app.address))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, audit) = owner.get("/app/audit?action=account.deleted").await;
    assert!(audit.contains("agent@solo.test"), "{audit}");
}

async fn two_owners_demoting_each_other_at_once_leave_one_owner(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let a = Browser::new(&app);
    assert_eq!(a.signup("Duo", "a@duo.test").await.status(), 303);
    let mut conn = app.pool().get().unwrap();
    let (org, a_membership): (i64, i64) = memberships::table
        .select((memberships::organization_id, memberships::id))
        .first(&mut conn)
        .unwrap();
    let b_membership = add_member(&mut conn, org, "b@duo.test", frontdesk::domain::Role::Owner);
    let b = Browser::new(&app);
    assert_eq!(b.login("b@duo.test", PASSWORD).await.status(), 303);

    let owners = |conn: &mut frontdesk::db::DbConnection| -> i64 {
        memberships::table
            .filter(memberships::role.eq("owner"))
            .count()
            .get_result(conn)
            .unwrap()
    };
    for round in 0..8 {
        let (ta, tb) = (a.csrf("/app/members").await, b.csrf("/app/members").await);
        let (pa, pb) = (
            format!("/app/members/{b_membership}/role"),
            format!("/app/members/{a_membership}/role"),
        );
        let (fa, fb) = (
            [("csrf_token", ta.as_str()), ("role", "admin")],
            [("csrf_token", tb.as_str()), ("role", "admin")],
        );
        let (ra, rb) = tokio::join!(a.post(&pa, &fa), b.post(&pb, &fb));
        assert!(ra.status().is_redirection() && rb.status().is_redirection());
        assert_eq!(
            owners(&mut conn),
            1,
            "round {round}: exactly one owner is left"
        );
        diesel::update(memberships::table)
            .set(memberships::role.eq("owner"))
            .execute(&mut conn)
            .unwrap();
    }
}

async fn platform_admin_disables_accounts_and_organizations(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let user = Browser::new(&app);
    assert_eq!(
        user.signup("Victim Co", "user@victim.test").await.status(),
        303
    );
    let key = user.api_key("k", "read").await;

    let admin_create = |password: &'static str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_frontdesk"))
            .args([
                "admin",
                "create",
                "--email",
                "root@platform.test",
                "--password-stdin",
            ])
            .env_clear()
            .env("DATABASE_URL", &app.db.url)
            .env("DATA_DIR", app.data_dir())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                let stdin = child.stdin.take().unwrap();
                (&stdin).write_all(format!("{password}\n").as_bytes())?;
                drop(stdin);
                child.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    admin_create("platform admin passphrase");

    let admin = Browser::new(&app);
    let res = admin
        .login("root@platform.test", "platform admin passphrase")
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        "/admin",
        "an admin in no organization lands on /admin, not on an empty /app"
    );
    let (status, page) = admin.get("/admin").await;
    assert_eq!(status, 200);
    assert!(page.contains("Victim Co") && page.contains("user@victim.test"));
    let (status, _) = user.get("/admin").await;
    assert_eq!(
        status, 404,
        "not an admin: the page does not exist for them"
    );

    // Taking the account back from the command line signs it out everywhere.
    let intruder = Browser::new(&app);
    assert_eq!(
        intruder
            .login("root@platform.test", "platform admin passphrase")
            .await
            .status(),
        303
    );
    admin_create("a passphrase only I know");
    assert_eq!(intruder.get("/admin").await.0, 303, "signed out");
    assert_eq!(admin.get("/admin").await.0, 303, "signed out too");
    assert_eq!(
        admin
            .login("root@platform.test", "a passphrase only I know")
            .await
            .status(),
        303
    );

    // Many organizations: the lists show the newest, a search finds the rest.
    {
        use frontdesk::db::models::{NewOrganization, Organization};
        let mut conn = app.pool().get().unwrap();
        for n in 0..105 {
            let slug = frontdesk::domain::Slug::parse(&format!("filler-{n:03}")).unwrap();
            Organization::create(
                &mut conn,
                &NewOrganization::new(&slug, &format!("Filler {n:03}")),
            )
            .unwrap();
        }
    }
    let (_, page) = admin.get("/admin").await;
    assert!(page.contains("The newest 100 of 106"), "{page}");
    assert!(
        !page.contains("Victim Co"),
        "the oldest is past the first 100"
    );
    let (status, page) = admin.get("/admin?q=VICTIM").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Victim Co") && page.contains("user@victim.test"),
        "{page}"
    );
    assert!(
        !page.contains("Filler 000") && !page.contains("The newest"),
        "{page}"
    );
    let (_, page) = admin.get("/admin?q=filler-10").await;
    assert_eq!(
        page.matches("<code>filler-10").count(),
        5,
        "slugs match too"
    );
    let (_, page) = admin.get("/admin?q=%25").await;
    assert!(
        page.contains("No organization matches"),
        "a % is taken literally: {page}"
    );

    let mut conn = app.pool().get().unwrap();
    let org_id: i64 = organizations::table
        .filter(organizations::name.eq("Victim Co"))
        .select(organizations::id)
        .first(&mut conn)
        .unwrap();
    let user_id: i64 = users::table
        .filter(users::email.eq("user@victim.test"))
        .select(users::id)
        .first(&mut conn)
        .unwrap();

    assert_eq!(
        admin
            .submit(
                "/admin",
                &format!("/admin/organizations/{org_id}/toggle"),
                &[("disable", "true")]
            )
            .await
            .status(),
        303
    );
    // A second submit of the same form (a double click, a stale tab) changes nothing.
    let again = admin
        .submit(
            "/admin",
            &format!("/admin/organizations/{org_id}/toggle"),
            &[("disable", "true")],
        )
        .await;
    assert_eq!(again.status(), 303);
    let (_, page) = admin.get("/admin").await;
    assert!(page.contains("Victim Co is already disabled."), "{page}");
    let res = app
        .client
        .get(format!("{}/api/v1/members", app.address))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        403,
        "a disabled organization's keys stop working"
    );
    let (status, _) = user.get("/app").await;
    assert_eq!(status, 403);

    // Someone who also belongs to another organization is not locked out of
    // it: the disabled one is left for the other, and cannot be switched to.
    let other = {
        use frontdesk::db::models::{Membership, NewMembership, NewOrganization, Organization};
        let slug = frontdesk::domain::Slug::parse("second-shop").unwrap();
        let org =
            Organization::create(&mut conn, &NewOrganization::new(&slug, "Second Shop")).unwrap();
        Membership::create(
            &mut conn,
            &NewMembership::new(
                org.id,
                frontdesk::domain::UserId(user_id),
                frontdesk::domain::Role::Viewer,
            ),
        )
        .unwrap();
        org.id.0
    };
    let (status, page) = user.get("/app").await;
    assert_eq!(status, 200, "falls back to the organization still enabled");
    assert!(page.contains("Second Shop"), "{page}");
    let res = user
        .submit(
            "/app",
            "/app/switch",
            &[("organization_id", org_id.to_string().as_str())],
        )
        .await;
    assert_eq!(
        res.status(),
        403,
        "no switching into a disabled organization"
    );
    let (status, _) = user.get("/app").await;
    assert_eq!(status, 200);

    let members_with = |key: &str| {
        app.client
            .get(format!("{}/api/v1/members", app.address))
            .bearer_auth(key)
            .send()
    };
    admin
        .submit(
            "/admin",
            &format!("/admin/organizations/{org_id}/toggle"),
            &[("disable", "false")],
        )
        .await;
    assert_eq!(
        members_with(&key).await.unwrap().status(),
        200,
        "enabled again"
    );
    // A reset link on its way when the account is disabled is spent with it.
    let holder = Browser::new(&app);
    let res = request_reset(&holder, "user@victim.test").await;
    assert_eq!(res.status(), 200);
    let reset = reset_link(&app, "user@victim.test", &[]).await;
    let token = reset.split("token=").nth(1).unwrap().to_string();
    assert_eq!(
        admin
            .submit(
                "/admin",
                &format!("/admin/users/{user_id}/toggle"),
                &[("disable", "true")]
            )
            .await
            .status(),
        303
    );
    let res = members_with(&key).await.unwrap();
    assert_eq!(res.status(), 403, "a disabled account's keys stop working");
    assert_eq!(
        post_reset(&holder, &token, "the password I would pick")
            .await
            .status(),
        422,
        "the reset link sent before the account was disabled"
    );
    let body: Value = res.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("created this API key"),
        "{body}"
    );
    use frontdesk::db::schema::audit_log;
    let audited: Vec<(Option<i64>, String, Option<String>)> = audit_log::table
        .filter(audit_log::action.eq("user.disabled"))
        .select((
            audit_log::organization_id,
            audit_log::actor_label,
            audit_log::target,
        ))
        .order(audit_log::organization_id)
        .load(&mut conn)
        .unwrap();
    assert_eq!(
        audited,
        [org_id, other]
            .map(|o| (
                Some(o),
                "root@platform.test".to_string(),
                Some("user@victim.test".to_string())
            ))
            .to_vec(),
        "each of the user's organizations sees who disabled the account"
    );
    let (status, _) = user.get("/app").await;
    assert_eq!(status, 303, "a disabled account is signed out");
    let res = Browser::new(&app).login("user@victim.test", PASSWORD).await;
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("disabled"));
}

/// What a client generator trips over: a `$ref` to nothing, a path parameter
/// the operation does not declare (or declares and the path lacks), an
/// operation without responses, two operations with one id.
fn openapi_is_consistent(doc: &Value) {
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let target = r.strip_prefix('#').and_then(|pointer| doc.pointer(pointer));
        assert!(
            target.is_some_and(Value::is_object),
            "{r} points at nothing"
        );
    }
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let mut in_path: Vec<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
            .collect();
        in_path.sort_unstable();
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            assert!(
                ["get", "post", "put", "patch", "delete"].contains(&method.as_str()),
                "{what}: unexpected key"
            );
            let mut declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .inspect(|p| assert_eq!(p["required"], true, "{what}: {p}"))
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            declared.sort_unstable();
            assert_eq!(declared, in_path, "{what}: path parameters");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{what}: no responses"
            );
            if let Some(id) = op["operationId"].as_str() {
                assert!(ids.insert(id.to_string()), "{what}: operationId {id} twice");
            }
        }
    }
    // A link names an operation that is there, by the field the
    // specification gives it.
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let responses = op["responses"].as_object().unwrap();
            for link in responses
                .values()
                .filter_map(|r| r["links"].as_object())
                .flat_map(|links| links.values())
            {
                let target = link["operationId"].as_str();
                assert!(
                    target.is_some_and(|id| ids.contains(id)),
                    "a link to nothing: {link}"
                );
            }
        }
    }
}

async fn the_openapi_document_describes_the_api(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let res = app.get("/api/v1/openapi.json").await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/organization",
        "/api/v1/members",
        "/api/v1/invitations",
        "/api/v1/invitations/{id}",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{id}",
        "/api/v1/members/{id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    assert!(doc["paths"]["/api/v1/invitations"]["post"]["requestBody"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["ErrorJson"]["properties"]["correlationId"].is_object());
    let schemas = &doc["components"]["schemas"];
    // A list's items are its item's schema, fixed words included.
    assert_eq!(
        schemas["List_AgentJson"]["properties"]["data"]["items"]["$ref"],
        "#/components/schemas/AgentJson"
    );
    assert!(schemas["AgentJson"]["properties"]["provider"]["enum"].is_array());
    // Times say they are times.
    for (schema, field) in [
        ("AgentJson", "createdAt"),
        ("ApiKeyJson", "revokedAt"),
        ("BillingJson", "currentPeriodEnd"),
    ] {
        assert_eq!(
            schemas[schema]["properties"][field]["format"], "date-time",
            "{schema}.{field}"
        );
    }
    // Every operation refuses a query parameter it does not take: 400 is listed.
    assert!(doc["paths"]["/api/v1/agents"]["get"]["responses"]["400"].is_object());
    // What is created says where it is read.
    assert!(
        doc["paths"]["/api/v1/agents"]["post"]["responses"]["201"]["headers"]["Location"]
            .is_object()
    );
    // A reply can come as Server-Sent Events.
    assert!(
        doc["paths"]["/api/v1/conversations/{id}/messages"]["post"]["responses"]["200"]["content"]
            ["text/event-stream"]
            .is_object()
    );
    openapi_is_consistent(&doc);
    // The check itself sees a dangling reference.
    let mut broken = doc.clone();
    broken["components"]["schemas"]
        .as_object_mut()
        .unwrap()
        .remove("ErrorJson");
    assert!(std::panic::catch_unwind(|| openapi_is_consistent(&broken)).is_err());

    // The answers a caller's own mistakes get are listed where they can happen.
    let responses = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}"))
            .keys()
            .cloned()
            .collect()
    };
    let agents_post = responses("/api/v1/agents", "post");
    for status in [
        "201", "400", "401", "402", "403", "413", "415", "422", "429",
    ] {
        assert!(
            agents_post.contains(&status.to_string()),
            "POST /agents {status}: {agents_post:?}"
        );
    }
    let listed = responses("/api/v1/conversations", "get");
    for status in ["200", "400", "401", "422", "429"] {
        assert!(
            listed.contains(&status.to_string()),
            "GET /conversations {status}: {listed:?}"
        );
    }
    assert!(!listed.contains(&"415".to_string()), "no body, no 415");
    let start = responses("/api/v1/chat/{org}/{agent}/conversations", "post");
    for status in ["201", "400", "404", "413", "415", "422", "429"] {
        assert!(
            start.contains(&status.to_string()),
            "chat start {status}: {start:?}"
        );
    }
    assert!(
        !start.contains(&"401".to_string()),
        "the public chat needs no key"
    );
    assert_eq!(
        doc["paths"]["/api/v1/documents/{id}/reindex"]["post"]["responses"]["202"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/DocumentStatusJson"
    );
    // What reindexing answers is a document's status, not a conversation's.
    let statuses =
        &doc["components"]["schemas"]["DocumentStatusJson"]["properties"]["status"]["enum"];
    assert!(
        statuses.as_array().unwrap().contains(&"pending".into()),
        "{statuses}"
    );

    // Every schema the document points at is in it (utoipa only lists the
    // components it is told about).
    fn refs(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v.as_str()) {
                        ("$ref", Some(target)) => found.push(target.to_string()),
                        _ => refs(v, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 20, "{found:?}");
    for target in found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {target}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{target} is referenced but not defined"
        );
    }
}

async fn account_changes_and_session_lifetimes(backend: Backend) {
    use frontdesk::db::schema::sessions;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let me = Browser::new(&app);
    assert_eq!(me.signup("Acme", "me@acme.test").await.status(), 303);
    // Signed in: the sign-in page leads to the app, the front page offers it.
    let res = me
        .client
        .get(format!("{}/login", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/app");
    let (_, front) = me.get("/").await;
    assert!(
        front.contains("Open the app") && !front.contains(">Sign in<"),
        "{front}"
    );
    let (_, anonymous) = Browser::new(&app).get("/").await;
    assert!(anonymous.contains(">Sign in<") && !anonymous.contains("Open the app"));
    let other_device = Browser::new(&app);
    assert_eq!(
        other_device.login("me@acme.test", PASSWORD).await.status(),
        303
    );

    let browser = &me;
    let change_password = |current: &'static str| async move {
        browser
            .submit(
                "/app/account",
                "/app/account/password",
                &[
                    ("current_password", current),
                    ("new_password", "a new long passphrase"),
                ],
            )
            .await
    };

    // Wrong current password: refused beside the field, nothing changes.
    let res = change_password("nope nope nope").await;
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("not your current password")
    );
    // A session left open is no way to guess the password: wrong answers
    // count like failed sign-ins (four more make five).
    for _ in 0..4 {
        assert_eq!(change_password("still guessing").await.status(), 422);
    }
    let res = change_password(PASSWORD).await;
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Too many wrong passwords")
    );
    // Fifteen minutes on, the failures no longer count (as if expired here).
    {
        use frontdesk::db::schema::login_failures;
        diesel::delete(login_failures::table)
            .execute(&mut app.pool().get().unwrap())
            .unwrap();
    }

    let res = change_password(PASSWORD).await;
    assert_eq!(res.status(), 303);
    assert_eq!(me.get("/app").await.0, 200, "this browser stays signed in");
    assert_eq!(
        other_device.get("/app").await.0,
        303,
        "other devices are signed out"
    );

    // Email change: taken address refused; a new one needs confirming again.
    assert_eq!(
        Browser::new(&app)
            .signup("Other", "taken@acme.test")
            .await
            .status(),
        303
    );
    let res = me
        .submit(
            "/app/account",
            "/app/account/email",
            &[
                ("email", "taken@acme.test"),
                ("current_password", "a new long passphrase"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("Another account uses this address.")
    );
    // One's own address is no change, and not "another account's".
    let res = me
        .submit(
            "/app/account",
            "/app/account/email",
            &[
                ("email", "ME@acme.test"),
                ("current_password", "a new long passphrase"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("This is already your address.") && !html.contains("Another account uses"),
        "{html}"
    );
    let res = me
        .submit(
            "/app/account",
            "/app/account/email",
            &[
                ("email", "me2@acme.test"),
                ("current_password", "a new long passphrase"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    wait_for_mail(
        &mail_dir(&app),
        "me2@acme.test",
        "Confirm your email address",
    )
    .await;
    // The old address hears of it, in case it was not its owner's doing.
    let notice = wait_for_mail(
        &mail_dir(&app),
        "me@acme.test",
        "Your Frontdesk email address was changed",
    )
    .await;
    assert!(
        notice.contains("m\u{2022}\u{2022}\u{2022}@acme.test"),
        "the new address, partly hidden: {notice}"
    );
    let (_, audit) = me.get("/app/audit").await;
    assert!(
        audit.contains("me@acme.test → me2@acme.test"),
        "the change is audited"
    );

    // Absolute lifetime: a session signed in long ago is over, however active.
    let mut conn = app.pool().get().unwrap();
    let rows: Vec<(String, String)> = sessions::table
        .select((sessions::key_hash, sessions::state))
        .load(&mut conn)
        .unwrap();
    for (key, state) in rows {
        let mut map: std::collections::HashMap<String, String> =
            serde_json::from_str(&state).unwrap();
        if map.contains_key("auth_at") {
            map.insert("auth_at".into(), "1".into());
            diesel::update(sessions::table.filter(sessions::key_hash.eq(key)))
                .set(sessions::state.eq(serde_json::to_string(&map).unwrap()))
                .execute(&mut conn)
                .unwrap();
        }
    }
    assert_eq!(me.get("/app").await.0, 303, "past the absolute lifetime");

    // Idle expiry: an expired row is not a session.
    assert_eq!(
        me.login("me2@acme.test", "a new long passphrase")
            .await
            .status(),
        303
    );
    diesel::update(sessions::table)
        .set(sessions::expires_at.eq(frontdesk::domain::now() - chrono::TimeDelta::seconds(1)))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(me.get("/app").await.0, 303, "idle too long");

    // Sign out everywhere.
    assert_eq!(
        me.login("me2@acme.test", "a new long passphrase")
            .await
            .status(),
        303
    );
    assert_eq!(
        other_device
            .login("me2@acme.test", "a new long passphrase")
            .await
            .status(),
        303
    );
    assert_eq!(
        me.submit("/app/account", "/app/account/sessions/revoke", &[])
            .await
            .status(),
        303
    );
    assert_eq!(other_device.get("/app").await.0, 303);
    assert_eq!(me.get("/app").await.0, 303);
}

/// Signs up a new organization through the pages and makes a write API key.
/// Confirms `email` with the link from its verification email, as someone
/// who goes on to invite colleagues has to.
pub(crate) async fn confirm_email(app: &TestApp, email: &str) {
    let mail = wait_for_mail(&mail_dir(app), email, "Confirm your email address").await;
    let verify = link(&mail, "/verify-email?token=");
    let (status, page) = Browser::new(app).get(&verify).await;
    assert_eq!(status, 200, "{page}");
}

pub(crate) async fn organization_with_key(
    app: &TestApp,
    org: &str,
    email: &str,
) -> (Browser, String) {
    let owner = Browser::new(app);
    assert_eq!(owner.signup(org, email).await.status(), 303);
    confirm_email(app, email).await;
    let key = owner.api_key("tests", "write").await;
    (owner, key)
}

async fn an_api_key_cannot_make_admins_or_owners(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, key) = organization_with_key(&app, "Relay", "owner@relay.test").await;
    let org = app.org_id("relay");
    let (agent, _) = signed_in_member(
        &app,
        org,
        "agent@relay.test",
        frontdesk::domain::Role::Agent,
    )
    .await;
    let call = |method: reqwest::Method, path: String, body: Value| {
        app.client
            .request(method, app.url(&path))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    for role in ["admin", "owner"] {
        let res = call(
            reqwest::Method::POST,
            "/api/v1/invitations".into(),
            serde_json::json!({"email": format!("{role}@elsewhere.test"), "role": role}),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 403, "invite as {role}");
        let res = call(
            reqwest::Method::PATCH,
            format!("/api/v1/members/{agent}"),
            serde_json::json!({"role": role}),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 403, "promote to {role}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "FORBIDDEN");
    }
    // People who answer conversations, yes.
    let res = call(
        reqwest::Method::POST,
        "/api/v1/invitations".into(),
        serde_json::json!({"email": "new.agent@elsewhere.test", "role": "agent"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    // …and the invitation works: the key's creator vouches for it.
    let accept = invitation_link(&app, "new.agent@elsewhere.test").await;
    let (status, page) = Browser::new(&app).get(&accept).await;
    assert_eq!(status, 200, "{page}");
    // The owner, signed in, still can.
    let res = owner
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/members/{agent}"),
            serde_json::json!({"role": "admin"}),
        )
        .await;
    assert_eq!(res.status(), 200);
}

async fn a_disabled_owner_does_not_count_as_someone_in_charge(backend: Backend) {
    use frontdesk::domain::Role;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(owner.signup("Crew", "owner@crew.test").await.status(), 303);
    let (org, mine): (i64, i64) = memberships::table
        .inner_join(users::table)
        .filter(users::email.eq("owner@crew.test"))
        .select((memberships::organization_id, memberships::id))
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    let other = add_member(
        &mut app.pool().get().unwrap(),
        org,
        "second@crew.test",
        Role::Owner,
    );
    let second: i64 = users::table
        .filter(users::email.eq("second@crew.test"))
        .select(users::id)
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    frontdesk::db::models::User::set_disabled(
        &mut app.pool().get().unwrap(),
        frontdesk::domain::UserId(second),
        true,
    )
    .unwrap();
    // The other owner is disabled: nobody would be left to act.
    for (method, body) in [
        (reqwest::Method::PATCH, serde_json::json!({"role": "admin"})),
        (reqwest::Method::DELETE, Value::Null),
    ] {
        let res = owner
            .api(method.clone(), &format!("/api/v1/members/{mine}"), body)
            .await;
        assert_eq!(res.status(), 409, "{method}");
    }
    // The disabled owner can be removed by the one who acts.
    let res = owner
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/members/{other}"),
            Value::Null,
        )
        .await;
    assert_eq!(res.status(), 204);
}

async fn an_invitation_lapses_when_its_sender_can_no_longer_invite(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(owner.signup("Crew", "owner@crew.test").await.status(), 303);
    let org = app.org_id("crew");
    let (admin, admin_browser) =
        signed_in_member(&app, org, "admin@crew.test", frontdesk::domain::Role::Admin).await;
    // Added directly, so no confirmation email: confirmed here instead.
    diesel::update(users::table.filter(users::email.eq("admin@crew.test")))
        .set(users::email_verified_at.eq(Some(frontdesk::domain::now())))
        .execute(&mut app.pool().get().unwrap())
        .unwrap();
    let res = admin_browser
        .submit(
            "/app/members",
            "/app/members/invite",
            &[("email", "second.me@elsewhere.test"), ("role", "admin")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let accept = invitation_link(&app, "second.me@elsewhere.test").await;
    let (status, _) = Browser::new(&app).get(&accept).await;
    assert_eq!(status, 200, "good while its sender may invite");

    // The admin is made an agent: what they sent no longer lets anyone in.
    let res = owner
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/members/{admin}"),
            serde_json::json!({"role": "agent"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let (status, page) = Browser::new(&app).get(&accept).await;
    assert_eq!(status, 422);
    assert!(page.contains("not valid"), "{page}");
}

async fn signed_out_form_pages_keep_few_short_sessions(backend: Backend) {
    use frontdesk::db::schema::sessions;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    // A script without cookies: every view makes a session for the CSRF token.
    let bare = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..61 {
        let res = bare.get(app.url("/login")).send().await.unwrap();
        statuses.push(res.status().as_u16());
    }
    assert!(statuses[..60].iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(statuses[60], 429, "sixty views a minute per address");
    let rows: Vec<(Option<i64>, chrono::NaiveDateTime)> = sessions::table
        .select((sessions::user_id, sessions::expires_at))
        .load(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(rows.len(), 60);
    let latest =
        frontdesk::domain::now() + chrono::TimeDelta::hours(2) + chrono::TimeDelta::minutes(1);
    assert!(
        rows.iter()
            .all(|(user, until)| user.is_none() && *until <= latest),
        "signed-out sessions expire within two hours: {rows:?}"
    );

    // Signed in, the session gets the full lifetime again (a view is back
    // in the budget each second).
    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    let b = Browser::new(&app);
    assert_eq!(b.signup("Acme", "long@acme.test").await.status(), 303);
    let until: chrono::NaiveDateTime = sessions::table
        .filter(sessions::user_id.is_not_null())
        .select(sessions::expires_at)
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    assert!(until > latest, "{until}");
}

async fn a_page_opened_for_one_organization_cannot_act_on_another(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(
        owner
            .signup("Harbor Bikes", "owner@harbor.test")
            .await
            .status(),
        303
    );
    confirm_email(&app, "owner@harbor.test").await;
    let res = owner
        .submit(
            "/app/account",
            "/app/welcome",
            &[("organization", "Second Shop")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let (harbor, second) = (app.org_id("harbor-bikes"), app.org_id("second-shop"));
    let switch_to = |org: i64| {
        let owner = &owner;
        async move {
            owner
                .submit(
                    "/app",
                    "/app/switch",
                    &[("organization_id", org.to_string().as_str())],
                )
                .await
                .status()
        }
    };
    assert_eq!(switch_to(harbor).await, 303);

    // A tab opened on Harbor's members page; another tab switches to the
    // second shop; the first tab's invitation must not land there.
    let (_, stale_page) = owner.get("/app/members").await;
    let stale = csrf_in(&stale_page).unwrap();
    assert!(stale.ends_with(&format!(".{harbor}")), "{stale}");
    assert_eq!(switch_to(second).await, 303);
    let invite = [
        ("csrf_token", stale.as_str()),
        ("email", "new@harbor.test"),
        ("role", "agent"),
    ];
    let res = owner.post("/app/members/invite", &invite).await;
    assert_eq!(res.status(), 409);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("belongs to another organization"),
    );
    let invited: i64 = invitations::table
        .count()
        .get_result(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(invited, 0, "nothing was invited anywhere");
    // The same over the cookie-authenticated API.
    let res = owner
        .client
        .post(format!("{}/api/v1/invitations", owner.base))
        .header("x-csrf-token", &stale)
        .json(&serde_json::json!({"email": "new@harbor.test", "role": "agent"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);

    // The header's forms are about the person and work from any tab.
    let plain = stale.split('.').next().unwrap();
    let res = owner
        .post(
            "/app/switch",
            &[
                ("csrf_token", plain),
                ("organization_id", harbor.to_string().as_str()),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    // Back on Harbor, the page's own form works again.
    let res = owner.post("/app/members/invite", &invite).await;
    assert_eq!(res.status(), 303);
    let to: Vec<i64> = invitations::table
        .select(invitations::organization_id)
        .load(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(to, [harbor]);

    // Harbor is left behind (here: the membership is gone) while its page is
    // open: its form must not land in the organization the session falls
    // back to, whichever check runs first.
    let (_, stale_page) = owner.get("/app/members").await;
    let stale = csrf_in(&stale_page).unwrap();
    diesel::delete(
        memberships::table
            .filter(memberships::organization_id.eq(harbor))
            .filter(memberships::role.eq("owner")),
    )
    .execute(&mut app.pool().get().unwrap())
    .unwrap();
    let invite = [
        ("csrf_token", stale.as_str()),
        ("email", "third@harbor.test"),
        ("role", "agent"),
    ];
    let res = owner.post("/app/members/invite", &invite).await;
    assert_eq!(res.status(), 409);
    assert_eq!(count(&app, "invitations"), 1, "nothing more was invited");
    // Reloaded, the page is the second shop's, and its form works there.
    let res = owner
        .submit(
            "/app/members",
            "/app/members/invite",
            &[("email", "third@harbor.test"), ("role", "agent")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let to: Vec<i64> = invitations::table
        .order(invitations::id.asc())
        .select(invitations::organization_id)
        .load(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(to, [harbor, second]);
}

async fn only_a_confirmed_address_sends_invitations(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let owner = Browser::new(&app);
    assert_eq!(owner.signup("Acme", "owner@acme.test").await.status(), 303);
    let key = owner.api_key("invites", "write").await;
    let (_, page) = owner.get("/app/members").await;
    assert!(
        page.contains("Confirm your own email address first"),
        "{page}"
    );

    // Invitations carry the organization's name to any address: not from an
    // address nobody showed they own, by page, session API or key.
    let res = owner
        .submit(
            "/app/members",
            "/app/members/invite",
            &[("email", "new@acme.test"), ("role", "agent")],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("invite-email-error") && html.contains("Confirm your email address first"),
        "{html}"
    );
    let invite = serde_json::json!({"email": "new@acme.test", "role": "agent"});
    let res = owner
        .api(reqwest::Method::POST, "/api/v1/invitations", invite.clone())
        .await;
    assert_eq!(res.status(), 403);
    let by_key = || {
        app.client
            .post(format!("{}/api/v1/invitations", app.address))
            .bearer_auth(&key)
            .json(&invite)
            .send()
    };
    let res = by_key().await.unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Confirm your email address first"),
        "{body}"
    );
    assert_eq!(count(&app, "invitations"), 0);
    assert!(
        all_mail(&mail_dir(&app), "new@acme.test", "invited you").is_empty(),
        "nothing was sent"
    );

    // Once confirmed, the same key and the page send them.
    confirm_email(&app, "owner@acme.test").await;
    assert_eq!(by_key().await.unwrap().status(), 201);
    let res = owner
        .submit(
            "/app/members",
            "/app/members/invite",
            &[("email", "second@acme.test"), ("role", "agent")],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(count(&app, "invitations"), 2);
}

async fn two_requests_changing_one_session_both_keep_their_change(backend: Backend) {
    use actix_session::storage::{SessionKey, SessionStore as _};
    use frontdesk::auth::session_store::DbSessionStore;
    use std::collections::HashMap;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let store = DbSessionStore::new(app.pool());
    let ttl = actix_web::cookie::time::Duration::hours(1);
    let entries = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let key = store
        .save(
            entries(&[("org", "1"), ("seen", "100"), ("flash", "hi")]),
            &ttl,
        )
        .await
        .unwrap();
    let again = |key: &SessionKey| SessionKey::try_from(key.as_ref().to_string()).unwrap();

    // Two requests of one browser load the session at the same moment.
    let mut switching = store.load(&key).await.unwrap().unwrap();
    let mut renewing = store.load(&key).await.unwrap().unwrap();
    // One switches organization and takes the flash; the other, answered
    // later, only renews the idle timer.
    switching.insert("org".into(), "2".into());
    switching.remove("flash");
    let key = store.update(again(&key), switching, &ttl).await.unwrap();
    renewing.insert("seen".into(), "200".into());
    let key = store.update(again(&key), renewing, &ttl).await.unwrap();

    let mut stored = store.load(&key).await.unwrap().unwrap();
    stored.remove("_base");
    assert_eq!(
        stored,
        entries(&[("org", "2"), ("seen", "200")]),
        "neither request undid the other's change"
    );
    // What a request loaded to compare with is never written back.
    let mut conn = app.pool().get().unwrap();
    use frontdesk::db::schema::sessions;
    let states: Vec<String> = sessions::table
        .select(sessions::state)
        .load(&mut conn)
        .unwrap();
    assert_eq!(states.len(), 1);
    assert!(!states[0].contains("_base"), "{}", states[0]);

    // A request whose session was deleted meanwhile (signed out everywhere)
    // starts a new, signed-out one rather than bringing the old one back.
    let mut late = store.load(&key).await.unwrap().unwrap();
    late.insert("uid".into(), "1".into());
    store.delete(&key).await.unwrap();
    let fresh = store.update(again(&key), late, &ttl).await.unwrap();
    assert_ne!(fresh.as_ref(), key.as_ref());
    let reborn = store.load(&fresh).await.unwrap().unwrap();
    assert!(!reborn.contains_key("uid"), "{reborn:?}");
}

async fn a_busy_api_key_is_not_written_on_every_request(backend: Backend) {
    use frontdesk::db::schema::api_keys;
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (_, key) = organization_with_key(&app, "Busy Keys", "owner@busy-keys.test").await;
    let call = || async {
        let res = app
            .client
            .get(app.url("/api/v1/agents"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    };
    let last_used = || -> Option<chrono::NaiveDateTime> {
        api_keys::table
            .select(api_keys::last_used_at)
            .first(&mut app.pool().get().unwrap())
            .unwrap()
    };
    assert_eq!(last_used(), None, "not used yet");
    call().await;
    let first = last_used().expect("the first call is recorded");
    call().await;
    call().await;
    assert_eq!(
        last_used(),
        Some(first),
        "calls within the minute write nothing"
    );

    // A minute later the next call is recorded again.
    let earlier = first - frontdesk::db::models::ApiKey::LAST_USED_GRANULARITY;
    diesel::update(api_keys::table)
        .set(api_keys::last_used_at.eq(Some(earlier)))
        .execute(&mut app.pool().get().unwrap())
        .unwrap();
    call().await;
    assert!(last_used().is_some_and(|at| at > earlier + chrono::TimeDelta::seconds(59)));
}

async fn revoking_a_revoked_key_again_is_done_not_missing(backend: Backend) {
    use frontdesk::db::schema::{api_keys, audit_log};
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, key) = organization_with_key(&app, "Harbor Bikes", "owner@harbor.test").await;
    owner.api_key("zapier", "read").await;
    let id: i64 = api_keys::table
        .filter(api_keys::name.eq("zapier"))
        .select(api_keys::id)
        .first(&mut app.pool().get().unwrap())
        .unwrap();
    for _ in 0..2 {
        let res = app
            .client
            .delete(app.url(&format!("/api/v1/api-keys/{id}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "revoked, as asked");
    }
    let revocations: i64 = audit_log::table
        .filter(audit_log::action.eq("api_key.revoked"))
        .count()
        .get_result(&mut app.pool().get().unwrap())
        .unwrap();
    assert_eq!(revocations, 1, "recorded once");
    let res = app
        .client
        .delete(app.url("/api/v1/api-keys/999999"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "a key that never was is still not found");
}
