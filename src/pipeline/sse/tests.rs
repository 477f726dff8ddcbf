//! The relay and its scanner: bytes pass unchanged, truncation and idle upstreams are told apart.

use super::*;
use proptest::prelude::*;

fn scan(chunks: &[&[u8]]) -> bool {
    let mut scanner = SseScanner::default();
    for chunk in chunks {
        scanner.feed(chunk);
    }
    scanner.finish();
    scanner.is_complete()
}

#[test]
fn recognises_the_end_of_a_stream() {
    assert!(scan(&[b"data: {\"x\":1}\n\n", b"data: [DONE]\n\n"]));
    assert!(scan(&[
        b"data: {\"choices\":[{\"finish_reason\" : \"stop\"}]}\r\n\r\n"
    ]));
    assert!(scan(&[b"data: [DO", b"NE]"]));
    assert!(!scan(&[
        b"data: {\"choices\":[{\"finish_reason\":null}]}\n\n"
    ]));
    assert!(!scan(&[b"data: {\"x\":1}\n\n"]));
    assert!(!scan(&[b": comment [DONE]\n"]));
}

const WITH_USAGE: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
const WITHOUT_USAGE: &[u8] =
    b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";

fn filtered(chunks: &[&[u8]]) -> Vec<u8> {
    let mut filter = UsageEventFilter::default();
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&filter.push(&Bytes::copy_from_slice(chunk)));
    }
    out.extend_from_slice(&filter.finish());
    out
}

#[test]
fn the_usage_event_is_held_back_and_nothing_else() {
    assert_eq!(filtered(&[WITH_USAGE]), WITHOUT_USAGE);
    assert_eq!(filtered(&[WITHOUT_USAGE]), WITHOUT_USAGE);
    // A usage figure inside a normal event is not a usage-only event.
    let mixed: &[u8] = b"data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":1}}\n\n";
    assert_eq!(filtered(&[mixed]), mixed);
    // An unterminated tail is forwarded at the end.
    assert_eq!(filtered(&[b"data: [DONE]"]), b"data: [DONE]");
}

proptest! {
    #[test]
    fn filtering_ignores_chunk_boundaries(cuts in prop::collection::vec(0usize..140, 0..6)) {
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for cut in cuts {
            let cut = cut.min(WITH_USAGE.len());
            chunks.push(&WITH_USAGE[last..cut.max(last)]);
            last = cut.max(last);
        }
        chunks.push(&WITH_USAGE[last..]);
        prop_assert_eq!(filtered(&chunks), WITHOUT_USAGE.to_vec());
    }

    #[test]
    fn chunking_does_not_change_the_verdict(split in prop::collection::vec(1usize..40, 0..10)) {
        let stream: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\ndata: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let mut chunks = Vec::new();
        let mut rest = stream;
        for size in split {
            let size = size.min(rest.len());
            let (head, tail) = rest.split_at(size);
            chunks.push(head);
            rest = tail;
        }
        chunks.push(rest);
        prop_assert!(scan(&chunks));
    }

    #[test]
    fn a_stream_cut_before_its_end_is_incomplete(cut in 0usize..68) {
        let stream: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\ndata: {\"choices\":[{\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let end_marker = memmem::find(stream, b"\"finish_reason\":\"stop").expect("marker");
        prop_assert!(!scan(&[&stream[..cut.min(end_marker + 16)]]));
    }
}

/// Without a usage event, everything generated is delivered text for the estimate: content,
/// refusals, reasoning, and tool-call names and arguments (not ids, types or roles).
#[test]
fn delivered_text_includes_tool_calls_and_reasoning() {
    let mut scanner = SseScanner::default();
    scanner.feed(
        br#"data: {"choices":[{"delta":{"role":"assistant","reasoning_content":"think "}}]}"#,
    );
    scanner.feed(b"\n\n");
    scanner.feed(br#"data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_9","type":"function","function":{"name":"lookup","arguments":"{\"q\":"}}]}}]}"#);
    scanner.feed(b"\n\n");
    scanner.feed(br#"data: {"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"x\"}"}}]},"finish_reason":"tool_calls"}]}"#);
    scanner.feed(
        b"\n\ndata: {\"choices\":[{\"delta\":{\"refusal\":\" no\",\"content\":\" ok\"}}]}\n\n",
    );
    scanner.feed(b"data: {\"choices\":[{\"text\":\" more\"}]}\n\n");
    scanner.finish();
    let text = &scanner.delivered_text;
    for generated in [
        "think ", "lookup", "{\"q\":", "\"x\"}", " ok", " no", " more",
    ] {
        assert!(
            text.contains(generated),
            "{generated:?} missing from {text:?}"
        );
    }
    for bookkeeping in ["call_9", "function", "assistant", "tool_calls"] {
        assert!(!text.contains(bookkeeping), "{bookkeeping:?} in {text:?}");
    }
}
