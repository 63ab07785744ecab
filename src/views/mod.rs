//! One askama struct per page; templates never reach the database.

pub mod account;
pub mod agents;
pub mod billing;
pub mod chat;
pub mod markdown;
pub mod tickets;

use askama::Template;
use askama_web::WebTemplate;

#[derive(Template, WebTemplate)]
#[template(path = "index.html")]
pub struct IndexPage {
    /// The header offers the app instead of signing in.
    pub signed_in: bool,
    /// The demo agent's chat page, when `frontdesk demo` loaded one.
    pub demo_chat: Option<String>,
    /// The plans with their configured limits; `None` when billing is off
    /// (self-hosted: nothing is limited).
    pub plans: Option<Vec<PricingCard>>,
}

/// One plan on the front page.
pub struct PricingCard {
    pub name: &'static str,
    pub price: &'static str,
    pub pitch: &'static str,
    pub featured: bool,
    pub limits: Vec<String>,
}

impl PricingCard {
    pub fn new(plan: crate::domain::Plan, limits: crate::domain::Limits) -> Self {
        use crate::domain::Plan;
        let (price, pitch) = match plan {
            Plan::Free => ("$0", "For trying things out."),
            Plan::Pro => ("$49", "For growing support teams."),
            Plan::Business => ("$199", "For high-volume businesses."),
        };
        Self {
            name: plan.label(),
            price,
            pitch,
            featured: plan == Plan::Pro,
            limits: billing::plan_features(limits),
        }
    }
}

/// Links to the neighbouring pages of a list shown newest first
/// (`templates/app/pager.html`).
#[derive(Debug, Clone, Default)]
pub struct Pager {
    pub page: i64,
    pub newer: Option<String>,
    pub older: Option<String>,
}

impl Pager {
    /// `href(n)` is the address of page `n`; `has_more` says whether rows
    /// follow this page's.
    pub fn new(page: i64, has_more: bool, href: impl Fn(i64) -> String) -> Self {
        Self {
            page,
            newer: (page > 1).then(|| href(page - 1)),
            older: has_more.then(|| href(page + 1)),
        }
    }

    pub fn is_needed(&self) -> bool {
        self.newer.is_some() || self.older.is_some()
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub title: String,
    pub message: String,
    pub correlation_id: String,
    pub back_href: &'static str,
    pub back_label: &'static str,
}

impl ErrorPage {
    /// Where the page's one button leads: back into the area the request came
    /// from, so a signed-in user who hit a stale form is not dropped on the
    /// marketing page.
    pub fn back_for(path: &str) -> (&'static str, &'static str) {
        let under = |area: &str| {
            path.strip_prefix(area)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        // The platform admin answers 404 to everyone else, so its pages'
        // errors lead to the app too: a link back to /admin would loop there
        // (and name an area a member cannot see); admins reach it from the app.
        if under("/app") || under("/admin") {
            ("/app", "Back to your dashboard")
        } else {
            ("/", "Back to the home page")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ErrorPage, PricingCard};
    use crate::domain::{Limits, Plan};

    #[test]
    fn an_error_page_leads_back_into_the_area_it_was_met_in() {
        assert_eq!(ErrorPage::back_for("/app/agents/7").0, "/app");
        assert_eq!(ErrorPage::back_for("/app").0, "/app");
        assert_eq!(ErrorPage::back_for("/admin/users").0, "/app");
        assert_eq!(ErrorPage::back_for("/admin").0, "/app");
        assert_eq!(ErrorPage::back_for("/application").0, "/");
        assert_eq!(ErrorPage::back_for("/c/acme/help").0, "/");
    }

    #[test]
    fn pricing_cards_say_what_the_configured_limits_are() {
        let card = PricingCard::new(Plan::Business, Limits::default_for(Plan::Business));
        assert_eq!(
            card.limits,
            vec![
                "25 agents",
                "50 seats",
                "100,000 messages a month",
                "1.0 GB of knowledge"
            ]
        );
        let card = PricingCard::new(Plan::Free, Limits::UNLIMITED);
        assert_eq!(card.limits[0], "Unlimited agents");
        let one = Limits {
            agents: Some(1),
            ..Limits::default_for(Plan::Free)
        };
        assert_eq!(
            PricingCard::new(Plan::Free, one).limits[..2],
            ["1 agent", "2 seats"]
        );
    }
}
