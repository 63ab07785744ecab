//! The command line: `frontdesk [serve|migrate|check]`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "frontdesk",
    version,
    about = "AI customer-conversation agents for your business, in one binary.",
    long_about = "AI customer-conversation agents for your business, in one binary.\n\n\
        Configuration comes from the environment (and a .env file in development); \
        see the README for every variable. Without DATABASE_URL the data lives in \
        ./data/frontdesk.db (SQLite)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the web server (the default command).
    ///
    /// In development pending migrations are applied on start. In production the
    /// server answers /ready with 503 while migrations are pending, unless --migrate.
    Serve(ServeArgs),
    /// Apply pending database migrations, printing each one's name.
    Migrate {
        /// Only list the pending migrations; change nothing.
        #[arg(long, conflicts_with = "revert")]
        dry_run: bool,
        /// Undo the newest applied migration, printing its name: run it with
        /// this binary before going back to one older than that migration.
        #[arg(long)]
        revert: bool,
    },
    /// Validate configuration and connectivity (database, SMTP, Stripe key shape),
    /// print every problem at once, and exit non-zero if there is any.
    Check,
    /// Run background job workers without the web server (scale them separately).
    Worker,
    /// Inspect the job queue: counts by state and the dead jobs with their errors.
    Jobs {
        #[command(subcommand)]
        action: Option<JobsAction>,
    },
    /// Load a demo organization (Lighthouse Coffee Roasters) with an agent and a
    /// knowledge base, and print where to chat and how to sign in. Refused in production.
    Demo,
    /// Write a consistent copy of the SQLite database while it keeps serving
    /// (PostgreSQL: use pg_dump). The file is checked before it gets its name.
    Backup {
        /// Where to write the copy; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
    /// Write one organization's data as JSON (GDPR/DPDP access and portability):
    /// members, agents, knowledge, conversations with their messages, billing and
    /// audit log. Secrets (password and key hashes, provider keys) are left out.
    Export {
        /// The organization's slug, as in its chat URLs.
        #[arg(long, value_name = "SLUG")]
        org: String,
        /// Where to write the JSON (`-` for standard output); an existing file is
        /// never overwritten.
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
    /// Platform administrators.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Email tools.
    Mail {
        #[command(subcommand)]
        action: MailAction,
    },
    /// Encryption keys for secrets at rest (organizations' provider keys).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Seal every stored provider key again under the current ENCRYPTION_KEY.
    ///
    /// After changing ENCRYPTION_KEY, list the old key in ENCRYPTION_KEY_PREVIOUS,
    /// run this, and remove the old key once it reports nothing left under it.
    /// Safe to run again, and while servers are running.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// Counts by state and the most recent dead jobs (the default).
    Status {
        /// How many dead jobs to list.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
    },
    /// Give a dead job (or, with --all, every dead job) a fresh set of attempts.
    Retry {
        /// The job id shown by `frontdesk jobs`.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Every dead job (after an outage of the SMTP relay, say).
        #[arg(long)]
        all: bool,
        /// With --all: only dead jobs of this kind (`email.send`).
        #[arg(long, requires = "all")]
        kind: Option<String>,
    },
    /// Enqueue diagnostic jobs to check that workers are running.
    Ping {
        /// How many jobs to enqueue.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Each job sleeps this long before finishing.
        #[arg(long, default_value_t = 0)]
        sleep_ms: u64,
        /// Each job fails (to exercise retries and the dead state).
        #[arg(long)]
        fail: bool,
        /// Each job panics, as a bug in a job would (the worker survives it).
        #[arg(long)]
        panic: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Create a platform admin, or promote an existing account.
    ///
    /// Without --password-stdin a one-time link to set the password is printed.
    Create {
        /// The admin's email address.
        #[arg(long)]
        email: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MailAction {
    /// Send a test email now (not queued), to check SMTP_URL and MAIL_FROM.
    Test {
        /// Recipient address.
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// Apply pending migrations before serving, also in production.
    #[arg(long)]
    pub migrate: bool,
    /// Load the demo organization first (development only), e.g. on an empty database.
    #[arg(long)]
    pub demo: bool,
}

impl Cli {
    pub fn command(self) -> Command {
        self.command.unwrap_or(Command::Serve(ServeArgs::default()))
    }
}
