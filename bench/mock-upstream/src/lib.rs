//! A mock OpenAI-compatible upstream. Tests steer it (fail, hang, truncate, hold a stream) and
//! read its counters; `make run` and benchmarks run it as a stand-alone echo model.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::stream;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// What the mock does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Normal,
    /// Answer every request with HTTP 500.
    Fail,
    /// Answer every request with HTTP 503, as an overloaded server does.
    Unavailable,
    /// Never answer.
    Hang,
    /// Answer every request with HTTP 400 and an OpenAI-shaped error.
    Reject,
    /// Stream `n` chunks, then end without `finish_reason` or `[DONE]`.
    TruncateAfter(usize),
    /// Answer chat with a tool call ([`TOOL_ARGUMENTS`]) and no text; a buffered answer
    /// carries no `usage`, a stream only when asked for it.
    ToolCalls,
}

/// The arguments of [`Mode::ToolCalls`]' tool call: generated text of a known size.
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Amsterdam","days":5,"units":"metric","detail":"hourly forecast with precipitation, wind speed and direction, humidity, pressure and the feels-like temperature for each hour"}"#;

/// Behaviour and counters shared between the test and the server.
#[derive(Debug)]
pub struct MockState {
    pub name: String,
    mode: Mutex<Mode>,
    /// Streaming chunks per response.
    pub chunks: usize,
    pub chunk_delay: Duration,
    pub latency: Duration,
    /// When set, a stream sends its first chunk, then waits for a permit before the rest.
    pub gate: Option<Arc<Semaphore>>,
    pub requests: AtomicU64,
    pub streams_completed: AtomicU64,
    /// Streams the peer dropped before they finished.
    pub streams_cancelled: AtomicU64,
    pub last_body: Mutex<Option<Value>>,
    pub last_headers: Mutex<Vec<(String, String)>>,
}

impl MockState {
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    pub fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Options for a mock server.
#[derive(Debug, Clone)]
pub struct MockOptions {
    pub name: String,
    pub chunks: usize,
    pub chunk_delay: Duration,
    pub latency: Duration,
    pub gated: bool,
    pub workers: usize,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            name: "mock".into(),
            chunks: 5,
            chunk_delay: Duration::ZERO,
            latency: Duration::ZERO,
            gated: false,
            workers: 1,
        }
    }
}

/// A running mock.
pub struct MockUpstream {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    handle: ServerHandle,
}

impl MockUpstream {
    /// Starts on `addr` (port 0 for any) inside the current actix system.
    pub fn start(addr: &str, options: MockOptions) -> std::io::Result<MockUpstream> {
        let state = Arc::new(MockState {
            name: options.name,
            mode: Mutex::new(Mode::Normal),
            chunks: options.chunks,
            chunk_delay: options.chunk_delay,
            latency: options.latency,
            gate: options.gated.then(|| Arc::new(Semaphore::new(0))),
            requests: AtomicU64::new(0),
            streams_completed: AtomicU64::new(0),
            streams_cancelled: AtomicU64::new(0),
            last_body: Mutex::new(None),
            last_headers: Mutex::new(Vec::new()),
        });
        Self::start_with_state(addr, state, options.workers)
    }

    /// Starts a server for an existing state, e.g. to bring a stopped mock back on its port.
    pub fn start_with_state(
        addr: &str,
        state: Arc<MockState>,
        workers: usize,
    ) -> std::io::Result<MockUpstream> {
        let shared = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route("/health", web::get().to(health))
                .route("/v1/models", web::get().to(models))
                .route("/v1/chat/completions", web::post().to(completion))
                .route("/v1/completions", web::post().to(completion))
                .route("/v1/embeddings", web::post().to(embeddings))
        })
        .workers(workers.max(1))
        .tcp_nodelay(true)
        .disable_signals()
        .shutdown_timeout(0)
        .bind(addr)?;
        let bound = *server
            .addrs()
            .first()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let running = server.run();
        let handle = running.handle();
        actix_web::rt::spawn(running);
        Ok(MockUpstream {
            addr: bound,
            state,
            handle,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening and drops open connections.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

async fn health(state: web::Data<MockState>) -> HttpResponse {
    match state.mode() {
        Mode::Fail => HttpResponse::ServiceUnavailable().finish(),
        _ => HttpResponse::Ok().json(json!({"status": "ok"})),
    }
}

async fn models(state: web::Data<MockState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "object": "list",
        "data": [{"id": "echo-1", "object": "model", "created": 0, "owned_by": state.name}]
    }))
}

fn record(state: &MockState, request: &HttpRequest, body: &Bytes) -> Option<Value> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    *state.last_body.lock().unwrap_or_else(|e| e.into_inner()) = parsed.clone();
    *state.last_headers.lock().unwrap_or_else(|e| e.into_inner()) = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    parsed
}

/// The reply text: an echo of the last message, so demos show the round trip.
fn reply_text(body: &Value) -> String {
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .or_else(|| body.get("prompt").and_then(Value::as_str))
        .unwrap_or("");
    format!("echo: {last}")
}

async fn completion(
    request: HttpRequest,
    body: Bytes,
    state: web::Data<MockState>,
) -> HttpResponse {
    let Some(parsed) = record(&state, &request, &body) else {
        return HttpResponse::BadRequest().json(json!({"error": {"message": "bad json", "type": "invalid_request_error", "code": null}}));
    };
    match state.mode() {
        Mode::Fail => {
            return HttpResponse::InternalServerError()
                .json(json!({"error": {"message": "mock failure", "type": "server_error", "code": null}}))
        }
        Mode::Unavailable => {
            return HttpResponse::ServiceUnavailable()
                .json(json!({"error": {"message": "mock overloaded", "type": "server_error", "code": null}}))
        }
        Mode::Hang => std::future::pending::<()>().await,
        Mode::Reject => {
            return HttpResponse::BadRequest()
                .json(json!({"error": {"message": "mock rejects this request", "type": "invalid_request_error", "code": "mock_reject"}}))
        }
        Mode::ToolCalls => return tool_call_reply(&parsed),
        Mode::Normal | Mode::TruncateAfter(_) => {}
    }
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let model = parsed
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("echo-1")
        .to_string();
    let text = reply_text(&parsed);
    let chat = request.path().ends_with("/chat/completions");
    if parsed.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = parsed
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        return stream_reply(state.into_inner(), model, text, chat, include_usage);
    }
    let (object, choice) = if chat {
        (
            "chat.completion",
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}),
        )
    } else {
        (
            "text_completion",
            json!({"index": 0, "text": text, "finish_reason": "stop"}),
        )
    };
    HttpResponse::Ok()
        .insert_header(("x-mock-instance", state.name.clone()))
        .json(json!({
            "id": "cmpl-mock", "object": object, "created": 0, "model": model,
            "choices": [choice],
            "usage": {"prompt_tokens": 5, "completion_tokens": state.chunks, "total_tokens": 5 + state.chunks}
        }))
}

/// [`Mode::ToolCalls`]: the arguments in two deltas when streamed, usage only when asked.
fn tool_call_reply(parsed: &Value) -> HttpResponse {
    let call = |arguments: &str| {
        json!([{"index": 0, "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": arguments}}])
    };
    if parsed.get("stream").and_then(Value::as_bool) != Some(true) {
        return HttpResponse::Ok().json(json!({
            "id": "cmpl-tools", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": null, "tool_calls": call(TOOL_ARGUMENTS)}}]
        }));
    }
    let (first, second) = TOOL_ARGUMENTS.split_at(TOOL_ARGUMENTS.len() / 2);
    let chunk = |delta: Value, finish: Value| {
        let event = json!({"id": "cmpl-tools", "object": "chat.completion.chunk", "created": 0,
            "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {event}\n\n")
    };
    let mut body = chunk(
        json!({"role": "assistant", "tool_calls": call(first)}),
        Value::Null,
    );
    body += &chunk(
        json!({"tool_calls": [{"index": 0, "function": {"arguments": second}}]}),
        json!("tool_calls"),
    );
    if parsed.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)) {
        let event = json!({"id": "cmpl-tools", "object": "chat.completion.chunk", "created": 0,
            "model": "m", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 50, "total_tokens": 55}});
        body += &format!("data: {event}\n\n");
    }
    body += "data: [DONE]\n\n";
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .body(body)
}

/// Marks a stream cancelled if it is dropped before it finished.
struct StreamWatch {
    state: Arc<MockState>,
    done: bool,
}

impl StreamWatch {
    fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        let counter = if self.done {
            &self.state.streams_completed
        } else {
            &self.state.streams_cancelled
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

fn chunk_event(model: &str, chat: bool, delta: &str, finish: Option<&str>) -> Bytes {
    let choice = if chat {
        json!({"index": 0, "delta": {"content": delta}, "finish_reason": finish})
    } else {
        json!({"index": 0, "text": delta, "finish_reason": finish})
    };
    let object = if chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let event = json!({"id": "cmpl-mock", "object": object, "created": 0, "model": model, "choices": [choice]});
    Bytes::from(format!("data: {event}\n\n"))
}

fn stream_reply(
    state: Arc<MockState>,
    model: String,
    text: String,
    chat: bool,
    include_usage: bool,
) -> HttpResponse {
    let name = state.name.clone();
    let total = state.chunks.max(1);
    let words: Vec<&str> = text.split(' ').collect();
    let mut events: Vec<Bytes> = (0..total)
        .map(|i| chunk_event(&model, chat, &format!("{} ", words[i % words.len()]), None))
        .collect();
    events.push(chunk_event(&model, chat, "", Some("stop")));
    if include_usage {
        let event = json!({"id": "cmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": total, "total_tokens": 5 + total}});
        events.push(Bytes::from(format!("data: {event}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    if let Mode::TruncateAfter(n) = state.mode() {
        events.truncate(n);
    }
    let watch = StreamWatch { state, done: false };
    let body = stream::unfold(
        (0usize, events, Some(watch)),
        |(index, events, mut watch)| async move {
            let state = Arc::clone(&watch.as_ref()?.state);
            let Some(event) = events.get(index).cloned() else {
                if let Some(watch) = watch.take() {
                    watch.finish();
                }
                return None;
            };
            if index == 1 {
                if let Some(gate) = &state.gate {
                    gate.acquire().await.ok()?.forget();
                }
            }
            if index > 0 && !state.chunk_delay.is_zero() {
                tokio::time::sleep(state.chunk_delay).await;
            }
            Some((
                Ok::<Bytes, std::io::Error>(event),
                (index + 1, events, watch),
            ))
        },
    );
    HttpResponse::Ok()
        .insert_header(("content-type", "text/event-stream"))
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-mock-instance", name))
        .streaming(body)
}

async fn embeddings(
    request: HttpRequest,
    body: Bytes,
    state: web::Data<MockState>,
) -> HttpResponse {
    let Some(parsed) = record(&state, &request, &body) else {
        return HttpResponse::BadRequest().finish();
    };
    if state.mode() == Mode::Fail {
        return HttpResponse::InternalServerError().finish();
    }
    let inputs = match parsed.get("input") {
        Some(Value::Array(items)) => items.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}))
        .collect();
    HttpResponse::Ok()
        .insert_header(("x-mock-instance", state.name.clone()))
        .json(
            json!({"object": "list", "data": data, "model": parsed.get("model"),
                     "usage": {"prompt_tokens": inputs, "total_tokens": inputs}}),
        )
}
