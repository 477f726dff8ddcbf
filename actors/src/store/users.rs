//! Dashboard and admin users, with argon2 password hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
use diesel_async::RunQueryDsl;
use rand::RngCore;

use super::schema::users;
use super::{now_millis, Store, StoreError};
use crate::with_conn;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
}

pub fn hash_password(password: &str) -> Result<String, StoreError> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| StoreError::Invalid(format!("cannot make a salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| StoreError::Invalid(format!("cannot hash the password: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

impl Store {
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<UserRow, StoreError> {
        let password = password.to_string();
        let hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| StoreError::Invalid(e.to_string()))??;
        let values = (
            users::username.eq(username),
            users::password_hash.eq(hash),
            users::role.eq(role.as_str()),
            users::created_at.eq(now_millis()),
        );
        Ok(with_conn!(self, conn => {
            diesel::insert_into(users::table)
                .values(values)
                .returning(UserRow::as_returning())
                .get_result(conn)
                .await?
        }))
    }

    /// The user if the password matches. Hash verification runs off the async threads.
    pub async fn verify_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<UserRow>, StoreError> {
        // A name no user can have (PostgreSQL would refuse a NUL in the query) finds nobody.
        let storable = super::text::is_clean(username, super::text::MAX_LABEL);
        let found: Option<UserRow> = if !storable {
            None
        } else {
            with_conn!(self, conn => {
            users::table
                .filter(users::username.eq(username))
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()?
            })
        };
        let password = password.to_string();
        // Verify against a fixed hash when the user does not exist, so timing does not tell
        // which user names exist.
        let (user, hash) = match found {
            Some(user) => {
                let hash = user.password_hash.clone();
                (Some(user), hash)
            }
            None => (None, dummy_hash().to_string()),
        };
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        Ok(user.filter(|_| ok))
    }
}

impl Store {
    /// The user named `username`, if there is one.
    pub async fn find_user(&self, username: &str) -> Result<Option<UserRow>, StoreError> {
        if !super::text::is_clean(username, super::text::MAX_LABEL) {
            return Ok(None);
        }
        Ok(with_conn!(self, conn => {
            users::table
                .filter(users::username.eq(username))
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()?
        }))
    }

    /// Every user, oldest first.
    pub async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        Ok(with_conn!(self, conn => {
            users::table
                .order(users::id.asc())
                .select(UserRow::as_select())
                .load(conn)
                .await?
        }))
    }

    /// Changes a user's role; `None` when there is no such user.
    pub async fn set_user_role(
        &self,
        username: &str,
        role: Role,
    ) -> Result<Option<UserRow>, StoreError> {
        let updated = with_conn!(self, conn => {
            diesel::update(users::table.filter(users::username.eq(username)))
                .set(users::role.eq(role.as_str()))
                .execute(conn)
                .await?
        });
        if updated == 0 {
            return Ok(None);
        }
        self.find_user(username).await
    }

    /// Deletes a user; `false` when there was none.
    pub async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        let deleted = with_conn!(self, conn => {
            diesel::delete(users::table.filter(users::username.eq(username)))
                .execute(conn)
                .await?
        });
        Ok(deleted > 0)
    }
}

/// The argon2 hash of a random password nobody knows, made once.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut secret = [0u8; 24];
        rand::rng().fill_bytes(&mut secret);
        hash_password(&format!("{secret:?}")).unwrap_or_default()
    })
}
