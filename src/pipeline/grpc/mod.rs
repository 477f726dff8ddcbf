//! Serving an OpenAI request from a gRPC endpoint (`aigateway.model.v1.ModelService`): convert
//! the JSON body, call, and answer with OpenAI JSON or SSE so the rest of the pipeline (failover,
//! in-flight guards, the SSE relay and its idle timeout) does not know the difference.
//!
//! Deadlines: a non-streaming call carries `grpc-timeout` = the first-byte timeout (the whole
//! answer is the first byte the client sees) and the gateway enforces the same bound locally. A
//! stream must produce its first chunk within the first-byte timeout; after that the relay's idle
//! timeout bounds the silence between chunks, and no overall deadline caps a long generation. A
//! stream that is dropped (the client left, or a timeout) resets its HTTP/2 stream, which
//! cancels the call and stops generation upstream.

mod convert;

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::LocalBoxStream;
use futures_util::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use super::ApiKind;
use crate::error::{with_causes, GatewayError};
use crate::upstream::grpc::proto;
use convert::{ChatCompletion, ChunkEncoder};

type ModelClient = proto::model_service_client::ModelServiceClient<Channel>;

/// An attempt's answer, committed: the whole JSON body, or SSE bytes that start with the first
/// chunk (already received, so failover before it was still possible).
pub(super) enum GrpcAnswer {
    Full(Bytes),
    Stream(LocalBoxStream<'static, Result<Bytes, String>>),
}

pub(super) struct GrpcCall<'a> {
    pub channel: Channel,
    pub kind: ApiKind,
    pub body: &'a [u8],
    pub request_id: &'a str,
    pub service: &'a str,
    pub first_byte_timeout: Duration,
    pub max_response_bytes: usize,
}

pub(super) async fn call(call: GrpcCall<'_>) -> Result<GrpcAnswer, GatewayError> {
    match call.kind {
        ApiKind::ChatCompletions => chat(call).await,
        ApiKind::Embeddings => embed(call).await,
        ApiKind::Completions => Err(GatewayError::UnsupportedByService {
            service: call.service.to_string(),
            detail: "it is reached over gRPC, whose contract has no text completions; \
                     use /v1/chat/completions"
                .into(),
        }),
    }
}

async fn chat(call: GrpcCall<'_>) -> Result<GrpcAnswer, GatewayError> {
    let (request, options) = convert::chat_request(call.body, call.request_id)?;
    let mut client =
        ModelClient::new(call.channel.clone()).max_decoding_message_size(call.max_response_bytes);
    let service = call.service;
    let limit = call.first_byte_timeout;
    if !options.stream {
        let mut request = tonic::Request::new(request);
        request.set_timeout(limit);
        let collect = async {
            let mut stream = client.chat(request).await?.into_inner();
            let mut completion = ChatCompletion::default();
            while let Some(chunk) = stream.message().await? {
                completion.push(chunk);
                if completion.len() > call.max_response_bytes {
                    return Ok(None);
                }
            }
            Ok::<_, Status>(Some(completion))
        };
        let completion = tokio::time::timeout(limit, collect)
            .await
            .map_err(|_| GatewayError::upstream_timeout(service, "response", limit))?
            .map_err(|status| status_error(service, status, limit))?
            .ok_or_else(|| GatewayError::UpstreamResponseTooLarge {
                service: service.to_string(),
                limit: call.max_response_bytes,
                read: call.max_response_bytes,
            })?;
        return completion.finish().map(GrpcAnswer::Full).ok_or_else(|| {
            GatewayError::upstream_protocol(service, "the Chat stream ended without a last chunk")
        });
    }
    let open = async {
        let mut stream = client.chat(request).await?.into_inner();
        let first = stream.message().await?;
        Ok::<_, Status>((stream, first))
    };
    let (stream, first) = tokio::time::timeout(limit, open)
        .await
        .map_err(|_| GatewayError::upstream_timeout(service, "first byte", limit))?
        .map_err(|status| status_error(service, status, limit))?;
    let first = first.ok_or_else(|| {
        GatewayError::upstream_protocol(service, "the Chat stream ended without a chunk")
    })?;
    let mut encoder = ChunkEncoder::new(options.include_usage);
    let head = encoder.encode(&first);
    let rest = futures_util::stream::unfold(Some((stream, encoder)), next_events);
    Ok(GrpcAnswer::Stream(
        futures_util::stream::once(async move { Ok(head) })
            .chain(rest)
            .boxed_local(),
    ))
}

/// The next chunk's events. The stream ends after `[DONE]` once the trailers are read (dropping
/// it earlier would reset the call, and the server would count a finished generation as
/// cancelled), at the upstream's end (the relay then reports the truncation) or after one error.
async fn next_events(
    state: Option<(Streaming<proto::ChatChunk>, ChunkEncoder)>,
) -> Option<(
    Result<Bytes, String>,
    Option<(Streaming<proto::ChatChunk>, ChunkEncoder)>,
)> {
    let (mut stream, mut encoder) = state?;
    if encoder.is_finished() {
        let _trailers = stream.message().await;
        return None;
    }
    match stream.message().await {
        Ok(Some(chunk)) => Some((Ok(encoder.encode(&chunk)), Some((stream, encoder)))),
        Ok(None) => None,
        Err(status) => Some((Err(describe(&status)), None)),
    }
}

async fn embed(call: GrpcCall<'_>) -> Result<GrpcAnswer, GatewayError> {
    let (request, options) = convert::embed_request(call.body, call.request_id)?;
    let mut client =
        ModelClient::new(call.channel.clone()).max_decoding_message_size(call.max_response_bytes);
    let limit = call.first_byte_timeout;
    let mut request = tonic::Request::new(request);
    request.set_timeout(limit);
    let response = tokio::time::timeout(limit, client.embed(request))
        .await
        .map_err(|_| GatewayError::upstream_timeout(call.service, "response", limit))?
        .map_err(|status| status_error(call.service, status, limit))?;
    convert::embed_response(response.into_inner(), options).map(GrpcAnswer::Full)
}

/// A failed call as the one error type. tonic reports its own client-side deadline (from
/// `grpc-timeout`) as CANCELLED "Timeout expired": that is our timeout, not a cancellation.
fn status_error(service: &str, status: Status, limit: Duration) -> GatewayError {
    if status.code() == Code::Cancelled && status.message() == tonic::TimeoutExpired(()).to_string()
    {
        return GatewayError::upstream_timeout(service, "response", limit);
    }
    // A CANCELLED that carries a transport cause (the connection closed under the call) was
    // not sent by the server: the endpoint is unreachable, which is UNAVAILABLE.
    let code = if status.code() == Code::Cancelled && std::error::Error::source(&status).is_some() {
        Code::Unavailable
    } else {
        status.code()
    };
    GatewayError::UpstreamGrpc {
        service: service.to_string(),
        code,
        message: describe(&status),
    }
}

/// The status message with its causes, e.g. "tcp connect error: Connection refused".
fn describe(status: &Status) -> String {
    let text = with_causes(
        status.message().to_string(),
        std::error::Error::source(status),
    );
    if text.is_empty() {
        return status.code().description().to_string();
    }
    text
}
