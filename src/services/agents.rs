//! Creating and configuring agents and the organization's provider keys, each
//! change validated once here and written to the audit log.

use serde::Deserialize;

use crate::config::StripeConfig;
use crate::crypto::{Keyring, hint};
use crate::db::models::former_slug::MAX_NEW_PER_WINDOW;
use crate::db::models::{Agent, AgentFormerSlug, AgentSettings, ProviderCredential};
use crate::db::{DbConnection, write_transaction};
use crate::domain::{AgentId, Slug, TenantScope};
use crate::services::accounts::{Actor, audit};
use crate::services::billing::limits::{self, LimitError, LimitReached, Resource};
use crate::services::chat::credential_context;
use crate::services::chat::providers::ProviderKind;

/// The agent settings as a person or a script sends them.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentForm {
    // The limits in `#[schema]` are the ones `settings` enforces; a test
    // sends each documented limit and one past it.
    #[schema(min_length = 1, max_length = 80)]
    pub name: String,
    /// The agent's address in its chat page and widget. Defaults to one made
    /// from the name; when changed later, the old address keeps leading to it.
    #[serde(default)]
    #[schema(min_length = 2, max_length = 63, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$")]
    pub slug: Option<String>,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub greeting: Option<String>,
    #[serde(default)]
    #[schema(max_length = 4000)]
    pub instructions: Option<String>,
    /// `builtin`, `openai` or `anthropic`; empty means the server's default.
    #[serde(default)]
    pub provider: Option<String>,
    /// One word of the provider's (`gpt-4o-mini`); empty means its default.
    #[serde(default)]
    #[schema(max_length = 100)]
    pub model: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// 0 to 1: below this share of the question found in the best passage, offer a person.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    pub handoff_threshold: Option<f64>,
    /// Origins (`https://shop.example`) allowed to embed the widget.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub allowed_origins: Option<Vec<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{field} {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Another agent of the organization answers at the slug, now or
    /// through a former address.
    #[error("slug {SLUG_TAKEN}")]
    SlugTaken,
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Limit(LimitReached),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

impl From<LimitError> for AgentError {
    fn from(err: LimitError) -> Self {
        match err {
            LimitError::Reached(limit) => Self::Limit(limit),
            LimitError::Db(e) => Self::Db(e),
        }
    }
}

impl AgentError {
    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }

    /// The form field the problem belongs to, for errors beside the field.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::SlugTaken => Some("slug"),
            _ => None,
        }
    }
}

const MAX_GREETING: usize = 500;
const MAX_INSTRUCTIONS: usize = 4000;

fn origin(raw: &str) -> Result<String, AgentError> {
    let parsed = url::Url::parse(raw.trim()).map_err(|_| {
        AgentError::invalid(
            "allowedOrigins",
            format!("{raw:?} is not a URL like https://shop.example"),
        )
    })?;
    // An origin is matched exactly: a `*` would be taken literally and match
    // no real site, so it is refused rather than saved to do nothing.
    let host = parsed.host_str().unwrap_or_default();
    if host.contains('*') {
        return Err(AgentError::invalid(
            "allowedOrigins",
            format!("{raw:?} has a wildcard: list each site's origin, like https://shop.example"),
        ));
    }
    let ok = matches!(parsed.scheme(), "http" | "https")
        && !host.is_empty()
        && host.len() <= 253
        && parsed.path() == "/"
        && parsed.query().is_none();
    if !ok {
        return Err(AgentError::invalid(
            "allowedOrigins",
            format!("{raw:?} must be an origin only, like https://shop.example"),
        ));
    }
    Ok(parsed.origin().ascii_serialization())
}

/// Validates the form into settings; `None` fields keep `current`'s values.
fn settings(form: &AgentForm, current: Option<&Agent>) -> Result<AgentSettings, AgentError> {
    let name = crate::domain::text::clean(form.name.trim(), false)
        .trim()
        .to_string();
    if name.is_empty() {
        return Err(AgentError::invalid("name", "cannot be empty"));
    }
    if name.chars().count() > 80 {
        return Err(AgentError::invalid("name", "can be at most 80 characters"));
    }
    let text = |value: &Option<String>, old: Option<&String>, field, max: usize| {
        let v = value.clone().or_else(|| old.cloned()).unwrap_or_default();
        let v = crate::domain::text::clean(v.trim(), true)
            .trim()
            .to_string();
        if v.chars().count() > max {
            Err(AgentError::invalid(
                field,
                format!("can be at most {max} characters"),
            ))
        } else {
            Ok(v)
        }
    };
    let greeting = text(
        &form.greeting,
        current.map(|a| &a.greeting),
        "greeting",
        MAX_GREETING,
    )?;
    let greeting = if greeting.is_empty() {
        format!("Hi! I'm {name}. How can I help?")
    } else {
        greeting
    };
    let instructions = text(
        &form.instructions,
        current.map(|a| &a.instructions),
        "instructions",
        MAX_INSTRUCTIONS,
    )?;
    let provider = match form.provider.as_deref().map(str::trim) {
        None => current.and_then(|a| a.provider.clone()),
        Some("") => None,
        Some(p) => Some(
            ProviderKind::parse(p)
                .ok_or_else(|| {
                    AgentError::invalid("provider", "must be builtin, openai or anthropic")
                })?
                .as_str()
                .to_string(),
        ),
    };
    let model = match form.model.as_deref().map(str::trim) {
        None => current.and_then(|a| a.model.clone()),
        Some("") => None,
        Some(m) if m.len() > 100 => {
            return Err(AgentError::invalid(
                "model",
                "can be at most 100 characters",
            ));
        }
        // A model's name is one word of its provider's (gpt-4o-mini,
        // meta-llama/Llama-3.1-8B-Instruct, llama3.1:8b): nothing invisible.
        Some(m) if m.chars().any(|c| c.is_control() || c.is_whitespace()) => {
            return Err(AgentError::invalid(
                "model",
                "cannot contain spaces or control characters",
            ));
        }
        Some(m) => Some(m.to_string()),
    };
    let temperature = form
        .temperature
        .or(current.map(|a| a.temperature))
        .unwrap_or(0.2);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(AgentError::invalid(
            "temperature",
            "must be between 0 and 2",
        ));
    }
    let handoff_threshold = form
        .handoff_threshold
        .or(current.map(|a| a.handoff_threshold))
        .unwrap_or(0.5);
    if !(0.0..=1.0).contains(&handoff_threshold) {
        return Err(AgentError::invalid(
            "handoffThreshold",
            "must be between 0 and 1",
        ));
    }
    let allowed_origins = match &form.allowed_origins {
        None => current
            .map(|a| a.allowed_origins.clone())
            .unwrap_or_default(),
        Some(list) => {
            if list.len() > 20 {
                return Err(AgentError::invalid(
                    "allowedOrigins",
                    "can list at most 20 origins",
                ));
            }
            list.iter()
                .filter(|o| !o.trim().is_empty())
                .map(|o| origin(o))
                .collect::<Result<Vec<_>, _>>()?
                .join("\n")
        }
    };
    Ok(AgentSettings {
        name,
        greeting,
        instructions,
        provider,
        model,
        temperature,
        handoff_threshold,
        allowed_origins,
        enabled: form.enabled.or(current.map(|a| a.enabled)).unwrap_or(true),
    })
}

/// The slug the form asks for, if it names one.
fn typed_slug(form: &AgentForm) -> Result<Option<Slug>, AgentError> {
    form.slug
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|typed| Slug::parse(typed).map_err(|e| AgentError::invalid("slug", e.0)))
        .transpose()
}

/// Holds the organization's agent addresses until the transaction ends: of
/// two agents given the same slug at once, the second sees the first's.
/// Taken before an agent is read, so a concurrent move of it is seen too.
fn lock_slugs(conn: &mut DbConnection, scope: &TenantScope) -> Result<(), AgentError> {
    crate::db::lock_until_commit(conn, &format!("agents:slug:{}", scope.organization_id()))?;
    Ok(())
}

pub const SLUG_TAKEN: &str = "is taken by another agent (its address now or before)";

/// Refuses `slug` when another agent of the organization than `agent`
/// answers at it, now or through a former address.
fn ensure_free(
    conn: &mut DbConnection,
    scope: &TenantScope,
    agent: Option<AgentId>,
    slug: &Slug,
) -> Result<(), AgentError> {
    if Agent::slug_taken(conn, scope, agent, slug)? {
        return Err(AgentError::SlugTaken);
    }
    Ok(())
}

/// A write that lost a race for a slug anyway answers "taken", not 500.
fn or_taken<T>(written: diesel::QueryResult<T>) -> Result<T, AgentError> {
    match written {
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Err(AgentError::SlugTaken),
        other => Ok(other?),
    }
}

/// Moves the agent from `current` to `slug`, keeping `current` leading to it.
fn move_agent(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    current: &Agent,
    slug: &Slug,
) -> Result<(), AgentError> {
    ensure_free(conn, scope, Some(current.id), slug)?;
    let taking_back =
        AgentFormerSlug::owner(conn, scope.organization_id(), slug)? == Some(current.id);
    if !taking_back && AgentFormerSlug::recent(conn, scope, current.id)? >= MAX_NEW_PER_WINDOW {
        return Err(AgentError::invalid(
            "slug",
            format!(
                "has already changed {MAX_NEW_PER_WINDOW} times in the last 30 days, and each former one stays reserved: change it again later"
            ),
        ));
    }
    or_taken(AgentFormerSlug::retire(
        conn,
        scope,
        current.id,
        &current.slug,
        slug,
    ))?;
    or_taken(Agent::set_slug(conn, scope, current.id, slug))?;
    let detail = format!("{} → {}", current.slug, slug.as_str());
    audit(
        conn,
        Some(scope.organization_id()),
        actor,
        "agent.address_changed",
        Some(slug.as_str()),
        Some(&detail),
    )?;
    Ok(())
}

pub fn create(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    form: &AgentForm,
    billing: &StripeConfig,
) -> Result<Agent, AgentError> {
    let settings = settings(form, None)?;
    let typed = typed_slug(form)?;
    write_transaction(conn, |conn| {
        limits::ensure_room(conn, billing, scope, Resource::Agent)?;
        lock_slugs(conn, scope)?;
        // A slug typed must be free; one made from the name is made free.
        let slug = match typed {
            Some(slug) => {
                ensure_free(conn, scope, None, &slug)?;
                slug
            }
            None => Slug::from_name(&settings.name, "agent")
                .first_free(|slug| Agent::slug_taken(conn, scope, None, slug))?,
        };
        let agent = or_taken(Agent::create(conn, scope, &slug, &settings))?;
        audit(
            conn,
            Some(scope.organization_id()),
            actor,
            "agent.created",
            Some(&agent.slug),
            None,
        )?;
        Ok(agent)
    })
}

pub fn update(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    id: AgentId,
    form: &AgentForm,
) -> Result<Agent, AgentError> {
    let slug = typed_slug(form)?;
    write_transaction(conn, |conn| {
        if slug.is_some() {
            lock_slugs(conn, scope)?;
        }
        // A field the form leaves out keeps what `current` holds: two edits
        // at once would otherwise each write back the other's as it was.
        Agent::lock(conn, id)?;
        let current = Agent::find(conn, scope, id)?.ok_or(AgentError::NotFound)?;
        let settings = settings(form, Some(&current))?;
        Agent::update(conn, scope, id, &settings)?;
        if let Some(slug) = slug.filter(|s| s.as_str() != current.slug) {
            move_agent(conn, scope, actor, &current, &slug)?;
        }
        let agent = Agent::find(conn, scope, id)?.ok_or(AgentError::NotFound)?;
        audit(
            conn,
            Some(scope.organization_id()),
            actor,
            "agent.updated",
            Some(&agent.slug),
            None,
        )?;
        Ok(agent)
    })
}

pub fn delete(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    id: AgentId,
) -> Result<(), AgentError> {
    write_transaction(conn, |conn| {
        Agent::lock(conn, id)?;
        let agent = Agent::find(conn, scope, id)?.ok_or(AgentError::NotFound)?;
        Agent::delete(conn, scope, id)?;
        audit(
            conn,
            Some(scope.organization_id()),
            actor,
            "agent.deleted",
            Some(&agent.slug),
            None,
        )?;
        Ok(())
    })
}

/// Forgets the organization's key for `provider`: its agents on that provider
/// answer with the server's own key again (or the builtin engine without one).
/// `false` when there was none.
pub fn remove_provider_key(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    provider: &str,
) -> Result<bool, AgentError> {
    let kind = ProviderKind::parse(provider)
        .filter(|k| *k != ProviderKind::Builtin)
        .ok_or(AgentError::NotFound)?;
    write_transaction(conn, |conn| {
        let removed = ProviderCredential::delete(conn, scope, kind.as_str())?;
        if removed {
            audit(
                conn,
                Some(scope.organization_id()),
                actor,
                "provider_key.removed",
                Some(kind.as_str()),
                None,
            )?;
        }
        Ok(removed)
    })
}

/// Seals and stores the organization's key for a remote provider.
#[allow(clippy::too_many_arguments)]
pub fn save_provider_key(
    conn: &mut DbConnection,
    scope: &TenantScope,
    actor: &Actor<'_>,
    keyring: &Keyring,
    provider: &str,
    api_key: &str,
    base_url: Option<&str>,
    allow_private: bool,
) -> Result<ProviderCredential, AgentError> {
    let kind = ProviderKind::parse(provider)
        .filter(|k| *k != ProviderKind::Builtin)
        .ok_or_else(|| AgentError::invalid("provider", "must be openai or anthropic"))?;
    let api_key = api_key.trim();
    // Sent in a request header, which carries visible ASCII only: anything
    // else could never authenticate, so it is refused here, not at each reply.
    if api_key.len() < 8 || api_key.len() > 400 || !api_key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AgentError::invalid(
            "apiKey",
            "does not look like an API key (8 to 400 letters, digits and symbols, no spaces)",
        ));
    }
    let base_url = match base_url.map(str::trim).filter(|b| !b.is_empty()) {
        None => None,
        Some(raw) => {
            let url = url::Url::parse(raw).map_err(|_| {
                AgentError::invalid("baseUrl", "must be a URL like https://api.mistral.ai")
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(AgentError::invalid(
                    "baseUrl",
                    "must start with http:// or https://",
                ));
            }
            if !allow_private {
                crate::services::chat::providers::egress::check_host(&url)
                    .map_err(|why| AgentError::invalid("baseUrl", why))?;
            }
            Some(url.as_str().trim_end_matches('/').to_string())
        }
    };
    let sealed = keyring
        .seal(api_key, &credential_context(scope.organization_id(), kind))
        .map_err(|e| AgentError::invalid("apiKey", e.to_string()))?;
    write_transaction(conn, |conn| {
        ProviderCredential::save(
            conn,
            scope,
            kind.as_str(),
            base_url.as_deref(),
            &sealed,
            &hint(api_key),
        )?;
        audit(
            conn,
            Some(scope.organization_id()),
            actor,
            "provider_key.saved",
            Some(kind.as_str()),
            None,
        )?;
        ProviderCredential::find(conn, scope.organization_id(), kind.as_str())?
            .ok_or(AgentError::NotFound)
    })
}
