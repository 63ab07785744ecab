//! Billing plans and what each one allows.

use super::ParseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Plan {
    Free,
    Pro,
    Business,
}

impl Plan {
    pub const ALL: [Plan; 3] = [Plan::Free, Plan::Pro, Plan::Business];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Business => "business",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Free => "Free",
            Self::Pro => "Pro",
            Self::Business => "Business",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let raw = raw.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == raw)
            .ok_or_else(|| ParseError("must be free, pro or business".into()))
    }
}

/// What a plan allows; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub agents: Option<u64>,
    pub seats: Option<u64>,
    pub messages_per_month: Option<u64>,
    pub knowledge_bytes: Option<u64>,
}

impl Limits {
    pub const UNLIMITED: Limits = Limits {
        agents: None,
        seats: None,
        messages_per_month: None,
        knowledge_bytes: None,
    };

    pub fn default_for(plan: Plan) -> Self {
        const MB: u64 = 1024 * 1024;
        match plan {
            Plan::Free => Self {
                agents: Some(1),
                seats: Some(2),
                messages_per_month: Some(500),
                knowledge_bytes: Some(5 * MB),
            },
            Plan::Pro => Self {
                agents: Some(5),
                seats: Some(10),
                messages_per_month: Some(10_000),
                knowledge_bytes: Some(100 * MB),
            },
            Plan::Business => Self {
                agents: Some(25),
                seats: Some(50),
                messages_per_month: Some(100_000),
                knowledge_bytes: Some(1024 * MB),
            },
        }
    }

    /// `PLAN_<NAME>_LIMITS`: `agents=5,seats=10,messages=10000,storage_mb=100`;
    /// any key may be `unlimited`, and keys left out keep the defaults in `base`.
    pub fn parse_overrides(base: Limits, raw: &str) -> Result<Limits, ParseError> {
        let mut limits = base;
        for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| ParseError(format!("{pair:?} is not key=value")))?;
            let value = match value.trim() {
                "unlimited" => None,
                n => Some(n.parse::<u64>().map_err(|_| {
                    ParseError(format!(
                        "{key} must be a whole number or unlimited, got {n:?}"
                    ))
                })?),
            };
            match key.trim() {
                "agents" => limits.agents = value,
                "seats" => limits.seats = value,
                "messages" => limits.messages_per_month = value,
                "storage_mb" => limits.knowledge_bytes = value.map(|mb| mb * 1024 * 1024),
                other => {
                    return Err(ParseError(format!(
                        "unknown limit {other:?} (use agents, seats, messages, storage_mb)"
                    )));
                }
            }
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::{Limits, Plan};

    #[test]
    fn plans_parse_case_insensitively() {
        assert_eq!(Plan::parse(" Pro "), Ok(Plan::Pro));
        assert!(Plan::parse("enterprise").is_err());
    }

    #[test]
    fn overrides_replace_only_the_keys_given() {
        let base = Limits::default_for(Plan::Pro);
        let limits = Limits::parse_overrides(base, "agents=7, messages=unlimited").unwrap();
        assert_eq!(limits.agents, Some(7));
        assert_eq!(limits.messages_per_month, None);
        assert_eq!(limits.seats, base.seats);
        assert!(Limits::parse_overrides(base, "agents=many").is_err());
        assert!(Limits::parse_overrides(base, "robots=1").is_err());
        assert!(Limits::parse_overrides(base, "agents").is_err());
    }
}
