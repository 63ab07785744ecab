//! Every route the server answers, registered in one place.

mod admin;
mod api;
mod app;
mod auth;
mod csp_reports;
pub mod flash;
mod pages;
mod probes;

use actix_web::{HttpRequest, HttpResponse, Responder, web};

use crate::assets;

/// Resources (not bare routes) so a wrong method answers 405, not 404.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/live").get(probes::live))
        .service(web::resource(["/ready", "/readiness"]).get(probes::ready))
        .service(web::resource("/health").get(probes::health))
        .service(web::resource("/health/db").get(probes::health_db))
        .service(web::resource("/static/{file}").get(assets::serve))
        .service(web::resource("/").get(pages::index))
        .service(
            web::resource("/signup")
                .get(auth::signup_page)
                .post(auth::signup),
        )
        .service(
            web::resource("/login")
                .get(auth::login_page)
                .post(auth::login),
        )
        .service(web::resource("/logout").post(auth::logout))
        .service(web::resource("/verify-email").get(auth::verify_email))
        .service(
            web::resource("/forgot-password")
                .get(auth::forgot_password_page)
                .post(auth::forgot_password),
        )
        .service(
            web::resource("/reset-password")
                .get(auth::reset_password_page)
                .post(auth::reset_password),
        )
        .service(
            web::resource("/invitations/accept")
                .get(auth::invitation)
                .post(auth::accept_invitation),
        )
        .service(
            web::scope("/app")
                .service(web::resource("").get(app::dashboard))
                .service(web::resource("/switch").post(app::switch))
                .service(web::resource("/members").get(app::members))
                .service(web::resource("/members/invite").post(app::invite))
                .service(web::resource("/members/{id}/role").post(app::change_role))
                .service(web::resource("/members/{id}/remove").post(app::remove_member))
                .service(web::resource("/invitations/{id}/revoke").post(app::revoke_invitation))
                .service(
                    web::resource("/api-keys")
                        .get(app::api_keys)
                        .post(app::create_api_key),
                )
                .service(web::resource("/api-keys/{id}/revoke").post(app::revoke_api_key))
                .service(web::resource("/audit").get(app::audit))
                .service(web::resource("/account").get(app::account))
                .service(web::resource("/account/password").post(app::change_password))
                .service(web::resource("/account/email").post(app::change_email))
                .service(web::resource("/account/sessions/revoke").post(app::sign_out_everywhere)),
        )
        .service(
            web::scope("/admin")
                .service(web::resource("").get(admin::index))
                .service(
                    web::resource("/organizations/{id}/toggle").post(admin::toggle_organization),
                )
                .service(web::resource("/users/{id}/toggle").post(admin::toggle_user)),
        )
        .service(
            web::scope("/api/v1")
                .service(web::resource("/openapi.json").get(api::openapi))
                .service(web::resource("/csp-reports").post(csp_reports::receive))
                .service(web::resource("/members").get(api::list_members))
                .service(
                    web::resource("/invitations")
                        .get(api::list_invitations)
                        .post(api::create_invitation),
                )
                .service(web::resource("/invitations/{id}").delete(api::revoke_invitation))
                .service(
                    web::resource("/api-keys")
                        .get(api::list_api_keys)
                        .post(api::create_api_key),
                )
                .service(web::resource("/api-keys/{id}").delete(api::revoke_api_key)),
        );
}

/// A form page rendered again with its errors: 422, so scripts and tests can tell.
pub(crate) fn unprocessable(
    page: impl Responder<Body = actix_web::body::BoxBody>,
    req: &HttpRequest,
) -> HttpResponse {
    let mut res = page.respond_to(req);
    *res.status_mut() = actix_web::http::StatusCode::UNPROCESSABLE_ENTITY;
    res
}
