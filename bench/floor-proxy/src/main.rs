//! `floor-proxy`: the least a proxy built from the gateway's parts can do per request. It is
//! actix-web's HTTP/1.1 server in front of hyper's pooled client, both with TCP_NODELAY, and the
//! same allocator. Every request goes to the same path upstream, its body as bytes. An answer
//! with a `Content-Length` is buffered and sent back in one piece (as the gateway does); any
//! other answer (SSE) is streamed. It has no authentication, limits, routing, parsing, usage or
//! metrics.
//!
//! `make benchmark` measures it beside nginx and the gateway. The distance from nginx to the
//! floor is the framework's cost. The distance from the floor to the gateway is the gateway's
//! own per-request work.

use std::cell::OnceCell;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use clap::Parser;
use futures_util::TryStreamExt;
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "actix-web + hyper's pooled client, forwarding every request to one upstream")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9100")]
    bind: String,
    /// Base URL of the upstream, e.g. http://127.0.0.1:9001.
    #[arg(long)]
    upstream: String,
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

type UpstreamClient = Client<HttpConnector, Full<Bytes>>;

thread_local! {
    // One client (and connection pool) per worker thread, as in the gateway.
    static CLIENT: OnceCell<UpstreamClient> = const { OnceCell::new() };
}

fn client() -> UpstreamClient {
    CLIENT.with(|cell| {
        cell.get_or_init(|| {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(connector)
        })
        .clone()
    })
}

async fn forward(
    request: HttpRequest,
    body: Bytes,
    upstream: web::Data<String>,
) -> Result<HttpResponse, actix_web::Error> {
    let bad_gateway = |error: &dyn std::fmt::Display| {
        actix_web::error::ErrorBadGateway(format!("upstream: {error}"))
    };
    let outgoing = http::Request::builder()
        .method(request.method().as_str())
        .uri(format!("{}{}", upstream.get_ref(), request.path()))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| bad_gateway(&e))?;
    let answer = client()
        .request(outgoing)
        .await
        .map_err(|e| bad_gateway(&e))?;
    let (head, body) = answer.into_parts();
    let status = StatusCode::from_u16(head.status.as_u16()).map_err(|e| bad_gateway(&e))?;
    let mut response = HttpResponse::build(status);
    if let Some(content_type) = head.headers.get(http::header::CONTENT_TYPE) {
        response.insert_header(("content-type", content_type.as_bytes()));
    }
    if head.headers.contains_key(http::header::CONTENT_LENGTH) {
        let bytes = body
            .collect()
            .await
            .map_err(|e| bad_gateway(&e))?
            .to_bytes();
        return Ok(response.body(bytes));
    }
    Ok(response.streaming(BodyDataStream::new(body).map_err(move |e| bad_gateway(&e))))
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let upstream = web::Data::new(args.upstream.trim_end_matches('/').to_string());
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(upstream.clone())
                .app_data(web::PayloadConfig::new(1024 * 1024))
                .default_service(web::to(forward))
        })
        .tcp_nodelay(true)
        .workers(args.workers)
        .bind(&args.bind)?;
        eprintln!("floor proxy listening on {}", args.bind);
        server.run().await
    })
}
