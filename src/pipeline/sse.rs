//! Server-sent-event relaying: upstream bytes go to the client unchanged, as they arrive, while
//! a scanner watches for the end of the stream so a truncated one is never mistaken for a
//! complete one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actors::endpoint::InFlightGuard;
use bytes::Bytes;
use futures_util::stream::LocalBoxStream;
use futures_util::Stream;
use memchr::memmem;
use tokio::time::{Instant, Sleep};

/// Lines longer than this are not inspected further (they are still forwarded).
const MAX_LINE: usize = 1024 * 1024;

/// Watches an SSE byte stream for `data: [DONE]` or a non-null `finish_reason`, and for what
/// billing needs: the upstream's `usage`, and the text delivered so far.
#[derive(Debug, Default)]
pub struct SseScanner {
    partial: Vec<u8>,
    saw_done: bool,
    saw_finish: bool,
    /// (prompt, completion) tokens from the upstream's usage chunk.
    pub usage: Option<(i64, i64)>,
    /// Generated text delivered so far, for counting when no usage arrives.
    pub delivered_text: String,
}

#[derive(serde::Deserialize)]
struct ChunkView<'a> {
    #[serde(default, borrow)]
    choices: Vec<ChoiceView<'a>>,
    #[serde(default)]
    usage: Option<UsageView>,
}

#[derive(serde::Deserialize)]
struct ChoiceView<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaView<'a>>,
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
}

/// What a stream's delta generates: text, a refusal, reasoning, and tool calls (their names and
/// arguments are generated tokens too, and bill as such when the upstream gives no usage).
#[derive(serde::Deserialize)]
struct DeltaView<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<serde_json::Value>,
    #[serde(default)]
    function_call: Option<serde_json::Value>,
}

impl DeltaView<'_> {
    fn push_text(&self, out: &mut String) {
        for text in [&self.content, &self.refusal, &self.reasoning_content]
            .into_iter()
            .flatten()
        {
            out.push_str(text);
        }
        for calls in [&self.tool_calls, &self.function_call]
            .into_iter()
            .flatten()
        {
            push_generated(calls, out);
        }
    }
}

/// Appends every string a model generated in `value` (a message, a delta, tool calls): all
/// string values except the bookkeeping the upstream adds (`role`, `id`, `type`,
/// `finish_reason`). Estimates bill from it when the upstream reports no usage.
pub fn push_generated(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::String(text) => out.push_str(text),
        Value::Array(items) => items.iter().for_each(|item| push_generated(item, out)),
        Value::Object(members) => {
            for (name, member) in members {
                if !matches!(name.as_str(), "role" | "id" | "type" | "finish_reason") {
                    push_generated(member, out);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[derive(serde::Deserialize, Debug, PartialEq)]
pub struct UsageView {
    #[serde(default)]
    pub prompt_tokens: i64,
    #[serde(default)]
    pub completion_tokens: i64,
}

impl SseScanner {
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(newline) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(newline);
            if self.partial.is_empty() {
                self.inspect(line);
            } else {
                if self.partial.len() + line.len() <= MAX_LINE {
                    self.partial.extend_from_slice(line);
                }
                let whole = std::mem::take(&mut self.partial);
                self.inspect(&whole);
            }
            rest = &tail[1..];
        }
        if !rest.is_empty() && self.partial.len() + rest.len() <= MAX_LINE {
            self.partial.extend_from_slice(rest);
        }
    }

    /// Called at the end of the upstream stream: a last line without a newline still counts.
    pub fn finish(&mut self) {
        let last = std::mem::take(&mut self.partial);
        self.inspect(&last);
    }

    /// True once the upstream has said the stream is over.
    pub fn is_complete(&self) -> bool {
        self.saw_done || self.saw_finish
    }

    fn inspect(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            self.saw_done = true;
            return;
        }
        if !self.saw_finish && has_finish_reason(data) {
            self.saw_finish = true;
        }
        self.account(data);
    }

    /// Reads usage and delivered text from one event; events without them cost one search.
    fn account(&mut self, data: &[u8]) {
        let has_usage = memmem::find(data, b"\"usage\"").is_some();
        // `content"` also finds `reasoning_content`.
        let has_text = memmem::find(data, b"content\"").is_some()
            || memmem::find(data, b"\"text\"").is_some()
            || memmem::find(data, b"\"tool_calls\"").is_some()
            || memmem::find(data, b"\"function_call\"").is_some()
            || memmem::find(data, b"\"refusal\"").is_some();
        if !has_usage && !has_text {
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<ChunkView<'_>>(data) else {
            return;
        };
        if let Some(usage) = chunk.usage {
            self.usage = Some((usage.prompt_tokens, usage.completion_tokens));
        }
        for choice in chunk.choices {
            if let Some(delta) = &choice.delta {
                delta.push_text(&mut self.delivered_text);
            }
            if let Some(text) = &choice.text {
                self.delivered_text.push_str(text);
            }
        }
    }
}

/// True when some `"finish_reason"` in the JSON text has a string value (not `null`).
fn has_finish_reason(data: &[u8]) -> bool {
    const KEY: &[u8] = b"\"finish_reason\"";
    memmem::find_iter(data, KEY).any(|at| {
        let after = data[at + KEY.len()..].trim_ascii_start();
        after
            .strip_prefix(b":")
            .is_some_and(|value| value.trim_ascii_start().starts_with(b"\""))
    })
}

/// Why a relayed stream ended without completing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFault {
    Truncated,
    UpstreamError,
    IdleTimeout,
}

impl StreamFault {
    pub fn label(self) -> &'static str {
        match self {
            StreamFault::Truncated => "truncated",
            StreamFault::UpstreamError => "upstream_error",
            StreamFault::IdleTimeout => "idle_timeout",
        }
    }

    fn event(self, service: &str, detail: &str) -> Bytes {
        let (code, message) = match self {
            StreamFault::Truncated => (
                "stream_truncated",
                format!("Service '{service}' ended the stream before it was complete."),
            ),
            StreamFault::UpstreamError => (
                "upstream_error",
                format!("Service '{service}' failed during the stream: {detail}"),
            ),
            StreamFault::IdleTimeout => (
                "upstream_timeout",
                format!("Service '{service}' sent nothing for {detail}."),
            ),
        };
        let body = serde_json::json!({
            "error": {"message": message, "type": "upstream_error", "param": null, "code": code}
        });
        Bytes::from(format!("event: error\ndata: {body}\n\n"))
    }
}

/// Called with the scanner, the fault, and whether the stream reached its end.
type DropCallback = Box<dyn FnOnce(&SseScanner, Option<StreamFault>, bool)>;

/// The client-facing stream: the upstream's bytes, then — if the upstream stopped early — one
/// SSE error event. Dropping it (the client left) drops the upstream response, which closes the
/// upstream connection and so cancels generation.
pub struct SseRelay {
    upstream: LocalBoxStream<'static, Result<Bytes, String>>,
    scanner: SseScanner,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    service: std::sync::Arc<str>,
    finished: bool,
    fault: Option<StreamFault>,
    on_end: Option<Box<dyn FnOnce(Option<StreamFault>)>>,
    /// Runs exactly once when the relay is dropped, whether the stream ended or the client
    /// left: it bills what was delivered.
    on_drop: Option<DropCallback>,
    /// Set when the gateway asked the upstream for usage on the client's behalf: the usage-only
    /// event is then held back, so the client sees the stream it asked for.
    usage_filter: Option<UsageEventFilter>,
    _in_flight: InFlightGuard,
}

/// Removes usage-only events (`"choices": []` with `usage`) from an SSE byte stream. Chunks
/// that end on an event boundary and carry no usage pass through without a copy; otherwise
/// bytes wait only until their event is complete.
#[derive(Debug, Default)]
pub struct UsageEventFilter {
    pending: bytes::BytesMut,
}

impl UsageEventFilter {
    /// The bytes to forward now.
    pub fn push(&mut self, chunk: &Bytes) -> Bytes {
        let has_usage = |bytes: &[u8]| memmem::find(bytes, b"\"usage\"").is_some();
        if self.pending.is_empty() && chunk.ends_with(b"\n\n") && !has_usage(chunk) {
            return chunk.clone();
        }
        self.pending.extend_from_slice(chunk);
        let boundary = memmem::rfind(&self.pending, b"\n\n")
            .map(|at| at + 2)
            .max(memmem::rfind(&self.pending, b"\n\r\n").map(|at| at + 3));
        let Some(boundary) = boundary else {
            return Bytes::new();
        };
        let complete = self.pending.split_to(boundary).freeze();
        if !has_usage(&complete) {
            return complete;
        }
        let mut out = bytes::BytesMut::with_capacity(complete.len());
        let mut rest: &[u8] = &complete;
        while !rest.is_empty() {
            let end = memmem::find(rest, b"\n\n")
                .map(|at| at + 2)
                .into_iter()
                .chain(memmem::find(rest, b"\n\r\n").map(|at| at + 3))
                .min()
                .unwrap_or(rest.len());
            let (event, tail) = rest.split_at(end);
            if !is_usage_only(event) {
                out.extend_from_slice(event);
            }
            rest = tail;
        }
        out.freeze()
    }

    /// Whatever is left when the upstream ends (an unterminated last event), as it came.
    pub fn finish(&mut self) -> Bytes {
        self.pending.split().freeze()
    }
}

fn is_usage_only(event: &[u8]) -> bool {
    event.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.strip_prefix(b"data:")
            .and_then(|data| serde_json::from_slice::<ChunkView<'_>>(data.trim_ascii()).ok())
            .is_some_and(|chunk| chunk.choices.is_empty() && chunk.usage.is_some())
    })
}

impl SseRelay {
    pub fn new(
        upstream: LocalBoxStream<'static, Result<Bytes, String>>,
        idle_timeout: Duration,
        service: std::sync::Arc<str>,
        in_flight: InFlightGuard,
    ) -> Self {
        SseRelay {
            upstream,
            scanner: SseScanner::default(),
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            idle_timeout,
            service,
            finished: false,
            fault: None,
            on_end: None,
            on_drop: None,
            usage_filter: None,
            _in_flight: in_flight,
        }
    }

    /// Holds back the upstream's usage-only event (the gateway asked for it, not the client).
    pub fn hide_usage_event(mut self) -> Self {
        self.usage_filter = Some(UsageEventFilter::default());
        self
    }

    /// Runs once when the relay goes away, with the scanner, the fault (if the stream ended
    /// badly) and whether the stream reached its end at all (false: the client left first).
    pub fn on_drop(
        mut self,
        callback: impl FnOnce(&SseScanner, Option<StreamFault>, bool) + 'static,
    ) -> Self {
        self.on_drop = Some(Box::new(callback));
        self
    }

    /// Runs once when the stream ends, with the fault if it did not complete. Not called when
    /// the client leaves first.
    pub fn on_end(mut self, callback: impl FnOnce(Option<StreamFault>) + 'static) -> Self {
        self.on_end = Some(Box::new(callback));
        self
    }

    fn end(
        &mut self,
        fault: Option<StreamFault>,
        detail: &str,
    ) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        self.finished = true;
        self.fault = fault;
        if let Some(callback) = self.on_end.take() {
            callback(fault);
        }
        match fault {
            Some(fault) => Poll::Ready(Some(Ok(fault.event(&self.service, detail)))),
            None => Poll::Ready(None),
        }
    }
}

impl Drop for SseRelay {
    fn drop(&mut self) {
        if let Some(callback) = self.on_drop.take() {
            callback(&self.scanner, self.fault, self.finished);
        }
    }
}

impl Stream for SseRelay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        loop {
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.scanner.feed(&chunk);
                    let deadline = Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(deadline);
                    let out = match &mut this.usage_filter {
                        Some(filter) => filter.push(&chunk),
                        None => chunk,
                    };
                    // A chunk that was all held back: wait for the next one.
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(detail))) => {
                    this.scanner.finish();
                    return if this.scanner.is_complete() {
                        this.end(None, "")
                    } else {
                        this.end(Some(StreamFault::UpstreamError), &detail)
                    };
                }
                Poll::Ready(None) => {
                    // An unterminated last event still goes out before the stream ends.
                    let rest = this
                        .usage_filter
                        .as_mut()
                        .map(UsageEventFilter::finish)
                        .unwrap_or_default();
                    if !rest.is_empty() {
                        return Poll::Ready(Some(Ok(rest)));
                    }
                    this.scanner.finish();
                    return if this.scanner.is_complete() {
                        this.end(None, "")
                    } else {
                        this.end(Some(StreamFault::Truncated), "")
                    };
                }
                Poll::Pending => {
                    return match this.idle.as_mut().poll(cx) {
                        Poll::Ready(()) => {
                            let detail = format!("{}s", this.idle_timeout.as_secs_f64());
                            this.end(Some(StreamFault::IdleTimeout), &detail)
                        }
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
