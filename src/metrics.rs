//! The CloudWatch metrics qp emits, by name: one list that the EMF writers ([`crate::work`]'s
//! per-image metrics, [`crate::scale`]'s per-tick decision) and the dashboard's test
//! (`tests/dashboard.rs`, which checks every metric `terraform/dashboard.json.tftpl` draws) share.
//!
//! Every metric is in namespace [`NAMESPACE`] with the dimensions listed beside it in
//! [`EMITTED`]; CloudWatch keys a metric by namespace, name and the full set of dimensions, so a
//! dashboard asking for any other combination would draw nothing.

use std::io::Write;
use std::sync::Arc;

/// The namespace of every qp metric.
pub const NAMESPACE: &str = "qp";

/// The queue's name (the last segment of `QP_QUEUE_URL`): on every metric.
pub const DIM_QUEUE: &str = "Queue";
/// The ECS capacity provider (`FARGATE`, `FARGATE_SPOT`): on the task counts.
pub const DIM_CAPACITY_PROVIDER: &str = "CapacityProvider";

// `qp work`, one value per image (summed per EMF line).
pub const IMAGES_PROCESSED: &str = "ImagesProcessed";
pub const IMAGES_FAILED: &str = "ImagesFailed";
pub const LATENCY_MS: &str = "LatencyMs";
pub const BYTES_IN: &str = "BytesIn";
pub const BYTES_OUT: &str = "BytesOut";

// `qp scale` in Lambda, one value per tick: the decision of its report.
pub const SCALER_BACKLOG: &str = "ScalerBacklog";
pub const SCALER_RUNNING: &str = "ScalerRunning";
pub const SCALER_DESIRED: &str = "ScalerDesired";
pub const SCALER_LAUNCH: &str = "ScalerLaunch";
pub const SCALER_LAUNCHED: &str = "ScalerLaunched";

// `qp scale` in Lambda, one value per tick and capacity provider: the worker tasks.
pub const TASKS_RUNNING: &str = "TasksRunning";
pub const TASKS_PENDING: &str = "TasksPending";

const QUEUE: &[&str] = &[DIM_QUEUE];
const QUEUE_AND_PROVIDER: &[&str] = &[DIM_QUEUE, DIM_CAPACITY_PROVIDER];

/// Every metric qp emits, with the exact dimension set it carries.
pub const EMITTED: &[(&str, &[&str])] = &[
    (IMAGES_PROCESSED, QUEUE),
    (IMAGES_FAILED, QUEUE),
    (LATENCY_MS, QUEUE),
    (BYTES_IN, QUEUE),
    (BYTES_OUT, QUEUE),
    (SCALER_BACKLOG, QUEUE),
    (SCALER_RUNNING, QUEUE),
    (SCALER_DESIRED, QUEUE),
    (SCALER_LAUNCH, QUEUE),
    (SCALER_LAUNCHED, QUEUE),
    (TASKS_RUNNING, QUEUE_AND_PROVIDER),
    (TASKS_PENDING, QUEUE_AND_PROVIDER),
];

/// One EMF line: `dimensions` as (name, value), `metrics` as (name, unit, value). Panics (in
/// tests) if a metric or dimension set is not in [`EMITTED`]: the dashboard is checked against
/// that list, so nothing may be emitted past it.
pub fn emf_line(
    dimensions: &[(&str, &str)],
    metrics: &[(&str, &str, serde_json::Value)],
    timestamp_ms: u128,
) -> String {
    let dim_names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    debug_assert!(
        metrics
            .iter()
            .all(|(name, _, _)| EMITTED.contains(&(*name, dim_names.as_slice()))),
        "a metric outside EMITTED: {metrics:?} {dim_names:?}"
    );
    let declared: Vec<serde_json::Value> = metrics
        .iter()
        .map(|(name, unit, _)| serde_json::json!({"Name": name, "Unit": unit}))
        .collect();
    let mut line = serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dim_names],
                "Metrics": declared,
            }],
        },
    });
    for (k, v) in dimensions {
        line[*k] = serde_json::Value::from(*v);
    }
    for (name, _, value) in metrics {
        line[*name] = value.clone();
    }
    line.to_string()
}

/// Where EMF lines go: stdout in the modes ([`Sink::stdout`]); a test passes its own writer.
#[derive(Clone)]
pub struct Sink(Arc<WriteLines>);

type WriteLines = dyn Fn(&[String]) + Send + Sync;

impl Sink {
    /// Lines on stdout, flushed together (errors ignored: metrics never stop the work).
    pub fn stdout() -> Sink {
        Sink::new(|lines| {
            let mut out = std::io::stdout().lock();
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
        })
    }

    pub fn new(write: impl Fn(&[String]) + Send + Sync + 'static) -> Sink {
        Sink(Arc::new(write))
    }

    pub fn write(&self, lines: &[String]) {
        (self.0)(lines)
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

/// Milliseconds since the epoch, the EMF timestamp.
pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The queue's name (last path segment of its URL), the [`DIM_QUEUE`] value.
pub fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_declares_what_it_carries() {
        let line = emf_line(
            &[(DIM_QUEUE, "uploads"), (DIM_CAPACITY_PROVIDER, "FARGATE")],
            &[
                (TASKS_RUNNING, "Count", 2.into()),
                (TASKS_PENDING, "Count", 1.into()),
            ],
            42,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let meta = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(meta["Namespace"], NAMESPACE);
        assert_eq!(
            meta["Dimensions"],
            serde_json::json!([["Queue", "CapacityProvider"]])
        );
        assert_eq!(v["_aws"]["Timestamp"], 42);
        assert_eq!(
            (v["Queue"].as_str(), v["CapacityProvider"].as_str()),
            (Some("uploads"), Some("FARGATE"))
        );
        assert_eq!(
            (v["TasksRunning"].as_u64(), v["TasksPending"].as_u64()),
            (Some(2), Some(1))
        );
    }

    // The check is a debug assertion: a release build of the tests has nothing to catch.
    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "outside EMITTED")]
    fn an_unlisted_metric_is_refused() {
        emf_line(
            &[(DIM_QUEUE, "q")],
            &[(TASKS_RUNNING, "Count", 1.into())],
            0,
        );
    }
}
