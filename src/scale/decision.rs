//! The scaling decision, a pure function of what was observed and the policy: no AWS, no clock.
//!
//! ```text
//! backlog = visible + (in_flight if QP_COUNT_IN_FLIGHT)        delayed messages are not counted
//! desired = min(QP_MAX_TASKS, ceil(backlog / QP_MESSAGES_PER_TASK))
//! launch  = clamp(desired - running, 0, QP_MAX_LAUNCH_PER_RUN)  0 when QP_ENABLED=false
//! ```
//!
//! Delayed messages (SQS `DelaySeconds`) are left out: they cannot be received yet, and a worker
//! started for them would idle and exit before they appear. The next tick counts them once they
//! are visible. `running` is every task of the worker family whose desired status is RUNNING,
//! which includes tasks still PROVISIONING or PENDING, so a tick never re-launches for tasks the
//! previous tick started.

use serde::Serialize;

use crate::config::scale::Policy;

/// What one tick observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// ApproximateNumberOfMessages.
    pub visible: u64,
    /// ApproximateNumberOfMessagesNotVisible: received by a worker, not yet deleted.
    pub in_flight: u64,
    /// ApproximateNumberOfMessagesDelayed.
    pub delayed: u64,
    /// Tasks of the worker family with desired status RUNNING.
    pub running: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub backlog: u64,
    pub desired: u64,
    pub launch: u64,
    /// One line for people: which term of the formula decided.
    pub reason: String,
}

pub fn decide(o: &Observed, p: &Policy) -> Decision {
    let backlog = o.visible + if p.count_in_flight { o.in_flight } else { 0 };
    let needed = backlog.div_ceil(u64::from(p.messages_per_task.max(1)));
    let desired = needed.min(u64::from(p.max_tasks));
    let deficit = desired.saturating_sub(o.running);
    let cap = p.max_launch_per_run.map_or(u64::MAX, u64::from);
    let launch = deficit.min(cap);

    let need = if desired < needed {
        format!("backlog {backlog} needs {needed} tasks, capped at QP_MAX_TASKS={desired}")
    } else {
        format!(
            "backlog {backlog} needs {desired} tasks at {} messages each",
            p.messages_per_task
        )
    };
    let (launch, reason) = if backlog == 0 {
        let delayed = match o.delayed {
            0 => String::new(),
            n => format!(" ({n} delayed, not counted)"),
        };
        (0, format!("queue empty{delayed}: nothing to launch"))
    } else if deficit == 0 {
        (
            0,
            format!("{need}; {} running: nothing to launch", o.running),
        )
    } else if !p.enabled {
        (
            0,
            format!(
                "{need}; {} running: would launch {launch}, but QP_ENABLED=false",
                o.running
            ),
        )
    } else if launch < deficit {
        (
            launch,
            format!(
                "{need}; {} running: launching {launch} of {deficit} (QP_MAX_LAUNCH_PER_RUN)",
                o.running
            ),
        )
    } else {
        (
            launch,
            format!("{need}; {} running: launching {launch}", o.running),
        )
    };
    Decision {
        backlog,
        desired,
        launch,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults: what `config::scale`'s `defaults` test gets with no QP_* variable set, and
    /// what terraform's variables default to.
    const POLICY: Policy = Policy {
        messages_per_task: 10,
        max_tasks: 10,
        max_launch_per_run: None,
        count_in_flight: true,
        enabled: true,
    };

    fn obs(visible: u64, in_flight: u64, delayed: u64, running: u64) -> Observed {
        Observed {
            visible,
            in_flight,
            delayed,
            running,
        }
    }

    #[test]
    fn table() {
        let per_run_3 = Policy {
            max_launch_per_run: Some(3),
            ..POLICY
        };
        let no_in_flight = Policy {
            count_in_flight: false,
            ..POLICY
        };
        let off = Policy {
            enabled: false,
            ..POLICY
        };
        let max_100 = Policy {
            max_tasks: 100,
            ..POLICY
        };
        let one_each = Policy {
            messages_per_task: 1,
            ..POLICY
        };
        // (observed, policy, backlog, desired, launch, words in the reason)
        let table = [
            (obs(0, 0, 0, 0), POLICY, 0, 0, 0, "queue empty"),
            (obs(0, 0, 7, 0), POLICY, 0, 0, 0, "7 delayed, not counted"),
            (obs(0, 0, 0, 3), POLICY, 0, 0, 0, "queue empty"),
            (obs(1, 0, 0, 0), POLICY, 1, 1, 1, "launching 1"),
            (obs(10, 0, 0, 0), POLICY, 10, 1, 1, "launching 1"),
            (obs(11, 0, 0, 0), POLICY, 11, 2, 2, "launching 2"),
            (
                obs(35, 0, 0, 0),
                POLICY,
                35,
                4,
                4,
                "backlog 35 needs 4 tasks",
            ),
            (
                obs(35, 0, 0, 4),
                POLICY,
                35,
                4,
                0,
                "4 running: nothing to launch",
            ),
            (obs(35, 0, 0, 1), POLICY, 35, 4, 3, "1 running: launching 3"),
            (obs(35, 0, 0, 9), POLICY, 35, 4, 0, "nothing to launch"),
            (obs(30, 15, 0, 0), POLICY, 45, 5, 5, "launching 5"),
            (obs(30, 15, 0, 0), no_in_flight, 30, 3, 3, "launching 3"),
            (obs(0, 15, 0, 0), no_in_flight, 0, 0, 0, "queue empty"),
            (obs(0, 15, 0, 1), POLICY, 15, 2, 1, "launching 1"),
            (obs(30, 0, 500, 0), POLICY, 30, 3, 3, "launching 3"),
            (
                obs(1000, 0, 0, 0),
                POLICY,
                1000,
                10,
                10,
                "capped at QP_MAX_TASKS=10",
            ),
            (obs(1000, 0, 0, 7), POLICY, 1000, 10, 3, "launching 3"),
            (
                obs(1000, 0, 0, 0),
                per_run_3,
                1000,
                10,
                3,
                "launching 3 of 10",
            ),
            (obs(1000, 0, 0, 8), per_run_3, 1000, 10, 2, "launching 2"),
            (obs(250, 0, 0, 0), max_100, 250, 25, 25, "launching 25"),
            (
                obs(35, 0, 0, 0),
                off,
                35,
                4,
                0,
                "would launch 4, but QP_ENABLED=false",
            ),
            (obs(35, 0, 0, 4), off, 35, 4, 0, "nothing to launch"),
            (obs(0, 0, 0, 0), off, 0, 0, 0, "queue empty"),
            (obs(3, 0, 0, 0), one_each, 3, 3, 3, "launching 3"),
            (
                obs(u64::MAX / 2, u64::MAX / 2, 0, 0),
                POLICY,
                u64::MAX - 1,
                10,
                10,
                "capped",
            ),
        ];
        for (o, p, backlog, desired, launch, words) in table {
            let d = decide(&o, &p);
            assert_eq!(
                (d.backlog, d.desired, d.launch),
                (backlog, desired, launch),
                "{o:?} {p:?}: {}",
                d.reason
            );
            assert!(
                d.reason.contains(words),
                "{o:?}: {:?} lacks {words:?}",
                d.reason
            );
        }
    }

    /// The launches the README promises for a large `qp enqueue` (100,000 messages): tick by
    /// tick, with the tasks of earlier ticks running and the backlog not yet drained.
    #[test]
    fn a_backlog_of_100_000_launches_what_the_readme_says() {
        let ticks = |p: &Policy, n: usize| -> Vec<u64> {
            let mut running = 0;
            (0..n)
                .map(|_| {
                    let d = decide(&obs(100_000, 0, 0, running), p);
                    running += d.launch;
                    d.launch
                })
                .collect()
        };
        // Defaults (terraform's too): 10 at once, all on the first tick, then none.
        assert_eq!(ticks(&POLICY, 3), [10, 0, 0]);
        let wide = Policy {
            max_tasks: 100,
            max_launch_per_run: Some(25),
            ..POLICY
        };
        assert_eq!(ticks(&wide, 5), [25, 25, 25, 25, 0]);
        // The scaler's log line the README's worked example quotes, word for word.
        let d = decide(&obs(100_000, 0, 0, 0), &POLICY);
        assert_eq!(
            d.reason,
            "backlog 100000 needs 10000 tasks, capped at QP_MAX_TASKS=10; 0 running: launching 10"
        );
        // Tasks that have taken messages keep them in the backlog (in flight): still none more.
        let d = decide(&obs(99_000, 1_000, 0, 10), &POLICY);
        assert_eq!((d.desired, d.launch), (10, 0), "{}", d.reason);
    }

    #[test]
    fn never_exceeds_max_nor_cap() {
        for visible in [0, 1, 9, 10, 11, 99, 100, 101, 10_000] {
            for running in [0, 1, 5, 10, 20] {
                for cap in [None, Some(1), Some(4)] {
                    let p = Policy {
                        max_launch_per_run: cap,
                        ..POLICY
                    };
                    let d = decide(&obs(visible, 0, 0, running), &p);
                    assert!(d.desired <= u64::from(p.max_tasks));
                    assert!(running + d.launch <= d.desired.max(running));
                    assert!(d.launch <= u64::from(cap.unwrap_or(u32::MAX)));
                }
            }
        }
    }
}
