//! API keys: random secrets shown once, stored only as a SHA-256 hash with a display prefix.

use base64::Engine;
use diesel::{
    BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper,
};
use diesel_async::RunQueryDsl;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::schema::{api_keys, usage_events};
use super::{now_millis, Store, StoreError};
use crate::with_conn;

/// Every key starts with this, so leaked keys are easy to scan for.
pub const KEY_PREFIX: &str = "sk-gw-";

/// A key as stored, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = api_keys)]
pub struct KeyRow {
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
    pub allowed_models: Option<String>,
    pub max_concurrency: Option<i64>,
}

impl KeyRow {
    /// The allow-list; `None` allows every model.
    pub fn allowed_models(&self) -> Option<Vec<String>> {
        self.allowed_models
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
    }
}

/// Limits and metadata for a new key or an update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub token_budget: Option<i64>,
    pub allowed_models: Option<Vec<String>>,
    pub expires_at: Option<i64>,
    pub max_concurrency: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub owner: Option<String>,
    pub limits: KeyLimits,
}

/// A partial update; `Some(None)` clears a limit.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    pub name: Option<String>,
    pub rpm: Option<Option<i64>>,
    pub tpm: Option<Option<i64>>,
    pub token_budget: Option<Option<i64>>,
    pub allowed_models: Option<Option<Vec<String>>>,
    pub expires_at: Option<Option<i64>>,
    pub max_concurrency: Option<Option<i64>>,
}

/// The lookup form of a secret.
/// Runs on every authenticated request (the key cache is keyed by it), so the hex is written
/// straight into one buffer rather than formatted byte by byte.
pub fn hash_key(secret: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

/// Characters of a secret after [`KEY_PREFIX`]: 32 bytes in unpadded base64url.
pub const SECRET_BODY_LEN: usize = 43;

/// Whether `secret` has the shape [`generate_secret`] gives every key: anything else cannot be
/// a key of this gateway, and is refused without hashing it or asking the database.
pub fn is_well_formed(secret: &str) -> bool {
    secret.strip_prefix(KEY_PREFIX).is_some_and(|body| {
        body.len() == SECRET_BODY_LEN
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// A fresh secret (32 random bytes) and its display prefix.
pub fn generate_secret() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let prefix = format!("{}…", &secret[..KEY_PREFIX.len() + 6]);
    (secret, prefix)
}

fn encode_models(models: &Option<Vec<String>>) -> Option<String> {
    models
        .as_ref()
        .map(|list| serde_json::Value::from(list.clone()).to_string())
}

#[derive(diesel::Insertable)]
#[diesel(table_name = api_keys)]
struct InsertKey<'a> {
    name: &'a str,
    prefix: &'a str,
    key_hash: &'a str,
    owner: Option<&'a str>,
    created_at: i64,
    expires_at: Option<i64>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    token_budget: Option<i64>,
    allowed_models: Option<String>,
    max_concurrency: Option<i64>,
}

impl Store {
    /// Creates a key and returns it with its secret, which is never stored.
    pub async fn create_key(&self, new: &NewKey) -> Result<(KeyRow, String), StoreError> {
        let (secret, prefix) = generate_secret();
        let hash = hash_key(&secret);
        let row = InsertKey {
            name: &new.name,
            prefix: &prefix,
            key_hash: &hash,
            owner: new.owner.as_deref(),
            created_at: now_millis(),
            expires_at: new.limits.expires_at,
            rpm: new.limits.rpm,
            tpm: new.limits.tpm,
            token_budget: new.limits.token_budget,
            allowed_models: encode_models(&new.limits.allowed_models),
            max_concurrency: new.limits.max_concurrency,
        };
        let key = with_conn!(self, conn => {
            diesel::insert_into(api_keys::table)
                .values(&row)
                .returning(KeyRow::as_returning())
                .get_result(conn)
                .await?
        });
        Ok((key, secret))
    }

    pub async fn find_key_by_hash(&self, hash: &str) -> Result<Option<KeyRow>, StoreError> {
        Ok(with_conn!(self, conn => {
            api_keys::table
                .filter(api_keys::key_hash.eq(hash))
                .select(KeyRow::as_select())
                .first(conn)
                .await
                .optional()?
        }))
    }

    pub async fn find_key(&self, id: i64) -> Result<Option<KeyRow>, StoreError> {
        Ok(with_conn!(self, conn => {
            api_keys::table
                .find(id)
                .select(KeyRow::as_select())
                .first(conn)
                .await
                .optional()?
        }))
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        Ok(with_conn!(self, conn => {
            api_keys::table
                .order(api_keys::id.asc())
                .select(KeyRow::as_select())
                .load(conn)
                .await?
        }))
    }

    /// Keys that are neither revoked nor expired (the `gateway_active_keys` gauge).
    pub async fn count_active_keys(&self) -> Result<u64, StoreError> {
        let now = now_millis();
        let count: i64 = with_conn!(self, conn => {
            api_keys::table
                .filter(api_keys::revoked_at.is_null())
                .filter(api_keys::expires_at.is_null().or(api_keys::expires_at.gt(now)))
                .count()
                .get_result(conn)
                .await?
        });
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Revokes a key; returns false when there is no such key. Revoking twice keeps the first
    /// revocation time.
    pub async fn revoke_key(&self, id: i64) -> Result<bool, StoreError> {
        let now = now_millis();
        let updated = with_conn!(self, conn => {
            diesel::update(api_keys::table.find(id).filter(api_keys::revoked_at.is_null()))
                .set(api_keys::revoked_at.eq(Some(now)))
                .execute(conn)
                .await?
        });
        if updated == 0 {
            return Ok(self.find_key(id).await?.is_some());
        }
        Ok(true)
    }

    pub async fn update_key(
        &self,
        id: i64,
        update: &KeyUpdate,
    ) -> Result<Option<KeyRow>, StoreError> {
        let Some(mut row) = self.find_key(id).await? else {
            return Ok(None);
        };
        if let Some(name) = &update.name {
            row.name = name.clone();
        }
        if let Some(rpm) = update.rpm {
            row.rpm = rpm;
        }
        if let Some(tpm) = update.tpm {
            row.tpm = tpm;
        }
        if let Some(budget) = update.token_budget {
            row.token_budget = budget;
        }
        if let Some(models) = &update.allowed_models {
            row.allowed_models = encode_models(models);
        }
        if let Some(expires) = update.expires_at {
            row.expires_at = expires;
        }
        if let Some(max) = update.max_concurrency {
            row.max_concurrency = max;
        }
        let values = (
            api_keys::name.eq(row.name.clone()),
            api_keys::rpm.eq(row.rpm),
            api_keys::tpm.eq(row.tpm),
            api_keys::token_budget.eq(row.token_budget),
            api_keys::allowed_models.eq(row.allowed_models.clone()),
            api_keys::expires_at.eq(row.expires_at),
            api_keys::max_concurrency.eq(row.max_concurrency),
        );
        with_conn!(self, conn => {
            diesel::update(api_keys::table.find(id))
                .set(values)
                .execute(conn)
                .await?
        });
        Ok(Some(row))
    }

    /// Tokens a key has used so far (cached answers are free), from the usage rows themselves,
    /// so the figure can never drift from what was billed.
    pub async fn tokens_used(&self, key_id: i64) -> Result<i64, StoreError> {
        let total = with_conn!(self, conn => {
            usage_events::table
                .filter(usage_events::key_id.eq(key_id))
                .filter(usage_events::cached.eq(false))
                .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                    "CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT)",
                ))
                .first::<i64>(conn)
                .await?
        });
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_hashed() {
        let (a, prefix) = generate_secret();
        let (b, _) = generate_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() >= KEY_PREFIX.len() + 43);
        assert!(prefix.starts_with(&a[..12]));
        assert_eq!(hash_key(&a).len(), 64);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_ne!(hash_key(&a), hash_key(&b));
    }

    #[test]
    fn only_the_shape_of_issued_keys_is_well_formed() {
        for _ in 0..100 {
            assert!(is_well_formed(&generate_secret().0));
        }
        let good = generate_secret().0;
        let bad = [
            String::new(),
            "sk-gw-".into(),
            "sk-gw-not-a-real-key".into(),
            good.replacen("sk-gw-", "sk-xx-", 1),
            format!("{good}A"),
            good[..good.len() - 1].to_string(),
            format!("{}=", &good[..good.len() - 1]),
            format!("{}\u{e9}", &good[..good.len() - 2]),
            format!("{} ", &good[..good.len() - 1]),
        ];
        for secret in bad {
            assert!(!is_well_formed(&secret), "{secret:?} passed");
        }
    }

    #[test]
    fn hashes_are_lowercase_hex_sha256() {
        // FIPS 180-2 test vector: rows stored by earlier versions must still match.
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
