//! Sign-up, sign-in, sign-out, email verification, password reset, invitations.

use actix_session::Session;
use actix_web::http::header;
use actix_web::{Either, HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::auth::csrf::{self, CsrfForm};
use crate::auth::extractors::{AUTH_AT_KEY, ORG_KEY, SEEN_KEY, SignedIn, client_ip};
use crate::auth::password::{self, Password};
use crate::auth::session_store::USER_KEY;
use crate::csrf_protected;
use crate::db::models::User;
use crate::domain::{Email, OrganizationId, UserId};
use crate::error::{AppError, AppResult};
use crate::routes::{flash, unprocessable};
use crate::services::accounts::{self, AccountError, Joiner};
use crate::startup::AppState;
use crate::views::account::{
    AcceptInvitationPage, FieldErrors, Flash, ForgotPasswordPage, LoginPage, MessagePage,
    ResetPasswordPage, SignupPage,
};

pub const NAME_MAX: usize = 120;

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// Checks a free-text field: trimmed, required, bounded.
pub fn text_field(
    errors: &mut FieldErrors,
    field: &'static str,
    label: &str,
    raw: &str,
    max: usize,
) -> String {
    let value = crate::domain::text::undisguised(raw).trim().to_string();
    if value.is_empty() {
        errors.add(field, format!("{label} is required."));
    } else if value.chars().count() > max {
        errors.add(field, format!("{label} must be at most {max} characters."));
    } else if value.chars().any(char::is_control) {
        // Names travel into email subjects and headers of pages: one line only.
        errors.add(field, format!("{label} must be on one line."));
    }
    value
}

/// Starts a signed-in session with a new id (no session fixation).
fn sign_in(
    session: &Session,
    user_id: UserId,
    organization: Option<OrganizationId>,
) -> AppResult<()> {
    session.renew();
    // A token handed out before sign-in may be known to whoever planted the
    // session: the signed-in session gets a fresh one.
    crate::auth::csrf::forget(session);
    let now = chrono::Utc::now().timestamp();
    session
        .insert(USER_KEY, user_id.0)
        .map_err(AppError::internal)?;
    session
        .insert(AUTH_AT_KEY, now)
        .map_err(AppError::internal)?;
    session.insert(SEEN_KEY, now).map_err(AppError::internal)?;
    if let Some(org) = organization {
        session.insert(ORG_KEY, org.0).map_err(AppError::internal)?;
    }
    Ok(())
}

async fn hash_password(password: Password) -> AppResult<String> {
    web::block(move || password.hash())
        .await?
        .map_err(AppError::internal)
}

pub(crate) fn is_signed_in(session: &Session) -> bool {
    session.get::<i64>(USER_KEY).ok().flatten().is_some()
}

#[derive(Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    organization: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// `raw` if it is a path on this site: a sign-in link can bring someone back
/// to where they were (an invitation), never send them to another site
/// (`//evil.example`, `/\evil.example`, `https://…`).
fn local_path(raw: &str) -> Option<&str> {
    let plain = raw.len() <= 2048
        && raw.starts_with('/')
        && !raw.starts_with("//")
        && raw.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    let base = url::Url::parse("http://frontdesk.invalid/").ok()?;
    let stays = base
        .join(raw)
        .is_ok_and(|u| u.host_str() == Some("frontdesk.invalid"));
    (plain && stays).then_some(raw)
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirmation: String,
}

#[derive(Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

csrf_protected!(
    SignupForm, LoginForm, CsrfOnly, EmailForm, ResetForm, AcceptForm
);

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub async fn signup_page(session: Session) -> AppResult<HttpResponse> {
    if is_signed_in(&session) {
        return Ok(see_other("/app"));
    }
    let page = SignupPage {
        csrf: csrf::token(&session)?,
        organization: String::new(),
        name: String::new(),
        email: String::new(),
        errors: FieldErrors::default(),
        email_taken: false,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(render(&page)?))
}

fn render(page: &impl askama::Template) -> AppResult<String> {
    page.render().map_err(AppError::internal)
}

pub async fn signup(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<SignupForm>,
) -> AppResult<HttpResponse> {
    let mut errors = FieldErrors::default();
    let organization = text_field(
        &mut errors,
        "organization",
        "Organization name",
        &form.organization,
        NAME_MAX,
    );
    let name = text_field(&mut errors, "name", "Your name", &form.name, NAME_MAX);
    let email = Email::parse(&form.email)
        .map_err(|e| errors.add("email", format!("Email {e}.")))
        .ok();
    let password = Password::parse(&form.password, email.as_ref().map(Email::as_str))
        .map_err(|e| errors.add("password", e.0))
        .ok();

    let page = |errors: FieldErrors, email_taken: bool| -> AppResult<SignupPage> {
        Ok(SignupPage {
            csrf: csrf::token(&session)?,
            organization: organization.clone(),
            name: name.clone(),
            email: form.email.trim().to_string(),
            errors,
            email_taken,
        })
    };
    let (Some(email), Some(password), true) = (email, password, errors.is_empty()) else {
        return Ok(unprocessable(page(errors, false)?, &req));
    };

    let hash = hash_password(password).await?;
    let ip = client_ip(&req);
    let base_url = state.config.base_url.clone();
    let (org_name, user_name) = (organization.clone(), name.clone());
    let email_for_job = email.clone();
    let result = state
        .db(move |conn| {
            let input = accounts::Signup {
                organization: &org_name,
                name: &user_name,
                email: &email_for_job,
                password_hash: &hash,
            };
            Ok::<_, AppError>(accounts::signup(conn, &input, &base_url, &ip))
        })
        .await?;
    match result {
        Ok((user, org)) => {
            sign_in(&session, user.id, Some(org.id))?;
            flash::set(
                &session,
                "success",
                &format!(
                    "Welcome to Frontdesk! We sent a confirmation link to {}.",
                    user.email
                ),
            );
            signed_in_here(&state, see_other("/app"), &user.email)
        }
        Err(AccountError::EmailTaken) => {
            let mut errors = FieldErrors::default();
            errors.add(
                "email",
                "An account with this email address already exists.",
            );
            Ok(unprocessable(page(errors, true)?, &req))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn login_page(
    session: Session,
    query: web::Query<NextQuery>,
) -> AppResult<Either<HttpResponse, LoginPage>> {
    let next = local_path(&query.next).unwrap_or_default().to_string();
    // Signed in already: the app (or where the link leads), not the form again.
    if is_signed_in(&session) {
        return Ok(Either::Left(see_other(if next.is_empty() {
            "/app"
        } else {
            &next
        })));
    }
    Ok(Either::Right(LoginPage {
        csrf: csrf::token(&session)?,
        next,
        email: String::new(),
        errors: FieldErrors::default(),
        flash: flash::take(&session),
    }))
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<LoginForm>,
) -> AppResult<HttpResponse> {
    // Counted (and stored) as the address it names when it names one, so no
    // spelling of an account (control characters, case) gets fresh tries;
    // otherwise as typed, less what no text column holds.
    let cleaned = crate::domain::text::clean(form.email.trim(), false);
    let typed = Email::parse(&cleaned).map_or_else(
        |_| cleaned.trim().to_lowercase(),
        |e| e.as_str().to_lowercase(),
    );
    let page = |message: &str| -> AppResult<LoginPage> {
        let mut errors = FieldErrors::default();
        errors.add("form", message);
        Ok(LoginPage {
            csrf: csrf::token(&session)?,
            next: local_path(&form.next).unwrap_or_default().to_string(),
            email: form.email.trim().to_string(),
            errors,
            flash: None,
        })
    };
    if typed.is_empty()
        || form.password.is_empty()
        || typed.len() > Email::MAX_LEN
        || form.password.len() > 1024
    {
        return Ok(unprocessable(
            page("Enter your email address and password.")?,
            &req,
        ));
    }
    let ip = client_ip(&req);
    let candidate = form.password.clone();
    let known_device = state.device_key.known(&req, &typed);
    let device_email = typed.clone();
    let outcome = state
        .db(
            move |conn| -> AppResult<Result<(User, &'static str), LoginProblem>> {
                if let Some(wait) = accounts::begin_login_attempt(conn, &typed, &ip, known_device)?
                {
                    return Ok(Err(LoginProblem::Throttled(wait)));
                }
                let user = Email::parse(&typed)
                    .ok()
                    .map(|email| User::find_by_email(conn, &email))
                    .transpose()?
                    .flatten();
                let ok = password::verify(
                    &candidate,
                    user.as_ref().and_then(|u| u.password_hash.as_deref()),
                );
                match user {
                    Some(user) if ok => {
                        if user.disabled_at.is_some() {
                            return Ok(Err(LoginProblem::Disabled));
                        }
                        accounts::record_login_success(conn, &user, &ip)?;
                        // A platform admin who belongs to no organization has nothing in /app.
                        let landing = if user.is_platform_admin
                            && crate::db::models::Membership::organizations_of(conn, user.id)?
                                .is_empty()
                        {
                            "/admin"
                        } else {
                            "/app"
                        };
                        Ok(Ok((user, landing)))
                    }
                    user => {
                        accounts::record_login_failure(conn, &ip, user.as_ref())?;
                        Ok(Err(LoginProblem::Wrong))
                    }
                }
            },
        )
        .await?;

    match outcome {
        Ok((user, landing)) => {
            sign_in(&session, user.id, None)?;
            let landing = local_path(&form.next).unwrap_or(landing);
            signed_in_here(&state, see_other(landing), &device_email)
        }
        Err(LoginProblem::Throttled(wait)) => {
            let minutes = (wait + 59) / 60;
            let mut res = unprocessable(
                page(&format!(
                    "Too many failed sign-ins. Wait {minutes} minute{} and try again, or reset your password.",
                    crate::wording::plural(minutes.unsigned_abs())
                ))?,
                &req,
            );
            *res.status_mut() = actix_web::http::StatusCode::TOO_MANY_REQUESTS;
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
            Ok(res)
        }
        Err(LoginProblem::Disabled) => Ok(unprocessable(
            page("This account has been disabled. Contact support.")?,
            &req,
        )),
        Err(LoginProblem::Wrong) => Ok(unprocessable(
            page("The email address or password is not correct.")?,
            &req,
        )),
    }
}

/// `res` with the device cookie: this browser is known to the account from
/// now on (see [`crate::auth::device`]).
fn signed_in_here(state: &AppState, mut res: HttpResponse, email: &str) -> AppResult<HttpResponse> {
    let secure = state.config.environment.is_production();
    res.add_cookie(&state.device_key.cookie(email, secure))
        .map_err(AppError::internal)?;
    Ok(res)
}

enum LoginProblem {
    Wrong,
    Disabled,
    Throttled(i64),
}

pub async fn logout(session: Session, CsrfForm(_): CsrfForm<CsrfOnly>) -> HttpResponse {
    session.purge();
    see_other("/login")
}

fn message(title: &str, message: &str, href: &str, label: &str) -> MessagePage {
    MessagePage {
        title: title.into(),
        message: message.into(),
        link_href: href.into(),
        link_label: label.into(),
        in_app: false,
    }
}

impl MessagePage {
    fn seen_signed_in(self, signed_in: bool) -> Self {
        Self {
            in_app: signed_in,
            ..self
        }
    }
}

pub async fn verify_email(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<TokenQuery>,
    signed_in: Option<SignedIn>,
) -> AppResult<HttpResponse> {
    let token = query.into_inner().token;
    let signed_in = signed_in.is_some();
    let result = state
        .db(move |conn| Ok::<_, AppError>(accounts::verify_email(conn, &token)))
        .await?;
    Ok(match result {
        Ok(confirmed) => message(
            "Email confirmed",
            if confirmed == accounts::Confirmed::Already {
                "Your email address is already confirmed: there is nothing more to do."
            } else {
                "Thank you: your email address is confirmed."
            },
            "/app",
            "Continue",
        )
        .seen_signed_in(signed_in)
        .respond_to(&req)
        .map_into_boxed_body(),
        Err(AccountError::Token(problem)) => unprocessable(
            message(
                "This link cannot be used",
                &AccountError::Token(problem).to_string(),
                "/app/account",
                "Go to your account",
            )
            .seen_signed_in(signed_in),
            &req,
        ),
        Err(e) => return Err(e.into()),
    })
}

use actix_web::Responder as _;

pub async fn forgot_password_page(session: Session) -> AppResult<ForgotPasswordPage> {
    Ok(ForgotPasswordPage {
        csrf: csrf::token(&session)?,
        email: String::new(),
        errors: FieldErrors::default(),
        flash: None,
    })
}

pub async fn forgot_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<EmailForm>,
) -> AppResult<HttpResponse> {
    let email = match Email::parse(&form.email) {
        Ok(email) => email,
        Err(e) => {
            let mut errors = FieldErrors::default();
            errors.add("email", format!("Email {e}."));
            let page = ForgotPasswordPage {
                csrf: csrf::token(&session)?,
                email: form.email.trim().to_string(),
                errors,
                flash: None,
            };
            return Ok(unprocessable(page, &req));
        }
    };
    let base_url = state.config.base_url.clone();
    let shown = email.as_str().to_string();
    state
        .db(move |conn| {
            accounts::request_password_reset(conn, &email, &base_url).map_err(AppError::from)
        })
        .await?;
    // The same answer whether or not the address has an account.
    let page = ForgotPasswordPage {
        csrf: csrf::token(&session)?,
        email: String::new(),
        errors: FieldErrors::default(),
        flash: Some(Flash {
            kind: "success",
            message: format!(
                "If {shown} belongs to an account, we sent it a link to reset the password. The link works for one hour; asking again within a minute sends nothing new."
            ),
        }),
    };
    Ok(page.respond_to(&req).map_into_boxed_body())
}

pub async fn reset_password_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<TokenQuery>,
) -> AppResult<HttpResponse> {
    let token = query.into_inner().token;
    let checked = token.clone();
    let result = state
        .db(move |conn| Ok::<_, AppError>(accounts::check_reset_token(conn, &checked)))
        .await?;
    Ok(match result {
        Ok(_) => ResetPasswordPage {
            csrf: csrf::token(&session)?,
            token,
            errors: FieldErrors::default(),
        }
        .respond_to(&req)
        .map_into_boxed_body(),
        Err(e @ AccountError::Token(_)) => unprocessable(
            message(
                "This link cannot be used",
                &e.to_string(),
                "/forgot-password",
                "Request a new link",
            ),
            &req,
        ),
        Err(e) => return Err(e.into()),
    })
}

pub async fn reset_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<ResetForm>,
) -> AppResult<HttpResponse> {
    // The account's address, so the password rule can refuse one containing it
    // (a bad link is answered below, when it is used).
    let email = {
        let token = form.token.clone();
        state
            .db(move |conn| {
                Ok(match accounts::check_reset_token(conn, &token) {
                    Ok(user_id) => User::find(conn, user_id)?.map(|u| u.email),
                    Err(_) => None,
                })
            })
            .await?
    };
    let mut errors = FieldErrors::default();
    let password = Password::parse(&form.password, email.as_deref())
        .map_err(|e| errors.add("password", e.0))
        .ok();
    if form.password != form.password_confirmation {
        errors.add("password_confirmation", "The two passwords do not match.");
    }
    let page = |errors: FieldErrors| -> AppResult<ResetPasswordPage> {
        Ok(ResetPasswordPage {
            csrf: csrf::token(&session)?,
            token: form.token.clone(),
            errors,
        })
    };
    let (Some(password), true) = (password, errors.is_empty()) else {
        return Ok(unprocessable(page(errors)?, &req));
    };
    let hash = hash_password(password).await?;
    let token = form.token.clone();
    let ip = client_ip(&req);
    let result = state
        .db(move |conn| Ok::<_, AppError>(accounts::reset_password(conn, &token, &hash, &ip)))
        .await?;
    match result {
        Ok(_) => {
            // A new, empty session rather than none: a purged one would drop
            // the message below.
            session.clear();
            session.renew();
            flash::set(
                &session,
                "success",
                "Your password was changed. Sign in with the new one.",
            );
            Ok(see_other("/login"))
        }
        Err(e @ AccountError::Token(_)) => {
            let mut errors = FieldErrors::default();
            errors.add("token", e.to_string());
            Ok(unprocessable(page(errors)?, &req))
        }
        Err(e) => Err(e.into()),
    }
}

async fn invitation_page(
    state: &web::Data<AppState>,
    session: &Session,
    token: String,
    signed_in: Option<User>,
    name: String,
    errors: FieldErrors,
) -> AppResult<Result<AcceptInvitationPage, AccountError>> {
    let lookup = token.clone();
    let found = state
        .db(move |conn| {
            let found = accounts::find_invitation(conn, &lookup);
            let existing = match &found {
                Ok((invitation, _)) => Email::parse(&invitation.email)
                    .ok()
                    .map(|e| User::find_by_email(conn, &e))
                    .transpose()?
                    .flatten()
                    .is_some(),
                Err(_) => false,
            };
            Ok::<_, AppError>(found.map(|f| (f, existing)))
        })
        .await?;
    Ok(match found {
        Ok(((invitation, org), existing_user)) => Ok(AcceptInvitationPage {
            csrf: csrf::token(session)?,
            token,
            organization: org.name,
            role: invitation.role().as_str().into(),
            email: invitation.email,
            signed_in_as: signed_in.map(|u| u.email),
            existing_user,
            name,
            errors,
        }),
        Err(e) => Err(e),
    })
}

pub async fn invitation(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    query: web::Query<TokenQuery>,
    signed_in: Option<SignedIn>,
) -> AppResult<HttpResponse> {
    let token = query.into_inner().token;
    let in_app = signed_in.is_some();
    let page = invitation_page(
        &state,
        &session,
        token,
        signed_in.map(|s| s.user),
        String::new(),
        FieldErrors::default(),
    )
    .await?;
    Ok(match page {
        Ok(page) => page.respond_to(&req).map_into_boxed_body(),
        Err(e @ AccountError::Token(_)) => unprocessable(
            message(
                "This invitation cannot be used",
                &e.to_string(),
                "/",
                "Go to the home page",
            )
            .seen_signed_in(in_app),
            &req,
        ),
        Err(e) => return Err(e.into()),
    })
}

pub async fn accept_invitation(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    signed_in: Option<SignedIn>,
    CsrfForm(form): CsrfForm<AcceptForm>,
) -> AppResult<HttpResponse> {
    let ip = client_ip(&req);
    let mut errors = FieldErrors::default();
    let (name, hash) = match &signed_in {
        Some(_) => (String::new(), None),
        None => {
            let name = text_field(&mut errors, "name", "Your name", &form.name, NAME_MAX);
            // The invited address, so the password rule can refuse one containing it.
            let invited = {
                let token = form.token.clone();
                state
                    .db(move |conn| {
                        Ok(accounts::find_invitation(conn, &token)
                            .ok()
                            .map(|(invitation, _)| invitation.email))
                    })
                    .await?
            };
            let password = Password::parse(&form.password, invited.as_deref())
                .map_err(|e| errors.add("password", e.0))
                .ok();
            match (password, errors.is_empty()) {
                (Some(p), true) => (name, Some(hash_password(p).await?)),
                _ => (name, None),
            }
        }
    };
    let user = signed_in.as_ref().map(|s| s.user.clone());
    if user.is_none() && hash.is_none() {
        return Ok(
            match invitation_page(&state, &session, form.token.clone(), None, name, errors).await? {
                Ok(page) => unprocessable(page, &req),
                Err(e) => return Err(e.into()),
            },
        );
    }
    let token = form.token.clone();
    let joiner_user = user.clone();
    let joiner_name = name.clone();
    let billing = state.config.stripe.clone();
    let result = state
        .db(move |conn| {
            let joiner = match (&joiner_user, &hash) {
                (Some(user), _) => Joiner::Existing(user),
                (None, Some(hash)) => Joiner::New {
                    name: &joiner_name,
                    password_hash: hash,
                },
                (None, None) => return Ok(Err(AccountError::NotFound)),
            };
            Ok::<_, AppError>(accounts::accept_invitation(
                conn, &token, joiner, &ip, &billing,
            ))
        })
        .await?;
    match result {
        Ok((user_id, org_id)) => {
            if user.is_some() {
                session
                    .insert(ORG_KEY, org_id.0)
                    .map_err(AppError::internal)?;
            } else {
                sign_in(&session, user_id, Some(org_id))?;
            }
            flash::set(
                &session,
                "success",
                "Welcome aboard: you joined the organization.",
            );
            Ok(see_other("/app"))
        }
        Err(AccountError::EmailTaken) => {
            let mut errors = FieldErrors::default();
            errors.add(
                "form",
                "An account with this address exists: sign in first, then open the link again.",
            );
            match invitation_page(&state, &session, form.token.clone(), None, name, errors).await? {
                Ok(page) => Ok(unprocessable(page, &req)),
                Err(e) => Err(e.into()),
            }
        }
        Err(
            e @ (AccountError::Token(_) | AccountError::AlreadyMember | AccountError::Forbidden(_)),
        ) => Ok(unprocessable(
            message(
                "This invitation cannot be used",
                &e.to_string(),
                "/app",
                "Go to the app",
            )
            .seen_signed_in(user.is_some()),
            &req,
        )),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_paths_of_this_site_are_followed_after_sign_in() {
        for ok in [
            "/app",
            "/invitations/accept?token=abc-DEF_123",
            "/app/tickets/7",
        ] {
            assert_eq!(local_path(ok), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "app",
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example",
            "/ space",
            "/tab\there",
            "javascript:alert(1)",
            &format!("/{}", "a".repeat(2048)),
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }
}
