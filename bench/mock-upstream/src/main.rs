//! `mock-upstream`: the mock as a stand-alone server for demos and benchmarks.

use std::time::Duration;

use clap::Parser;
use mock_upstream::{MockOptions, MockUpstream};

#[derive(Parser)]
#[command(about = "A mock OpenAI-compatible upstream that echoes the last message")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9001")]
    bind: String,
    #[arg(long, default_value = "echo")]
    name: String,
    /// Chunks per streamed answer.
    #[arg(long, default_value_t = 5)]
    chunks: usize,
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Fixed delay before every answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    actix_web::rt::System::new().block_on(async move {
        let mock = MockUpstream::start(
            &args.bind,
            MockOptions {
                name: args.name,
                chunks: args.chunks,
                chunk_delay: Duration::from_millis(args.chunk_delay_ms),
                latency: Duration::from_millis(args.latency_ms),
                gated: false,
                workers: args.workers,
            },
        )?;
        eprintln!("mock upstream listening on {}", mock.url());
        tokio::signal::ctrl_c().await?;
        mock.stop().await;
        Ok(())
    })
}
