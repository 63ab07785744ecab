use std::process::ExitCode;

use clap::Parser as _;
use frontdesk::cli::{Cli, Command};
use frontdesk::commands;

fn main() -> ExitCode {
    match Cli::parse().command() {
        Command::Serve(args) => commands::serve(args.migrate, args.demo),
        Command::Demo => commands::demo(),
        Command::Migrate { dry_run, revert } => commands::migrate(dry_run, revert),
        Command::Check => commands::check(),
        Command::Worker => commands::worker(),
        Command::Jobs { action } => commands::jobs(action),
        Command::Mail { action } => commands::mail(action),
        Command::Keys { action } => commands::keys(action),
        Command::Admin { action } => commands::admin(action),
        Command::Backup { out } => commands::backup(&out),
        Command::Export { org, out } => commands::export(&org, &out),
    }
}
