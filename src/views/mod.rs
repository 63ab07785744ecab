//! One askama struct per page; templates never reach the database.

pub mod account;
pub mod agents;
pub mod billing;
pub mod chat;
pub mod markdown;

use askama::Template;
use askama_web::WebTemplate;

#[derive(Template, WebTemplate)]
#[template(path = "index.html")]
pub struct IndexPage {
    /// The demo agent's chat page, when `frontdesk demo` loaded one.
    pub demo_chat: Option<String>,
    /// The plans with their configured limits; `None` when billing is off
    /// (self-hosted: nothing is limited).
    pub plans: Option<Vec<PlanCard>>,
}

/// One plan on the front page.
pub struct PlanCard {
    pub name: &'static str,
    pub price: &'static str,
    pub pitch: &'static str,
    pub featured: bool,
    pub limits: Vec<String>,
}

impl PlanCard {
    pub fn new(plan: crate::domain::Plan, limits: crate::domain::Limits) -> Self {
        use crate::domain::Plan;
        let count = |n: Option<u64>, one: &str, many: &str| match n {
            None => format!("Unlimited {many}"),
            Some(1) => format!("1 {one}"),
            Some(n) => format!("{} {many}", thousands(n)),
        };
        let storage = match limits.knowledge_bytes {
            None => "Unlimited knowledge storage".to_string(),
            Some(b) if b >= 1024 * 1024 * 1024 => {
                format!("{} GB of knowledge", thousands(b / (1024 * 1024 * 1024)))
            }
            Some(b) => format!("{} MB of knowledge", thousands(b / (1024 * 1024))),
        };
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
            limits: vec![
                count(limits.agents, "agent", "agents"),
                count(limits.seats, "seat", "seats"),
                match limits.messages_per_month {
                    None => "Unlimited messages".to_string(),
                    Some(n) => format!("{} messages / month", thousands(n)),
                },
                storage,
            ],
        }
    }
}

/// 10000 → "10,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
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
}

#[cfg(test)]
mod tests {
    use super::PlanCard;
    use crate::domain::{Limits, Plan};

    #[test]
    fn plan_cards_say_what_the_configured_limits_are() {
        let card = PlanCard::new(Plan::Business, Limits::default_for(Plan::Business));
        assert_eq!(
            card.limits,
            vec![
                "25 agents",
                "50 seats",
                "100,000 messages / month",
                "1 GB of knowledge"
            ]
        );
        let card = PlanCard::new(Plan::Free, Limits::UNLIMITED);
        assert_eq!(card.limits[0], "Unlimited agents");
        let one = Limits {
            agents: Some(1),
            ..Limits::default_for(Plan::Free)
        };
        assert_eq!(
            PlanCard::new(Plan::Free, one).limits[..2],
            ["1 agent", "2 seats"]
        );
    }
}
