//! Typed settings, read once at start-up from the environment.
//!
//! Every problem is collected before anything is reported, so an operator fixes a
//! broken deploy in one round instead of one variable per restart.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use url::Url;

use crate::db::DatabaseUrl;
use crate::domain::{Limits, Plan};

const MIN_SESSION_SECRET_LEN: usize = 32;
const SECRETS_FILE: &str = "secrets.env";

/// A value that must never reach a log line or an error page.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
        }
    }

    pub fn is_production(self) -> bool {
        self == Self::Production
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmProvider {
    Builtin,
    OpenAi,
    Anthropic,
}

/// The 32-byte key that encrypts provider credentials at rest.
#[derive(Clone)]
pub struct EncryptionKey(Secret<[u8; 32]>);

impl EncryptionKey {
    /// Accepts 64 hex characters or standard/url-safe base64 of exactly 32 bytes.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let bytes = if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(raw).map_err(|e| e.to_string())?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(raw))
                .map_err(|_| {
                    "must be 32 bytes written as 64 hex characters or base64".to_string()
                })?
        };
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "must decode to exactly 32 bytes (it decodes to {})",
                b.len()
            )
        })?;
        if key.iter().all(|b| *b == key[0]) {
            return Err("is a repeated byte, not a random key".into());
        }
        Ok(Self(Secret::new(key)))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        self.0.expose()
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([redacted])")
    }
}

#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `None` turns billing off: every organization is unlimited.
    pub secret_key: Option<Secret<String>>,
    /// `STRIPE_WEBHOOK_SECRET`, comma-separated: the current signing secret first,
    /// then earlier ones still accepted while Stripe rolls a secret over.
    pub webhook_secrets: Vec<Secret<String>>,
    pub api_base: Url,
    /// `STRIPE_PRICE_<PLAN>`.
    pub prices: BTreeMap<Plan, String>,
    /// What each plan allows (defaults, or `PLAN_<PLAN>_LIMITS`).
    pub limits: BTreeMap<Plan, Limits>,
    /// How long a `past_due` subscription keeps its plan (`BILLING_GRACE_DAYS`).
    pub grace: chrono::TimeDelta,
}

impl StripeConfig {
    pub fn enabled(&self) -> bool {
        self.secret_key.is_some()
    }

    pub fn limits(&self, plan: Plan) -> Limits {
        self.limits
            .get(&plan)
            .copied()
            .unwrap_or_else(|| Limits::default_for(plan))
    }

    /// The plan a Stripe price id stands for.
    pub fn plan_for_price(&self, price: &str) -> Option<Plan> {
        self.prices
            .iter()
            .find(|(_, id)| id.as_str() == price)
            .map(|(plan, _)| *plan)
    }
}

#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub provider: LlmProvider,
    pub base_url: Option<Url>,
    pub api_key: Option<Secret<String>>,
    pub model: Option<String>,
    /// Models an agent may pick while the server's own key pays
    /// (`LLM_ALLOWED_MODELS`); with the organization's key any model goes.
    pub allowed_models: AllowedModels,
    /// `ALLOW_PRIVATE_PROVIDER_URLS`: organizations' own provider addresses may
    /// be private or local (off by default: see `providers::egress`).
    pub allow_private_urls: bool,
    /// Until a provider's answer starts (`LLM_FIRST_BYTE_TIMEOUT_SECS`).
    pub first_byte_timeout: std::time::Duration,
    /// Longest silence inside a streamed answer (`LLM_IDLE_TIMEOUT_SECS`).
    pub idle_timeout: std::time::Duration,
    /// The whole answer, retries included (`LLM_TIMEOUT_SECS`).
    pub total_timeout: std::time::Duration,
}

/// `LLM_ALLOWED_MODELS`: unset, none but `LLM_MODEL` (an organization on
/// the server's key cannot pick the priciest model on its bill, nor the
/// biggest local one that starves the others); `*`, any; else a comma list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedModels {
    Any,
    Only(Vec<String>),
}

impl AllowedModels {
    pub fn parse(raw: Option<&str>) -> Self {
        match raw.map(str::trim) {
            Some("*") => Self::Any,
            raw => Self::Only(
                raw.unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
        }
    }

    pub fn allows(&self, model: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(models) => models.iter().any(|m| m == model),
        }
    }
}

/// How background workers poll, lease and retry.
#[derive(Debug, Clone, Copy)]
pub struct JobSettings {
    /// Jobs run at once per process (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// How often an idle worker looks for due jobs (`JOB_POLL_MS`).
    pub poll: std::time::Duration,
    /// A claimed job belongs to its worker this long unless renewed (`JOB_LEASE_SECS`).
    pub lease: std::time::Duration,
    /// First retry delay; doubles per attempt, with jitter (`JOB_RETRY_BASE_MS`).
    pub retry_base: std::time::Duration,
    /// Finished jobs are deleted after this many days (`JOB_RETENTION_DAYS`).
    pub retention_days: u32,
    /// How long a running job may go on after shutdown was asked for before
    /// it is handed back to the queue (`JOB_SHUTDOWN_GRACE_SECS`).
    pub shutdown_grace: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub host: String,
    pub port: u16,
    pub base_url: Url,
    pub data_dir: PathBuf,
    pub database_url: DatabaseUrl,
    pub database_pool_size: Option<u32>,
    pub session_secret: Secret<String>,
    pub encryption_key: EncryptionKey,
    /// Keys that sealed secrets before a rotation (`ENCRYPTION_KEY_PREVIOUS`,
    /// comma-separated): opened, never used to seal.
    pub previous_encryption_keys: Vec<EncryptionKey>,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Origins whose pages may call `/api/v1` (with an API key) from a browser;
    /// `*` for any. The public chat has its own per-agent list.
    pub cors_origins: Vec<String>,
    pub smtp_url: Option<Secret<Url>>,
    /// Extra certificate authorities (PEM) trusted for SMTP TLS, for a relay
    /// whose certificate a private CA signed (`SMTP_CA_FILE`).
    pub smtp_ca_pem: Option<Vec<u8>>,
    pub mail_from: String,
    /// Shared: every chat message and creation checks the plan's limits.
    pub stripe: std::sync::Arc<StripeConfig>,
    pub llm: LlmConfig,
    pub slow_request_ms: u64,
    pub slow_query_ms: u64,
    pub rate_limit_per_minute: u32,
    /// Public chat messages one address may send one organization's agents
    /// in 24 hours (`CHAT_MESSAGES_PER_ADDRESS_PER_DAY`); 0 turns it off.
    pub chat_messages_per_address_per_day: u32,
    pub max_upload_bytes: u64,
    /// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`); empty:
    /// the peer address is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// When set, `/metrics` and `/metrics/json` require `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret<String>>,
    /// A conversation quiet this long gets its summary written.
    pub conversation_idle: std::time::Duration,
    pub jobs: JobSettings,
}

/// Every configuration problem found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "[config] FATAL {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads variables through a lookup function so tests can pass a map instead of
/// mutating the process environment.
struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<String>,
}

/// The unsigned integers settings are read as, with the largest each takes.
trait WholeNumber: std::str::FromStr {
    const MAX: u64;
}

macro_rules! whole_number {
    ($($t:ty),*) => {$(
        impl WholeNumber for $t {
            const MAX: u64 = <$t>::MAX as u64;
        }
    )*};
}
whole_number!(u16, u32, u64, usize);

impl Reader<'_> {
    fn get(&self, key: &str) -> Option<String> {
        (self.lookup)(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn parsed<T: WholeNumber>(&mut self, key: &str, default: T) -> T {
        match self.get(key) {
            None => default,
            Some(raw) => raw.parse().unwrap_or_else(|_| {
                self.problems.push(format!(
                    "{key} must be a whole number from 0 to {}, got {raw:?}",
                    T::MAX
                ));
                default
            }),
        }
    }

    /// `true`/`false`, also as `1`/`0`, `yes`/`no`, `on`/`off`.
    fn flag(&mut self, key: &str, default: bool) -> bool {
        let Some(raw) = self.get(key) else {
            return default;
        };
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                self.problems
                    .push(format!("{key} must be true or false, got {raw:?}"));
                default
            }
        }
    }

    fn url(&mut self, key: &str) -> Option<Url> {
        let raw = self.get(key)?;
        match Url::parse(&raw) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            _ => {
                self.problems
                    .push(format!("{key} must be an http(s) URL, got {raw:?}"));
                None
            }
        }
    }
}

impl Config {
    /// Reads the real process environment (and `.env` in development).
    pub fn from_env() -> Result<Self, ConfigErrors> {
        let is_production = std::env::var("APP_ENV").is_ok_and(|v| v.trim() == "production");
        if !is_production {
            // A missing .env is the normal case; a broken one is reported by the values it leaves out.
            let _ = dotenvy::dotenv();
        }
        Self::from_lookup(&|key| std::env::var(key).ok())
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigErrors> {
        let mut r = Reader {
            lookup,
            problems: Vec::new(),
        };

        let environment = match r.get("APP_ENV").as_deref() {
            None | Some("development") => Environment::Development,
            Some("production") => Environment::Production,
            Some(other) => {
                r.problems.push(format!(
                    "APP_ENV must be development or production, got {other:?}"
                ));
                Environment::Development
            }
        };
        let prod = environment.is_production();

        let default_host = if prod { "0.0.0.0" } else { "127.0.0.1" };
        let host = r.get("HOST").unwrap_or_else(|| default_host.to_string());
        // `[::1]` as written in URLs is the same address as `::1`.
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(inner) if inner.parse::<std::net::Ipv6Addr>().is_ok() => inner.to_string(),
            _ => host,
        };
        let port = r.parsed("PORT", 5000u16);
        let data_dir = PathBuf::from(r.get("DATA_DIR").unwrap_or_else(|| "./data".into()));

        let base_url = match r.url("BASE_URL") {
            Some(url) => url,
            None => {
                if prod && r.get("BASE_URL").is_none() {
                    r.problems.push(
                        "BASE_URL is required in production (the public https:// address, used in emails and redirects)"
                            .into(),
                    );
                }
                // Links name a reachable address: the wildcard's loopback, and an
                // IPv6 literal in brackets.
                let shown_host = match host.parse::<std::net::IpAddr>() {
                    Ok(ip) if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
                    Ok(ip) if ip.is_unspecified() => "[::1]".to_string(),
                    Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
                    _ => host.clone(),
                };
                Url::parse(&format!("http://{shown_host}:{port}")).unwrap_or_else(|_| {
                    r.problems
                        .push(format!("HOST {host:?} is not a valid host name"));
                    fallback_url("http://127.0.0.1:5000")
                })
            }
        };
        if prod && base_url.scheme() != "https" && r.get("BASE_URL").is_some() {
            r.problems.push(format!(
                "BASE_URL must use https in production, got {base_url}"
            ));
        }
        // Pages, redirects and emailed links all start at the site's root: a
        // path here would send some links under it and others past it.
        if base_url.path() != "/" || base_url.query().is_some() {
            r.problems.push(format!(
                "BASE_URL must be the address of the site's root, such as https://support.example.com, without a path; got {base_url} (serve Frontdesk from its own host name)"
            ));
        }

        let database_url = match DatabaseUrl::parse(r.get("DATABASE_URL").as_deref(), &data_dir) {
            Ok(url) => url,
            Err(problem) => {
                r.problems.push(problem);
                DatabaseUrl::Sqlite(data_dir.join("frontdesk.db"))
            }
        };
        let database_pool_size =
            r.get("DATABASE_POOL_SIZE")
                .and_then(|raw| match raw.parse::<u32>() {
                    Ok(n) if (1..=200).contains(&n) => Some(n),
                    _ => {
                        r.problems.push(format!(
                            "DATABASE_POOL_SIZE must be a number from 1 to 200, got {raw:?}"
                        ));
                        None
                    }
                });

        let session_secret = r.get("SESSION_SECRET");
        if let Some(secret) = &session_secret {
            if let Err(why) = check_session_secret(secret) {
                r.problems.push(format!("SESSION_SECRET {why}"));
            }
        } else if prod {
            r.problems.push(format!(
                "SESSION_SECRET is required in production (at least {MIN_SESSION_SECRET_LEN} random characters, e.g. `openssl rand -hex 32`)"
            ));
        }
        let encryption_key = match r
            .get("ENCRYPTION_KEY")
            .map(|raw| EncryptionKey::parse(&raw))
        {
            Some(Ok(key)) => Some(key),
            Some(Err(why)) => {
                r.problems.push(format!("ENCRYPTION_KEY {why}"));
                None
            }
            None => {
                if prod {
                    r.problems.push(
                        "ENCRYPTION_KEY is required in production (32 bytes as hex or base64, e.g. `openssl rand -hex 32`)"
                            .into(),
                    );
                }
                None
            }
        };

        let log_level = r.get("LOG_LEVEL").unwrap_or_else(|| "info".into());
        if !valid_log_filter(&log_level) {
            r.problems.push(format!(
                "LOG_LEVEL must be a level (error, warn, info, debug, trace) or a filter directive, got {log_level:?}"
            ));
        }
        let log_format = match r.get("LOG_FORMAT").as_deref() {
            None => {
                if prod {
                    LogFormat::Json
                } else {
                    LogFormat::Pretty
                }
            }
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                r.problems
                    .push(format!("LOG_FORMAT must be json or pretty, got {other:?}"));
                LogFormat::Pretty
            }
        };

        let cors_origins = r
            .get("CORS_ORIGINS")
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        // Kept as browsers send them (`https://example.com`, no path or slash).
        let cors_origins: Vec<String> = cors_origins
            .into_iter()
            .filter_map(|origin| {
                if origin == "*" {
                    return Some(origin);
                }
                match Url::parse(&origin).map(|u| u.origin()) {
                    Ok(parsed @ url::Origin::Tuple(..)) => Some(parsed.ascii_serialization()),
                    _ => {
                        r.problems.push(format!(
                            "CORS_ORIGINS entry {origin:?} is not an origin like https://example.com"
                        ));
                        None
                    }
                }
            })
            .collect();

        let smtp_url = r.get("SMTP_URL").and_then(|raw| match Url::parse(&raw) {
            Ok(url) if matches!(url.scheme(), "smtp" | "smtps") && url.host().is_some() => {
                let tls = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
                match tls.as_deref() {
                    None | Some("required" | "opportunistic" | "none") => Some(Secret::new(url)),
                    Some(other) => {
                        r.problems.push(format!(
                            "SMTP_URL tls= must be required, opportunistic or none, got {other:?}"
                        ));
                        None
                    }
                }
            }
            _ => {
                r.problems.push(
                    "SMTP_URL must look like smtp://user:pass@host:587 (STARTTLS), smtps://user:pass@host:465 (TLS) or smtp://host:25?tls=none".into(),
                );
                None
            }
        });
        let smtp_ca_pem = r
            .get("SMTP_CA_FILE")
            .and_then(|path| match std::fs::read(&path) {
                Ok(pem) if pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => {
                    Some(pem)
                }
                Ok(_) => {
                    r.problems.push(format!(
                        "SMTP_CA_FILE {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                    ));
                    None
                }
                Err(e) => {
                    r.problems
                        .push(format!("SMTP_CA_FILE {path} cannot be read: {e}"));
                    None
                }
            });
        // An IPv6 literal is no mail domain the mailer takes.
        let mail_domain = match base_url.host() {
            Some(url::Host::Ipv6(_)) | None => "localhost".to_string(),
            Some(host) => host.to_string(),
        };
        let default_from = format!("Frontdesk <no-reply@{mail_domain}>");
        let mail_from = r.get("MAIL_FROM").unwrap_or(default_from);
        // Parsed the way the mailer will, so `check` catches what start-up would.
        if let Err(e) = mail_from.parse::<lettre::message::Mailbox>() {
            r.problems.push(format!(
                "MAIL_FROM must be an address like \"Frontdesk <no-reply@example.com>\", got {mail_from:?} ({e})"
            ));
        }

        let stripe_secret = r.get("STRIPE_SECRET_KEY");
        if let Some(key) = &stripe_secret
            && !(key.starts_with("sk_") || key.starts_with("rk_"))
        {
            r.problems.push(
                "STRIPE_SECRET_KEY must be a Stripe secret or restricted key (sk_… or rk_…)".into(),
            );
        }
        let stripe_webhook: Vec<String> = r
            .get("STRIPE_WEBHOOK_SECRET")
            .map(|raw| {
                raw.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if stripe_webhook.iter().any(|s| !s.starts_with("whsec_")) {
            r.problems.push(
                "STRIPE_WEBHOOK_SECRET must be webhook signing secrets (whsec_…), comma-separated during a rotation"
                    .into(),
            );
        }
        if prod && stripe_secret.is_some() && stripe_webhook.is_empty() {
            r.problems.push(
                "STRIPE_WEBHOOK_SECRET is required when STRIPE_SECRET_KEY is set in production"
                    .into(),
            );
        }
        let stripe_api_base = r
            .url("STRIPE_API_BASE")
            .unwrap_or_else(|| fallback_url("https://api.stripe.com"));
        let mut prices = BTreeMap::new();
        let mut limits = BTreeMap::new();
        for plan in Plan::ALL {
            let name = plan.as_str().to_uppercase();
            if let Some(price) = r.get(&format!("STRIPE_PRICE_{name}")) {
                if !price.starts_with("price_") {
                    r.problems.push(format!(
                        "STRIPE_PRICE_{name} must be a Stripe price id (price_…), got {price:?}"
                    ));
                }
                prices.insert(plan, price);
            }
            let base = Limits::default_for(plan);
            let key = format!("PLAN_{name}_LIMITS");
            let plan_limits = match r.get(&key) {
                None => base,
                Some(raw) => Limits::parse_overrides(base, &raw).unwrap_or_else(|e| {
                    r.problems.push(format!("{key}: {e}"));
                    base
                }),
            };
            limits.insert(plan, plan_limits);
        }
        if prod && stripe_secret.is_some() {
            for plan in [Plan::Pro, Plan::Business] {
                if !prices.contains_key(&plan) {
                    r.problems.push(format!(
                        "STRIPE_PRICE_{} is required when STRIPE_SECRET_KEY is set in production",
                        plan.as_str().to_uppercase()
                    ));
                }
            }
        }
        let grace_days = r.parsed("BILLING_GRACE_DAYS", 7u32).min(90);

        let provider = match r.get("LLM_PROVIDER").as_deref() {
            None | Some("builtin") => LlmProvider::Builtin,
            Some("openai") => LlmProvider::OpenAi,
            Some("anthropic") => LlmProvider::Anthropic,
            Some(other) => {
                r.problems.push(format!(
                    "LLM_PROVIDER must be builtin, openai or anthropic, got {other:?}"
                ));
                LlmProvider::Builtin
            }
        };
        let llm = LlmConfig {
            provider,
            base_url: r.url("LLM_BASE_URL"),
            api_key: r.get("LLM_API_KEY").map(Secret::new),
            model: r.get("LLM_MODEL"),
            allowed_models: AllowedModels::parse(r.get("LLM_ALLOWED_MODELS").as_deref()),
            allow_private_urls: r.flag("ALLOW_PRIVATE_PROVIDER_URLS", false),
            first_byte_timeout: std::time::Duration::from_secs(
                r.parsed("LLM_FIRST_BYTE_TIMEOUT_SECS", 20u64).clamp(1, 600),
            ),
            idle_timeout: std::time::Duration::from_secs(
                r.parsed("LLM_IDLE_TIMEOUT_SECS", 30u64).clamp(1, 600),
            ),
            total_timeout: std::time::Duration::from_secs(
                r.parsed("LLM_TIMEOUT_SECS", 120u64).clamp(1, 3600),
            ),
        };

        let slow_request_ms = r.parsed("SLOW_REQUEST_MS", 1000u64);
        let slow_query_ms = r.parsed("SLOW_QUERY_MS", 500u64);
        let rate_limit_per_minute = r.parsed("RATE_LIMIT_PER_MINUTE", 120u32);
        let chat_messages_per_address_per_day =
            r.parsed("CHAT_MESSAGES_PER_ADDRESS_PER_DAY", 200u32);
        let max_upload_bytes = r.parsed("MAX_UPLOAD_BYTES", 10 * 1024 * 1024u64);
        let mut trusted_proxies = Vec::new();
        for raw in r
            .get("TRUSTED_PROXIES")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match parse_network(raw) {
                Some(net) => trusted_proxies.push(net),
                None => r.problems.push(format!(
                    "TRUSTED_PROXIES holds {raw:?}, which is neither an IP address nor a network such as 10.0.0.0/8"
                )),
            }
        }
        let metrics_token = r.get("METRICS_TOKEN");
        if let Some(token) = &metrics_token
            && token.len() < 16
        {
            r.problems
                .push("METRICS_TOKEN must be at least 16 characters".to_string());
        }
        // At most 30 days: a summary scheduled further out is never wanted,
        // and a date that far overflows.
        let conversation_idle = std::time::Duration::from_secs(
            r.parsed("CONVERSATION_IDLE_SECS", 600u64).min(30 * 86_400),
        );
        let mut previous_encryption_keys = Vec::new();
        for raw in r
            .get("ENCRYPTION_KEY_PREVIOUS")
            .unwrap_or_default()
            .split(',')
            .filter(|k| !k.trim().is_empty())
        {
            match EncryptionKey::parse(raw) {
                Ok(key) => previous_encryption_keys.push(key),
                Err(e) => r.problems.push(format!("ENCRYPTION_KEY_PREVIOUS {e}")),
            }
        }
        let jobs = JobSettings {
            concurrency: r.parsed("WORKER_CONCURRENCY", 2usize).clamp(1, 64),
            poll: std::time::Duration::from_millis(r.parsed("JOB_POLL_MS", 1000u64).max(10)),
            // A day at most: a lease is added to dates, and no run needs more.
            lease: std::time::Duration::from_secs(
                r.parsed("JOB_LEASE_SECS", 300u64).clamp(1, 86_400),
            ),
            // Never 0: a failed job would be claimed again at once, using up
            // its attempts within seconds of an outage.
            retry_base: std::time::Duration::from_millis(
                r.parsed("JOB_RETRY_BASE_MS", 5000u64).max(10),
            ),
            retention_days: r.parsed("JOB_RETENTION_DAYS", 14u32).max(1),
            // Within the 25 s the web server gives in-flight requests on SIGTERM
            // unless raised on purpose.
            shutdown_grace: std::time::Duration::from_secs(
                r.parsed("JOB_SHUTDOWN_GRACE_SECS", 20u64).min(3600),
            ),
        };

        if !r.problems.is_empty() {
            return Err(ConfigErrors(r.problems));
        }

        // Development only: missing secrets come from (or are written to) the data directory.
        let (session_secret, encryption_key) = match (session_secret, encryption_key) {
            (Some(s), Some(k)) => (s, k),
            (s, k) => {
                let stored =
                    DevSecrets::load_or_create(&data_dir).map_err(|e| ConfigErrors(vec![e]))?;
                (
                    s.unwrap_or(stored.session_secret),
                    k.unwrap_or(stored.encryption_key),
                )
            }
        };

        Ok(Config {
            environment,
            host,
            port,
            base_url,
            data_dir,
            database_url,
            database_pool_size,
            session_secret: Secret::new(session_secret),
            encryption_key,
            previous_encryption_keys,
            log_level,
            log_format,
            cors_origins,
            smtp_url,
            smtp_ca_pem,
            mail_from,
            stripe: std::sync::Arc::new(StripeConfig {
                secret_key: stripe_secret.map(Secret::new),
                webhook_secrets: stripe_webhook.into_iter().map(Secret::new).collect(),
                api_base: stripe_api_base,
                prices,
                limits,
                grace: chrono::TimeDelta::days(i64::from(grace_days)),
            }),
            llm,
            slow_request_ms,
            slow_query_ms,
            rate_limit_per_minute,
            chat_messages_per_address_per_day,
            max_upload_bytes,
            trusted_proxies,
            metrics_token: metrics_token.map(Secret::new),
            conversation_idle,
            jobs,
        })
    }

    /// Seals and opens stored provider keys.
    pub fn keyring(&self) -> crate::crypto::Keyring {
        crate::crypto::Keyring::new(&self.encryption_key, &self.previous_encryption_keys)
    }

    pub fn bind_address(&self) -> String {
        if self.host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// An address (`10.1.2.3`, one host) or a network (`10.0.0.0/8`).
fn parse_network(raw: &str) -> Option<ipnet::IpNet> {
    raw.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| raw.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// Parses a URL literal written in this file.
#[allow(clippy::expect_used)] // only ever called with constants that parse
fn fallback_url(literal: &str) -> Url {
    Url::parse(literal).expect("URL literal in config.rs parses")
}

/// A level, or tracing filter directives. A bare word that is not a level
/// would parse as a target name (`warning` = only the target `warning`) and
/// silently turn every log line off, errors included.
fn valid_log_filter(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let directives_ok = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .all(|directive| {
            directive.contains('=') || LEVELS.contains(&directive.to_ascii_lowercase().as_str())
        });
    directives_ok && tracing_subscriber::EnvFilter::try_new(filter).is_ok()
}

fn check_session_secret(secret: &str) -> Result<(), String> {
    if secret.chars().count() < MIN_SESSION_SECRET_LEN {
        return Err(format!(
            "must be at least {MIN_SESSION_SECRET_LEN} characters (it has {})",
            secret.chars().count()
        ));
    }
    let mut distinct: Vec<char> = secret.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 8 {
        return Err(
            "is too predictable (fewer than 8 distinct characters); use a random value".into(),
        );
    }
    Ok(())
}

/// Secrets generated on first start in development, kept so sessions survive restarts.
struct DevSecrets {
    session_secret: String,
    encryption_key: EncryptionKey,
}

impl DevSecrets {
    fn load_or_create(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join(SECRETS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => return Self::parse(&text).map_err(|why| {
                // Never written over: its ENCRYPTION_KEY may have sealed
                // provider keys that a new one could not open.
                format!(
                    "{} {why}: correct it, or delete the file to have new secrets generated (provider keys saved under the old ENCRYPTION_KEY are then lost)",
                    path.display()
                )
            }),
            // Not there yet (nor, perhaps, its folder): made below.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }

        let session_secret = hex::encode(rand::random::<[u8; 32]>());
        let key_hex = hex::encode(rand::random::<[u8; 32]>());
        let encryption_key = EncryptionKey::parse(&key_hex)?;
        std::fs::create_dir_all(data_dir).map_err(|e| {
            format!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            )
        })?;
        let contents = format!(
            "# Generated by frontdesk for development. Do not use in production.\nSESSION_SECRET={session_secret}\nENCRYPTION_KEY={key_hex}\n"
        );
        write_private(&path, &contents)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Self {
            session_secret,
            encryption_key,
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        let value = |key: &str| {
            text.lines()
                .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim().to_string())
                .ok_or_else(|| format!("has no {key} line"))
        };
        let session_secret = value("SESSION_SECRET")?;
        check_session_secret(&session_secret)
            .map_err(|why| format!("has a SESSION_SECRET that {why}"))?;
        let encryption_key = EncryptionKey::parse(&value("ENCRYPTION_KEY")?)
            .map_err(|why| format!("has an ENCRYPTION_KEY that {why}"))?;
        Ok(Self {
            session_secret,
            encryption_key,
        })
    }
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&|k| map.get(k).cloned())
    }

    #[test]
    fn allowed_models_are_none_by_default_a_list_or_any() {
        let allowed = |raw| {
            config(&[("LLM_ALLOWED_MODELS", raw)])
                .unwrap()
                .llm
                .allowed_models
        };
        assert!(!config(&[]).unwrap().llm.allowed_models.allows("gpt-x"));
        assert!(!allowed("").allows("gpt-x"));
        let list = allowed(" gpt-mini , llama3:8b,,");
        assert!(list.allows("gpt-mini") && list.allows("llama3:8b"));
        assert!(!list.allows("gpt-pro") && !list.allows(""));
        assert!(allowed("*").allows("anything-at-all"));
    }

    #[test]
    fn production_lists_every_missing_secret_at_once() {
        let errors = config(&[("APP_ENV", "production")]).unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("BASE_URL"), "{text}");
        assert!(text.contains("SESSION_SECRET"), "{text}");
        assert!(text.contains("ENCRYPTION_KEY"), "{text}");
        assert!(text.lines().all(|l| l.starts_with("[config] FATAL ")));
    }

    #[test]
    fn an_ipv6_host_makes_a_bracketed_base_url_and_bind_address() {
        for (host, base, bind) in [
            ("::1", "http://[::1]:5000/", "[::1]:5000"),
            ("[::1]", "http://[::1]:5000/", "[::1]:5000"),
            ("::", "http://[::1]:5000/", "[::]:5000"),
            ("0.0.0.0", "http://127.0.0.1:5000/", "0.0.0.0:5000"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().display().to_string();
            let c = config(&[("HOST", host), ("DATA_DIR", &data)]).unwrap();
            assert_eq!(c.base_url.as_str(), base, "{host}");
            assert_eq!(c.bind_address(), bind, "{host}");
        }
    }

    #[test]
    fn a_log_level_that_would_log_nothing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        for good in [
            "info",
            "WARN",
            "info,frontdesk=debug",
            "frontdesk::jobs=trace",
            "debug,",
        ] {
            assert!(
                config(&[("LOG_LEVEL", good), ("DATA_DIR", &data)]).is_ok(),
                "{good}"
            );
        }
        for bad in ["warning", "verbose", "info,loud"] {
            let text = config(&[("LOG_LEVEL", bad), ("DATA_DIR", &data)])
                .unwrap_err()
                .to_string();
            assert!(text.contains("LOG_LEVEL"), "{bad}: {text}");
        }
    }

    #[test]
    fn numbers_and_flags_are_named_for_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let c = config(&[("ALLOW_PRIVATE_PROVIDER_URLS", "1"), ("DATA_DIR", &data)]).unwrap();
        assert!(c.llm.allow_private_urls);
        let text = config(&[
            ("PORT", "99999"),
            ("ALLOW_PRIVATE_PROVIDER_URLS", "maybe"),
            ("DATA_DIR", &data),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            text.contains("PORT must be a whole number from 0 to 65535, got \"99999\""),
            "{text}"
        );
        assert!(
            text.contains("ALLOW_PRIVATE_PROVIDER_URLS must be true or false"),
            "{text}"
        );
    }

    #[test]
    fn a_damaged_secrets_file_is_reported_and_never_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().display().to_string();
        let path = dir.path().join(SECRETS_FILE);
        let damaged = format!("SESSION_SECRET=short\nENCRYPTION_KEY={}\n", "ab".repeat(32));
        std::fs::write(&path, &damaged).unwrap();
        let text = config(&[("DATA_DIR", &data)]).unwrap_err().to_string();
        assert!(
            text.contains("SESSION_SECRET") && text.contains("secrets.env"),
            "{text}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), damaged);
    }

    #[test]
    fn weak_values_are_rejected() {
        let errors = config(&[
            ("APP_ENV", "production"),
            ("BASE_URL", "https://example.com"),
            ("SESSION_SECRET", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            (
                "ENCRYPTION_KEY",
                "00000000000000000000000000000000000000000000000000000000000000",
            ),
            ("PORT", "http"),
        ])
        .unwrap_err();
        assert_eq!(errors.0.len(), 3, "{errors}");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let dev = config(&[("DATA_DIR", data.to_str().unwrap())]).unwrap();
        assert_eq!((dev.host.as_str(), dev.port), ("127.0.0.1", 5000));
        assert_eq!(dev.base_url.as_str(), "http://127.0.0.1:5000/");
        assert_eq!(dev.log_format, LogFormat::Pretty);
        assert!(dev.database_url == crate::db::DatabaseUrl::Sqlite(data.join("frontdesk.db")));
        let prod = config(&[
            ("APP_ENV", "production"),
            ("DATA_DIR", data.to_str().unwrap()),
            ("BASE_URL", "https://support.example.com"),
            (
                "SESSION_SECRET",
                "a-long-and-random-session-secret-0123456789",
            ),
            ("ENCRYPTION_KEY", &("8f".repeat(16) + &"a1".repeat(16))),
        ])
        .unwrap();
        assert_eq!((prod.host.as_str(), prod.port), ("0.0.0.0", 5000));
        assert_eq!(prod.log_format, LogFormat::Json);
    }

    #[test]
    fn a_base_url_with_a_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data = data.to_str().unwrap();
        let errors = config(&[
            ("DATA_DIR", data),
            ("BASE_URL", "https://example.com/support"),
        ])
        .unwrap_err();
        assert!(errors.to_string().contains("without a path"), "{errors}");
        let root = config(&[("DATA_DIR", data), ("BASE_URL", "https://example.com/")]).unwrap();
        assert_eq!(root.base_url.as_str(), "https://example.com/");
    }

    #[test]
    fn development_generates_secrets_once_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = config(&[("DATA_DIR", data.to_str().unwrap())]).unwrap();
        let second = config(&[("DATA_DIR", data.to_str().unwrap())]).unwrap();
        assert_eq!(first.session_secret, second.session_secret);
        assert_eq!(first.encryption_key.bytes(), second.encryption_key.bytes());
        assert!(first.session_secret.expose().len() >= 32);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&[
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("SESSION_SECRET", "correct-horse-battery-staple-0123456789"),
        ])
        .unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("correct-horse"), "{shown}");
    }

    #[test]
    fn encryption_key_accepts_hex_and_base64() {
        let hex_key = "8f".repeat(16) + &"a1".repeat(16);
        assert!(EncryptionKey::parse(&hex_key).is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8, 1, 2, 3].repeat(8));
        assert!(EncryptionKey::parse(&b64).is_ok());
        assert!(EncryptionKey::parse("short").is_err());
    }

    #[test]
    fn malformed_smtp_url_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let errors = config(&[
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("SMTP_URL", "mail.example.com:25"),
        ])
        .unwrap_err();
        assert!(errors.to_string().contains("SMTP_URL"));
    }

    #[test]
    fn mail_from_is_parsed_as_the_mailer_will() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "Frontdesk <no-reply@>",
            "a@b@c",
            "Support <support@example.com",
        ] {
            let errors = config(&[
                ("DATA_DIR", dir.path().to_str().unwrap()),
                ("MAIL_FROM", bad),
            ])
            .unwrap_err();
            assert!(errors.to_string().contains("MAIL_FROM"), "{bad}");
        }
        let ok = config(&[
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("MAIL_FROM", "Acme Support <support@example.com>"),
        ]);
        assert!(ok.is_ok());
    }
}
