//! The command line: `gateway serve` (the default) and `gateway check-config`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

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
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let source = ConfigSource::from_env(cli.config_dir);
    let config = Config::load(&source)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => check_config(&config),
        Command::Serve => serve(config),
    }
}

fn check_config(config: &Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(discovery) = &config.discovery {
        let backend = actors::discovery::static_file::StaticFileDiscovery::new(
            &discovery.static_file,
            discovery.poll_interval,
        );
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
        gateway.server.await.context("server")?;
        tracing::info!("gateway stopped");
        Ok(())
    })
}
