//! The response cache: answers to deterministic requests by a hash of the canonicalised
//! request, in a moka cache bounded by bytes and TTL. What is deterministic and how a cached
//! answer is replayed are the edge's business; this module owns keys and storage.

use std::sync::atomic::{AtomicU64, Ordering};
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
    ttl: Duration,
    max_bytes: u64,
    /// With Redis, answers are shared by every replica; this process's entries stay in front.
    shared: Option<Arc<crate::shared::SharedRedis>>,
    /// Lookups answered (hits) and not (misses), for the edge's metrics.
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
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
        ResponseCache {
            entries,
            ttl,
            max_bytes,
            shared: None,
            hits: Arc::new(AtomicU64::new(0)),
            misses: Arc::new(AtomicU64::new(0)),
        }
    }

    /// (hits, misses) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Shares answers through Redis (`<prefix>:cache:<hash>`, expiring after the TTL). A Redis
    /// failure only costs hits: the answer is then fetched from the upstream.
    pub fn with_shared(mut self, shared: Arc<crate::shared::SharedRedis>) -> Self {
        self.shared = Some(shared);
        self
    }

    pub async fn get(&self, key: &[u8; 32]) -> Option<Arc<CachedAnswer>> {
        let answer = self.lookup(key).await;
        let counter = if answer.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        answer
    }

    async fn lookup(&self, key: &[u8; 32]) -> Option<Arc<CachedAnswer>> {
        if let Some(answer) = self.entries.get(key).await {
            return Some(answer);
        }
        let shared = self.shared.as_ref()?;
        let stored = shared.cache_get(&hex(key)).await.ok()??;
        let answer = Arc::new(decode(&stored)?);
        self.entries.insert(*key, Arc::clone(&answer)).await;
        Some(answer)
    }

    pub async fn insert(&self, key: [u8; 32], answer: CachedAnswer) {
        if let Some(shared) = &self.shared {
            if (answer.body.len() as u64) < self.max_bytes {
                shared.cache_put(&hex(&key), encode(&answer), self.ttl);
            }
        }
        self.entries.insert(key, Arc::new(answer)).await;
    }
}

fn hex(key: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in key {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Stored form: prompt and completion tokens (8 bytes each, little-endian), then the body.
fn encode(answer: &CachedAnswer) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(16 + answer.body.len());
    bytes.extend_from_slice(&answer.prompt_tokens.to_le_bytes());
    bytes.extend_from_slice(&answer.completion_tokens.to_le_bytes());
    bytes.extend_from_slice(&answer.body);
    bytes
}

fn decode(bytes: &[u8]) -> Option<CachedAnswer> {
    let prompt = i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let completion = i64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some(CachedAnswer {
        body: Bytes::copy_from_slice(bytes.get(16..)?),
        prompt_tokens: prompt,
        completion_tokens: completion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_answers_round_trip() {
        let answer = CachedAnswer {
            body: Bytes::from_static(b"{\"id\":\"x\"}"),
            prompt_tokens: 7,
            completion_tokens: 1 << 40,
        };
        let back = decode(&encode(&answer)).expect("decodes");
        assert_eq!(back.body, answer.body);
        assert_eq!((back.prompt_tokens, back.completion_tokens), (7, 1 << 40));
        assert!(decode(b"short").is_none());
        assert_eq!(hex(&[0xab; 32]).len(), 64);
        assert!(hex(&[0x0f; 32]).starts_with("0f0f"));
    }

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
