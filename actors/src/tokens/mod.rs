//! Token counts for when an upstream reports no usage, and worst-case estimates for budget
//! reservations and token limits. Uses OpenAI's cl100k BPE: exact for OpenAI models, a close
//! estimate for others. Reads the OpenAI request fields `messages`, `prompt`, `input`,
//! `max_tokens` and `max_completion_tokens`.
//!
//! The work is bounded (count.rs): runs are cut so no BPE piece is long, and at most
//! [`RESERVATION_EXACT_BYTES`] of a prompt (or [`BILLING_EXACT_BYTES`] of a billed text) are
//! encoded; past that, reservations count a token per byte (never less than the truth) and
//! billing estimates extrapolate the rate of the encoded part (close to it). Bodies over
//! [`ON_THREAD_BYTES`] are counted on tokio's blocking threads, a few at a time.

mod count;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

pub use count::{Counter, Tally, MAX_RUN_BYTES};

/// Tokens added per chat message by the chat template (role markers), and per reply.
const PER_MESSAGE: i64 = 4;
const PER_REPLY: i64 = 3;

/// Text bytes of a prompt encoded for a reservation (about 16k tokens of English): ~10 ms of
/// a thread for English, ~65-160 ms for the slowest text (" 1" repeated: a regex match per
/// byte) in a release build on a loaded 2-core machine.
pub const RESERVATION_EXACT_BYTES: usize = 64 * 1024;

/// Text bytes encoded for a billing estimate, which runs on the I/O thread that finishes the
/// request: at most about a millisecond (0.15 ms for English, 0.7-1 ms for the slowest text).
pub const BILLING_EXACT_BYTES: usize = 1024;

/// Bodies up to this size are counted on the caller's thread (at most about a millisecond,
/// as above); larger ones on a blocking thread.
pub const ON_THREAD_BYTES: usize = 1024;

/// Tokens of one text, for billing: exact up to [`BILLING_EXACT_BYTES`], estimated past them.
pub fn count(text: &str) -> i64 {
    let mut counter = Counter::new(BILLING_EXACT_BYTES);
    counter.text(text);
    counter.tally().estimate()
}

/// The fields counting reads, borrowed from the body and left unparsed until counted: a body
/// of many messages past the cap costs a scan, not a tree of values (which took ~0.3 s for
/// 140,000 one-character messages). Duplicate fields are refused at the edge's parse already.
#[derive(Default, Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
}

impl<'a> Fields<'a> {
    fn of(body: &'a [u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// Structured content (e.g. `{"type":"text","text":...}`): its text parts.
#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

/// Counts the strings of a JSON value: whole strings, array items, and the `text` and `content`
/// of objects. Strings past the cap are not even unescaped: their raw length, never less than
/// their text's, is what is left uncounted.
fn count_json(counter: &mut Counter, raw: &RawValue) {
    let json = raw.get();
    match json.as_bytes().first() {
        Some(b'"') if counter.is_full() => counter.skip(json.len().saturating_sub(2)),
        Some(b'"') => {
            if let Ok(text) = serde_json::from_str::<Cow<'_, str>>(json) {
                counter.text(&text);
            }
        }
        Some(b'[') => {
            for item in serde_json::from_str::<Vec<&RawValue>>(json).unwrap_or_default() {
                count_json(counter, item);
            }
        }
        Some(b'{') => {
            if let Ok(part) = serde_json::from_str::<Part<'_>>(json) {
                for raw in [part.text, part.content].into_iter().flatten() {
                    count_json(counter, raw);
                }
            }
        }
        _ => {}
    }
}

/// The `content` of each message, in one pass over them when all are objects (as they should
/// be); `None` when `messages` is not an array.
fn contents_of(messages: &str) -> Option<Vec<Option<&RawValue>>> {
    if let Ok(messages) = serde_json::from_str::<Vec<Part<'_>>>(messages) {
        return Some(messages.into_iter().map(|m| m.content).collect());
    }
    let messages = serde_json::from_str::<Vec<&RawValue>>(messages).ok()?;
    Some(messages.into_iter().map(content_of).collect())
}

fn content_of(message: &RawValue) -> Option<&RawValue> {
    serde_json::from_str::<Part<'_>>(message.get())
        .ok()
        .and_then(|m| m.content)
}

/// Prompt tokens of an OpenAI request body (chat `messages`, completion `prompt`, or embedding
/// `input`), for billing: exact up to [`BILLING_EXACT_BYTES`] of text, estimated past them.
pub fn prompt_tokens(body: &[u8]) -> i64 {
    prompt_tally(&Fields::of(body), BILLING_EXACT_BYTES).estimate()
}

fn prompt_tally(request: &Fields<'_>, exact_bytes: usize) -> Tally {
    let mut counter = Counter::new(exact_bytes);
    if let Some(contents) = request.messages.and_then(|raw| contents_of(raw.get())) {
        for content in contents {
            counter.add(PER_MESSAGE);
            if let Some(content) = content {
                count_json(&mut counter, content);
            }
        }
        counter.add(PER_REPLY);
    } else if let Some(prompt) = request.prompt.or(request.input) {
        count_json(&mut counter, prompt);
    }
    counter.tally()
}

/// The most tokens a request may use, and the completion ceiling to write into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorstCase {
    /// Prompt (never less than counted) plus the completion limit.
    pub tokens: i64,
    /// Set when the request gave no completion limit: the one reserved, which the upstream
    /// must be told (as `max_tokens`) so it cannot generate past it.
    pub ceiling: Option<i64>,
    /// The prompt's tokens as billing estimates them, should the upstream report none (`None`
    /// when the request was not counted).
    pub prompt: Option<i64>,
}

impl WorstCase {
    /// Nothing to reserve: the request was not counted.
    pub const NONE: WorstCase = WorstCase {
        tokens: 0,
        ceiling: None,
        prompt: None,
    };
}

/// The most tokens a request may use: its prompt plus the larger of `max_tokens` and
/// `max_completion_tokens` (upstreams differ on which one they obey, so the reservation covers
/// either), or `default_max_tokens` (at least 1) when it sets neither. `None` for requests that
/// generate nothing (embeddings). Encodes at most [`RESERVATION_EXACT_BYTES`] of text.
pub fn worst_case(body: &[u8], default_max_tokens: Option<i64>) -> WorstCase {
    let request = Fields::of(body);
    let given = [request.max_tokens, request.max_completion_tokens]
        .into_iter()
        .flatten()
        .filter_map(|raw| serde_json::from_str::<i64>(raw.get()).ok())
        .max();
    let (completion, ceiling) = match (given, default_max_tokens) {
        (_, None) => (0, None),
        (Some(given), Some(_)) => (given, None),
        (None, Some(default)) => (default.max(1), Some(default.max(1))),
    };
    let prompt = prompt_tally(&request, RESERVATION_EXACT_BYTES);
    WorstCase {
        tokens: prompt.upper_bound().saturating_add(completion.max(0)),
        ceiling,
        prompt: Some(prompt.estimate()),
    }
}

/// Counting threads at work at once: one per core, so large prompts queue (as futures) rather
/// than crowd out everything else on the blocking pool.
static COUNTING_THREADS: LazyLock<Semaphore> = LazyLock::new(|| {
    Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
});

/// A count that could not finish: its thread panicked or the runtime is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("token counting failed: {0}")]
pub struct CountingFailed(String);

/// Set once a count has built cl100k's tables (~150 ms, once per process), so that is never
/// done on the caller's thread.
static TABLES_BUILT: AtomicBool = AtomicBool::new(false);

/// [`worst_case`], on the caller's thread for bodies up to [`ON_THREAD_BYTES`] and otherwise
/// (or while the tables are not built) on a blocking thread, at most one per core at once (a
/// request that goes away leaves its count to finish, holding its place, so the bound holds).
pub async fn worst_case_off_thread(
    body: Bytes,
    default_max_tokens: Option<i64>,
) -> Result<WorstCase, CountingFailed> {
    if body.len() <= ON_THREAD_BYTES && TABLES_BUILT.load(Ordering::Relaxed) {
        return Ok(worst_case(&body, default_max_tokens));
    }
    let permit = COUNTING_THREADS
        .acquire()
        .await
        .map_err(|closed| CountingFailed(closed.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        tiktoken_rs::cl100k_base_singleton();
        TABLES_BUILT.store(true, Ordering::Relaxed);
        worst_case(&body, default_max_tokens)
    })
    .await
    .map_err(|error| CountingFailed(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_known_text() {
        assert_eq!(count("hello world"), 2);
        assert_eq!(count(""), 0);
    }

    #[test]
    fn prompt_estimates_cover_all_request_kinds() {
        let chat = br#"{"model":"m","messages":[{"role":"user","content":"hello world"},{"role":"user","content":[{"type":"text","text":"hello world"}]}]}"#;
        assert_eq!(prompt_tokens(chat), 2 * (4 + 2) + 3);
        assert_eq!(prompt_tokens(br#"{"prompt":"hello world"}"#), 2);
        assert_eq!(prompt_tokens(br#"{"input":["hello world","hello"]}"#), 3);
        assert_eq!(prompt_tokens(b"not json"), 0);
        // Odd shapes count as they did when the body was parsed whole.
        let odd = br#"{"messages":["x",{"role":"user","content":"hello world"},{"content":7}]}"#;
        assert_eq!(prompt_tokens(odd), 3 * 4 + 2 + 3);
        let not_an_array = br#"{"messages":"hello","prompt":"hello world"}"#;
        assert_eq!(prompt_tokens(not_an_array), 2);
        let escaped = br#"{"prompt":"hello\nworld \u00e9"}"#;
        assert_eq!(prompt_tokens(escaped), count("hello\nworld é"));
    }

    /// Past the cap, the reservation stays above the exact count and billing close to it,
    /// however many messages carry the text.
    #[test]
    fn past_the_cap_reservations_bound_and_estimates_stay_close() {
        let sentence = "The quick brown fox jumps over the lazy dog. ";
        let exact_of = |text: &str| {
            i64::try_from(
                tiktoken_rs::cl100k_base_singleton()
                    .encode_ordinary(text)
                    .len(),
            )
            .expect("fits")
        };
        let long = sentence.repeat(3000);
        let short = sentence.repeat(4);
        for (messages, text) in [(1_usize, &long), (800, &short)] {
            let chat: Vec<_> = (0..messages)
                .map(|_| serde_json::json!({"role": "user", "content": text}))
                .collect();
            let body = serde_json::to_vec(&serde_json::json!({"messages": chat})).expect("json");
            assert!(text.len() * messages > 2 * RESERVATION_EXACT_BYTES);
            let exact =
                (exact_of(text) + PER_MESSAGE) * i64::try_from(messages).expect("fits") + PER_REPLY;
            let counted = worst_case(&body, None);
            let (bound, estimate) = (counted.tokens, counted.prompt.expect("counted"));
            assert!(bound >= exact, "{messages}: {bound} < {exact}");
            assert!(
                (estimate - exact).abs() * 50 <= exact,
                "{messages}: {estimate} vs {exact}"
            );
            assert!(estimate <= bound);
            let billed = prompt_tokens(&body);
            assert!(
                (billed - exact).abs() * 50 <= exact,
                "{messages}: {billed} vs {exact}"
            );
        }
    }

    /// A body over `ON_THREAD_BYTES` goes to a blocking thread and counts the same.
    #[actix_rt::test]
    async fn large_bodies_count_the_same_off_the_callers_thread() {
        let body = serde_json::json!({"prompt": "hello world ".repeat(500), "max_tokens": 5});
        let body = Bytes::from(serde_json::to_vec(&body).expect("json"));
        assert!(body.len() > ON_THREAD_BYTES);
        let counted = worst_case_off_thread(body.clone(), Some(1)).await;
        assert_eq!(counted.expect("counted"), worst_case(&body, Some(1)));
        assert!(TABLES_BUILT.load(Ordering::Relaxed));
    }

    #[test]
    fn worst_case_adds_the_larger_completion_limit() {
        let check = |body: &[u8], default, tokens, ceiling| {
            let body_text = String::from_utf8_lossy(body);
            let counted = worst_case(body, default);
            assert_eq!(
                (counted.tokens, counted.ceiling),
                (tokens, ceiling),
                "{body_text}"
            );
        };
        check(
            br#"{"prompt":"hello world","max_tokens":10}"#,
            Some(100),
            12,
            None,
        );
        check(br#"{"prompt":"hello world"}"#, Some(100), 102, Some(100));
        check(br#"{"prompt":"hello world"}"#, Some(0), 3, Some(1));
        // Whichever field the upstream obeys, the reservation covers it.
        check(
            br#"{"prompt":"hello world","max_completion_tokens":1,"max_tokens":4000}"#,
            Some(100),
            4002,
            None,
        );
        check(
            br#"{"prompt":"hello world","max_completion_tokens":9,"max_tokens":5}"#,
            Some(100),
            11,
            None,
        );
        // A client number never overflows the sum (the edge refuses such limits anyway).
        check(
            br#"{"prompt":"hi","max_tokens":9223372036854775807}"#,
            Some(1),
            i64::MAX,
            None,
        );
        // Embeddings generate nothing.
        check(br#"{"input":"hello world"}"#, None, 2, None);
    }
}
