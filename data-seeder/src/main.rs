//! `data-seeder`: seeds accounts, sanctioned names and consumer groups into an event store, once; running it
//! again changes nothing. With `--create-users` it also makes a user per domain service and makes the streams it
//! seeds private to their domain. Progress goes to stderr, the report (JSON) to stdout.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser;
use data_seeder::{domain_users, seed, Progress, SeedPlan, DOMAIN_USERS};
use infrastructure::EventStoreArgs;

/// Prepares an event store for the bank: accounts (some blocked, some closed), sanctioned names, and every
/// persistent subscription group; optionally a user per domain service and stream ACLs. Idempotent.
#[derive(Debug, Parser)]
#[command(name = "data-seeder", version)]
struct Cli {
    #[command(flatten)]
    eventstore: EventStoreArgs,

    /// How many accounts to seed, including the blocked and closed ones.
    #[arg(long, env = "SEED_ACCOUNTS", default_value_t = 100)]
    accounts: u32,

    /// How many of the accounts are blocked.
    #[arg(long, env = "SEED_BLOCKED", default_value_t = 5)]
    blocked: u32,

    /// How many of the accounts are closed (emptied first, so with a zero balance).
    #[arg(long, env = "SEED_CLOSED", default_value_t = 5)]
    closed: u32,

    /// Sanctioned names, comma-separated (default: a fictional list).
    #[arg(long, env = "SEED_SANCTIONED_NAMES", value_delimiter = ',')]
    sanctioned_names: Option<Vec<String>>,

    /// How many store operations to keep in flight.
    #[arg(long, env = "SEED_CONCURRENCY", default_value_t = 32)]
    concurrency: usize,

    /// Create a store user per domain service (accounts-api, sanctions-api, payment-scheme-domain,
    /// scheme-simulator; each in its domain's group and in `$ops`) through the store's HTTP users API, and make
    /// the seeded streams writable only by their domain. Needs an admin's credentials in --eventstore.
    #[arg(long, env = "SEED_CREATE_USERS", requires = "user_passwords")]
    create_users: bool,

    /// The domain users' passwords, as LOGIN=PASSWORD (repeat the option, or separate with commas); every
    /// domain user needs one.
    #[arg(
        long = "user-password",
        env = "SEED_USER_PASSWORDS",
        value_delimiter = ',',
        value_parser = parse_login_password
    )]
    user_passwords: Vec<(String, String)>,
}

fn parse_login_password(value: &str) -> Result<(String, String), String> {
    let (login, password) = value
        .split_once('=')
        .ok_or_else(|| format!("'{value}' is not LOGIN=PASSWORD"))?;
    if !DOMAIN_USERS.iter().any(|user| user.login == login) {
        let logins: Vec<_> = DOMAIN_USERS.iter().map(|user| user.login).collect();
        return Err(format!(
            "'{login}' is not a domain user (one of {})",
            logins.join(", ")
        ));
    }
    Ok((login.to_owned(), password.to_owned()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infrastructure::init_telemetry("warn,data_seeder=info");
    let cli = Cli::parse();
    let defaults = SeedPlan::default();
    let users = if cli.create_users {
        let mut missing = Vec::new();
        let users = domain_users(|login| {
            let given = cli.user_passwords.iter().rev().find(|(l, _)| l == login);
            given
                .map(|(_, password)| password.clone())
                .unwrap_or_else(|| {
                    missing.push(login.to_owned());
                    String::new()
                })
        });
        anyhow::ensure!(
            missing.is_empty(),
            "--create-users needs --user-password for {}",
            missing.join(", ")
        );
        users
    } else {
        Vec::new()
    };
    let plan = SeedPlan {
        accounts: cli.accounts,
        blocked: cli.blocked,
        closed: cli.closed,
        sanctioned_names: cli.sanctioned_names.unwrap_or(defaults.sanctioned_names),
        concurrency: cli.concurrency,
        users,
    };
    plan.validate().context("invalid options")?;
    let store = cli
        .eventstore
        .connect()
        .await
        .context("connecting to the event store")?;
    let report = seed(&store, &plan, show_progress).await?;
    eprintln!(
        "seeded: users {} created, {} already there; accounts {} created, {} already there; \
         sanctioned names {} added, {} already there; consumer groups {} created, {} already there",
        report.users_created.len(),
        report.users_existing.len(),
        report.accounts_created,
        report.accounts_existing,
        report.sanctioned_names_added,
        report.sanctioned_names_existing,
        report.groups_created.len(),
        report.groups_existing.len(),
    );
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// One line per stage, rewritten in place (`\r`) about every 1% and at the end.
fn show_progress(progress: Progress) {
    let step = (progress.total / 100).max(1);
    let finished = progress.done == progress.total;
    if !progress.done.is_multiple_of(step) && !finished {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    let _ = write!(
        stderr,
        "\r{:<17} {:>8}/{:<8}",
        progress.stage.to_string(),
        progress.done,
        progress.total
    );
    if finished {
        let _ = writeln!(stderr);
    }
    let _ = stderr.flush();
}
