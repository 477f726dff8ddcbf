//! `UsageRecorder`: the actor that writes usage events to the database in batches, off the
//! request path, and keeps them while the database is down.
//!
//! A request reserves a slot before it is forwarded ([`UsageHandle::reserve`]) and fills it
//! when it ends, so the buffer bound is enforced at admission: when it is full, new requests
//! are refused instead of served unbilled, and an admitted request can always record.
//!
//! One bad row never blocks the others: a batch the database refuses for a reason other than
//! being away is split in halves until the refused rows stand alone; those are set aside in
//! `usage_dead_letters` (logged and counted) and everything else is written.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use crate::store::usage::UsageEvent;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct UsageSettings {
    /// Events written per transaction.
    pub batch_size: usize,
    /// Longest time an event waits before a flush.
    pub flush_interval: Duration,
    /// Events that may be in flight or waiting for the database.
    pub capacity: usize,
    /// Time allowed for one batch write on PostgreSQL (SQLite's busy timeout bounds its own).
    pub write_timeout: Duration,
}

impl Default for UsageSettings {
    fn default() -> Self {
        UsageSettings {
            batch_size: 500,
            flush_interval: Duration::from_millis(500),
            capacity: 100_000,
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct UsageCounters {
    /// Events received by the recorder but not yet written.
    pub buffered: AtomicUsize,
    pub written: AtomicU64,
    pub failed_writes: AtomicU64,
    /// Events the database refused alone, kept in `usage_dead_letters` instead.
    pub dead_lettered: AtomicU64,
}

/// The buffer is full: the request must not be served.
#[derive(Debug, thiserror::Error)]
#[error("usage recording is backed up ({0} events waiting for the database)")]
pub struct UsageBacklog(pub usize);

/// A reserved place for one request's usage event.
pub struct UsageSlot(mpsc::OwnedPermit<UsageEvent>);

impl UsageSlot {
    pub fn record(self, event: UsageEvent) {
        self.0.send(event);
    }
}

/// What requests hold: reserve a slot, record into it.
#[derive(Clone)]
pub struct UsageHandle {
    sender: mpsc::Sender<UsageEvent>,
    flush: mpsc::Sender<oneshot::Sender<bool>>,
    counters: Arc<UsageCounters>,
    capacity: usize,
}

impl UsageHandle {
    pub fn reserve(&self) -> Result<UsageSlot, UsageBacklog> {
        self.sender
            .clone()
            .try_reserve_owned()
            .map(UsageSlot)
            .map_err(|_| UsageBacklog(self.pending()))
    }

    /// Events not yet in the database: waiting in the channel or buffered by the recorder.
    pub fn pending(&self) -> usize {
        let queued = self.capacity - self.sender.capacity();
        queued + self.counters.buffered.load(Ordering::Relaxed)
    }

    pub fn counters(&self) -> &UsageCounters {
        &self.counters
    }

    /// Writes everything recorded so far; true when nothing is left pending.
    pub async fn flush(&self) -> bool {
        let (reply, done) = oneshot::channel();
        if self.flush.send(reply).await.is_err() {
            return false;
        }
        done.await.unwrap_or(false)
    }
}

pub struct UsageRecorder {
    store: Store,
    settings: UsageSettings,
    receiver: Option<mpsc::Receiver<UsageEvent>>,
    flushes: Option<mpsc::Receiver<oneshot::Sender<bool>>>,
    counters: Arc<UsageCounters>,
}

impl UsageRecorder {
    pub fn start_recorder(store: Store, settings: UsageSettings) -> UsageHandle {
        let capacity = settings.capacity.max(1);
        let (sender, receiver) = mpsc::channel(capacity);
        let (flush, flushes) = mpsc::channel(16);
        let counters = Arc::new(UsageCounters::default());
        UsageRecorder {
            store,
            settings,
            receiver: Some(receiver),
            flushes: Some(flushes),
            counters: Arc::clone(&counters),
        }
        .start();
        UsageHandle {
            sender,
            flush,
            counters,
            capacity,
        }
    }
}

impl Actor for UsageRecorder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (Some(receiver), Some(flushes)) = (self.receiver.take(), self.flushes.take()) else {
            return;
        };
        let writer = BatchWriter {
            store: self.store.clone(),
            settings: self.settings.clone(),
            counters: Arc::clone(&self.counters),
            batch: Vec::new(),
            backoff: Duration::from_millis(200),
        };
        ctx.spawn(writer.run(receiver, flushes).into_actor(self));
    }
}

/// The recorder's loop: gather, write, and back off while the database is unavailable.
struct BatchWriter {
    store: Store,
    settings: UsageSettings,
    counters: Arc<UsageCounters>,
    batch: Vec<UsageEvent>,
    backoff: Duration,
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl BatchWriter {
    async fn run(
        mut self,
        mut receiver: mpsc::Receiver<UsageEvent>,
        mut flushes: mpsc::Receiver<oneshot::Sender<bool>>,
    ) {
        let mut ticker = tokio::time::interval(self.settings.flush_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Events are collected on the tick, not as they arrive: waiting on the channel would
        // wake this task (on another thread) once per request, a cost every request paid.
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    self.drain(&mut receiver).await;
                    if receiver.is_closed() && receiver.is_empty() && self.batch.is_empty() {
                        return;
                    }
                }
                Some(reply) = flushes.recv() => {
                    let emptied = self.drain(&mut receiver).await;
                    let _ = reply.send(emptied);
                }
            }
        }
    }

    fn push(&mut self, mut event: UsageEvent) {
        event.make_storable();
        self.batch.push(event);
        self.counters
            .buffered
            .store(self.batch.len(), Ordering::Relaxed);
    }

    /// Writes everything queued; gives up (returning false) after a failed write.
    async fn drain(&mut self, receiver: &mut mpsc::Receiver<UsageEvent>) -> bool {
        loop {
            while self.batch.len() < self.settings.batch_size {
                match receiver.try_recv() {
                    Ok(event) => self.push(event),
                    Err(_) => break,
                }
            }
            if self.batch.is_empty() {
                return true;
            }
            if !self.write().await {
                return false;
            }
        }
    }

    /// Writes the batch. When the database refuses it for what it holds, the batch is split
    /// (halves, in order) until each refused row stands alone and is set aside; while the
    /// database is away, what is left stays for the next attempt (returning false).
    async fn write(&mut self) -> bool {
        // A stack of segments still to write; the next one is on top.
        let mut segments = vec![std::mem::take(&mut self.batch)];
        while let Some(mut segment) = segments.pop() {
            let refused = match self.insert(&segment).await {
                Ok(inserted) => {
                    self.counters
                        .written
                        .fetch_add(inserted as u64, Ordering::Relaxed);
                    continue;
                }
                Err(Failure::Away(reason)) => reason,
                Err(Failure::Refused(reason)) if segment.len() == 1 => {
                    match self.set_aside(&segment[0], &reason).await {
                        Ok(()) => continue,
                        Err(away) => away,
                    }
                }
                Err(Failure::Refused(_)) => {
                    let right = segment.split_off(segment.len() / 2);
                    segments.push(right);
                    segments.push(segment);
                    continue;
                }
            };
            segments.push(segment);
            self.batch = segments.into_iter().rev().flatten().collect();
            self.counters
                .buffered
                .store(self.batch.len(), Ordering::Relaxed);
            self.back_off(&refused).await;
            return false;
        }
        self.counters.buffered.store(0, Ordering::Relaxed);
        self.backoff = Duration::from_millis(200);
        true
    }

    async fn insert(&self, rows: &[UsageEvent]) -> Result<usize, Failure> {
        match self.bounded(self.store.insert_usage(rows)).await {
            Ok(Ok(inserted)) => Ok(inserted),
            Ok(Err(error)) if error.is_unavailable() => Err(Failure::Away(error.to_string())),
            Ok(Err(error)) => Err(Failure::Refused(error.to_string())),
            Err(_) => Err(Failure::Away("timed out".into())),
        }
    }

    /// Keeps one refused event in the dead-letter table; `Err` when that failed too (the
    /// database is then in no state to take anything, so the event waits like the others).
    async fn set_aside(&self, event: &UsageEvent, reason: &str) -> Result<(), String> {
        let kept = self
            .bounded(self.store.insert_dead_letter(event, reason))
            .await;
        match kept {
            Ok(Ok(())) => {
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    event_id = %event.event_id,
                    request_id = %event.request_id,
                    key_id = ?event.key_id,
                    error = %reason,
                    "usage event refused by the database; kept in usage_dead_letters"
                );
                Ok(())
            }
            Ok(Err(error)) => Err(format!("{reason}; setting it aside failed: {error}")),
            Err(_) => Err(format!("{reason}; setting it aside timed out")),
        }
    }

    /// A write within `write_timeout`, on PostgreSQL. A SQLite statement cannot be abandoned
    /// (it finishes before its connection is used again, see `store::blocking`), so there
    /// the wait would only hide a write that happened: SQLite's busy timeout bounds it
    /// instead, answering "database is locked", which counts as the database being away.
    async fn bounded<T>(
        &self,
        write: impl std::future::Future<Output = T>,
    ) -> Result<T, tokio::time::error::Elapsed> {
        match self.store {
            Store::Sqlite(_) => Ok(write.await),
            Store::Postgres(_) => tokio::time::timeout(self.settings.write_timeout, write).await,
        }
    }

    async fn back_off(&mut self, reason: &str) {
        self.counters.failed_writes.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            buffered = self.batch.len(),
            error = %reason,
            retry_in_ms = self.backoff.as_millis() as u64,
            "usage write failed; keeping the events and retrying"
        );
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// Why a write failed: the database is away (wait and retry everything), or it refused the
/// rows (split them to find the ones it refuses).
enum Failure {
    Away(String),
    Refused(String),
}

impl StoreError {
    /// True when the failure is the database's state (unreachable, connection lost, locked),
    /// not something in the rows: such a write is retried whole, never split.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Query(Error::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection
                ) || {
                    // SQLite reports a writer holding the lock past the busy timeout this way.
                    let message = info.message();
                    message.contains("database is locked") || message.contains("database is busy")
                }
            }
            StoreError::Query(Error::BrokenTransactionManager) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::NewKey;
    use diesel::connection::SimpleConnection as _;
    use diesel::Connection as _;
    use std::sync::mpsc as sync;

    fn event(key_id: i64, n: u32) -> UsageEvent {
        UsageEvent {
            event_id: format!("locked-{n}"),
            request_id: format!("req-{n}"),
            key_id: Some(key_id),
            model: "m".into(),
            service: "llm".into(),
            endpoint: "127.0.0.1:1".into(),
            api: "chat".into(),
            prompt_tokens: 3,
            completion_tokens: 4,
            estimated: false,
            cached: false,
            status: 200,
            latency_ms: 1,
            created_at: 1_700_000_000_000,
        }
    }

    /// Another writer holds SQLite's lock for longer than `write_timeout`. The write waits
    /// (SQLite's busy timeout), fails as "away", and is retried once the lock is gone: the
    /// event is written once, and the writer is still alive. Before `store::blocking`, the
    /// timeout dropped the running statement, diesel-async's drop panicked on this
    /// current-thread runtime, and every later request would have been refused.
    #[actix_rt::test]
    async fn a_write_outlasting_its_timeout_on_sqlite_is_kept_and_the_writer_lives() {
        let (store, dir) = crate::store::migrated_sqlite_for_tests();
        let path = dir.path().join(crate::store::TEST_DATABASE);
        let (key, _) = store
            .create_key(&NewKey {
                name: "locked".into(),
                owner: None,
                limits: Default::default(),
            })
            .await
            .expect("key");
        let usage = UsageRecorder::start_recorder(
            store.clone(),
            UsageSettings {
                write_timeout: Duration::from_millis(20),
                flush_interval: Duration::from_secs(3600),
                ..UsageSettings::default()
            },
        );

        let (locked, is_locked) = oneshot::channel();
        let (release, released) = sync::sync_channel::<()>(1);
        let holder = std::thread::spawn(move || {
            let url = path.to_str().expect("utf-8 path");
            let mut conn = diesel::SqliteConnection::establish(url).expect("second connection");
            conn.batch_execute("BEGIN EXCLUSIVE").expect("lock");
            locked.send(()).expect("test waits");
            released.recv().expect("test releases");
            conn.batch_execute("COMMIT").expect("unlock");
        });
        is_locked.await.expect("locked");

        usage.reserve().expect("slot").record(event(key.id, 1));
        assert!(
            !usage.flush().await,
            "nothing can be written while another writer holds the lock"
        );
        assert_eq!(usage.pending(), 1, "the event waits for the database");
        assert!(usage.counters().failed_writes.load(Ordering::Relaxed) >= 1);

        release.send(()).expect("holder waits");
        holder.join().expect("holder");
        usage.reserve().expect("slot").record(event(key.id, 2));
        assert!(usage.flush().await, "the writer lives and catches up");
        assert_eq!(usage.counters().written.load(Ordering::Relaxed), 2);
        let stored = store.usage_of_key(key.id).await.expect("rows");
        let ids: Vec<&str> = stored.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["locked-1", "locked-2"]);
    }
}
