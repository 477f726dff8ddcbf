//! The GraphQL mutations: key operations (administrators only, through [`crate::admin`] as REST
//! and the CLI) and `chatCompletion` (through the pipeline, billed like REST).

use bytes::Bytes;
use juniper::{graphql_object, FieldResult, GraphQLInputObject, GraphQLObject, Nullable, ID};
use serde_json::{json, Value};

use super::schema::Key;
use super::{field_error, GraphqlContext};
use crate::admin::{self, CreateKeyRequest, UpdateKeyRequest};
use crate::error::GatewayError;

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
