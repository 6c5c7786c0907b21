//! The scaler's EMF metrics, printed on stdout after each tick in Lambda (which extracts EMF from
//! the function's log): the decision of the [`Report`] (namespace `qp`, dimension `Queue`) and the
//! worker tasks running and pending per capacity provider (dimensions `Queue`,
//! `CapacityProvider`), for the dashboard. Not printed by the CLI, whose stdout is the report.

use crate::aws::admin::TaskStates;
use crate::config::scale::ScaleConfig;
use crate::metrics as m;
use crate::status::{TaskSummary, summarise_tasks};

use super::Report;

/// The EMF lines of one tick. Every provider of the strategy gets a line even with no task, so
/// the dashboard draws a zero rather than a gap.
pub fn tick_lines(
    queue: &str,
    report: &Report,
    tasks: Option<&TaskSummary>,
    strategy: &[String],
    timestamp_ms: u128,
) -> Vec<String> {
    let mut lines = vec![m::emf_line(
        &[(m::DIM_QUEUE, queue)],
        &[
            (m::SCALER_BACKLOG, "Count", report.backlog.into()),
            (m::SCALER_RUNNING, "Count", report.running.into()),
            (m::SCALER_DESIRED, "Count", report.desired.into()),
            (m::SCALER_LAUNCH, "Count", report.launch.into()),
            (m::SCALER_LAUNCHED, "Count", report.launched.total.into()),
        ],
        timestamp_ms,
    )];
    // Without the task states (DescribeTasks failed) no per-provider line: a wrong zero would
    // look like an answer.
    let Some(tasks) = tasks else {
        return lines;
    };
    let mut providers: Vec<&str> = strategy.iter().map(String::as_str).collect();
    for p in tasks.by_capacity_provider.keys() {
        if !providers.contains(&p.as_str()) {
            providers.push(p);
        }
    }
    for provider in providers {
        let c = tasks
            .by_capacity_provider
            .get(provider)
            .copied()
            .unwrap_or_default();
        lines.push(m::emf_line(
            &[(m::DIM_QUEUE, queue), (m::DIM_CAPACITY_PROVIDER, provider)],
            &[
                (m::TASKS_RUNNING, "Count", c.running.into()),
                (m::TASKS_PENDING, "Count", c.pending.into()),
            ],
            timestamp_ms,
        ));
    }
    lines
}

/// Reads the tasks' states and prints the tick's metrics. A failure to read them is logged, not
/// raised: the tick itself succeeded.
pub async fn emit<T: TaskStates>(sink: &m::Sink, cfg: &ScaleConfig, ecs: &T, report: &Report) {
    let tasks = match ecs.task_states(&cfg.cluster, &cfg.family).await {
        Ok(states) => Some(summarise_tasks(&cfg.cluster, &cfg.family, &states)),
        Err(e) => {
            tracing::warn!("no per-capacity-provider task metrics this tick: {e:#}");
            None
        }
    };
    let strategy: Vec<String> = cfg.capacity.iter().map(|c| c.provider.clone()).collect();
    sink.write(&tick_lines(
        m::queue_name(&cfg.queue_url),
        report,
        tasks.as_ref(),
        &strategy,
        m::now_ms(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::admin::TaskState;

    fn report() -> Report {
        Report {
            event_id: "ev".into(),
            dry_run: false,
            enabled: true,
            visible: 30,
            in_flight: 5,
            delayed: 0,
            backlog: 35,
            running: 1,
            desired: 4,
            launch: 3,
            launched: Default::default(),
            failures: vec![],
            run_task_calls: 1,
            reason: String::new(),
        }
    }

    fn parse(line: &str) -> serde_json::Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn a_tick_reports_its_decision_and_tasks_per_provider() {
        let state = |s: &str, p: &str| TaskState {
            arn: String::new(),
            last_status: s.into(),
            capacity_provider: p.into(),
        };
        let tasks = summarise_tasks(
            "qp",
            "w",
            &[
                state("RUNNING", "FARGATE_SPOT"),
                state("PENDING", "FARGATE"),
            ],
        );
        let strategy = vec!["FARGATE_SPOT".to_owned()];
        let lines = tick_lines("uploads", &report(), Some(&tasks), &strategy, 7);
        assert_eq!(lines.len(), 3);
        let d = parse(&lines[0]);
        assert_eq!(d["Queue"], "uploads");
        assert_eq!(
            (
                d["ScalerBacklog"].as_u64(),
                d["ScalerDesired"].as_u64(),
                d["ScalerLaunch"].as_u64()
            ),
            (Some(35), Some(4), Some(3))
        );
        assert_eq!(d["ScalerLaunched"], 0);
        let (spot, regular) = (parse(&lines[1]), parse(&lines[2]));
        assert_eq!(spot["CapacityProvider"], "FARGATE_SPOT");
        assert_eq!(
            (spot["TasksRunning"].as_u64(), spot["TasksPending"].as_u64()),
            (Some(1), Some(0))
        );
        assert_eq!(regular["CapacityProvider"], "FARGATE");
        assert_eq!(regular["TasksPending"], 1);

        // No tasks at all: the strategy's provider still gets its zero.
        let none = summarise_tasks("qp", "w", &[]);
        let lines = tick_lines("uploads", &report(), Some(&none), &strategy, 7);
        assert_eq!(parse(&lines[1])["TasksRunning"], 0);
        // Unknown states: only the decision.
        assert_eq!(
            tick_lines("uploads", &report(), None, &strategy, 7).len(),
            1
        );
    }
}
