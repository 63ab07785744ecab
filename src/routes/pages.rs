use actix_session::Session;
use actix_web::web;

use crate::domain::Plan;
use crate::error::AppResult;
use crate::services::demo;
use crate::startup::AppState;
use crate::views::{IndexPage, PricingCard};

/// `GET /`: the product's front page.
pub async fn index(state: web::Data<AppState>, session: Session) -> AppResult<IndexPage> {
    let demo = state.db(|conn| Ok(demo::find(conn)?)).await?;
    let billing = &state.config.stripe;
    Ok(IndexPage {
        signed_in: super::auth::is_signed_in(&session),
        demo_chat: demo.map(|d| d.chat_path()),
        plans: billing.enabled().then(|| {
            Plan::ALL
                .into_iter()
                .map(|plan| PricingCard::new(plan, billing.limits(plan)))
                .collect()
        }),
    })
}
