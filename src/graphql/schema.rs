//! The GraphQL schema: queries over models, services, usage and keys, the key mutations, and
//! `chatCompletion`. Operator actions reuse [`crate::admin`], exactly as REST and the CLI do.
//!
//! GraphQL's `Int` is 32-bit, so Unix-millisecond times, token counts and limits are `Float`
//! (exact up to 2^53); ids are `ID`.

use actors::store::now_millis;
use actors::store::usage::UsageGrouping;
use bytes::Bytes;
use juniper::{
    graphql_object, FieldResult, GraphQLEnum, GraphQLInputObject, GraphQLObject, Nullable, ID,
};
use serde_json::{json, Value};

use super::{field_error, GraphqlContext};
use crate::admin::{self, CreateKeyRequest, KeyView, UpdateKeyRequest, UsageLine};
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

pub struct Mutation;

#[derive(GraphQLInputObject)]
pub struct CreateKeyInput {
    name: String,
    owner: Option<String>,
    rpm: Option<f64>,
    tpm: Option<f64>,
    token_budget: Option<f64>,
    max_concurrency: Option<f64>,
    allowed_models: Option<Vec<String>>,
    expires_in_days: Option<i32>,
}

#[derive(GraphQLInputObject)]
/// Absent fields stay as they are; `null` clears a limit.
pub struct KeyLimitsInput {
    rpm: Nullable<f64>,
    tpm: Nullable<f64>,
    token_budget: Nullable<f64>,
    max_concurrency: Nullable<f64>,
    allowed_models: Nullable<Vec<String>>,
}

#[derive(GraphQLObject)]
/// A new key: the only time its secret is shown.
pub struct CreatedKey {
    secret: String,
    key: Key,
}

#[derive(GraphQLInputObject)]
pub struct ChatMessageInput {
    role: String,
    content: String,
}

#[derive(GraphQLInputObject)]
pub struct ChatInput {
    model: String,
    messages: Vec<ChatMessageInput>,
    max_tokens: Option<i32>,
    temperature: Option<f64>,
}

#[derive(GraphQLObject)]
/// A one-shot chat completion.
pub struct ChatCompletion {
    id: Option<String>,
    model: Option<String>,
    content: String,
    finish_reason: Option<String>,
    prompt_tokens: Option<f64>,
    completion_tokens: Option<f64>,
}

fn whole(param: &'static str, value: Option<f64>) -> Result<Option<i64>, GatewayError> {
    match value {
        None => Ok(None),
        Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(Some(v as i64)),
        Some(_) => Err(GatewayError::InvalidParameter {
            param,
            message: "must be a whole number".into(),
        }),
    }
}

fn tristate(
    param: &'static str,
    value: Nullable<f64>,
) -> Result<Option<Option<i64>>, GatewayError> {
    match value {
        Nullable::ImplicitNull => Ok(None),
        Nullable::ExplicitNull => Ok(Some(None)),
        Nullable::Some(v) => whole(param, Some(v)).map(Some),
    }
}

fn key_id(id: &ID) -> Result<i64, GatewayError> {
    id.parse().map_err(|_| GatewayError::InvalidParameter {
        param: "id",
        message: "must be a key id (an integer)".into(),
    })
}

#[graphql_object(context = GraphqlContext)]
impl Mutation {
    /// Creates a key (administrators only).
    async fn create_key(
        context: &GraphqlContext,
        input: CreateKeyInput,
    ) -> FieldResult<CreatedKey> {
        context.principal.require_admin().map_err(field_error)?;
        let request = (|| {
            Ok::<_, GatewayError>(CreateKeyRequest {
                name: input.name,
                owner: input.owner,
                rpm: whole("rpm", input.rpm)?,
                tpm: whole("tpm", input.tpm)?,
                token_budget: whole("token_budget", input.token_budget)?,
                max_concurrency: whole("max_concurrency", input.max_concurrency)?,
                allowed_models: input.allowed_models,
                expires_at: None,
                expires_in_days: input.expires_in_days.map(i64::from),
            })
        })()
        .map_err(field_error)?;
        let created = admin::create_key(&context.state.store, request)
            .await
            .map_err(field_error)?;
        Ok(CreatedKey {
            secret: created.key,
            key: Key::from(created.view),
        })
    }

    /// Revokes a key (administrators only).
    async fn revoke_key(context: &GraphqlContext, id: ID) -> FieldResult<bool> {
        context.principal.require_admin().map_err(field_error)?;
        let id = key_id(&id).map_err(field_error)?;
        admin::revoke_key(&context.state.store, id)
            .await
            .map_err(field_error)?;
        context.state.keys.invalidate_all();
        Ok(true)
    }

    /// Changes a key's limits (administrators only).
    async fn update_key_limits(
        context: &GraphqlContext,
        id: ID,
        input: KeyLimitsInput,
    ) -> FieldResult<Key> {
        context.principal.require_admin().map_err(field_error)?;
        let id = key_id(&id).map_err(field_error)?;
        let request = (|| {
            Ok::<_, GatewayError>(UpdateKeyRequest {
                rpm: tristate("rpm", input.rpm)?,
                tpm: tristate("tpm", input.tpm)?,
                token_budget: tristate("token_budget", input.token_budget)?,
                max_concurrency: tristate("max_concurrency", input.max_concurrency)?,
                allowed_models: match input.allowed_models {
                    Nullable::ImplicitNull => None,
                    Nullable::ExplicitNull => Some(None),
                    Nullable::Some(models) => Some(Some(models)),
                },
                ..UpdateKeyRequest::default()
            })
        })()
        .map_err(field_error)?;
        let view = admin::update_key(&context.state.store, id, request)
            .await
            .map_err(field_error)?;
        context.state.keys.invalidate_all();
        Ok(Key::from(view))
    }

    /// One chat completion through the gateway's pipeline (billed like REST).
    async fn chat_completion(
        context: &GraphqlContext,
        input: ChatInput,
    ) -> FieldResult<ChatCompletion> {
        let key = context.principal.chat_key().map_err(field_error)?;
        let messages: Vec<Value> = input
            .messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        let mut body = json!({"model": input.model, "messages": messages});
        if let Some(max_tokens) = input.max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        if let Some(temperature) = input.temperature {
            body["temperature"] = json!(temperature);
        }
        let body = Bytes::from(body.to_string());
        let answer = context.chat(body, key).await.map_err(field_error)?;
        let answer: Value = serde_json::from_slice(&answer)
            .map_err(|e| field_error(GatewayError::upstream_protocol("upstream", e.to_string())))?;
        let text = |pointer: &str| {
            answer
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(String::from)
        };
        Ok(ChatCompletion {
            id: text("/id"),
            model: text("/model"),
            content: text("/choices/0/message/content").unwrap_or_default(),
            finish_reason: text("/choices/0/finish_reason"),
            prompt_tokens: answer
                .pointer("/usage/prompt_tokens")
                .and_then(Value::as_f64),
            completion_tokens: answer
                .pointer("/usage/completion_tokens")
                .and_then(Value::as_f64),
        })
    }
}
