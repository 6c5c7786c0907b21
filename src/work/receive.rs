//! Receiving for `qp work`: receive loops long-poll the queue, register what comes in the
//! [`Tracker`] (so the heartbeat keeps it hidden) and hand it to the dispatcher; the [`IdleClock`]
//! ends a loop once the queue has stayed empty for the idle timeout; a failing receive backs off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::tracker::Tracker;
use crate::aws::sqs::{MAX_BATCH, Message, Queue, Receipt};

/// Longest pause between two failing receives.
pub const RECEIVE_BACKOFF_MAX: Duration = Duration::from_secs(20);
/// First pause after a failing receive (doubled each time up to [`RECEIVE_BACKOFF_MAX`]).
const RECEIVE_BACKOFF_MIN: Duration = Duration::from_millis(500);

/// How long shutdown waits for receives in flight. One that already has messages answers in
/// milliseconds; one still waiting has none, and is cut.
const RECEIVE_DRAIN: Duration = Duration::from_secs(3);

/// What one poll brought: each message with its tracker token and its receive slot.
pub type Batch = Vec<(u64, Message, OwnedSemaphorePermit)>;

/// State shared by the receive loops.
pub struct Receiving<Q> {
    pub queue: Arc<Q>,
    pub tracker: Arc<Tracker>,
    /// Messages held at once (receive budget); a receive takes ten before it polls.
    pub slots: Arc<Semaphore>,
    pub idle: Mutex<IdleClock>,
    pub idle_timeout: Duration,
    pub wait: Duration,
    pub vt: Duration,
    pub receive_vt: Option<u32>,
    pub receive_failing: AtomicBool,
    /// Turns true at shutdown: no new poll starts, and what a poll in flight returns is left in
    /// the tracker, undispatched, for the final release.
    pub stop: watch::Receiver<bool>,
}

/// The running receive loops and the channel their batches arrive on.
pub struct Receivers<Q> {
    state: Arc<Receiving<Q>>,
    pub loops: JoinSet<()>,
    pub batches: mpsc::Receiver<Batch>,
}

impl<Q: Queue> Receivers<Q> {
    /// Starts `n` receive loops.
    pub fn start(state: Receiving<Q>, n: usize) -> Receivers<Q> {
        let state = Arc::new(state);
        let (tx, batches) = mpsc::channel::<Batch>(n);
        let mut loops = JoinSet::new();
        for _ in 0..n {
            loops.spawn(receive_loop(state.clone(), tx.clone()));
        }
        Receivers {
            state,
            loops,
            batches,
        }
    }

    /// The last receive failed (the queue may be unreachable).
    pub fn receive_failing(&self) -> bool {
        self.state.receive_failing.load(Ordering::Relaxed)
    }

    /// Ends the loops once the stop is sent. After a signal, receives in flight are let finish
    /// (briefly, within `grace`) rather than cut: SQS may already have handed one its messages,
    /// which would then stay invisible for the whole visibility timeout. Returns the tokens of
    /// the messages received but never dispatched.
    pub async fn stop(&mut self, signal: bool, grace: Duration) -> Vec<u64> {
        let all_returned = signal
            && tokio::time::timeout(RECEIVE_DRAIN.min(grace), async {
                while self.loops.join_next().await.is_some() {}
            })
            .await
            .is_ok();
        if !all_returned {
            self.loops.abort_all();
            while self.loops.join_next().await.is_some() {}
        }
        self.batches.close();
        let mut undispatched = Vec::new();
        while let Ok(batch) = self.batches.try_recv() {
            undispatched.extend(batch.into_iter().map(|(token, _, _)| token));
        }
        undispatched
    }
}

/// One receive loop: take a batch's worth of slots, long-poll, register what came, hand it over.
async fn receive_loop<Q: Queue>(st: Arc<Receiving<Q>>, out: mpsc::Sender<Batch>) {
    let mut backoff = RECEIVE_BACKOFF_MIN;
    let mut stop = st.stop.clone();
    loop {
        let permits = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            p = st.slots.clone().acquire_many_owned(MAX_BATCH as u32) => p,
        };
        let Ok(mut permits) = permits else {
            return;
        };
        let poll_started = Instant::now();
        let received = st.queue.receive(MAX_BATCH, st.wait, st.receive_vt).await;
        let now = Instant::now();
        let messages = match received {
            Ok(m) => {
                st.receive_failing.store(false, Ordering::Relaxed);
                backoff = RECEIVE_BACKOFF_MIN;
                m
            }
            Err(e) => {
                st.receive_failing.store(true, Ordering::Relaxed);
                tracing::warn!(
                    "receive failed, retrying in {} ms: {e}",
                    backoff.as_millis()
                );
                drop(permits);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECEIVE_BACKOFF_MAX);
                // A queue that cannot be read counts as empty: the worker does not run forever.
                if st.on_poll(false, poll_started, Instant::now()) {
                    return;
                }
                continue;
            }
        };
        let mut batch = Vec::with_capacity(messages.len());
        for msg in messages {
            let receipt = Receipt {
                id: msg.id.clone(),
                handle: msg.receipt.clone(),
            };
            let token = st.tracker.add(receipt, poll_started, st.vt);
            let slot = permits.split(1).expect("a slot per message");
            batch.push((token, msg, slot));
        }
        drop(permits);
        if *stop.borrow() {
            // Shutting down: these stay in the tracker, undispatched, and are released.
            return;
        }
        let idle = st.on_poll(!batch.is_empty(), poll_started, now);
        if !batch.is_empty() {
            let sent = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => false,
                r = out.send(batch) => r.is_ok(),
            };
            if !sent {
                // The dispatcher stopped: the messages are still in the tracker, and the final
                // release gives them back.
                return;
            }
        } else if idle {
            // Nothing came for the idle timeout, with nothing in work: this loop is done, with
            // no poll left in flight that could strand messages when the worker exits.
            return;
        }
    }
}

impl<Q> Receiving<Q> {
    /// Records a poll on the shared idle clock; true once the worker has been idle long enough.
    fn on_poll(&self, got_messages: bool, poll_started: Instant, now: Instant) -> bool {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).on_poll(
            got_messages,
            poll_started.into_std(),
            self.tracker.len(),
            now.into_std(),
            self.idle_timeout,
        )
    }
}

/// Long-poll wait for receives: 20 s (the SQS maximum), or the idle timeout if shorter, so the
/// worker notices an empty queue in time.
pub fn poll_wait(idle_timeout: Duration) -> Duration {
    Duration::from_secs(idle_timeout.as_secs().min(20))
}

/// Tracks how long the queue has been empty. A poll that returned nothing while no message was in
/// work starts (or continues) the idle period from the moment that poll began; any message ends
/// it.
#[derive(Clone, Debug, Default)]
pub struct IdleClock {
    since: Option<std::time::Instant>,
}

impl IdleClock {
    /// Records a poll's result; returns true once the queue has been empty for `timeout`.
    pub fn on_poll(
        &mut self,
        got_messages: bool,
        poll_started: std::time::Instant,
        in_flight: usize,
        now: std::time::Instant,
        timeout: Duration,
    ) -> bool {
        if got_messages || in_flight > 0 {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(poll_started);
        now.saturating_duration_since(since) >= timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn poll_wait_follows_a_short_idle_timeout() {
        assert_eq!(poll_wait(Duration::from_secs(600)), Duration::from_secs(20));
        assert_eq!(poll_wait(Duration::from_secs(3)), Duration::from_secs(3));
        assert_eq!(poll_wait(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn idle_needs_an_empty_queue_for_the_whole_timeout() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let timeout = s(10);
        let mut c = IdleClock::default();
        // First empty poll (t0..t0+4): not yet.
        assert!(!c.on_poll(false, t0, 0, t0 + s(4), timeout));
        // Messages at t0+5 reset it.
        assert!(!c.on_poll(true, t0 + s(4), 0, t0 + s(5), timeout));
        assert!(!c.on_poll(false, t0 + s(5), 0, t0 + s(9), timeout));
        // Work in flight holds it off even if polls are empty.
        assert!(!c.on_poll(false, t0 + s(9), 3, t0 + s(16), timeout));
        assert!(!c.on_poll(false, t0 + s(16), 0, t0 + s(20), timeout));
        assert!(c.on_poll(false, t0 + s(20), 0, t0 + s(26), timeout));
        // A zero timeout exits on the first empty poll.
        let mut c = IdleClock::default();
        assert!(c.on_poll(false, t0, 0, t0, Duration::ZERO));
    }
}
