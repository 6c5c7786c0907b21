//! Launching `n` tasks: RunTask in calls of at most 10, each with a client token derived from the
//! event id and the call's index, every `failures` entry read, and with QP_SPOT_FALLBACK the
//! tasks Fargate Spot had no capacity for relaunched on FARGATE.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::aws::ecs::{RunError, RunOutcome, RunRequest, Tasks};
use crate::config::parse::is_tag_char;
use crate::config::scale::{CapacityItem, ScaleConfig};

/// `startedBy` of every task qp launches (ListTasks can filter on it).
pub const STARTED_BY: &str = "qp-scale";
/// Tags of every task qp launches.
pub const TAG_LAUNCHED_BY: &str = "qp:launched-by";
pub const TAG_EVENT_ID: &str = "qp:event-id";
/// RunTask starts at most 10 tasks per call.
pub const MAX_PER_CALL: u32 = 10;

const SPOT: &str = "FARGATE_SPOT";
const ON_DEMAND: &str = "FARGATE";

/// What was launched, per capacity provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Launched {
    pub total: u64,
    pub by_capacity_provider: BTreeMap<String, u64>,
    /// How many of `total` are FARGATE relaunches of Spot capacity failures.
    pub fallback: u64,
    pub task_arns: Vec<String>,
}

/// A task (or a whole RunTask call) that did not start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailureReport {
    pub reason: String,
    pub arn: Option<String>,
    pub detail: Option<String>,
    /// The call it belongs to: `c<i>` for the i-th chunk, `c<i>-fallback` for its FARGATE retry.
    pub call: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LaunchOutcome {
    pub launched: Launched,
    pub failures: Vec<FailureReport>,
    /// A client token was refused as already used: an earlier delivery of this event launched.
    pub token_conflict: bool,
    pub calls: u32,
}

/// Sizes of the RunTask calls for `n` tasks: 25 -> [10, 10, 5].
pub fn chunks(n: u64) -> Vec<u32> {
    let max = u64::from(MAX_PER_CALL);
    (0..n.div_ceil(max))
        .map(|i| (n - i * max).min(max) as u32)
        .collect()
}

/// A RunTask client token (at most 64 characters of 33-126) for one call of one event: a
/// repeated delivery of the event sends the same tokens, and ECS starts nothing twice.
pub fn client_token(event_id: &str, call: &str) -> String {
    let digest = Sha256::digest(event_id.as_bytes());
    let hex: String = digest[..20].iter().map(|b| format!("{b:02x}")).collect();
    format!("qp-{hex}-{call}")
}

/// The value of the qp:event-id tag: tag values allow letters, digits, spaces and `_.:/=+-@`, up
/// to 256 characters; anything else becomes `_`.
pub fn tag_value(event_id: &str) -> String {
    event_id
        .chars()
        .take(256)
        .map(|c| if c == ' ' || is_tag_char(c) { c } else { '_' })
        .collect()
}

/// Whether a failure reason says the capacity ran out ("Capacity is unavailable at this time.
/// Please try again later or in a different availability zone").
pub fn is_capacity_failure(reason: &str) -> bool {
    reason.to_ascii_lowercase().contains("capacity")
}

fn request(
    cfg: &ScaleConfig,
    event_id: &str,
    count: u32,
    capacity: Vec<CapacityItem>,
    call: &str,
) -> RunRequest {
    RunRequest {
        cluster: cfg.cluster.clone(),
        task_definition: cfg.task_definition.clone(),
        count,
        capacity,
        subnets: cfg.subnets.clone(),
        security_groups: cfg.security_groups.clone(),
        assign_public_ip: cfg.assign_public_ip,
        container_name: cfg.container_name.clone(),
        env: cfg.task_env.clone(),
        started_by: STARTED_BY.to_owned(),
        tags: vec![
            (TAG_LAUNCHED_BY.to_owned(), STARTED_BY.to_owned()),
            (TAG_EVENT_ID.to_owned(), tag_value(event_id)),
        ],
        client_token: client_token(event_id, call),
    }
}

impl LaunchOutcome {
    /// Records one call; returns (tasks not started, whether capacity was the cause, whether the
    /// call failed as a whole for another reason).
    fn record(
        &mut self,
        call: &str,
        asked: u32,
        result: Result<RunOutcome, RunError>,
    ) -> (u32, bool, bool) {
        self.calls += 1;
        match result {
            Ok(out) => {
                let started = out.started.len() as u32;
                for t in out.started {
                    self.launched.total += 1;
                    *self
                        .launched
                        .by_capacity_provider
                        .entry(t.capacity_provider)
                        .or_default() += 1;
                    self.launched.task_arns.push(t.arn);
                }
                let capacity = out.failures.iter().any(|f| is_capacity_failure(&f.reason));
                self.failures
                    .extend(out.failures.into_iter().map(|f| FailureReport {
                        reason: f.reason,
                        arn: f.arn,
                        detail: f.detail,
                        call: call.to_owned(),
                    }));
                (asked.saturating_sub(started), capacity, false)
            }
            Err(e) => {
                self.token_conflict |= e.token_conflict;
                let capacity = is_capacity_failure(&e.message);
                self.failures.push(FailureReport {
                    reason: e.message,
                    arn: None,
                    detail: e.token_conflict.then(|| {
                        "client token already used: an earlier delivery of this event launched \
                         this call"
                            .to_owned()
                    }),
                    call: call.to_owned(),
                });
                (asked, capacity, !capacity && !e.token_conflict)
            }
        }
    }
}

/// Launches `n` tasks. Never fails as a whole: what did not start is in `failures`.
pub async fn launch<T: Tasks>(
    tasks: &T,
    cfg: &ScaleConfig,
    event_id: &str,
    n: u64,
) -> LaunchOutcome {
    let mut out = LaunchOutcome::default();
    let fallback_possible = cfg.spot_fallback
        && cfg.capacity.iter().any(|c| c.provider == SPOT)
        && cfg.capacity.iter().any(|c| c.provider != ON_DEMAND);
    for (i, count) in chunks(n).into_iter().enumerate() {
        let call = format!("c{i}");
        let req = request(cfg, event_id, count, cfg.capacity.clone(), &call);
        let (missing, capacity, broken) = out.record(&call, count, tasks.run(&req).await);
        if missing > 0 && capacity && fallback_possible {
            let call = format!("c{i}-fallback");
            let on_demand = vec![CapacityItem::new(ON_DEMAND, 1, 0)];
            let req = request(cfg, event_id, missing, on_demand, &call);
            let before = out.launched.total;
            out.record(&call, missing, tasks.run(&req).await);
            out.launched.fallback += out.launched.total - before;
        }
        if broken {
            // Access denied, a bad task definition, ...: the next calls would fail the same way.
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::aws::ecs::{Failure, Started};

    const CAPACITY_REASON: &str = "Capacity is unavailable at this time. Please try again later or in a different availability zone";

    fn cfg(capacity: &str, fallback: bool) -> ScaleConfig {
        ScaleConfig {
            cluster: "c".into(),
            task_definition: "w:1".into(),
            family: "w".into(),
            subnets: vec!["s1".into(), "s2".into()],
            security_groups: vec!["g".into()],
            assign_public_ip: true,
            capacity: crate::config::scale::parse_capacity(capacity).unwrap(),
            spot_fallback: fallback,
            task_env: vec![("QP_MODE".into(), "fit".into())],
            ..crate::config::scale::test_config()
        }
    }

    /// A fake ECS: Spot has `spot_left` tasks of capacity; `broken` fails every call.
    struct Fake {
        spot_left: Mutex<u32>,
        spot_failure_as_error: bool,
        broken: Option<RunError>,
        calls: Mutex<Vec<RunRequest>>,
    }

    impl Fake {
        fn new(spot_left: u32) -> Fake {
            Fake {
                spot_left: Mutex::new(spot_left),
                spot_failure_as_error: false,
                broken: None,
                calls: Mutex::new(Vec::new()),
            }
        }
    }

    impl Tasks for Fake {
        async fn running(&self, _: &str, _: &str) -> Result<Vec<String>, crate::aws::AwsError> {
            unreachable!()
        }
        async fn count_tagged(
            &self,
            _: &str,
            _: &[String],
            _: &str,
            _: &str,
        ) -> Result<usize, crate::aws::AwsError> {
            unreachable!()
        }
        async fn run(&self, req: &RunRequest) -> Result<RunOutcome, RunError> {
            let n = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(req.clone());
                calls.len()
            };
            if let Some(e) = &self.broken {
                return Err(e.clone());
            }
            let spot = req.capacity.iter().any(|c| c.provider == SPOT);
            let mut out = RunOutcome::default();
            let mut left = self.spot_left.lock().unwrap();
            for t in 0..req.count {
                let provider = if spot && *left == 0 {
                    if self.spot_failure_as_error && out.started.is_empty() {
                        return Err(RunError {
                            message: format!("RunTask: {CAPACITY_REASON}"),
                            token_conflict: false,
                        });
                    }
                    out.failures.push(Failure {
                        arn: None,
                        reason: CAPACITY_REASON.into(),
                        detail: None,
                    });
                    continue;
                } else if spot {
                    *left -= 1;
                    SPOT
                } else {
                    ON_DEMAND
                };
                out.started.push(Started {
                    arn: format!("arn:task/{n}-{t}"),
                    capacity_provider: provider.into(),
                });
            }
            Ok(out)
        }
    }

    use crate::test_util::block_on as run;

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunks(0), Vec::<u32>::new());
        assert_eq!(chunks(1), [1]);
        assert_eq!(chunks(10), [10]);
        assert_eq!(chunks(11), [10, 1]);
        assert_eq!(chunks(25), [10, 10, 5]);
        assert_eq!(chunks(100).len(), 10);
    }

    #[test]
    fn tokens_are_stable_short_and_distinct() {
        let id = "7bf73129-1428-4cd3-a780-95db273d1602";
        let a = client_token(id, "c0");
        assert_eq!(a, client_token(id, "c0"));
        assert_ne!(a, client_token(id, "c1"));
        assert_ne!(
            a,
            client_token("7bf73129-1428-4cd3-a780-95db273d1603", "c0")
        );
        let long = client_token(&"x".repeat(1000), "c9-fallback");
        for t in [&a, &long] {
            assert!(t.len() <= 64, "{t}");
            assert!(t.bytes().all(|b| (33..=126).contains(&b)), "{t}");
        }
        assert_eq!(tag_value("a b\u{e9}c#1"), "a b_c_1");
    }

    #[test]
    fn requests_carry_everything() {
        let fake = Fake::new(100);
        let out = run(launch(
            &fake,
            &cfg("FARGATE:1:base=1,FARGATE_SPOT:4", true),
            "ev-1",
            25,
        ));
        assert_eq!(out.launched.total, 25);
        assert_eq!(out.calls, 3);
        let calls = fake.calls.lock().unwrap();
        assert_eq!(
            calls.iter().map(|r| r.count).collect::<Vec<_>>(),
            [10, 10, 5]
        );
        let r = &calls[0];
        assert_eq!(
            (r.cluster.as_str(), r.task_definition.as_str()),
            ("c", "w:1")
        );
        assert_eq!(r.subnets, ["s1", "s2"]);
        assert!(r.assign_public_ip);
        assert_eq!(r.started_by, "qp-scale");
        assert_eq!(r.capacity.len(), 2);
        assert_eq!(r.env, [("QP_MODE".to_string(), "fit".to_string())]);
        assert!(r.tags.contains(&("qp:event-id".into(), "ev-1".into())));
        assert!(
            r.tags
                .contains(&("qp:launched-by".into(), "qp-scale".into()))
        );
        let mut tokens: Vec<_> = calls.iter().map(|r| r.client_token.clone()).collect();
        tokens.dedup();
        assert_eq!(tokens.len(), 3);
    }

    #[test]
    fn spot_capacity_failures_fall_back_to_fargate() {
        // Spot has room for 3 of 12: the rest of each call is retried on FARGATE.
        let fake = Fake::new(3);
        let out = run(launch(&fake, &cfg("FARGATE_SPOT:1", true), "ev", 12));
        assert_eq!(out.launched.total, 12);
        assert_eq!(out.launched.fallback, 9);
        assert_eq!(out.launched.by_capacity_provider["FARGATE_SPOT"], 3);
        assert_eq!(out.launched.by_capacity_provider["FARGATE"], 9);
        assert_eq!(out.failures.len(), 9);
        assert!(out.failures.iter().all(|f| f.reason == CAPACITY_REASON));
        let calls = fake.calls.lock().unwrap();
        let shape: Vec<(u32, &str)> = calls
            .iter()
            .map(|r| (r.count, r.capacity[0].provider.as_str()))
            .collect();
        assert_eq!(
            shape,
            [(10, SPOT), (7, ON_DEMAND), (2, SPOT), (2, ON_DEMAND)]
        );
        assert!(calls[1].client_token.ends_with("-c0-fallback"));
    }

    #[test]
    fn a_whole_call_refused_for_capacity_falls_back_too() {
        let mut fake = Fake::new(0);
        fake.spot_failure_as_error = true;
        let out = run(launch(&fake, &cfg("FARGATE_SPOT:1", true), "ev", 4));
        assert_eq!(out.launched.total, 4);
        assert_eq!(out.launched.fallback, 4);
        assert_eq!(out.failures.len(), 1);
    }

    #[test]
    fn without_fallback_failures_are_reported() {
        let fake = Fake::new(2);
        let out = run(launch(&fake, &cfg("FARGATE_SPOT:1", false), "ev", 5));
        assert_eq!(out.launched.total, 2);
        assert_eq!(out.launched.fallback, 0);
        assert_eq!(out.failures.len(), 3);
        assert_eq!(out.calls, 1);
        // FARGATE-only strategies have nothing to fall back to.
        let fake = Fake::new(0);
        let out = run(launch(&fake, &cfg("FARGATE:1", true), "ev", 3));
        assert_eq!((out.launched.total, out.calls), (3, 1));
    }

    #[test]
    fn a_broken_call_stops_the_launch() {
        let mut fake = Fake::new(100);
        fake.broken = Some(RunError {
            message: "RunTask: AccessDeniedException: not allowed".into(),
            token_conflict: false,
        });
        let out = run(launch(&fake, &cfg("FARGATE_SPOT:1", true), "ev", 30));
        assert_eq!(out.launched.total, 0);
        assert_eq!(out.calls, 1);
        assert_eq!(out.failures.len(), 1);
        assert!(out.failures[0].reason.contains("AccessDenied"));
        assert!(!out.token_conflict);
    }

    #[test]
    fn a_token_conflict_is_a_duplicate_not_a_stop() {
        let mut fake = Fake::new(100);
        fake.broken = Some(RunError {
            message: "RunTask: ConflictException".into(),
            token_conflict: true,
        });
        let out = run(launch(&fake, &cfg("FARGATE_SPOT:1", true), "ev", 20));
        assert_eq!((out.launched.total, out.calls), (0, 2));
        assert!(out.token_conflict);
    }
}
