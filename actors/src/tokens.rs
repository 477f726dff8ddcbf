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
        Value::Array(items) => items.iter().map(count_value).sum(),
        // Structured content (e.g. {"type":"text","text":...}): count its text parts.
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| *k == "text" || *k == "content")
            .map(|(_, v)| count_value(v))
            .sum(),
        _ => 0,
    }
}

/// Prompt tokens of an OpenAI request body: chat `messages`, completion `prompt`, or
/// embedding `input`.
pub fn prompt_tokens(body: &[u8]) -> i64 {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        let content: i64 = messages
            .iter()
            .map(|m| PER_MESSAGE + m.get("content").map_or(0, count_value))
            .sum();
        return content + PER_REPLY;
    }
    request
        .get("prompt")
        .or_else(|| request.get("input"))
        .map_or(0, count_value)
}

/// The most tokens a request may use: its prompt plus `max_tokens` (or
/// `max_completion_tokens`), or `default_max_tokens` when it sets neither.
pub fn worst_case(body: &[u8], default_max_tokens: i64) -> i64 {
    let completion = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|r| {
            r.get("max_completion_tokens")
                .or_else(|| r.get("max_tokens"))
                .and_then(Value::as_i64)
        })
        .unwrap_or(default_max_tokens)
        .max(0);
    prompt_tokens(body) + completion
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
    fn worst_case_adds_the_completion_limit() {
        let body = br#"{"prompt":"hello world","max_tokens":10}"#;
        assert_eq!(worst_case(body, 100), 12);
        assert_eq!(worst_case(br#"{"prompt":"hello world"}"#, 100), 102);
        assert_eq!(
            worst_case(
                br#"{"prompt":"hello world","max_completion_tokens":5,"max_tokens":9}"#,
                100
            ),
            7
        );
    }
}
