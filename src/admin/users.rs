//! User operations of the admin API: list, change a role, delete. A change reaches this
//! replica at once (the handler forgets the cached user) and the others within
//! `auth.user_cache_ttl_secs`; a token of a deleted user is refused from then on, and a demoted
//! administrator's token no longer opens `/admin`.

use actors::store::users::{Role, UserRow};
use actors::store::Store;
use serde::{Deserialize, Serialize};

use super::{check_name, invalid, store_error};
use crate::error::GatewayError;

/// A user as operators see it (never the password hash).
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub role: String,
    pub created_at: i64,
}

impl From<UserRow> for UserView {
    fn from(row: UserRow) -> Self {
        UserView {
            id: row.id,
            username: row.username,
            role: row.role,
            created_at: row.created_at,
        }
    }
}

/// `PATCH /admin/users/{username}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub role: String,
}

fn not_found(username: &str) -> GatewayError {
    GatewayError::ResourceNotFound(format!("No user named {username:?}."))
}

pub async fn list_users(store: &Store) -> Result<Vec<UserView>, GatewayError> {
    Ok(store
        .list_users()
        .await
        .map_err(store_error)?
        .into_iter()
        .map(UserView::from)
        .collect())
}

/// Changes `username`'s role. `acting` is the administrator asking: nobody demotes themselves
/// through the API, so an administrator always remains to undo a mistake.
pub async fn set_role(
    store: &Store,
    acting: &str,
    username: &str,
    request: UpdateUserRequest,
) -> Result<UserView, GatewayError> {
    check_name("username", username)?;
    let role = Role::parse(&request.role)
        .ok_or_else(|| invalid("role", "must be \"admin\" or \"viewer\""))?;
    if username == acting && role != Role::Admin {
        return Err(invalid(
            "username",
            "you cannot demote yourself; ask another administrator",
        ));
    }
    store
        .set_user_role(username, role)
        .await
        .map_err(store_error)?
        .map(UserView::from)
        .ok_or_else(|| not_found(username))
}

/// Deletes `username`; as with roles, nobody deletes themselves through the API.
pub async fn delete_user(store: &Store, acting: &str, username: &str) -> Result<(), GatewayError> {
    check_name("username", username)?;
    if username == acting {
        return Err(invalid(
            "username",
            "you cannot delete yourself; ask another administrator",
        ));
    }
    if store.delete_user(username).await.map_err(store_error)? {
        Ok(())
    } else {
        Err(not_found(username))
    }
}
