//! Token counting for when an upstream reports no usage, and worst-case estimates for budget
//! reservations. Uses OpenAI's cl100k BPE: exact for OpenAI models, a close estimate for others.

use serde_json::Value;

/// Tokens added per chat message by the chat template (role markers), and per reply.
const PER_MESSAGE: i64 = 4;
const PER_REPLY: i64 = 3;

pub fn count(text: &str) -> i64 {
    i64::try_from(
        tiktoken_rs::cl100k_base_singleton()
            .encode_ordinary(text)
            .len(),
    )
    .unwrap_or(i64::MAX)
}

fn count_value(value: &Value) -> i64 {
    match value {
        Value::String(text) => count(text),
        Value::Array(items) => items.iter().map(count_value).fold(0, i64::saturating_add),
        // Structured content (e.g. {"type":"text","text":...}): count its text parts.
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| *k == "text" || *k == "content")
            .map(|(_, v)| count_value(v))
            .fold(0, i64::saturating_add),
        _ => 0,
    }
}

/// Prompt tokens of an OpenAI request body: chat `messages`, completion `prompt`, or
/// embedding `input`.
pub fn prompt_tokens(body: &[u8]) -> i64 {
    serde_json::from_slice::<Value>(body).map_or(0, |request| prompt_tokens_of(&request))
}

fn prompt_tokens_of(request: &Value) -> i64 {
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        let content: i64 = messages
            .iter()
            .map(|m| PER_MESSAGE.saturating_add(m.get("content").map_or(0, count_value)))
            .fold(0, i64::saturating_add);
        return content.saturating_add(PER_REPLY);
    }
    request
        .get("prompt")
        .or_else(|| request.get("input"))
        .map_or(0, count_value)
}

/// The most tokens a request may use, and the completion ceiling to write into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorstCase {
    /// Prompt plus the completion limit.
    pub tokens: i64,
    /// Set when the request gave no completion limit: the one reserved, which the upstream
    /// must be told (as `max_tokens`) so it cannot generate past it.
    pub ceiling: Option<i64>,
}

/// The most tokens a request may use: its prompt plus the larger of `max_tokens` and
/// `max_completion_tokens` (upstreams differ on which one they obey, so the reservation covers
/// either), or `default_max_tokens` (at least 1) when it sets neither. `None` for requests that
/// generate nothing (embeddings).
pub fn worst_case(body: &[u8], default_max_tokens: Option<i64>) -> WorstCase {
    let request = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    let given = ["max_tokens", "max_completion_tokens"]
        .iter()
        .filter_map(|field| request.get(field).and_then(Value::as_i64))
        .max();
    let (completion, ceiling) = match (given, default_max_tokens) {
        (_, None) => (0, None),
        (Some(given), Some(_)) => (given, None),
        (None, Some(default)) => (default.max(1), Some(default.max(1))),
    };
    WorstCase {
        tokens: prompt_tokens_of(&request).saturating_add(completion.max(0)),
        ceiling,
    }
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
    }

    #[test]
    fn worst_case_adds_the_larger_completion_limit() {
        let check = |body: &[u8], default, tokens, ceiling| {
            let body_text = String::from_utf8_lossy(body);
            assert_eq!(
                worst_case(body, default),
                WorstCase { tokens, ceiling },
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
