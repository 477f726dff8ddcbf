use super::*;

fn chat(body: Value) -> Result<(proto::ChatRequest, ChatOptions), GatewayError> {
    chat_request(body.to_string().as_bytes(), "req-1")
}

fn rejected_param(body: Value) -> &'static str {
    match chat(body) {
        Err(GatewayError::InvalidParameter { param, .. }) => param,
        other => panic!("expected an invalid parameter, got {other:?}"),
    }
}

fn chunk(delta: &str, finish: Option<proto::FinishReason>) -> proto::ChatChunk {
    proto::ChatChunk {
        id: "chatcmpl-1".into(),
        model: "smollm2".into(),
        delta: delta.into(),
        finish_reason: finish.map(|reason| reason as i32),
        usage: finish.map(|_| proto::Usage {
            prompt_tokens: 7,
            completion_tokens: 2,
            total_tokens: 9,
        }),
        request_id: "req-1".into(),
        created: 1_700_000_000,
    }
}

/// The JSON of every `data:` event, and whether the stream ended with `[DONE]`.
fn events(sse: &[u8]) -> (Vec<Value>, bool) {
    let text = std::str::from_utf8(sse).expect("utf-8");
    let mut done = false;
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|block| !block.is_empty()) {
        let data = block.strip_prefix("data: ").expect("a data line");
        if data == "[DONE]" {
            done = true;
        } else {
            events.push(serde_json::from_str(data).expect("json event"));
        }
    }
    (events, done)
}

#[test]
fn a_full_chat_request_converts() {
    let (request, options) = chat(json!({
        "model": "smollm2-135m-instruct",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "name": "ann", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": null}
        ],
        "temperature": 0, "top_p": 0.9, "top_k": 40, "seed": 7, "min_p": 0.05,
        "presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.1,
        "max_completion_tokens": 16, "stop": "\n", "n": 1,
        "logit_bias": {"42": -100}, "ignore_eos": true, "user": "u-1",
        "metadata": {"tenant": "t"}, "tools": [], "stream": true,
        "stream_options": {"include_usage": true},
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    }))
    .expect("valid");
    assert_eq!(
        options,
        ChatOptions {
            stream: true,
            include_usage: true
        }
    );
    assert_eq!(request.model, "smollm2-135m-instruct");
    assert_eq!(request.request_id, "req-1");
    let messages: Vec<_> = request
        .messages
        .iter()
        .map(|m| (m.role.as_str(), m.content.as_str(), m.name.as_deref()))
        .collect();
    assert_eq!(
        messages,
        [
            ("system", "Be brief.", None),
            ("user", "Hi there", Some("ann")),
            ("assistant", "", None)
        ]
    );
    let sampling = request.sampling.expect("sampling");
    assert_eq!(sampling.temperature, Some(0.0));
    assert_eq!(sampling.top_k, Some(40));
    assert_eq!(sampling.seed, Some(7));
    assert_eq!(sampling.repetition_penalty, Some(1.1));
    assert_eq!(request.max_tokens, Some(16));
    assert_eq!(request.stop, ["\n"]);
    assert_eq!(request.logit_bias.get(&42), Some(&-100.0));
    assert!(request.ignore_eos);
    assert_eq!(request.user, "u-1");
    assert_eq!(
        request.metadata.get("tenant").map(String::as_str),
        Some("t")
    );
    assert_eq!(request.json_schema.as_deref(), Some(r#"{"type":"object"}"#));
    assert_eq!(request.grammar, None);
}

#[test]
fn a_minimal_chat_request_leaves_defaults_to_the_server() {
    let (request, options) = chat(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                          "max_tokens": 3, "max_completion_tokens": 9}),
    )
    .expect("valid");
    assert_eq!(
        options,
        ChatOptions {
            stream: false,
            include_usage: false
        }
    );
    assert_eq!(
        request.max_tokens,
        Some(3),
        "max_tokens wins, as in python-models"
    );
    assert_eq!(request.sampling, Some(proto::SamplingParams::default()));
    assert!(request.stop.is_empty() && request.logit_bias.is_empty());
}

#[test]
fn wrong_types_name_their_parameter() {
    let base = |extra: Value| {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        for (key, value) in extra.as_object().expect("object") {
            body[key] = value.clone();
        }
        body
    };
    assert_eq!(
        rejected_param(base(json!({"temperature": "0.5"}))),
        "temperature"
    );
    assert_eq!(
        rejected_param(base(json!({"max_tokens": 1e12}))),
        "max_tokens"
    );
    assert_eq!(rejected_param(base(json!({"n": 2}))), "n");
    assert_eq!(rejected_param(base(json!({"stop": [1]}))), "stop");
    assert_eq!(
        rejected_param(base(json!({"logit_bias": {"x": 1}}))),
        "logit_bias"
    );
    assert_eq!(
        rejected_param(base(json!({"response_format": {"type": "yaml"}}))),
        "response_format"
    );
    assert_eq!(
        rejected_param(base(
            json!({"json_schema": {}, "response_format": {"type": "json_object"}})
        )),
        "json_schema"
    );
    assert_eq!(
        rejected_param(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})
        ),
        "messages"
    );
    assert_eq!(
        rejected_param(json!({"model": "m", "messages": [{"content": "no role"}]})),
        "messages"
    );
    assert!(matches!(
        chat(json!({"model": "m"})),
        Err(GatewayError::MissingParameter("messages"))
    ));
}

#[test]
fn chunks_collect_into_a_chat_completion() {
    let mut completion = ChatCompletion::default();
    completion.push(chunk("Hel", None));
    completion.push(chunk("lo", None));
    completion.push(chunk("!", Some(proto::FinishReason::Length)));
    assert_eq!(completion.len(), 6);
    let body: Value =
        serde_json::from_slice(&completion.finish().expect("finished")).expect("json");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["id"], "chatcmpl-1");
    assert_eq!(body["model"], "smollm2");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello!");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9})
    );
}

#[test]
fn a_stream_without_its_last_chunk_is_not_a_completion() {
    let mut completion = ChatCompletion::default();
    completion.push(chunk("Hel", None));
    assert_eq!(completion.finish(), None);
}

#[test]
fn chunks_become_openai_events_ending_with_done() {
    for include_usage in [false, true] {
        let mut encoder = ChunkEncoder::new(include_usage);
        let mut sse = Vec::new();
        for chunk in [
            chunk("Hel", None),
            chunk("lo", None),
            chunk("", Some(proto::FinishReason::Stop)),
        ] {
            assert!(!encoder.is_finished());
            sse.extend_from_slice(&encoder.encode(&chunk));
        }
        assert!(encoder.is_finished());
        let (events, done) = events(&sse);
        assert!(done);
        let deltas: Vec<&Value> = events
            .iter()
            .filter_map(|e| e["choices"].get(0))
            .map(|choice| &choice["delta"])
            .collect();
        assert_eq!(
            deltas,
            [
                &json!({"role": "assistant", "content": ""}),
                &json!({"content": "Hel"}),
                &json!({"content": "lo"}),
                &json!({})
            ]
        );
        assert!(events
            .iter()
            .all(|e| e["object"] == "chat.completion.chunk" && e["id"] == "chatcmpl-1"));
        let finish = events
            .iter()
            .filter_map(|e| e["choices"].get(0)?["finish_reason"].as_str())
            .collect::<Vec<_>>();
        assert_eq!(finish, ["stop"]);
        let last = events.last().expect("events");
        if include_usage {
            assert_eq!(last["choices"], json!([]));
            assert_eq!(last["usage"]["total_tokens"], 9);
            assert!(events[..events.len() - 1]
                .iter()
                .all(|e| e["usage"].is_null()));
        } else {
            assert!(events.iter().all(|e| e.get("usage").is_none()));
        }
    }
}

#[test]
fn embeddings_convert_both_ways() {
    let body = json!({"model": "minilm", "input": ["a", "b"], "encoding_format": "float", "dimensions": 2});
    let (request, options) = embed_request(body.to_string().as_bytes(), "r").expect("valid");
    assert_eq!(request.input, ["a", "b"]);
    assert_eq!(
        options,
        EmbedOptions {
            base64: false,
            dimensions: Some(2)
        }
    );
    let response = proto::EmbedResponse {
        model: "all-minilm-l6-v2".into(),
        data: vec![
            proto::Embedding {
                index: 1,
                values: vec![0.0, 1.0],
            },
            proto::Embedding {
                index: 0,
                values: vec![0.6, 0.8],
            },
        ],
        usage: Some(proto::Usage {
            prompt_tokens: 4,
            completion_tokens: 0,
            total_tokens: 4,
        }),
    };
    let out: Value =
        serde_json::from_slice(&embed_response(response.clone(), options).expect("ok"))
            .expect("json");
    assert_eq!(out["object"], "list");
    assert_eq!(out["data"][0]["index"], 0);
    assert_eq!(out["data"][0]["object"], "embedding");
    let first: Vec<f64> =
        serde_json::from_value(out["data"][0]["embedding"].clone()).expect("floats");
    assert!((first[0] - 0.6).abs() < 1e-6 && (first[1] - 0.8).abs() < 1e-6);
    assert_eq!(out["usage"], json!({"prompt_tokens": 4, "total_tokens": 4}));

    let base64 = EmbedOptions {
        base64: true,
        dimensions: None,
    };
    let out: Value = serde_json::from_slice(&embed_response(response.clone(), base64).expect("ok"))
        .expect("json");
    // [0.0f32, 1.0f32] little-endian: 00 00 00 00 00 00 80 3f.
    assert_eq!(out["data"][1]["embedding"], "AAAAAAAAgD8=");

    let wrong = EmbedOptions {
        base64: false,
        dimensions: Some(384),
    };
    assert!(matches!(
        embed_response(response, wrong),
        Err(GatewayError::InvalidParameter {
            param: "dimensions",
            ..
        })
    ));
}

#[test]
fn embedding_inputs_must_be_text() {
    let single = embed_request(br#"{"model": "m", "input": "one"}"#, "r").expect("valid");
    assert_eq!(single.0.input, ["one"]);
    for body in [
        r#"{"model": "m", "input": [[1, 2]]}"#,
        r#"{"model": "m", "input": 3}"#,
        r#"{"model": "m", "input": "x", "encoding_format": "int8"}"#,
    ] {
        assert!(
            matches!(
                embed_request(body.as_bytes(), "r"),
                Err(GatewayError::InvalidParameter { .. })
            ),
            "{body}"
        );
    }
}

#[test]
fn base64_matches_the_standard_alphabet() {
    assert_eq!(base64_encode(b""), "");
    assert_eq!(base64_encode(b"f"), "Zg==");
    assert_eq!(base64_encode(b"fo"), "Zm8=");
    assert_eq!(base64_encode(b"foo"), "Zm9v");
    assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64_encode(&[0xff, 0xfe]), "//4=");
}
