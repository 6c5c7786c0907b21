//! Counters for the summary line and CloudWatch Embedded Metric Format (EMF) lines.
//!
//! EMF lines are JSON objects printed to stdout; the CloudWatch agent (or the awslogs driver with
//! a metric filter-free setup: CloudWatch Logs extracts EMF automatically) turns them into metrics
//! in namespace `qp`, dimension `Queue`. One line sums a window: at most 100 images (EMF's limit on
//! values per metric, used for `LatencyMs`) or [`EMF_INTERVAL`], whichever comes first.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Longest time between two EMF lines while there is activity.
pub const EMF_INTERVAL: Duration = Duration::from_secs(10);

/// Latency values per EMF line (the format's limit per metric array).
const EMF_MAX_VALUES: usize = 100;

/// Totals of a run.
#[derive(Debug, Default)]
pub struct Stats {
    pub processed: AtomicU64,
    /// Images that failed for good (dead-lettered or left for the redrive policy).
    pub failed: AtomicU64,
    /// Images that failed transiently (left to come back).
    pub retried: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages_deleted: AtomicU64,
    pub messages_dead_lettered: AtomicU64,
    pub messages_released: AtomicU64,
    window: Mutex<Window>,
}

/// One EMF line's worth of activity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Window {
    pub processed: u64,
    pub failed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub latencies_ms: Vec<f64>,
}

impl Window {
    fn is_empty(&self) -> bool {
        self.processed == 0 && self.failed == 0
    }
}

/// One image's result, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    Ok,
    Failed,
    Retried,
}

impl Stats {
    /// Counts one image; returns a full window to print, if this image filled it.
    pub fn record(
        &self,
        counted: Counted,
        latency: Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) -> Option<Window> {
        let counter = match counted {
            Counted::Ok => &self.processed,
            Counted::Failed => &self.failed,
            Counted::Retried => &self.retried,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if counted == Counted::Ok {
            w.processed += 1;
        } else {
            w.failed += 1;
        }
        w.bytes_in += bytes_in;
        w.bytes_out += bytes_out;
        w.latencies_ms
            .push((latency.as_secs_f64() * 1000.0 * 10.0).round() / 10.0);
        (w.latencies_ms.len() >= EMF_MAX_VALUES).then(|| std::mem::take(&mut *w))
    }

    /// Takes the current window if anything happened in it.
    pub fn take_window(&self) -> Option<Window> {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        (!w.is_empty()).then(|| std::mem::take(&mut *w))
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The EMF JSON line for a window.
pub fn emf_line(queue: &str, w: &Window, timestamp_ms: u128) -> String {
    use crate::metrics as m;
    m::emf_line(
        &[(m::DIM_QUEUE, queue)],
        &[
            (m::IMAGES_PROCESSED, "Count", w.processed.into()),
            (m::IMAGES_FAILED, "Count", w.failed.into()),
            (m::LATENCY_MS, "Milliseconds", w.latencies_ms.clone().into()),
            (m::BYTES_IN, "Bytes", w.bytes_in.into()),
            (m::BYTES_OUT, "Bytes", w.bytes_out.into()),
        ],
        timestamp_ms,
    )
}

/// Writes a window as an EMF line.
pub fn emit(sink: &crate::metrics::Sink, queue: &str, w: &Window) {
    sink.write(&[emf_line(queue, w, crate::metrics::now_ms())]);
}

pub use crate::metrics::queue_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_fill_at_100_values() {
        let s = Stats::default();
        for i in 0..99 {
            let c = if i % 10 == 0 {
                Counted::Failed
            } else {
                Counted::Ok
            };
            assert!(s.record(c, Duration::from_millis(5), 100, 10).is_none());
        }
        let w = s
            .record(Counted::Retried, Duration::from_micros(12345), 100, 0)
            .unwrap();
        assert_eq!((w.processed, w.failed), (89, 11));
        assert_eq!(w.latencies_ms.len(), 100);
        assert_eq!(w.latencies_ms[99], 12.3);
        assert_eq!((w.bytes_in, w.bytes_out), (10_000, 990));
        assert!(s.take_window().is_none());
        assert_eq!(Stats::get(&s.processed), 89);
        assert_eq!(Stats::get(&s.failed), 10);
        assert_eq!(Stats::get(&s.retried), 1);
        s.record(Counted::Ok, Duration::from_millis(1), 1, 1);
        assert_eq!(s.take_window().unwrap().processed, 1);
    }

    #[test]
    fn emf_shape() {
        let w = Window {
            processed: 3,
            failed: 1,
            bytes_in: 10,
            bytes_out: 5,
            latencies_ms: vec![1.5, 2.0],
        };
        let v: serde_json::Value = serde_json::from_str(&emf_line("uploads", &w, 1234)).unwrap();
        let meta = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 1234);
        assert_eq!(meta["Namespace"], "qp");
        assert_eq!(meta["Dimensions"][0][0], "Queue");
        // Every declared metric and dimension has a value at the top level.
        for m in meta["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(!v[name].is_null(), "{name}");
        }
        assert_eq!(v["Queue"], "uploads");
        assert_eq!(v["ImagesProcessed"], 3);
        assert_eq!(v["LatencyMs"][1], 2.0);
    }

    #[test]
    fn queue_names() {
        assert_eq!(
            queue_name("https://sqs.eu-west-1.amazonaws.com/123456789012/qp-uploads"),
            "qp-uploads"
        );
        assert_eq!(queue_name("http://localhost:4566/000000000000/q/"), "q");
    }
}
