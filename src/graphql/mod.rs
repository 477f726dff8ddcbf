//! `/graphql`: a GraphQL API (juniper) over the same state as REST, and GraphiQL.
//!
//! Requests are authenticated like REST (API key or JWT in `Authorization`); fields check the
//! caller themselves (field-level authorisation). Document depth and size are bounded by
//! juniper's parser limits (`graphql.max_depth`, `graphql.max_complexity` = fields per
//! operation). Errors carry `extensions.code`/`status` mirroring the HTTP API.
//!
//! `chatCompletion` runs through [`crate::pipeline::Pipeline::execute`]. The pipeline's future
//! is bound to the worker thread (per-worker upstream clients), while juniper resolvers must be `Send`, so the
//! resolver hands the request to an executor that runs beside the GraphQL execution inside the
//! same handler, over a bounded channel.

mod introspection;
mod mutation;
mod schema;

use std::pin::pin;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actors::keys::ApiKey;
use bytes::Bytes;
use futures_util::StreamExt;
use juniper::http::GraphQLRequest;
use juniper::parser::ParseError;
use juniper::{EmptySubscription, FieldError, GraphQLError, RootNode};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::auth::presented_credential;
use crate::config::GraphqlConfig;
use crate::error::GatewayError;
use crate::overview::RequestOutcome;
use crate::pipeline::{ApiKind, ParsedRequest, PipelineBody, RequestContext};
use crate::principal::{Accepts, Principal};
use crate::state::AppState;
use crate::upstream::UpstreamClients;
pub use mutation::Mutation;
pub use schema::Query;

pub type Schema = RootNode<Query, Mutation, EmptySubscription<GraphqlContext>>;

/// Chat completions one GraphQL request may run at once.
const CHAT_CONCURRENCY: usize = 4;

pub struct GraphqlState {
    pub config: GraphqlConfig,
    pub schema: Arc<Schema>,
    /// Looser limits for introspection-only documents; `None` with introspection off.
    pub introspection_schema: Option<Arc<Schema>>,
}

impl GraphqlState {
    pub fn new(config: GraphqlConfig) -> Self {
        let mut schema = Schema::new(Query, Mutation, EmptySubscription::new())
            .limit_depth(config.max_depth)
            .limit_fields(config.max_complexity);
        if !config.introspection {
            schema = schema.disable_introspection();
        }
        GraphqlState {
            introspection_schema: config
                .introspection
                .then(|| Arc::new(introspection::introspection_schema())),
            config,
            schema: Arc::new(schema),
        }
    }
}

/// What resolvers see.
pub struct GraphqlContext {
    pub state: web::Data<AppState>,
    pub principal: Principal,
    chat: mpsc::Sender<ChatJob>,
}

impl juniper::Context for GraphqlContext {}

struct ChatJob {
    body: Bytes,
    key: Option<Arc<ApiKey>>,
    reply: oneshot::Sender<Result<Bytes, GatewayError>>,
}

impl GraphqlContext {
    /// Runs one non-streaming chat completion through the pipeline; the upstream's JSON.
    pub async fn chat(&self, body: Bytes, key: Option<Arc<ApiKey>>) -> Result<Bytes, GatewayError> {
        let (reply, answer) = oneshot::channel();
        self.chat
            .send(ChatJob { body, key, reply })
            .await
            .map_err(|_| GatewayError::Internal("the chat executor stopped".into()))?;
        answer
            .await
            .map_err(|_| GatewayError::Internal("the chat executor dropped a request".into()))?
    }
}

async fn run_chat(job: ChatJob, state: &AppState, clients: &UpstreamClients) {
    let result = async {
        let parsed = ParsedRequest::parse(ApiKind::ChatCompletions, job.body)?;
        let request_id = uuid::Uuid::new_v4().to_string();
        let context = RequestContext {
            request_id: &request_id,
            key: job.key,
            // The cache opt-in header is a REST feature; deterministic requests still hit.
            cache_opt_in: false,
        };
        let started = std::time::Instant::now();
        let result = state.pipeline.execute(clients, parsed, context).await;
        let outcome = RequestOutcome::of_pipeline(started.elapsed(), &result);
        state.metrics.overview.record_request(started, outcome);
        let response = result?;
        let status = response.status.as_u16();
        match response.body {
            PipelineBody::Full(body) if (200..300).contains(&status) => Ok(body),
            PipelineBody::Full(body) => {
                let detail = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.pointer("/error/message")?.as_str().map(String::from))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
                Err(GatewayError::UpstreamStatus {
                    service: response.endpoint,
                    status,
                    detail,
                })
            }
            PipelineBody::Sse(_) => Err(GatewayError::Internal(
                "a non-streaming request was answered with a stream".into(),
            )),
        }
    }
    .await;
    let _ = job.reply.send(result);
}

/// A gateway error as a GraphQL field error with `extensions.code`, `status` and `type`.
pub fn field_error(error: GatewayError) -> FieldError {
    let mut extensions = juniper::Object::with_capacity(3);
    extensions.add_field("code", juniper::Value::scalar(error.code().to_string()));
    extensions.add_field(
        "status",
        juniper::Value::scalar(i32::from(error.status().as_u16())),
    );
    extensions.add_field(
        "type",
        juniper::Value::scalar(error.error_type().to_string()),
    );
    if error.hides_detail() {
        // The client sees a stable message; the details go to the log.
        tracing::warn!(code = error.code(), "graphql: {error}");
    }
    FieldError::new(error.public_message(), juniper::Value::Object(extensions))
}

/// A request-level failure (bad document, limits, authentication) in GraphQL's shape.
fn request_error(status: u16, code: &str, messages: Vec<String>) -> HttpResponse {
    let errors: Vec<Value> = messages
        .into_iter()
        .map(|message| json!({"message": message, "extensions": {"code": code, "status": status}}))
        .collect();
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .json(json!({ "errors": errors }))
}

fn gateway_request_error(error: &GatewayError) -> HttpResponse {
    let mut response = request_error(
        error.status().as_u16(),
        error.code(),
        vec![error.public_message()],
    );
    if let Some(seconds) = error.retry_after_header() {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&seconds) {
            response
                .headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, value);
        }
    }
    response
}

fn graphql_error_response(error: &GraphQLError) -> HttpResponse {
    let code = match error {
        GraphQLError::ParseError(parse) => match parse.item {
            ParseError::DepthLimitExceeded(_) => "query_too_deep",
            ParseError::FieldLimitExceeded(_) | ParseError::TokenLimitExceeded(_) => {
                "query_too_complex"
            }
            _ => "graphql_parse_failed",
        },
        GraphQLError::ValidationError(_) => "graphql_validation_failed",
        _ => "invalid_operation",
    };
    let messages = match error {
        GraphQLError::ValidationError(errors) => {
            errors.iter().map(|e| e.message().to_string()).collect()
        }
        other => vec![other.to_string()],
    };
    request_error(400, code, messages)
}

/// `POST /graphql`.
pub async fn execute(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    graphql: web::Data<GraphqlState>,
    clients: web::Data<UpstreamClients>,
) -> HttpResponse {
    if !graphql.config.enabled {
        return gateway_request_error(&GatewayError::RouteNotFound {
            method: "POST".into(),
            path: "/graphql".into(),
        });
    }
    // The credential is in a header: a bad one is refused before the body is read or parsed.
    let credential = presented_credential(&request);
    let principal =
        match Principal::resolve(&request, credential, Accepts::KeyOrToken, &state).await {
            Ok(principal) => principal,
            Err(error) => return gateway_request_error(&error),
        };
    let graphql_request = match read_request(&request, payload, state.max_body_bytes).await {
        Ok(graphql_request) => graphql_request,
        Err(error) => return gateway_request_error(&error),
    };
    let (chat, mut jobs) = mpsc::channel::<ChatJob>(CHAT_CONCURRENCY);
    let context = GraphqlContext {
        state: state.clone(),
        principal,
        chat,
    };
    let schema = Arc::clone(&graphql.schema);
    let variables = graphql_request.variables();
    let execution = async {
        let (query, operation) = (
            &graphql_request.query,
            graphql_request.operation_name.as_deref(),
        );
        let mut result = juniper::execute(query, operation, &*schema, &variables, &context).await;
        if let Some(relaxed) = &graphql.introspection_schema {
            if introspection::may_retry(&result, query, relaxed) {
                result = juniper::execute(query, operation, &**relaxed, &variables, &context).await;
            }
        }
        drop(context);
        result
    };
    // Runs chat jobs on this worker thread; it ends when the execution drops the context, and
    // with it the only sender.
    let executor = async {
        let jobs = futures_util::stream::poll_fn(|cx| jobs.poll_recv(cx));
        jobs.for_each_concurrent(CHAT_CONCURRENCY, |job| run_chat(job, &state, &clients))
            .await;
    };
    let (result, ()) = futures_util::future::join(pin!(execution), pin!(executor)).await;
    match result {
        Ok((data, errors)) => {
            let errors: Vec<Value> = errors
                .iter()
                .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
                .collect();
            let mut body = json!({ "data": data });
            if !errors.is_empty() {
                body["errors"] = Value::Array(errors);
            }
            HttpResponse::Ok().json(body)
        }
        Err(error) => graphql_error_response(&error),
    }
}

/// The GraphQL request in the body: JSON `{"query", "variables", "operationName"}`, or the
/// document itself under `application/graphql`.
async fn read_request(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<GraphQLRequest, GatewayError> {
    let body = match payload.to_bytes_limited(limit).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => return Err(GatewayError::InvalidJson(error.to_string())),
        Err(_) => return Err(GatewayError::PayloadTooLarge { limit }),
    };
    if content_type_is_graphql(request) {
        return Ok(GraphQLRequest::new(
            String::from_utf8_lossy(&body).into_owned(),
            None,
            None,
        ));
    }
    serde_json::from_slice(&body).map_err(|error| {
        GatewayError::InvalidJson(format!(
            "expected {{\"query\", \"variables\", \"operationName\"}}: {error}"
        ))
    })
}

fn content_type_is_graphql(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/graphql"))
}

/// `GET /graphql`: GraphiQL from the dashboard build (bundled, so it works offline), when
/// the playground is on.
pub async fn playground(
    request: HttpRequest,
    graphql: web::Data<GraphqlState>,
    dashboard: web::Data<crate::config::DashboardConfig>,
) -> HttpResponse {
    if !(graphql.config.enabled && graphql.config.playground) {
        return gateway_request_error(&GatewayError::RouteNotFound {
            method: "GET".into(),
            path: request.path().into(),
        });
    }
    crate::dashboard::graphiql(&request, &dashboard).await
}
