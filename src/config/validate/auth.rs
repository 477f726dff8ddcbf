//! The `auth` section: the JWT secret (required and strong in production, random and
//! short-lived in development), token lifetime, and the key and user caches' delays.

use std::time::Duration;

use super::Errors;
use crate::config::raw::RawAuth;
use crate::config::runtime::AuthConfig;

pub(super) fn auth(raw: &RawAuth, production: bool, errors: &mut Errors) -> AuthConfig {
    let (jwt_secret, jwt_secret_generated) = match raw
        .jwt_secret
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        Some(secret) => {
            if production {
                if let Some(reason) = weak_secret(secret) {
                    errors.push(format!("auth.jwt_secret (JWT_SECRET): refusing to run in production because {reason}"));
                }
            }
            (secret.to_string(), false)
        }
        None if production => {
            errors.push(
                "auth.jwt_secret (JWT_SECRET): required in production (at least 32 random bytes)"
                    .into(),
            );
            (String::new(), false)
        }
        None => (random_secret(), true),
    };
    let jwt_expiry = parse_duration(&raw.jwt_expiry).unwrap_or_else(|| {
        errors.push(format!(
            "auth.jwt_expiry: {:?} is not a duration like 24h, 30m or 3600s",
            raw.jwt_expiry
        ));
        Duration::from_secs(86_400)
    });
    if !(1..=60).contains(&raw.user_cache_ttl_secs) {
        errors.push(
            "auth.user_cache_ttl_secs: must be 1 to 60 (the delay before a deleted or demoted user loses access)"
                .into(),
        );
    }
    if !(1..=256).contains(&raw.login_max_concurrent) {
        errors.push(
            "auth.login_max_concurrent: must be 1 to 256 (password hashes at once, ~19 MiB each)"
                .into(),
        );
    }
    if !(1..=60_000).contains(&raw.login_wait_ms) {
        errors.push("auth.login_wait_ms: must be 1 to 60000".into());
    }
    if raw.max_failures_per_minute > 100_000 {
        errors.push(
            "auth.max_failures_per_minute: must be at most 100000 (0 turns the throttle off)"
                .into(),
        );
    }
    AuthConfig {
        enabled: raw.enabled,
        jwt_secret,
        jwt_secret_generated,
        jwt_expiry,
        jwt_issuer: raw.jwt_issuer.clone(),
        jwt_audience: raw.jwt_audience.clone(),
        key_cache_ttl: Duration::from_secs(raw.key_cache_ttl_secs),
        user_cache_ttl: Duration::from_secs(raw.user_cache_ttl_secs),
        max_failures_per_minute: raw.max_failures_per_minute,
        login_max_concurrent: raw.login_max_concurrent,
        login_wait: Duration::from_millis(raw.login_wait_ms),
    }
}

/// Parses `24h`, `30m`, `45s` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => value,
        "m" => value.checked_mul(60)?,
        "h" => value.checked_mul(3600)?,
        "d" => value.checked_mul(86_400)?,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// Why a JWT secret is unfit for production, if it is.
pub fn weak_secret(secret: &str) -> Option<&'static str> {
    let lower = secret.to_ascii_lowercase();
    if secret.len() < 32 {
        return Some("it is shorter than 32 bytes");
    }
    if [
        "change", "secret", "default", "example", "password", "your-", "dev-", "test",
    ]
    .iter()
    .any(|word| lower.contains(word))
    {
        return Some("it looks like a placeholder");
    }
    let distinct: std::collections::HashSet<char> = secret.chars().collect();
    if distinct.len() < 8 {
        return Some("it has too few distinct characters");
    }
    None
}

/// A development-only secret: 32 random bytes, gone with the process.
fn random_secret() -> String {
    actors::store::keys::generate_secret().0
}
