//! `gateway_requests_total` and `gateway_tokens_total`, counted through handles resolved once
//! per key and model. `with_label_values` formats nothing but hashes every label value and
//! takes the vec's lock on each call, up to three times per request; a warm series here costs
//! one lookup in a map the request path only reads.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use foldhash::fast::RandomState;

use prometheus::{IntCounter, IntCounterVec};

use super::labels::{self, BoundedLabels, KeyDigits};
use super::BilledRequest;

type SeriesMap<K, V> = HashMap<K, V, RandomState>;
/// One model's series, by key id.
type ByKey = SeriesMap<Option<i64>, Series>;

/// The two counters billed requests feed, and the handles resolved for them so far.
pub(super) struct RequestCounters {
    requests: IntCounterVec,
    tokens: IntCounterVec,
    models: BoundedLabels,
    /// By model label, then key id. Only models the bounded set admitted get an entry, so the
    /// map is bounded like the series themselves (one entry per key and model that has one).
    /// foldhash, not SipHash: both keys are the gateway's own (key ids, admitted labels), and
    /// SipHash made the two lookups cost more than the rest of the count.
    resolved: RwLock<SeriesMap<Box<str>, ByKey>>,
}

/// One key's and model's handles. Each is resolved on its first use, so no series appears in
/// a scrape before something was counted in it (as with `with_label_values` on demand).
struct Series {
    key: Box<str>,
    /// By status class, in [`labels::status_class_index`]'s order.
    requests: [OnceLock<IntCounter>; labels::STATUS_CLASSES.len()],
    prompt: OnceLock<IntCounter>,
    completion: OnceLock<IntCounter>,
}

impl Series {
    fn new(key_id: Option<i64>) -> Series {
        Series {
            key: Box::from(KeyDigits::default().format(key_id)),
            requests: Default::default(),
            prompt: OnceLock::new(),
            completion: OnceLock::new(),
        }
    }
}

impl RequestCounters {
    pub(super) fn new(requests: IntCounterVec, tokens: IntCounterVec, max_models: usize) -> Self {
        RequestCounters {
            requests,
            tokens,
            models: BoundedLabels::new(max_models),
            resolved: RwLock::new(SeriesMap::default()),
        }
    }

    /// Counts one billed request and its tokens. `request.model` is the route's label; it is
    /// admitted into the bounded set of model labels (else counted as `other`).
    pub(super) fn count(&self, request: &BilledRequest<'_>) {
        if let Ok(resolved) = self.resolved.read() {
            let series = resolved
                .get(request.model)
                .and_then(|by_key| by_key.get(&request.key_id));
            if let Some(series) = series {
                self.count_in(series, request.model, request);
                return;
            }
        }
        let model = self.models.label(request.model, true);
        if model != request.model {
            // `other`: rare (the set is full), counted without keeping a handle.
            let series = Series::new(request.key_id);
            self.count_in(&series, model, request);
            return;
        }
        let Ok(mut resolved) = self.resolved.write() else {
            return;
        };
        let series = resolved
            .entry(Box::from(model))
            .or_default()
            .entry(request.key_id)
            .or_insert_with(|| Series::new(request.key_id));
        self.count_in(series, model, request);
    }

    fn count_in(&self, series: &Series, model: &str, request: &BilledRequest<'_>) {
        let class = labels::status_class_index(request.status);
        series.requests[class]
            .get_or_init(|| {
                self.requests.with_label_values(&[
                    &*series.key,
                    model,
                    labels::STATUS_CLASSES[class],
                ])
            })
            .inc();
        for (handle, direction, count) in [
            (&series.prompt, "prompt", request.prompt_tokens),
            (&series.completion, "completion", request.completion_tokens),
        ] {
            if count > 0 {
                handle
                    .get_or_init(|| {
                        self.tokens
                            .with_label_values(&[&*series.key, model, direction])
                    })
                    .inc_by(u64::try_from(count).unwrap_or(0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus::Opts;

    use super::*;

    fn counters(max_models: usize) -> RequestCounters {
        let vec = |name: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, "help"), labels).expect("a valid counter")
        };
        RequestCounters::new(
            vec("requests", &["key", "model", "status"]),
            vec("tokens", &["key", "model", "direction"]),
            max_models,
        )
    }

    fn billed(key_id: Option<i64>, model: &str, status: u16, tokens: i64) -> BilledRequest<'_> {
        BilledRequest {
            key_id,
            model,
            status,
            prompt_tokens: tokens,
            completion_tokens: 0,
        }
    }

    /// The cached handles count into the same series `with_label_values` names, and only the
    /// series that were used exist.
    #[test]
    fn cached_handles_count_into_the_labelled_series() {
        let counters = counters(1);
        for _ in 0..3 {
            counters.count(&billed(Some(7), "svc/*", 200, 5));
        }
        counters.count(&billed(Some(7), "svc/*", 503, 0));
        counters.count(&billed(None, "made-up", 200, 2));
        let requests = |labels: &[&str]| counters.requests.with_label_values(labels).get();
        let tokens = |labels: &[&str]| counters.tokens.with_label_values(labels).get();
        assert_eq!(requests(&["7", "svc/*", "2xx"]), 3);
        assert_eq!(requests(&["7", "svc/*", "5xx"]), 1);
        assert_eq!(tokens(&["7", "svc/*", "prompt"]), 15);
        // The set of models is full: the second model is `other`, and keeps no handle.
        assert_eq!(requests(&["none", labels::OTHER, "2xx"]), 1);
        assert_eq!(tokens(&["none", labels::OTHER, "prompt"]), 2);
        let resolved = counters.resolved.read().expect("not poisoned");
        assert_eq!(resolved.len(), 1);
        // No completion tokens were billed: those series were never created, only the two
        // prompt ones.
        let families = prometheus::core::Collector::collect(&counters.tokens);
        assert_eq!(families[0].get_metric().len(), 2);
    }
}
