//! The command line: `gateway serve` (the default), `check-config`, `migrate`, and the
//! operator commands `keys`, `users` and `usage`, which read the same `DATABASE_URL`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use actors::store::users::Role;
use actors::store::{now_millis, Store};
use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::admin::{self, CreateKeyRequest};
use crate::config::{Config, ConfigSource};
use crate::{server, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    about = "OpenAI-compatible AI service gateway"
)]
pub struct Cli {
    /// Directory holding default.toml and <env>.toml (default: $GATEWAY_CONFIG_DIR or ./config).
    #[arg(long, global = true)]
    pub config_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Validate the configuration and print the effective values, secrets masked.
    CheckConfig,
    /// Apply pending database migrations.
    Migrate,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage dashboard and admin users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Copy a live SQLite database to a file (PostgreSQL: use pg_dump).
    Backup {
        #[arg(long)]
        out: PathBuf,
    },
    /// Show usage, aggregated.
    Usage {
        /// Days back from now.
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// key, model or day.
        #[arg(long, default_value = "key")]
        group_by: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (shown only this once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        owner: Option<String>,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<i64>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<i64>,
        /// Total token budget.
        #[arg(long)]
        budget: Option<i64>,
        /// Requests in flight at once (per gateway process).
        #[arg(long)]
        max_concurrency: Option<i64>,
        /// Comma-separated models the key may use (`service/*` allows a whole service).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; the password is read from the first line of standard input.
    Create {
        #[arg(long)]
        username: String,
        /// admin or viewer.
        #[arg(long, default_value = "admin")]
        role: String,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let source = ConfigSource::from_env(cli.config_dir);
    let config = Config::load(&source)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => check_config(&config),
        Command::Serve => serve(config),
        Command::Migrate => {
            let applied = Store::migrate(&config.database.target)?;
            eprintln!(
                "{}: {} migration(s) applied",
                config.database.target.display_masked(),
                applied.len()
            );
            Ok(())
        }
        Command::Keys(command) => with_store(&config, |store| keys(store, command)),
        Command::Users(command) => with_store(&config, |store| users(store, command)),
        Command::Backup { out } => with_store(&config, |store| async move {
            store.backup_sqlite(&out).await?;
            eprintln!("backed up to {}", out.display());
            Ok(())
        }),
        Command::Usage { days, group_by } => {
            with_store(&config, |store| usage(store, days, group_by))
        }
    }
}

/// Runs an operator command against the configured database (migrated first).
fn with_store<F, Fut>(config: &Config, command: F) -> anyhow::Result<()>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    Store::migrate(&config.database.target)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Store::open(&config.database.target, 2)?;
        command(store).await
    })
}

fn plain(error: crate::error::GatewayError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

async fn keys(store: Store, command: KeysCommand) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match command {
        KeysCommand::Create {
            name,
            owner,
            rpm,
            tpm,
            budget,
            max_concurrency,
            models,
            expires_in_days,
        } => {
            let created = admin::create_key(
                &store,
                CreateKeyRequest {
                    name,
                    owner,
                    rpm,
                    tpm,
                    token_budget: budget,
                    allowed_models: models,
                    expires_at: None,
                    expires_in_days,
                    max_concurrency,
                },
            )
            .await
            .map_err(plain)?;
            eprintln!(
                "created key {} ({}, {}); it is shown only now:",
                created.view.id, created.view.name, created.view.prefix
            );
            writeln!(stdout, "{}", created.key)?;
        }
        KeysCommand::List => {
            writeln!(
                stdout,
                "{:<6} {:<24} {:<16} {:<10} {:>8} {:>10} {:>12}  models",
                "id", "name", "prefix", "state", "rpm", "tpm", "budget"
            )?;
            let now = now_millis();
            for key in admin::list_keys(&store).await.map_err(plain)? {
                let state = if key.revoked_at.is_some() {
                    "revoked"
                } else if key.expires_at.is_some_and(|at| at <= now) {
                    "expired"
                } else {
                    "active"
                };
                let show = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
                writeln!(
                    stdout,
                    "{:<6} {:<24} {:<16} {:<10} {:>8} {:>10} {:>12}  {}",
                    key.id,
                    key.name,
                    key.prefix,
                    state,
                    show(key.rpm),
                    show(key.tpm),
                    show(key.token_budget),
                    key.allowed_models
                        .map_or_else(|| "*".to_string(), |m| m.join(","))
                )?;
            }
        }
        KeysCommand::Revoke { id } => {
            admin::revoke_key(&store, id).await.map_err(plain)?;
            writeln!(stdout, "revoked key {id}")?;
        }
    }
    Ok(())
}

async fn users(store: Store, command: UsersCommand) -> anyhow::Result<()> {
    let UsersCommand::Create { username, role } = command;
    admin::check_name("username", &username).map_err(plain)?;
    let role = Role::parse(&role).context("--role must be admin or viewer")?;
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.len() < 8 {
        anyhow::bail!("the password (first line of standard input) must be at least 8 characters");
    }
    let user = store.create_user(&username, password, role).await?;
    eprintln!("created user {} ({})", user.username, user.role);
    Ok(())
}

async fn usage(store: Store, days: i64, group_by: String) -> anyhow::Result<()> {
    let grouping = admin::parse_grouping(&group_by).map_err(plain)?;
    let to = now_millis() + 1;
    let from = to - days.max(1) * 86_400_000;
    let lines = admin::usage_report(&store, from, to, grouping)
        .await
        .map_err(plain)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{:<28} {:>9} {:>12} {:>12} {:>12} {:>9}",
        group_by, "requests", "prompt", "completion", "total", "estimated"
    )?;
    for line in lines {
        writeln!(
            stdout,
            "{:<28} {:>9} {:>12} {:>12} {:>12} {:>9}",
            line.group,
            line.requests,
            line.prompt_tokens,
            line.completion_tokens,
            line.total_tokens,
            line.estimated_requests
        )?;
    }
    Ok(())
}

fn check_config(config: &Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(discovery) = config
        .discovery
        .as_ref()
        .filter(|d| matches!(d.backend, crate::config::DiscoveryBackend::Static))
    {
        let backend = actors::discovery::static_file::StaticFileDiscovery::new(
            &discovery.static_file,
            discovery.poll_interval,
        )
        .preferring(discovery.preferred_protocol);
        let services = runtime.block_on(backend.read())?;
        eprintln!(
            "discovery: {} service(s) in {}",
            services.len(),
            discovery.static_file.display()
        );
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "# environment: {}", config.env)?;
    write!(stdout, "{}", config.render_masked())?;
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log_format, &config.log_level);
    actix_web::rt::System::new().block_on(async move {
        let gateway = server::start(config).await?;
        let usage = gateway.usage.clone();
        let registration = gateway.consul_registration;
        gateway.server.await.context("server")?;
        if let Some(registration) = registration {
            match registration.deregister().await {
                Ok(()) => tracing::info!(id = %registration.id, "deregistered from consul"),
                Err(error) => tracing::warn!(%error, "could not deregister from consul"),
            }
        }
        // Graceful shutdown: what was billed reaches the database before the process ends.
        match tokio::time::timeout(Duration::from_secs(15), usage.flush()).await {
            Ok(true) => tracing::info!("usage flushed"),
            _ => tracing::error!(
                pending = usage.pending(),
                "could not flush all usage before exiting"
            ),
        }
        tracing::info!("gateway stopped");
        Ok(())
    })
}
