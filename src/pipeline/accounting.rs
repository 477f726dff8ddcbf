//! Billing one request: the usage slot and budget reservation taken before forwarding, and the
//! usage event written once when the request ends — whatever way it ends.

use std::sync::Arc;
use std::time::Instant;

use actors::budget::Reservation;
use actors::limits::{ConcurrencyPermit, TokenReservation};
use actors::store::now_millis;
use actors::store::usage::UsageEvent;
use actors::tokens;
use actors::usage::UsageSlot;
use serde::Deserialize;

use super::forward::Work;
use super::sse::{push_generated, SseScanner, StreamFault, UsageView};
use super::ApiKind;
use crate::metrics::{BilledRequest, Metrics};

/// Tokens a request used, and whether the gateway had to count them itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    pub prompt: i64,
    pub completion: i64,
    pub estimated: bool,
}

/// Everything needed to bill one request; finishing it consumes it, and dropping it unfinished
/// (a panic, a cancelled future) still records the request with no tokens.
pub struct UsageTicket {
    slot: Option<UsageSlot>,
    reservation: Option<Reservation>,
    /// The token-per-minute charge, corrected to real use like the budget.
    rate_tokens: Option<TokenReservation>,
    /// The key's place among its requests in flight, freed when the request is billed.
    in_flight: Option<ConcurrencyPermit>,
    /// Answered from the response cache: recorded as cached, never billed.
    cached: bool,
    request_id: String,
    key_id: Option<i64>,
    model: String,
    /// The metric label of the request's route ([`actors::routing::Route::label`]).
    route_label: String,
    service: String,
    kind: ApiKind,
    started: Instant,
    metrics: Arc<Metrics>,
    /// The prompt's tokens as admission counted them, if it did.
    prompt_tokens: Option<i64>,
    /// The request body as forwarded, for counting prompt tokens when the upstream gives none
    /// and admission did not count them (empty when it did).
    prompt_body: bytes::Bytes,
}

/// What a [`UsageTicket`] is made of: everything admission took and knows about the request.
pub struct TicketSpec<'a> {
    pub slot: UsageSlot,
    /// The key's token-budget reservation, settled to real use.
    pub reservation: Option<Reservation>,
    /// The token-per-minute reservation made at admission; it settles with the budget.
    pub rate_tokens: Option<TokenReservation>,
    /// The key's concurrency permit, held until the request is billed.
    pub in_flight: Option<ConcurrencyPermit>,
    /// Answered from the response cache.
    pub cached: bool,
    pub request_id: &'a str,
    pub key_id: Option<i64>,
    pub model: &'a str,
    pub route_label: String,
    pub service: &'a str,
    pub kind: ApiKind,
    pub metrics: Arc<Metrics>,
    /// The prompt's tokens, when admission counted them (for a budget or a token limit).
    pub prompt_tokens: Option<i64>,
    /// The request body as forwarded (empty for a cache hit).
    pub prompt_body: bytes::Bytes,
}

/// What a buffered answer says about its tokens.
#[derive(Debug, PartialEq)]
enum AnswerUsage {
    /// The upstream's own `usage`.
    Reported(UsageView),
    /// No readable `usage`: everything generated, to be counted (text, refusals, reasoning,
    /// tool-call names and arguments).
    Generated(String),
}

impl AnswerUsage {
    /// Two passes, the second only when the first finds no readable `usage`: the first skips
    /// `choices` without keeping it (an answer nearly always carries its usage), and a
    /// malformed `usage` does not hide the text that can still be counted.
    fn of(body: &[u8]) -> AnswerUsage {
        #[derive(Deserialize)]
        struct Usage {
            #[serde(default)]
            usage: Option<UsageView>,
        }
        #[derive(Deserialize)]
        struct Choices {
            #[serde(default)]
            choices: Vec<serde_json::Value>,
        }
        if let Ok(Usage { usage: Some(usage) }) = serde_json::from_slice::<Usage>(body) {
            return AnswerUsage::Reported(usage);
        }
        let choices = serde_json::from_slice::<Choices>(body)
            .map(|answer| answer.choices)
            .unwrap_or_default();
        let mut text = String::new();
        for choice in &choices {
            for part in ["message", "text"] {
                if let Some(value) = choice.get(part) {
                    push_generated(value, &mut text);
                }
            }
        }
        AnswerUsage::Generated(text)
    }
}

impl UsageTicket {
    pub fn new(spec: TicketSpec<'_>) -> Self {
        UsageTicket {
            slot: Some(spec.slot),
            reservation: spec.reservation,
            rate_tokens: spec.rate_tokens,
            in_flight: spec.in_flight,
            cached: spec.cached,
            request_id: spec.request_id.to_string(),
            key_id: spec.key_id,
            model: spec.model.to_string(),
            route_label: spec.route_label,
            service: spec.service.to_string(),
            kind: spec.kind,
            started: Instant::now(),
            metrics: spec.metrics,
            prompt_tokens: spec.prompt_tokens,
            // Kept only while it may need counting.
            prompt_body: if spec.prompt_tokens.is_some() {
                bytes::Bytes::new()
            } else {
                spec.prompt_body
            },
        }
    }

    /// Records the request; `tokens` is what gets billed.
    pub fn finish(mut self, status: u16, endpoint: &str, tokens: Tokens) {
        self.record(status, endpoint, tokens);
    }

    fn record(&mut self, status: u16, endpoint: &str, tokens: Tokens) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        // The upstream's numbers: never negative, never wrapping.
        let tokens = Tokens {
            prompt: tokens.prompt.max(0),
            completion: tokens.completion.max(0),
            ..tokens
        };
        let used = tokens.prompt.saturating_add(tokens.completion);
        // One billing time for the budget's settlement and the usage row: the shared ledger
        // and its reconciliation tell their parts of a key's use apart by it.
        let billed_at = now_millis();
        if let Some(reservation) = self.reservation.take() {
            reservation.settle(used, billed_at);
        }
        if let Some(reservation) = self.rate_tokens.take() {
            reservation.settle(used);
        }
        self.in_flight = None;
        // Cached answers are requests too, but bill no tokens.
        let billed = if self.cached {
            Tokens::default()
        } else {
            tokens
        };
        self.metrics.count_request(BilledRequest {
            key_id: self.key_id,
            model: &self.route_label,
            status,
            prompt_tokens: billed.prompt,
            completion_tokens: billed.completion,
        });
        self.metrics.overview.record_tokens(
            std::time::Instant::now(),
            u64::try_from(billed.prompt + billed.completion).unwrap_or(0),
        );
        let mut event_id = uuid::Uuid::encode_buffer();
        slot.record(UsageEvent {
            event_id: uuid::Uuid::now_v7()
                .hyphenated()
                .encode_lower(&mut event_id)
                .to_string(),
            // Recorded once (the slot is gone now): the ticket's strings move into the event.
            request_id: std::mem::take(&mut self.request_id),
            key_id: self.key_id,
            model: std::mem::take(&mut self.model),
            service: std::mem::take(&mut self.service),
            endpoint: endpoint.to_string(),
            api: self.kind.label().to_string(),
            prompt_tokens: tokens.prompt,
            completion_tokens: tokens.completion,
            estimated: tokens.estimated,
            cached: self.cached,
            status: i32::from(status),
            latency_ms: i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX),
            created_at: billed_at,
        });
    }

    /// The prompt's tokens: admission's count, or a billing estimate (bounded work, see
    /// `actors::tokens`).
    fn prompt_tokens(&self) -> i64 {
        self.prompt_tokens
            .unwrap_or_else(|| tokens::prompt_tokens(&self.prompt_body))
    }

    /// Tokens of a buffered answer: the upstream's `usage`, or counted when it has none.
    /// Answers that are not 2xx are not billed.
    pub fn tokens_of_body(&self, status: u16, body: &[u8]) -> Tokens {
        if !(200..300).contains(&status) {
            return Tokens::default();
        }
        match AnswerUsage::of(body) {
            AnswerUsage::Reported(usage) => Tokens {
                prompt: usage.prompt_tokens,
                completion: usage.completion_tokens,
                estimated: false,
            },
            AnswerUsage::Generated(text) => Tokens {
                prompt: self.prompt_tokens(),
                completion: tokens::count(&text),
                estimated: true,
            },
        }
    }

    /// Tokens of upstream work a failed request did (see `forward::Verdict`): the prompt,
    /// counted, and an answer too large to read whole at a token per 4 bytes read.
    pub(super) fn tokens_of_work(&self, work: Work) -> Tokens {
        let prompt = || tokens::prompt_tokens(&self.prompt_body);
        match work {
            Work::Nothing => Tokens::default(),
            Work::Prompt => Tokens {
                prompt: prompt(),
                completion: 0,
                estimated: true,
            },
            Work::Answer { read } => Tokens {
                prompt: prompt(),
                completion: i64::try_from(read / 4).unwrap_or(i64::MAX),
                estimated: true,
            },
        }
    }

    /// Tokens of a stream as far as it went: the upstream's usage when the stream completed
    /// with one, otherwise the prompt plus what was delivered, counted.
    pub fn tokens_of_stream(&self, scanner: &SseScanner, completed: bool) -> Tokens {
        match scanner.usage {
            Some((prompt, completion)) if completed => Tokens {
                prompt,
                completion,
                estimated: false,
            },
            _ => Tokens {
                prompt: scanner
                    .usage
                    .map_or_else(|| self.prompt_tokens(), |(p, _)| p),
                completion: tokens::count(&scanner.delivered_text),
                estimated: true,
            },
        }
    }

    /// Bills a stream when its relay goes away.
    pub fn finish_stream(
        self,
        endpoint: &str,
        scanner: &SseScanner,
        fault: Option<StreamFault>,
        reached_end: bool,
    ) {
        let completed = reached_end && fault.is_none();
        let status = match (reached_end, fault) {
            (true, None) => 200,
            // The client closed the connection (nginx's 499).
            (false, _) => 499,
            (true, Some(_)) => 502,
        };
        let tokens = self.tokens_of_stream(scanner, completed);
        self.finish(status, endpoint, tokens);
    }
}

impl Drop for UsageTicket {
    fn drop(&mut self) {
        if self.slot.is_some() {
            self.record(500, "", Tokens::default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(text: &str) -> AnswerUsage {
        AnswerUsage::Generated(text.to_owned())
    }

    #[test]
    fn an_answer_is_billed_by_its_usage_or_by_what_it_generated() {
        let reported = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],
            "usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#;
        assert_eq!(
            AnswerUsage::of(reported),
            AnswerUsage::Reported(UsageView {
                prompt_tokens: 7,
                completion_tokens: 3
            })
        );
        let unreported = br#"{"choices":[{"message":{"content":"hello"}},{"text":" there"}]}"#;
        assert_eq!(AnswerUsage::of(unreported), generated("hello there"));
        let null = br#"{"choices":[{"text":"a"}],"usage":null}"#;
        assert_eq!(AnswerUsage::of(null), generated("a"));
        assert_eq!(AnswerUsage::of(b"not json"), generated(""));
    }

    /// An upstream's malformed `usage` does not cost the count of what it generated.
    #[test]
    fn a_malformed_usage_still_leaves_the_text_to_count() {
        let malformed = br#"{"choices":[{"message":{"content":"counted"}}],"usage":"lots"}"#;
        assert_eq!(AnswerUsage::of(malformed), generated("counted"));
        let wrong_type = br#"{"usage":{"prompt_tokens":"7"},"choices":[{"text":"still"}]}"#;
        assert_eq!(AnswerUsage::of(wrong_type), generated("still"));
    }
}
