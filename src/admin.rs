//! Operator actions shared by the admin REST API and the CLI: validating and applying key
//! changes, and usage reports; [`users`] holds the user operations.

pub mod users;

use actors::store::keys::{KeyLimits, KeyRow, KeyUpdate, NewKey};
use actors::store::usage::{UsageGrouping, UsageSummary};
use actors::store::{now_millis, Store, StoreError};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::GatewayError;

const MAX_NAME: usize = 64;
const MAX_MODELS: usize = 100;
const MAX_MODEL_NAME: usize = 200;

/// A request to create a key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub name: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub rpm: Option<i64>,
    #[serde(default)]
    pub tpm: Option<i64>,
    #[serde(default)]
    pub token_budget: Option<i64>,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    /// Unix milliseconds.
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub expires_in_days: Option<i64>,
    /// Requests of this key in flight at once (per gateway process).
    #[serde(default)]
    pub max_concurrency: Option<i64>,
}

fn double<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?))
}

/// A partial update: an absent field stays, `null` clears a limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double")]
    pub rpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double")]
    pub tpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double")]
    pub token_budget: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double")]
    pub allowed_models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double")]
    pub expires_at: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double")]
    pub max_concurrency: Option<Option<i64>>,
}

/// A key as operators see it (never its secret or hash).
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub owner: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub token_budget: Option<i64>,
    pub allowed_models: Option<Vec<String>>,
    pub max_concurrency: Option<i64>,
}

impl From<&KeyRow> for KeyView {
    fn from(row: &KeyRow) -> Self {
        KeyView {
            id: row.id,
            name: row.name.clone(),
            prefix: row.prefix.clone(),
            owner: row.owner.clone(),
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            rpm: row.rpm,
            tpm: row.tpm,
            token_budget: row.token_budget,
            allowed_models: row.allowed_models(),
            max_concurrency: row.max_concurrency,
        }
    }
}

/// A created key: the only time its secret is shown.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub view: KeyView,
}

fn invalid(param: &'static str, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidParameter {
        param,
        message: message.into(),
    }
}

/// Names are shown in dashboards and logs: plain words only.
pub fn check_name(param: &'static str, name: &str) -> Result<(), GatewayError> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME {
        return Err(invalid(
            param,
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.' | '@'))
    {
        return Err(invalid(
            param,
            "may only contain letters, digits, spaces and _ - . @",
        ));
    }
    Ok(())
}

fn check_limit(param: &'static str, value: Option<i64>) -> Result<(), GatewayError> {
    match value {
        Some(v) if v < 0 => Err(invalid(param, "must not be negative")),
        _ => Ok(()),
    }
}

fn check_models(models: &Option<Vec<String>>) -> Result<(), GatewayError> {
    let Some(models) = models else {
        return Ok(());
    };
    if models.len() > MAX_MODELS {
        return Err(invalid(
            "allowed_models",
            format!("at most {MAX_MODELS} entries"),
        ));
    }
    if models
        .iter()
        .any(|m| m.trim().is_empty() || m.len() > MAX_MODEL_NAME || m.chars().any(char::is_control))
    {
        return Err(invalid(
            "allowed_models",
            format!("entries must be non-empty model names of at most {MAX_MODEL_NAME} characters"),
        ));
    }
    Ok(())
}

fn check_expiry(expires_at: Option<i64>) -> Result<(), GatewayError> {
    match expires_at {
        Some(at) if at <= now_millis() => Err(invalid("expires_at", "must be in the future")),
        _ => Ok(()),
    }
}

fn store_error(error: StoreError) -> GatewayError {
    GatewayError::StoreUnavailable(error.to_string())
}

pub async fn create_key(
    store: &Store,
    request: CreateKeyRequest,
) -> Result<CreatedKey, GatewayError> {
    check_name("name", &request.name)?;
    if let Some(owner) = &request.owner {
        check_name("owner", owner)?;
    }
    check_limit("rpm", request.rpm)?;
    check_limit("tpm", request.tpm)?;
    check_limit("token_budget", request.token_budget)?;
    check_limit("max_concurrency", request.max_concurrency)?;
    check_models(&request.allowed_models)?;
    let expires_at = match (request.expires_at, request.expires_in_days) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "expires_at",
                "give expires_at or expires_in_days, not both",
            ))
        }
        (at, None) => at,
        (None, Some(days)) if days > 0 => Some(now_millis() + days * 86_400_000),
        (None, Some(_)) => return Err(invalid("expires_in_days", "must be positive")),
    };
    check_expiry(expires_at)?;
    let new = NewKey {
        name: request.name.trim().to_string(),
        owner: request.owner,
        limits: KeyLimits {
            rpm: request.rpm,
            tpm: request.tpm,
            token_budget: request.token_budget,
            allowed_models: request.allowed_models,
            expires_at,
            max_concurrency: request.max_concurrency,
        },
    };
    let (row, secret) = store.create_key(&new).await.map_err(store_error)?;
    Ok(CreatedKey {
        key: secret,
        view: KeyView::from(&row),
    })
}

pub async fn update_key(
    store: &Store,
    id: i64,
    request: UpdateKeyRequest,
) -> Result<KeyView, GatewayError> {
    if let Some(name) = &request.name {
        check_name("name", name)?;
    }
    check_limit("rpm", request.rpm.flatten())?;
    check_limit("tpm", request.tpm.flatten())?;
    check_limit("token_budget", request.token_budget.flatten())?;
    check_limit("max_concurrency", request.max_concurrency.flatten())?;
    if let Some(models) = &request.allowed_models {
        check_models(models)?;
    }
    check_expiry(request.expires_at.flatten())?;
    let update = KeyUpdate {
        name: request.name,
        rpm: request.rpm,
        tpm: request.tpm,
        token_budget: request.token_budget,
        allowed_models: request.allowed_models,
        expires_at: request.expires_at,
        max_concurrency: request.max_concurrency,
    };
    store
        .update_key(id, &update)
        .await
        .map_err(store_error)?
        .map(|row| KeyView::from(&row))
        .ok_or_else(|| GatewayError::ResourceNotFound(format!("No key with id {id}.")))
}

pub async fn revoke_key(store: &Store, id: i64) -> Result<(), GatewayError> {
    if store.revoke_key(id).await.map_err(store_error)? {
        Ok(())
    } else {
        Err(GatewayError::ResourceNotFound(format!(
            "No key with id {id}."
        )))
    }
}

pub async fn list_keys(store: &Store) -> Result<Vec<KeyView>, GatewayError> {
    Ok(store
        .list_keys()
        .await
        .map_err(store_error)?
        .iter()
        .map(KeyView::from)
        .collect())
}

/// A usage report line, with days rendered as dates.
#[derive(Debug, Clone, Serialize)]
pub struct UsageLine {
    pub group: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub estimated_requests: i64,
    pub cached_requests: i64,
}

pub fn parse_grouping(text: &str) -> Result<UsageGrouping, GatewayError> {
    match text {
        "key" => Ok(UsageGrouping::Key),
        "model" => Ok(UsageGrouping::Model),
        "day" => Ok(UsageGrouping::Day),
        _ => Err(invalid("group_by", "must be key, model or day")),
    }
}

pub async fn usage_report(
    store: &Store,
    from: i64,
    to: i64,
    grouping: UsageGrouping,
) -> Result<Vec<UsageLine>, GatewayError> {
    if from > to {
        return Err(invalid("from", "must not be after 'to'"));
    }
    let rows: Vec<UsageSummary> = store
        .usage_summary(from, to, grouping)
        .await
        .map_err(store_error)?;
    Ok(rows
        .into_iter()
        .map(|row| UsageLine {
            group: match grouping {
                UsageGrouping::Day => row
                    .group
                    .parse::<i64>()
                    .map_or(row.group.clone(), civil_date),
                UsageGrouping::Key | UsageGrouping::Model => row.group,
            },
            requests: row.requests,
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
            total_tokens: row.prompt_tokens + row.completion_tokens,
            estimated_requests: row.estimated_requests,
            cached_requests: row.cached_requests,
        })
        .collect())
}

/// `YYYY-MM-DD` for a count of days since 1970-01-01 (Howard Hinnant's civil-from-days).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_420), "2025-11-28");
        assert_eq!(civil_date(11_016), "2000-02-29");
    }

    #[test]
    fn names_are_plain() {
        assert!(check_name("name", "team-a key 1").is_ok());
        for bad in [
            "",
            "   ",
            "x'; DROP TABLE api_keys; --",
            "a\\nb",
            &"x".repeat(65),
            "<script>",
        ] {
            assert!(check_name("name", bad).is_err(), "{bad:?}");
        }
    }
}
