//! How SQLite's statements reach the blocking pool: [`FinishOnDrop`].
//!
//! diesel-async runs each statement of a sync connection as a blocking task. Its default
//! spawner, when a caller stops waiting for an unfinished statement (a client that hangs up
//! during a key lookup, a timeout), waits for the statement with `block_in_place`, and that
//! panics on a current-thread runtime: every actix worker and arbiter is one. The panic took
//! down whichever task dropped the query, the usage writer included.
//!
//! The statement cannot simply be left running either: the connection is shared with it
//! until it ends, and the next user of the connection (the pool's health check, a
//! transaction) requires sole access. So [`Finishing`] waits for it on drop, on a latch the
//! task releases when it is done or discarded. The wait is the rest of one statement, which
//! SQLite's busy timeout bounds; it happens only when a caller gives up early.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};

use diesel_async::sync_connection_wrapper::SpawnBlocking;
use futures_util::future::BoxFuture;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// A [`SpawnBlocking`] whose futures, dropped early, wait for their task instead of
/// abandoning it or panicking.
pub struct FinishOnDrop(Option<Handle>);

type SpawnError = Box<dyn Error + Send + Sync + 'static>;

impl SpawnBlocking for FinishOnDrop {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, SpawnError>>
    where
        R: Send + 'static,
    {
        let Some(runtime) = &self.0 else {
            // Outside any runtime nothing else could run meanwhile: run it here.
            return Box::pin(std::future::ready(Ok(task())));
        };
        let done = Arc::new(Latch::default());
        let job = Job {
            task: Some(task),
            done: Arc::clone(&done),
        };
        Box::pin(Finishing {
            handle: runtime.spawn_blocking(move || job.run()),
            done,
        })
    }

    fn get_runtime() -> Self {
        FinishOnDrop(Handle::try_current().ok())
    }
}

/// Set once the task has run or been discarded, whichever comes first.
#[derive(Default)]
struct Latch {
    set: Mutex<bool>,
    changed: Condvar,
}

impl Latch {
    fn set(&self) {
        *self.set.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.changed.notify_all();
    }

    fn wait(&self) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        while !*set {
            set = self.changed.wait(set).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The task with its latch. The task (and the connection handle it holds) is dropped before
/// the latch is set, whether it ran, panicked, or was thrown away by a closing runtime.
struct Job<F> {
    task: Option<F>,
    done: Arc<Latch>,
}

impl<F: FnOnce() -> R, R> Job<F> {
    fn run(mut self) -> R {
        let task = self.task.take().expect("a job runs once");
        task()
    }
}

impl<F> Drop for Job<F> {
    fn drop(&mut self) {
        drop(self.task.take());
        self.done.set();
    }
}

struct Finishing<R> {
    handle: JoinHandle<R>,
    done: Arc<Latch>,
}

impl<R> Future for Finishing<R> {
    type Output = Result<R, SpawnError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.handle)
            .poll(cx)
            .map(|joined| joined.map_err(SpawnError::from))
    }
}

impl<R> Drop for Finishing<R> {
    fn drop(&mut self) {
        if !self.handle.is_finished() {
            self.done.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::sync::mpsc;

    /// The case that panicked: a current-thread runtime drops a statement still running.
    /// The drop returns only once the task has ended, and nothing panics.
    #[test]
    fn a_dropped_task_is_waited_for_on_a_current_thread_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (release, released) = mpsc::sync_channel::<()>(1);
            let (started, has_started) = mpsc::sync_channel::<()>(1);
            let finished = Arc::new(Mutex::new(false));
            let mark = Arc::clone(&finished);
            let mut spawner = FinishOnDrop::get_runtime();
            let future = spawner.spawn_blocking(move || {
                started.send(()).expect("test waits");
                released.recv().expect("test releases");
                *mark.lock().expect("mark") = true;
            });
            has_started.recv().expect("task started");
            // The task is blocked on `released`: it cannot have finished. Release it from
            // another thread, then drop the future while it may still be running.
            let releaser = std::thread::spawn(move || release.send(()).expect("task waits"));
            drop(future);
            assert!(
                *finished.lock().expect("mark"),
                "drop returned before the task ended"
            );
            releaser.join().expect("releaser");
        });
    }

    #[test]
    fn a_finished_task_is_returned() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let answer = runtime.block_on(FinishOnDrop::get_runtime().spawn_blocking(|| 42));
        assert_eq!(answer.expect("ran"), 42);
        assert_eq!(
            FinishOnDrop::get_runtime()
                .spawn_blocking(|| 7)
                .now_or_never()
                .expect("outside a runtime it runs at once")
                .expect("ran"),
            7
        );
    }
}
