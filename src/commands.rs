//! What each command does, once the command line and configuration are read.

use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{AdminAction, JobsAction, KeysAction, MailAction};
use crate::config::{Config, ConfigErrors};
use crate::db::models::Job as JobRow;
use crate::db::models::{NewUser, User, UserToken};
use crate::db::{self, migrations};
use crate::domain::{Email, JobId, UserId};
use crate::services::accounts::{self, AccountError};
use crate::services::jobs::{self, Diagnostic, EnqueueOptions, JobContext, WorkerPool};
use crate::services::mail::{MailTemplate, Mailer, OutgoingEmail};
use crate::startup::{Application, ServeOptions};
use crate::telemetry;

/// Prints one clear sentence per problem on stderr.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("frontdesk: {message}");
    ExitCode::FAILURE
}

fn load_config() -> Result<Config, ExitCode> {
    Config::from_env().map_err(|errors: ConfigErrors| {
        eprintln!("{errors}");
        eprintln!(
            "frontdesk: configuration is invalid ({} problem{}); nothing was started.",
            errors.0.len(),
            crate::wording::plural(errors.0.len() as u64)
        );
        ExitCode::FAILURE
    })
}

pub fn serve(migrate: bool, demo: bool) -> ExitCode {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    telemetry::init(&config.log_level, config.log_format);
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        // Before the workers and the listener start (see `ShutdownSignals`).
        let signals = crate::startup::ShutdownSignals::install();
        let options = ServeOptions {
            migrate,
            http_workers: None,
            run_jobs: true,
            demo,
        };
        let app = match Application::build(config, options).await {
            Ok(app) => app,
            Err(e) => return fail(e),
        };
        match app.run_until_stopped(Some(signals)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(format!("the server stopped with an error: {e}")),
        }
    })
}

/// `frontdesk demo`: loads the demo organization on a migrated database.
pub fn demo() -> ExitCode {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    if config.environment.is_production() {
        return fail(crate::services::demo::DemoError::Production);
    }
    let mut conn = match ready_connection(&config) {
        Ok(conn) => conn,
        Err(code) => return code,
    };
    match crate::services::demo::load(&mut conn, &config) {
        Ok(demo) => {
            if demo.created {
                println!(
                    "Loaded the demo organization \"{}\".",
                    crate::services::demo::ORGANIZATION
                );
            } else {
                println!("The demo organization was loaded before; nothing changed.");
            }
            println!("{}", crate::services::demo::announcement(&demo, &config));
            println!(
                "Start the server with `frontdesk serve`: its job workers index the knowledge base within seconds."
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `migrate --dry-run`'s answer.
fn list_pending(target: &str, pending: Result<Vec<String>, db::DbError>) -> ExitCode {
    match pending {
        Ok(pending) if pending.is_empty() => {
            println!("{target}: no pending migrations");
            ExitCode::SUCCESS
        }
        Ok(pending) => {
            println!("{target}: {} pending migration(s):", pending.len());
            for name in pending {
                println!("  {name}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

pub fn migrate(dry_run: bool, revert: bool) -> ExitCode {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let target = config.database_url.redacted();
    // A dry run changes nothing, so it does not create the SQLite file either.
    if dry_run && matches!(&config.database_url, db::DatabaseUrl::Sqlite(path) if !path.exists()) {
        return list_pending(&target, migrations::all_sqlite());
    }
    let pool = match db::connect(&config.database_url, Some(1)) {
        Ok(pool) => pool,
        Err(e) => return fail(e),
    };
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(e) => return fail(db::DbError::Pool(e)),
    };
    if dry_run {
        return list_pending(&target, migrations::pending(&mut conn));
    }
    if revert {
        return match migrations::revert_last(&mut conn) {
            Ok(Some(name)) => {
                println!("{target}: reverted {name}");
                ExitCode::SUCCESS
            }
            Ok(None) => {
                println!("{target}: no migration to revert");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    match migrations::run_pending(&mut conn, |name| println!("applied {name}")) {
        Ok(applied) if applied.is_empty() => {
            println!("{target}: already up to date");
            ExitCode::SUCCESS
        }
        Ok(applied) => {
            println!("{target}: applied {} migration(s)", applied.len());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

pub fn check() -> ExitCode {
    let mut problems: Vec<String> = Vec::new();
    let config = match Config::from_env() {
        Ok(config) => {
            println!("ok    configuration ({})", config.environment.as_str());
            Some(config)
        }
        Err(errors) => {
            problems.extend(errors.0);
            None
        }
    };

    let Some(config) = &config else {
        // The rest of the configuration is broken, but whatever of the
        // connections can be read is still tried: every problem at once.
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let data_dir = std::path::PathBuf::from(env("DATA_DIR").unwrap_or_else(|| "./data".into()));
        // A malformed URL is already among the configuration problems.
        if let Ok(url) = db::DatabaseUrl::parse(env("DATABASE_URL").as_deref(), &data_dir) {
            check_database(&url, &mut problems);
        }
        // Only a URL that names an SMTP server is worth dialing: the
        // configuration problems already list anything else.
        if let Some(url) = env("SMTP_URL")
            .and_then(|raw| url::Url::parse(&raw).ok())
            .filter(|url| matches!(url.scheme(), "smtp" | "smtps"))
        {
            check_smtp(&url, &mut problems);
        }
        return report(&problems);
    };
    check_database(&config.database_url, &mut problems);
    match &config.smtp_url {
        None => println!(
            "note  SMTP_URL not set: emails are written to {}/mail",
            config.data_dir.display()
        ),
        Some(url) => check_smtp(url.expose(), &mut problems),
    }
    match &config.stripe.secret_key {
        None => {
            println!("note  STRIPE_SECRET_KEY not set: billing is off, plans are unlimited")
        }
        Some(_) => {
            println!("ok    Stripe key shape");
            let priced: Vec<&str> = config.stripe.prices.keys().map(|p| p.as_str()).collect();
            println!(
                "note  Stripe prices configured for: {}",
                if priced.is_empty() {
                    "no plan".to_string()
                } else {
                    priced.join(", ")
                }
            );
            match config.stripe.webhook_secrets.len() {
                0 => println!("note  STRIPE_WEBHOOK_SECRET not set: /webhooks/stripe answers 503"),
                n => println!(
                    "ok    {n} webhook signing secret(s); set the endpoint's API version to {}",
                    crate::services::billing::StripeApi::api_version()
                ),
            }
        }
    }

    report(&problems)
}

fn check_database(url: &db::DatabaseUrl, problems: &mut Vec<String>) {
    let target = url.redacted();
    if let db::DatabaseUrl::Sqlite(path) = url
        && !path.exists()
    {
        // Opening it would create it: a check only says whether it could be.
        match writable_ancestor(path) {
            Ok(dir) => println!(
                "note  database {target} does not exist yet; `frontdesk migrate` or `frontdesk serve` creates it (in {})",
                dir.display()
            ),
            Err(e) => problems.push(format!("database: {target} cannot be created: {e}")),
        }
        return;
    }
    match db::connect(url, Some(1)) {
        Ok(pool) => {
            println!("ok    database {target}");
            match pool
                .get()
                .map_err(db::DbError::Pool)
                .and_then(|mut c| migrations::pending(&mut c))
            {
                Ok(p) if p.is_empty() => println!("ok    migrations up to date"),
                Ok(p) => println!(
                    "note  {} pending migration(s): {} (run `frontdesk migrate`)",
                    p.len(),
                    p.join(", ")
                ),
                Err(e) => problems.push(format!("database: {e}")),
            }
        }
        Err(e) => problems.push(format!("database: {e}")),
    }
}

/// The nearest existing folder above `path`, if a file can be written there.
fn writable_ancestor(path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let dir = path
        .ancestors()
        .skip(1)
        .map(|p| {
            if p.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                p
            }
        })
        .find(|p| p.is_dir())
        .unwrap_or(std::path::Path::new("/"));
    let probe = dir.join(format!(".frontdesk-check-{}", std::process::id()));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)?;
    Ok(dir.to_path_buf())
}

fn check_smtp(url: &url::Url, problems: &mut Vec<String>) {
    match smtp_reachable(url) {
        Ok(addr) => println!("ok    SMTP server reachable at {addr}"),
        Err(e) => problems.push(format!("SMTP: {e}")),
    }
}

fn report(problems: &[String]) -> ExitCode {
    if problems.is_empty() {
        println!("all checks passed");
        ExitCode::SUCCESS
    } else {
        for p in problems {
            if p.starts_with("[config]") {
                eprintln!("{p}");
            } else {
                eprintln!("FAIL  {p}");
            }
        }
        eprintln!("frontdesk: {} problem(s) found", problems.len());
        ExitCode::FAILURE
    }
}

/// Opens a TCP connection to the SMTP server: proves the address, not the credentials.
fn smtp_reachable(url: &url::Url) -> Result<String, String> {
    let host = crate::services::mail::smtp_host(url).ok_or("SMTP_URL has no host")?;
    let port = crate::services::mail::smtp_port(url);
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    Ok(format!("{host}:{port}"))
}

/// `frontdesk worker`: job workers and the periodic scheduler, no HTTP.
pub fn worker() -> ExitCode {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    telemetry::init(&config.log_level, config.log_format);
    let pool = match ready_pool(&config) {
        Ok(pool) => pool,
        Err(code) => return code,
    };
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        // Before the workers start (see `ShutdownSignals`).
        let signals = crate::startup::ShutdownSignals::install();
        // The SMTP transport's connection pool lives on the runtime: build it there.
        let mailer = match Mailer::from_config(&config) {
            Ok(m) => std::sync::Arc::new(m),
            Err(e) => return fail(e),
        };
        let metrics = std::sync::Arc::new(crate::telemetry::metrics::Metrics::default());
        let chat = std::sync::Arc::new(crate::services::chat::ChatEngine::new(
            &config,
            metrics.clone(),
        ));
        let stripe = crate::services::billing::StripeApi::from_config(&config.stripe);
        let workers = WorkerPool::start(std::sync::Arc::new(JobContext {
            pool,
            config: std::sync::Arc::new(config),
            mailer,
            metrics,
            chat,
            stripe,
        }));
        let signal = signals.recv().await;
        tracing::info!(signal, "shutting down: finishing running jobs");
        workers.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// A pool on a database whose migrations are applied (applied here in development).
/// One connection from [`ready_pool`], for commands that do their work on one.
fn ready_connection(config: &Config) -> Result<db::PooledConn, ExitCode> {
    ready_pool(config)?
        .get()
        .map_err(|e| fail(db::DbError::Pool(e)))
}

fn ready_pool(config: &Config) -> Result<db::DbPool, ExitCode> {
    let pool = db::connect_with(
        &config.database_url,
        config.database_pool_size,
        Duration::from_millis(config.slow_query_ms),
    )
    .map_err(fail)?;
    let mut conn = pool.get().map_err(|e| fail(db::DbError::Pool(e)))?;
    if config.environment.is_production() {
        let pending = migrations::pending(&mut conn).map_err(fail)?;
        if !pending.is_empty() {
            return Err(fail(format!(
                "{} migration(s) pending ({}); run `frontdesk migrate` first",
                pending.len(),
                pending.join(", ")
            )));
        }
    } else {
        migrations::run_pending(&mut conn, |name| {
            tracing::info!(migration = name, "applied migration")
        })
        .map_err(fail)?;
    }
    drop(conn);
    Ok(pool)
}

/// `frontdesk jobs [status|retry|ping]`.
pub fn jobs(action: Option<JobsAction>) -> ExitCode {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut conn = match ready_connection(&config) {
        Ok(conn) => conn,
        Err(code) => return code,
    };
    match action.unwrap_or(JobsAction::Status { limit: 20 }) {
        JobsAction::Status { limit } => {
            let counts = match JobRow::counts_by_state(&mut conn) {
                Ok(c) => c,
                Err(e) => return fail(db::DbError::Query(e)),
            };
            let stats = match JobRow::stats(&mut conn) {
                Ok(s) => s,
                Err(e) => return fail(db::DbError::Query(e)),
            };
            println!("jobs by state:");
            for state in ["queued", "running", "done", "dead"] {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == state)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                println!("  {state:<8} {n}");
            }
            let age = stats
                .oldest_due
                .map(|t| (crate::domain::now() - t).num_seconds().max(0));
            println!(
                "due now: {} (oldest waiting {})",
                stats.due,
                age.map(|s| format!("{s} s")).unwrap_or_else(|| "-".into())
            );
            let dead = match JobRow::dead(&mut conn, limit) {
                Ok(d) => d,
                Err(e) => return fail(db::DbError::Query(e)),
            };
            if !dead.is_empty() {
                println!("dead jobs (newest first; retry with `frontdesk jobs retry ID`):");
                for job in dead {
                    println!(
                        "  #{} {} after {} attempt(s), finished {}: {}",
                        job.id,
                        job.kind,
                        job.attempts,
                        job.finished_at
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default(),
                        job.last_error.unwrap_or_default()
                    );
                }
            }
            ExitCode::SUCCESS
        }
        JobsAction::Retry { id: Some(id), .. } => match JobRow::revive(&mut conn, JobId(id)) {
            Ok(true) => {
                println!("job #{id} is queued again with a fresh set of attempts");
                ExitCode::SUCCESS
            }
            Ok(false) => fail(format!("there is no dead job #{id}")),
            Err(e) => fail(db::DbError::Query(e)),
        },
        JobsAction::Retry { id: None, kind, .. } => {
            match JobRow::revive_all(&mut conn, kind.as_deref()) {
                Ok(n) => {
                    let which = kind.map_or_else(String::new, |k| format!(" {k}"));
                    println!(
                        "{n} dead{which} job{} queued again with a fresh set of attempts",
                        crate::wording::plural(n as u64)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(db::DbError::Query(e)),
            }
        }
        JobsAction::Ping {
            count,
            sleep_ms,
            fail: should_fail,
            panic,
        } => {
            let job = Diagnostic {
                sleep_ms,
                fail: should_fail,
                panic,
            };
            let result = db::write_transaction(&mut conn, |conn| {
                (0..count)
                    .map(|_| jobs::enqueue(conn, &job, EnqueueOptions::default()))
                    .collect::<Result<Vec<_>, _>>()
            });
            match result {
                Ok(ids) => {
                    let ids: Vec<String> = ids
                        .into_iter()
                        .flatten()
                        .map(|id| format!("#{id}"))
                        .collect();
                    println!(
                        "enqueued {} diagnostic job(s): {}",
                        ids.len(),
                        ids.join(" ")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(db::DbError::Query(e)),
            }
        }
    }
}

/// `frontdesk mail test --to ADDRESS`: sends at once and reports the outcome.
pub fn mail(action: MailAction) -> ExitCode {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    telemetry::init(&config.log_level, config.log_format);
    let MailAction::Test { to } = action;
    let to = match Email::parse(&to) {
        Ok(to) => to,
        Err(e) => return fail(format!("--to {e}")),
    };
    let email = OutgoingEmail::new(&to, MailTemplate::Test, &config.base_url);
    // The SMTP transport's connection pool lives on the runtime: build it there.
    let sent = actix_web::rt::System::new()
        .block_on(async { Mailer::from_config(&config)?.send(&email).await });
    match sent {
        Ok(()) => {
            match &config.smtp_url {
                Some(_) => println!("test email sent to {} ({})", to.as_str(), email.message_id),
                None => println!(
                    "SMTP_URL is not set: the test email was written to {}",
                    config.data_dir.join("mail").display()
                ),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `frontdesk keys rotate`: re-encrypts provider keys under the current key.
pub fn keys(action: KeysAction) -> ExitCode {
    let KeysAction::Rotate = action;
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut conn = match ready_connection(&config) {
        Ok(conn) => conn,
        Err(code) => return code,
    };
    let keyring = config.keyring();
    let rotation = match crate::services::chat::credentials::reseal_all(&mut conn, &keyring) {
        Ok(r) => r,
        Err(e) => return fail(format!("the database refused the re-encryption: {e}")),
    };
    println!(
        "Provider keys under key {}: {} sealed again, {} already current{}.",
        keyring.current_key_id(),
        rotation.resealed,
        rotation.current,
        if rotation.raced > 0 {
            format!(", {} replaced meanwhile", rotation.raced)
        } else {
            String::new()
        }
    );
    if rotation.failed.is_empty() {
        return ExitCode::SUCCESS;
    }
    for (id, org, why) in &rotation.failed {
        eprintln!("frontdesk: provider key {id} of organization {org} stays as it was: {why}");
    }
    fail(format!(
        "{} provider key(s) could not be opened; add the key that sealed them to ENCRYPTION_KEY_PREVIOUS and run this again, or have those organizations enter their keys anew",
        rotation.failed.len()
    ))
}

/// `frontdesk admin create --email E [--password-stdin]`.
pub fn admin(action: AdminAction) -> ExitCode {
    let AdminAction::Create {
        email,
        password_stdin,
    } = action;
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let email = match Email::parse(&email) {
        Ok(e) => e,
        Err(e) => return fail(format!("--email {e}")),
    };
    let password_hash = if password_stdin {
        let mut line = String::new();
        if let Err(e) = std::io::stdin().read_line(&mut line) {
            return fail(format!("cannot read the password from stdin: {e}"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let password = match crate::auth::password::Password::parse(line, Some(email.as_str())) {
            Ok(p) => p,
            Err(e) => return fail(e.0),
        };
        match password.hash() {
            Ok(h) => Some(h),
            Err(e) => return fail(format!("cannot hash the password: {e}")),
        }
    } else {
        None
    };
    let mut conn = match ready_connection(&config) {
        Ok(conn) => conn,
        Err(code) => return code,
    };
    let result = db::write_transaction(
        &mut conn,
        |conn| -> Result<(UserId, bool, Option<String>), AccountError> {
            let (user_id, created) = match User::find_by_email(conn, &email)? {
                Some(user) => (user.id, false),
                None => {
                    let name = email
                        .as_str()
                        .split('@')
                        .next()
                        .unwrap_or("admin")
                        .to_string();
                    (
                        User::create(conn, &NewUser::new(&email, &name, None))?.id,
                        true,
                    )
                }
            };
            User::set_platform_admin(conn, user_id)?;
            User::mark_verified(conn, user_id)?;
            let link = match &password_hash {
                Some(hash) => {
                    // Often an operator taking an account back: like any
                    // password change it signs the account out everywhere,
                    // spends its reset links, and is in the audit log.
                    let user = User::find(conn, user_id)?.ok_or(AccountError::NotFound)?;
                    accounts::change_password(conn, &user, hash, "command line")?;
                    None
                }
                None => {
                    let token = crate::auth::tokens::generate();
                    UserToken::create(
                        conn,
                        user_id,
                        crate::db::models::user_token::RESET_PASSWORD,
                        &crate::auth::tokens::hash(&token),
                        crate::domain::now() + chrono::TimeDelta::hours(1),
                    )?;
                    let mut url = config
                        .base_url
                        .join("/reset-password")
                        .unwrap_or_else(|_| config.base_url.clone());
                    url.query_pairs_mut().append_pair("token", &token);
                    Some(url.to_string())
                }
            };
            Ok((user_id, created, link))
        },
    );
    match result {
        Ok((id, created, link)) => {
            println!(
                "{} {} (user #{id}) is a platform admin",
                if created { "created" } else { "promoted" },
                email.as_str()
            );
            if let Some(link) = link {
                println!("set the password within one hour (the link works once):\n  {link}");
            }
            ExitCode::SUCCESS
        }
        Err(AccountError::Db(e)) => fail(db::DbError::Query(e)),
        Err(e) => fail(e),
    }
}

/// `frontdesk backup --out FILE`: a consistent copy of the SQLite database.
pub fn backup(out: &Path) -> ExitCode {
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let db::DatabaseUrl::Sqlite(path) = &config.database_url
        && !path.exists()
    {
        return fail(format!(
            "there is no database at {} to back up (check DATABASE_URL)",
            path.display()
        ));
    }
    // Not `ready_pool`: a backup is what one takes before migrating.
    let pool = match db::connect(&config.database_url, Some(1)) {
        Ok(pool) => pool,
        Err(e) => return fail(e),
    };
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(e) => return fail(db::DbError::Pool(e)),
    };
    match db::backup::backup_sqlite(&mut conn, out) {
        Ok(bytes) => {
            println!(
                "Backed up {} to {} ({bytes} bytes, integrity checked).",
                config.database_url.redacted(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `frontdesk export --org SLUG --out FILE`: one organization's data as JSON.
pub fn export(org: &str, out: &Path) -> ExitCode {
    let slug = match crate::domain::Slug::parse(org) {
        Ok(slug) => slug,
        Err(e) => return fail(format!("--org {org:?} is not an organization slug: {e}")),
    };
    let to_stdout = out.as_os_str() == "-";
    if !to_stdout && out.exists() {
        return fail(format!(
            "{} already exists; choose another file or move it away first",
            out.display()
        ));
    }
    let config = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut conn = match ready_connection(&config) {
        Ok(conn) => conn,
        Err(code) => return code,
    };
    let exported = if to_stdout {
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        crate::services::export::export_organization(&mut conn, &slug, &mut stdout)
    } else {
        write_beside(out, |file| {
            crate::services::export::export_organization(&mut conn, &slug, file)
        })
    };
    match exported {
        Ok(summary) => {
            if let Err(e) = crate::services::export::record_export(&mut conn, &summary) {
                return fail(format!(
                    "the export was written, but the audit log refused its entry: {e}"
                ));
            }
            if !to_stdout {
                println!(
                    "Exported {} to {}: {} members, {} agents, {} documents, {} conversations, {} messages.",
                    summary.organization,
                    out.display(),
                    summary.members,
                    summary.agents,
                    summary.documents,
                    summary.conversations,
                    summary.messages
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Writes through `work` into a temporary file beside `out`, readable by its
/// owner only, and gives it its name once complete: an interrupted export never
/// leaves a truncated file under the name someone would send on.
fn write_beside<T>(
    out: &Path,
    work: impl FnOnce(
        &mut std::io::BufWriter<std::fs::File>,
    ) -> Result<T, crate::services::export::ExportError>,
) -> Result<T, crate::services::export::ExportError> {
    let (partial, file) = crate::files::create_partial(out)?;
    let mut writer = std::io::BufWriter::new(file);
    let result = work(&mut writer).and_then(|value| {
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        crate::files::publish(&partial, out)?;
        Ok(value)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}
