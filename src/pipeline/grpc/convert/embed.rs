//! Embeddings: the OpenAI request read into `EmbedRequest`, and `EmbedResponse` shaped as
//! OpenAI's `list` (floats, or base64 of little-endian `f32`s).

use bytes::Bytes;
use serde_json::{json, Value};

use super::{invalid, object, take};
use crate::error::GatewayError;
use crate::upstream::grpc::proto;

/// How the embeddings answer is to be shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedOptions {
    pub base64: bool,
    pub dimensions: Option<usize>,
}

pub fn embed_request(
    body: &[u8],
    request_id: &str,
) -> Result<(proto::EmbedRequest, EmbedOptions), GatewayError> {
    let mut body = object(body)?;
    let model: String = take(&mut body, "model")?.ok_or(GatewayError::MissingParameter("model"))?;
    let input = match body.remove("input") {
        None | Some(Value::Null) => return Err(GatewayError::MissingParameter("input")),
        Some(Value::String(text)) => vec![text],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                _ => Err(invalid(
                    "input",
                    "must be a string or a list of strings (token ids cannot be sent to this model)",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(invalid("input", "must be a string or a list of strings")),
    };
    let base64 = match take::<String>(&mut body, "encoding_format")?.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(invalid(
                "encoding_format",
                &format!("{other:?} is not float or base64"),
            ))
        }
    };
    let dimensions = take(&mut body, "dimensions")?;
    let request = proto::EmbedRequest {
        model,
        input,
        request_id: request_id.to_string(),
    };
    Ok((request, EmbedOptions { base64, dimensions }))
}

/// The OpenAI `list` of embeddings, in input order.
pub fn embed_response(
    response: proto::EmbedResponse,
    options: EmbedOptions,
) -> Result<Bytes, GatewayError> {
    let mut data = response.data;
    data.sort_by_key(|embedding| embedding.index);
    if let (Some(wanted), Some(first)) = (options.dimensions, data.first()) {
        if first.values.len() != wanted {
            return Err(invalid(
                "dimensions",
                &format!("this model only produces {} dimensions", first.values.len()),
            ));
        }
    }
    let data: Vec<Value> = data
        .into_iter()
        .map(|embedding| {
            let vector = if options.base64 {
                let bytes: Vec<u8> = embedding
                    .values
                    .iter()
                    .flat_map(|value| value.to_le_bytes())
                    .collect();
                Value::String(base64_encode(&bytes))
            } else {
                json!(embedding.values)
            };
            json!({"object": "embedding", "index": embedding.index, "embedding": vector})
        })
        .collect();
    let usage = response.usage.unwrap_or_default();
    let body = json!({
        "object": "list",
        "data": data,
        "model": response.model,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens},
    });
    Ok(Bytes::from(body.to_string()))
}

/// Standard base64 with padding, as OpenAI's `encoding_format: "base64"` uses.
pub(super) fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, byte)| n | u32::from(*byte) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
