//! Layering: built-in defaults → `config/default.toml` → `config/<env>.toml` → environment
//! (whose names live in [`super::env`] alone), merged without validating.

use std::path::PathBuf;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;

use super::env;
use super::raw::RawConfig;
use super::runtime::{Config, ConfigError};
use super::validate::validate;

/// Where to look for configuration files, and which environment to layer on top.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub dir: PathBuf,
    /// `GATEWAY_ENV`: selects `config/<env>.toml`.
    pub env: String,
}

impl ConfigSource {
    pub fn from_env(dir: Option<PathBuf>) -> Self {
        ConfigSource {
            dir: dir
                .or_else(|| std::env::var_os("GATEWAY_CONFIG_DIR").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("config")),
            env: std::env::var("GATEWAY_ENV").unwrap_or_else(|_| "development".into()),
        }
    }
}

impl Config {
    /// Loads and validates every layer.
    pub fn load(source: &ConfigSource) -> Result<Config, ConfigError> {
        let raw = load_raw(source, env::environment_layer(std::env::vars()))?;
        validate(raw, &source.env)
    }
}

/// Merges the layers without validating them.
pub fn load_raw(source: &ConfigSource, environment: Figment) -> Result<RawConfig, ConfigError> {
    let file = |name: &str| {
        let path = source.dir.join(name);
        path.exists().then(|| Toml::file_exact(path))
    };
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(default) = file("default.toml") {
        figment = figment.merge(default);
    }
    if let Some(env_file) = file(&format!("{}.toml", source.env)) {
        figment = figment.merge(env_file);
    }
    figment
        .merge(environment)
        .extract::<RawConfig>()
        .map_err(|error| ConfigError(error.into_iter().map(|e| describe(&e)).collect()))
}

/// One figment error as `path: message (from origin)`, so an operator sees which layer said it.
fn describe(error: &figment::Error) -> String {
    let path = error.path.join(".");
    let origin = error
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => format!(" (from {source})"),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    if path.is_empty() {
        format!("{}{origin}", error.kind)
    } else {
        format!("{path}: {}{origin}", error.kind)
    }
}
