//! Builds the application: connects, migrates as the environment allows, binds,
//! and runs until stopped. `main` and the tests start the server the same way.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{Compress, from_fn};
use actix_web::{App, HttpServer, web};

use actix_session::SessionMiddleware;
use actix_session::config::{PersistentSession, TtlExtensionPolicy};

use crate::auth::extractors::IDLE_LIFETIME_SECS;
use crate::auth::session_store::DbSessionStore;
use crate::config::Config;
use crate::db::migrations::{self, MigrationStatus};
use crate::db::{self, DbError, DbPool};
use crate::error::{self, AppError};
use crate::routes;
use crate::security;
use crate::services::billing::StripeApi;
use crate::services::chat::ChatEngine;
use crate::services::demo::{self, DemoError};
use crate::services::jobs::{JobContext, WorkerPool};
use crate::services::mail::{MailError, Mailer};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::{self, SlowRequestMs};

/// JSON bodies of the API; uploads have their own limit (`MAX_UPLOAD_BYTES`).
pub const JSON_LIMIT_BYTES: usize = 256 * 1024;
pub const FORM_LIMIT_BYTES: usize = 64 * 1024;
/// How long in-flight requests may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("cannot listen on {address}: {reason}")]
    Bind { address: String, reason: String },
    #[error(transparent)]
    Demo(#[from] DemoError),
}

/// Shared by every worker.
pub struct AppState {
    pub config: Config,
    pub pool: DbPool,
    pub migrations: Arc<MigrationStatus>,
    pub queue_stats: crate::routes::QueueStatsCache,
    pub checks_in_flight: crate::routes::ChecksInFlight,
    pub started: Instant,
    pub metrics: Arc<Metrics>,
    pub chat: Arc<ChatEngine>,
    /// `None` when billing is off.
    pub stripe: Option<Arc<StripeApi>>,
    /// `None` when `RATE_LIMIT_PER_MINUTE` is 0.
    pub api_rate_limit: Option<crate::rate_limit::ApiRateLimit>,
    /// Per instance, like the API budget.
    pub form_rate_limit: crate::rate_limit::ApiRateLimit,
    pub form_view_rate_limit: crate::rate_limit::ApiRateLimit,
    /// Keys that failed to authenticate, per address; `None` when
    /// `RATE_LIMIT_PER_MINUTE` is 0.
    pub failed_key_limit: Option<crate::rate_limit::FailedKeys>,
    /// The public chat API, per address; `None` when `RATE_LIMIT_PER_MINUTE` is 0.
    pub chat_rate_limit: Option<crate::rate_limit::ApiRateLimit>,
    /// Emails a signed-in person has sent to addresses they typed, per person.
    pub member_email_rate_limit: crate::rate_limit::ApiRateLimit,
    /// Recognizes browsers that signed in before (sign-in throttling).
    pub device_key: crate::auth::device::DeviceKey,
}

impl AppState {
    /// Runs blocking database work off the async workers.
    pub async fn db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut crate::db::DbConnection) -> crate::error::AppResult<T> + Send + 'static,
    ) -> crate::error::AppResult<T> {
        let pool = self.pool.clone();
        // The blocking thread logs (slow queries, say) under the request's span.
        let span = tracing::Span::current();
        web::block(move || {
            let _entered = span.enter();
            let mut conn = pool.get().map_err(crate::db::DbError::Pool)?;
            work(&mut conn)
        })
        .await?
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// Apply pending migrations before serving, even in production.
    pub migrate: bool,
    /// HTTP worker threads; `None` uses one per core.
    pub http_workers: Option<usize>,
    /// Run background job workers in this process (`serve` does).
    pub run_jobs: bool,
    /// Load the demo organization before serving (`serve --demo`; refused in production).
    pub demo: bool,
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    workers: Option<WorkerPool>,
}

impl Application {
    pub async fn build(mut config: Config, options: ServeOptions) -> Result<Self, StartupError> {
        let url = config.database_url.clone();
        let pool_size = config.database_pool_size;
        let slow_query = Duration::from_millis(config.slow_query_ms);
        let apply = options.migrate || !config.environment.is_production();
        let (pool, pending) =
            web::block(move || prepare_database(&url, pool_size, slow_query, apply))
                .await
                .map_err(|e| DbError::Migration(e.to_string()))??;
        if !pending.is_empty() {
            tracing::warn!(
                pending = pending.join(", "),
                "migrations are pending: /ready answers 503 until `frontdesk migrate` runs"
            );
        }

        if config.environment.is_production() && config.metrics_token.is_none() {
            tracing::warn!(
                "METRICS_TOKEN is not set: /metrics and /metrics/json answer anyone who reaches this server"
            );
        }

        let address = config.bind_address();
        let listener = TcpListener::bind(&address).map_err(|e| StartupError::Bind {
            address: address.clone(),
            reason: bind_reason(&e),
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| StartupError::Bind {
                address: address.clone(),
                reason: e.to_string(),
            })?
            .port();
        // PORT=0 asks for any free port; links (emails, widget snippets) must
        // carry the one the system gave, unless BASE_URL said otherwise.
        if config.base_url.port() == Some(0) {
            let _ = config.base_url.set_port(Some(port));
        }

        if options.demo && config.environment.is_production() {
            return Err(DemoError::Production.into());
        }
        if pending.is_empty() && (options.demo || !config.environment.is_production()) {
            announce_demo(&pool, &config, options.demo).await?;
        }

        let mailer = Arc::new(Mailer::from_config(&config)?);
        let metrics = Arc::new(Metrics::default());
        let chat = Arc::new(ChatEngine::new(&config, metrics.clone()));
        let stripe = StripeApi::from_config(&config.stripe);
        let migrations = Arc::new(MigrationStatus::new(pending));
        let workers = options.run_jobs.then(|| {
            WorkerPool::start_when_migrated(
                Arc::new(JobContext {
                    pool: pool.clone(),
                    config: Arc::new(config.clone()),
                    mailer,
                    metrics: metrics.clone(),
                    chat: chat.clone(),
                    stripe: stripe.clone(),
                }),
                Some(migrations.clone()),
            )
        });
        let api_rate_limit = crate::rate_limit::ApiRateLimit::new(config.rate_limit_per_minute);
        let failed_key_limit = crate::rate_limit::FailedKeys::new(config.rate_limit_per_minute);
        let chat_rate_limit = crate::rate_limit::ApiRateLimit::new(
            config
                .rate_limit_per_minute
                .saturating_mul(crate::rate_limit::PUBLIC_CHAT_BUDGETS),
        );
        let state = web::Data::new(AppState {
            pool,
            migrations,
            queue_stats: Default::default(),
            checks_in_flight: Default::default(),
            started: Instant::now(),
            metrics,
            chat,
            stripe,
            api_rate_limit,
            form_rate_limit: crate::rate_limit::ApiRateLimit::per_minute(
                crate::rate_limit::PUBLIC_FORM_POSTS_PER_MINUTE,
            ),
            form_view_rate_limit: crate::rate_limit::ApiRateLimit::per_minute(
                crate::rate_limit::PUBLIC_FORM_VIEWS_PER_MINUTE,
            ),
            chat_rate_limit,
            failed_key_limit,
            member_email_rate_limit: crate::rate_limit::ApiRateLimit::per_minute(
                crate::rate_limit::MEMBER_EMAILS_PER_MINUTE,
            ),
            device_key: crate::auth::device::DeviceKey::derive(config.session_secret.expose()),
            config,
        });
        let server = build_server(listener, state.clone(), options)?;
        tracing::info!(
            address = %address,
            port,
            environment = state.config.environment.as_str(),
            database = %state.config.database_url.redacted(),
            "frontdesk is listening on {}",
            state.config.base_url
        );
        Ok(Self {
            port,
            server,
            state,
            workers,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until [`ServerHandle::stop`] or, when `signals` are given, until
    /// SIGTERM or SIGINT: then stops accepting and lets in-flight requests finish.
    pub async fn run_until_stopped(self, signals: Option<ShutdownSignals>) -> std::io::Result<()> {
        let handle = self.server.handle();
        if let Some(signals) = signals {
            let stop_jobs = self.workers.as_ref().map(WorkerPool::stopper);
            actix_web::rt::spawn(async move {
                let signal = signals.recv().await;
                tracing::info!(
                    signal,
                    "shutting down: finishing in-flight requests and jobs"
                );
                // Both drain at once, so the whole stop fits the grace period
                // of a platform's SIGTERM-then-SIGKILL.
                if let Some(stop_jobs) = stop_jobs {
                    stop_jobs();
                }
                handle.stop(true).await;
            });
        }
        let served = self.server.await;
        if let Some(workers) = self.workers {
            workers.shutdown().await;
        }
        served?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Loads the demo (`--demo`) or finds one loaded before, and logs where to chat
/// and how to sign in.
async fn announce_demo(pool: &DbPool, config: &Config, load: bool) -> Result<(), StartupError> {
    let (pool, config) = (pool.clone(), config.clone());
    let found = web::block(move || {
        let mut conn = pool.get().map_err(DbError::Pool)?;
        let demo = if load {
            Some(demo::load(&mut conn, &config)?)
        } else {
            demo::find(&mut conn).map_err(DbError::Query)?
        };
        Ok::<_, StartupError>(demo.map(|d| demo::announcement(&d, &config)))
    })
    .await
    .map_err(|e| DbError::Migration(e.to_string()))??;
    if let Some(line) = found {
        tracing::info!("{line}");
    }
    Ok(())
}

/// Connects, then applies migrations (when allowed) or reports what is pending.
fn prepare_database(
    url: &db::DatabaseUrl,
    pool_size: Option<u32>,
    slow_query: Duration,
    apply: bool,
) -> Result<(DbPool, Vec<String>), DbError> {
    let pool = db::connect_with(url, pool_size, slow_query)?;
    let mut conn = pool.get()?;
    let pending = if apply {
        migrations::run_pending(&mut conn, |name| {
            tracing::info!(migration = name, "applied migration");
        })?;
        Vec::new()
    } else {
        migrations::pending(&mut conn)?
    };
    drop(conn);
    Ok((pool, pending))
}

fn bind_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "the address is already in use (is another frontdesk running? set PORT to choose another)".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied (ports below 1024 need privileges)".into(),
        std::io::ErrorKind::AddrNotAvailable => "that address does not belong to this machine (check HOST)".into(),
        _ => e.to_string(),
    }
}

fn build_server(
    listener: TcpListener,
    state: web::Data<AppState>,
    options: ServeOptions,
) -> Result<Server, StartupError> {
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let headers = Arc::new(security::Headers::new(state.config.environment));
    // Derived from SESSION_SECRET so every instance signs cookies alike.
    let session_key =
        actix_web::cookie::Key::derive_from(state.config.session_secret.expose().as_bytes());
    let secure_cookies = state.config.environment.is_production();
    let session_store = DbSessionStore::new(state.pool.clone());
    let slow = web::Data::new(SlowRequestMs(state.config.slow_request_ms));
    let metrics = web::Data::from(state.metrics.clone());

    let detail = error::ErrorDetail {
        show_internal: !state.config.environment.is_production(),
    };
    let upload_limit = usize::try_from(state.config.max_upload_bytes).unwrap_or(usize::MAX);
    let cors_origins = state.config.cors_origins.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(slow.clone())
            .app_data(metrics.clone())
            .app_data(detail)
            .app_data(
                web::JsonConfig::default()
                    .limit(JSON_LIMIT_BYTES)
                    .content_type(security::is_json_content_type)
                    .content_type_required(true)
                    .error_handler(error::json_error),
            )
            .app_data(
                web::FormConfig::default()
                    .limit(FORM_LIMIT_BYTES)
                    .error_handler(error::form_error),
            )
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .configure(|cfg| routes::configure(cfg, upload_limit, &cors_origins))
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(AppError::NotFound)
            }))
            .wrap(
                SessionMiddleware::builder(session_store.clone(), session_key.clone())
                    .cookie_name("fd_session".into())
                    .cookie_secure(secure_cookies)
                    .cookie_http_only(true)
                    .cookie_same_site(actix_web::cookie::SameSite::Lax)
                    .session_lifecycle(
                        PersistentSession::default()
                            .session_ttl(actix_web::cookie::time::Duration::seconds(
                                IDLE_LIFETIME_SECS,
                            ))
                            .session_ttl_extension_policy(TtlExtensionPolicy::OnStateChanges),
                    )
                    .build(),
            )
            // Outside the session middleware, whose store needs the schema.
            .wrap(from_fn(routes::until_migrated))
            .wrap(from_fn(security::decodable_body))
            .wrap(from_fn(error::render_errors))
            .wrap(from_fn(security::head_as_get))
            .wrap(Compress::default())
            .wrap(headers.middleware())
            .wrap(from_fn(telemetry::request_log))
    })
    .disable_signals()
    // Streamed replies are many small writes: without TCP_NODELAY each one after
    // the first waits for the client's delayed ACK (40 ms on Linux).
    .tcp_nodelay(true)
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs());
    if let Some(workers) = options.http_workers {
        server = server.workers(workers);
    }
    let server = server
        .listen(listener)
        .map_err(|e| StartupError::Bind {
            address,
            reason: e.to_string(),
        })?
        .run();
    Ok(server)
}

/// SIGTERM and SIGINT, caught from the moment this is made: made before the
/// job workers or the listener start, a signal that arrives while they start
/// (a platform stopping an instance at once) is a graceful stop, not the
/// default action that kills the process mid-job. Must be made inside the
/// runtime.
pub struct ShutdownSignals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl ShutdownSignals {
    pub fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let unix = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => None,
            };
            Self { unix }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Waits for the first of them; names it.
    pub async fn recv(self) -> &'static str {
        #[cfg(unix)]
        if let Some((mut term, mut int)) = self.unix {
            return tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
