//! The bounded queue of writes that no request waits for: token-limit corrections after a
//! request is billed, and cached answers stored for other replicas. One task applies them in
//! order; a full queue drops a write (the limiter then errs on the strict side, a cache entry
//! is simply not shared). Budget settlements are not written here: they have their own queue
//! and are retried ([`super::settlements`]).

use std::time::Duration;

use deadpool_redis::Pool;
use tokio::sync::mpsc;

/// Writes waiting for Redis; beyond it a write is dropped (counted).
pub(super) const QUEUE: usize = 8_192;

pub(super) enum Write {
    /// A correction script answering an integer, run with one key and two integer arguments.
    Correction {
        script: &'static redis::Script,
        key: String,
        args: [i64; 2],
    },
    /// A cached answer, `SET` with a time to live.
    Store {
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    },
}

/// Applies writes in order, one round trip each, until [`super::SharedRedis`] goes away.
/// A write gets four times a decision's timeout: nobody waits for it, but it must not hold
/// up the queue behind it for long either.
pub(super) async fn run(pool: Pool, mut queue: mpsc::Receiver<Write>, timeout: Duration) {
    while let Some(write) = queue.recv().await {
        match write {
            Write::Store { key, value, ttl_ms } => {
                let call = async {
                    let mut connection = pool.get().await.map_err(|e| e.to_string())?;
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(value.as_slice())
                        .arg("PX")
                        .arg(ttl_ms)
                        .query_async::<()>(&mut connection)
                        .await
                        .map_err(|e| e.to_string())
                };
                if let Ok(Err(error)) | Err(error) = tokio::time::timeout(timeout * 4, call)
                    .await
                    .map_err(|_| "timeout".to_string())
                {
                    tracing::debug!(%error, "cached answer not shared (redis)");
                }
            }
            Write::Correction { script, key, args } => {
                let mut invocation = script.prepare_invoke();
                invocation.key(&key).arg(args[0]).arg(args[1]);
                let call = async {
                    let mut connection = pool.get().await.map_err(|e| e.to_string())?;
                    invocation
                        .invoke_async::<i64>(&mut connection)
                        .await
                        .map_err(|e| e.to_string())
                };
                match tokio::time::timeout(timeout * 4, call).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::debug!(%error, "token settlement lost (redis)"),
                    Err(_) => tracing::debug!("token settlement lost (redis timeout)"),
                }
            }
        }
    }
}
