//! The response cache: answers to deterministic requests by a hash of the canonicalised
//! request, in a moka cache bounded by bytes and TTL. What is deterministic and how a cached
//! answer is replayed are the edge's business; this module owns keys and storage.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Fields that never change an answer: how it is delivered, and who asks.
const IGNORED_FIELDS: &[&str] = &["stream", "stream_options", "user"];

/// A cached answer: the upstream's 200 body and the tokens it cost then.
#[derive(Debug)]
pub struct CachedAnswer {
    pub body: Bytes,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// The hash of `scope` (an API key, or a shared service), the API and the request without
/// [`IGNORED_FIELDS`], with object keys sorted so that key order never matters.
pub fn cache_key(scope: &str, api: &str, request: &Value) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(scope.as_bytes());
    hasher.update([0]);
    hasher.update(api.as_bytes());
    hasher.update([0]);
    if let Value::Object(fields) = request {
        let mut names: Vec<&String> = fields
            .keys()
            .filter(|name| !IGNORED_FIELDS.contains(&name.as_str()))
            .collect();
        names.sort();
        hasher.update(b"{");
        for name in names {
            canonical(&Value::String(name.clone()), &mut hasher);
            hasher.update(b":");
            canonical(&fields[name.as_str()], &mut hasher);
            hasher.update(b",");
        }
        hasher.update(b"}");
    } else {
        canonical(request, &mut hasher);
    }
    hasher.finalize().into()
}

/// Feeds `value` as JSON with sorted object keys.
fn canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(fields) => {
            let mut names: Vec<&String> = fields.keys().collect();
            names.sort();
            hasher.update(b"{");
            for name in names {
                canonical(&Value::String(name.clone()), hasher);
                hasher.update(b":");
                canonical(&fields[name.as_str()], hasher);
                hasher.update(b",");
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                canonical(item, hasher);
                hasher.update(b",");
            }
            hasher.update(b"]");
        }
        scalar => hasher.update(scalar.to_string().as_bytes()),
    }
}

/// Answers by key, each weighing its body's size; entries live at most `ttl`.
#[derive(Clone)]
pub struct ResponseCache {
    entries: moka::future::Cache<[u8; 32], Arc<CachedAnswer>>,
}

impl ResponseCache {
    pub fn new(ttl: Duration, max_bytes: u64) -> Self {
        let entries = moka::future::Cache::builder()
            .time_to_live(ttl)
            .max_capacity(max_bytes)
            .weigher(|_, answer: &Arc<CachedAnswer>| {
                u32::try_from(answer.body.len() + 64).unwrap_or(u32::MAX)
            })
            .build();
        ResponseCache { entries }
    }

    pub async fn get(&self, key: &[u8; 32]) -> Option<Arc<CachedAnswer>> {
        self.entries.get(key).await
    }

    pub async fn insert(&self, key: [u8; 32], answer: CachedAnswer) {
        self.entries.insert(key, Arc::new(answer)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_ignore_order_delivery_and_user_but_not_content() {
        let a = json!({"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]});
        let b = json!({"messages": [{"content": "hi", "role": "user"}], "stream": true,
            "stream_options": {"include_usage": true}, "user": "bob", "temperature": 0, "model": "m"});
        assert_eq!(
            cache_key("key:1", "chat", &a),
            cache_key("key:1", "chat", &b)
        );
        assert_ne!(
            cache_key("key:1", "chat", &a),
            cache_key("key:2", "chat", &a)
        );
        assert_ne!(
            cache_key("key:1", "chat", &a),
            cache_key("key:1", "completions", &a)
        );
        let other = json!({"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "ho"}]});
        assert_ne!(
            cache_key("key:1", "chat", &a),
            cache_key("key:1", "chat", &other)
        );
        let seeded = json!({"model": "m", "temperature": 0, "seed": 1, "messages": [{"role": "user", "content": "hi"}]});
        assert_ne!(
            cache_key("key:1", "chat", &a),
            cache_key("key:1", "chat", &seeded)
        );
    }
}
