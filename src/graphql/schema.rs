//! The GraphQL queries (models, services, usage, keys, me) and the object types they return;
//! the mutations are in `mutation.rs`. Operator actions reuse [`crate::admin`], exactly as
//! REST and the CLI do.
//!
//! GraphQL's `Int` is 32-bit, so Unix-millisecond times, token counts and limits are `Float`
//! (exact up to 2^53); ids are `ID`.

use actors::store::now_millis;
use actors::store::usage::UsageGrouping;
use juniper::{graphql_object, FieldResult, GraphQLEnum, GraphQLObject, ID};

use super::{field_error, GraphqlContext};
use crate::admin::{self, KeyView, UsageLine};
use crate::error::GatewayError;
use crate::principal::Principal;

pub struct Query;

#[derive(GraphQLObject)]
/// A configured model alias.
pub struct Model {
    name: String,
    service: String,
    upstream_model: String,
}

/// A service and its endpoints.
pub struct Service {
    name: String,
    eligible_endpoints: i32,
}

#[derive(GraphQLObject)]
/// One upstream instance: health, load and latency.
pub struct Endpoint {
    address: String,
    protocol: String,
    health: String,
    eligible: bool,
    in_flight: i32,
    latency_ewma_ms: f64,
    consecutive_failures: i32,
    ejections: i32,
}

#[graphql_object(context = GraphqlContext)]
impl Service {
    fn name(&self) -> &str {
        &self.name
    }

    /// Endpoints that may receive requests now.
    fn eligible_endpoints(&self) -> i32 {
        self.eligible_endpoints
    }

    /// Every endpoint with its state (administrators only).
    async fn endpoints(&self, context: &GraphqlContext) -> FieldResult<Vec<Endpoint>> {
        context.principal.require_admin().map_err(field_error)?;
        let Some(pool) = context.state.pipeline.registry.pool(&self.name) else {
            return Ok(Vec::new());
        };
        let state = pool
            .state()
            .await
            .map_err(|e| field_error(GatewayError::Internal(e.to_string())))?;
        Ok(state
            .endpoints
            .into_iter()
            .map(|e| Endpoint {
                address: e.address,
                protocol: e.protocol.to_string(),
                health: e.health.to_string(),
                eligible: e.eligible,
                in_flight: saturate(i64::from(e.in_flight)),
                latency_ewma_ms: e.latency_ewma_ms,
                consecutive_failures: saturate(i64::from(e.consecutive_failures)),
                ejections: saturate(i64::from(e.ejections)),
            })
            .collect())
    }
}

fn saturate(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

#[derive(GraphQLEnum, Clone, Copy)]
pub enum UsageGroup {
    Key,
    Model,
    Day,
}

#[derive(GraphQLObject)]
/// Usage summed over a group (a key id, a model, or a day).
pub struct Usage {
    group: String,
    requests: f64,
    prompt_tokens: f64,
    completion_tokens: f64,
    total_tokens: f64,
    estimated_requests: f64,
}

impl From<UsageLine> for Usage {
    fn from(line: UsageLine) -> Self {
        Usage {
            group: line.group,
            requests: line.requests as f64,
            prompt_tokens: line.prompt_tokens as f64,
            completion_tokens: line.completion_tokens as f64,
            total_tokens: line.total_tokens as f64,
            estimated_requests: line.estimated_requests as f64,
        }
    }
}

#[derive(GraphQLObject)]
/// An API key as operators see it (never its secret).
pub struct Key {
    id: ID,
    name: String,
    prefix: String,
    owner: Option<String>,
    created_at: f64,
    expires_at: Option<f64>,
    revoked_at: Option<f64>,
    rpm: Option<f64>,
    tpm: Option<f64>,
    token_budget: Option<f64>,
    /// Requests in flight at once (per gateway process).
    max_concurrency: Option<f64>,
    allowed_models: Option<Vec<String>>,
}

impl From<KeyView> for Key {
    fn from(view: KeyView) -> Self {
        let float = |v: Option<i64>| v.map(|v| v as f64);
        Key {
            id: ID::new(view.id.to_string()),
            name: view.name,
            prefix: view.prefix,
            owner: view.owner,
            created_at: view.created_at as f64,
            expires_at: float(view.expires_at),
            revoked_at: float(view.revoked_at),
            rpm: float(view.rpm),
            tpm: float(view.tpm),
            token_budget: float(view.token_budget),
            max_concurrency: float(view.max_concurrency),
            allowed_models: view.allowed_models,
        }
    }
}

#[derive(GraphQLObject)]
/// Who the caller is.
pub struct Me {
    /// `api_key`, `user`, `open` (keys switched off) or `anonymous`.
    kind: String,
    key_id: Option<ID>,
    key_name: Option<String>,
    username: Option<String>,
    role: Option<String>,
    admin: bool,
}

#[graphql_object(context = GraphqlContext)]
impl Query {
    /// Configured model aliases (any `<service>/<model>` works too).
    fn models(context: &GraphqlContext) -> FieldResult<Vec<Model>> {
        context.principal.require_caller().map_err(field_error)?;
        let mut models: Vec<Model> = context
            .state
            .pipeline
            .router
            .aliases()
            .map(|alias| Model {
                name: alias.name.clone(),
                service: alias.service.clone(),
                upstream_model: alias.upstream_model.clone(),
            })
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(models)
    }

    /// Services the registry knows; their endpoints are for administrators.
    fn services(context: &GraphqlContext) -> FieldResult<Vec<Service>> {
        context.principal.require_caller().map_err(field_error)?;
        let mut services: Vec<Service> = context
            .state
            .pipeline
            .registry
            .pools()
            .into_iter()
            .map(|(name, pool)| Service {
                eligible_endpoints: saturate(
                    i64::try_from(pool.snapshot().eligible.len()).unwrap_or(i64::MAX),
                ),
                name,
            })
            .collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(services)
    }

    /// Usage between `from` and `to` (Unix ms; default the last 30 days), like
    /// `GET /admin/usage` (administrators only).
    async fn usage(
        context: &GraphqlContext,
        from: Option<f64>,
        to: Option<f64>,
        group_by: Option<UsageGroup>,
    ) -> FieldResult<Vec<Usage>> {
        context.principal.require_admin().map_err(field_error)?;
        let now = now_millis();
        let to = to.map_or(now + 1, |t| t as i64);
        let from = from.map_or(now - 30 * 86_400_000, |f| f as i64);
        let grouping = match group_by.unwrap_or(UsageGroup::Key) {
            UsageGroup::Key => UsageGrouping::Key,
            UsageGroup::Model => UsageGrouping::Model,
            UsageGroup::Day => UsageGrouping::Day,
        };
        let lines = admin::usage_report(&context.state.store, from, to, grouping)
            .await
            .map_err(field_error)?;
        Ok(lines.into_iter().map(Usage::from).collect())
    }

    /// Every API key (administrators only).
    async fn keys(context: &GraphqlContext) -> FieldResult<Vec<Key>> {
        context.principal.require_admin().map_err(field_error)?;
        let keys = admin::list_keys(&context.state.store)
            .await
            .map_err(field_error)?;
        Ok(keys.into_iter().map(Key::from).collect())
    }

    fn me(context: &GraphqlContext) -> Me {
        let admin = context.principal.is_admin();
        match &context.principal {
            Principal::Key(key) => Me {
                kind: "api_key".into(),
                key_id: Some(ID::new(key.id.to_string())),
                key_name: Some(key.name.clone()),
                username: None,
                role: None,
                admin,
            },
            Principal::User(claims) => Me {
                kind: "user".into(),
                key_id: None,
                key_name: None,
                username: Some(claims.sub.clone()),
                role: Some(claims.role.clone()),
                admin,
            },
            Principal::Open | Principal::Anonymous => Me {
                kind: if matches!(context.principal, Principal::Open) {
                    "open".into()
                } else {
                    "anonymous".into()
                },
                key_id: None,
                key_name: None,
                username: None,
                role: None,
                admin,
            },
        }
    }
}
