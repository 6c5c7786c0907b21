//! `scripts/local-pipeline`: the whole qp system on one machine, no AWS account.
//!
//! Starts moto, creates what terraform creates, uploads the shipped samples many times under
//! varied keys plus a few bad files, then runs the loop the cloud runs: the scaler as the Lambda
//! `bootstrap` behind a local Runtime API, a `qp work` process for every task it launches (the
//! Fargate stand-in, with that task's environment), ticks until the queue is drained and the
//! workers have exited by themselves, then a last tick that must launch nothing. Exits 0 only if
//! every good image is in the destination at the right size and every bad one is in the DLQ.
//!
//! A test of the integration binary that only `scripts/local-pipeline` runs (it is ignored
//! otherwise: minutes of work), sharing its harness with the failure drills in tests/drills.rs.
//! The script passes its options as `QP_LOCAL_COPIES` and `QP_LOCAL_TICK_SECS`.

use std::time::{Duration, Instant};

use crate::pipeline::{
    Cloud, CloudOptions, Fargate, Lambda, run_until_drained, upload_corpus, verify,
};

/// `name`'s whole-number value, or `default` when unset.
fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}: '{v}' is not a whole number"))
    })
}

#[test]
#[ignore = "minutes long: scripts/local-pipeline runs it"]
fn local_pipeline() {
    let copies = setting("QP_LOCAL_COPIES", 50) as usize;
    let tick = setting("QP_LOCAL_TICK_SECS", 3);
    let started = Instant::now();
    println!("starting moto and creating the resources terraform creates ...");
    let cloud = Cloud::create(CloudOptions::default());
    let uploads = upload_corpus(&cloud, copies, |n| {
        if n % 50 == 0 {
            println!("uploaded {n} images");
        }
    });
    let total = uploads.good.len() + uploads.bad.len();
    println!(
        "uploaded {total} objects ({} good, {} bad); scaling every {tick} s (the cloud: every 2 min)",
        uploads.good.len(),
        uploads.bad.len()
    );
    let mut lambda = Lambda::start(&cloud, &cloud.scaler_env(8, 40));
    let mut fargate = Fargate::new();
    let report = run_until_drained(
        &cloud,
        &mut lambda,
        &mut fargate,
        Duration::from_secs(tick),
        Duration::from_secs(1800),
        |n, plan, running, (visible, in_flight)| {
            println!(
                "tick {n}: queue {visible} visible + {in_flight} in flight; scaler: running {}, desired {}, launched {}; workers running {running}",
                plan["running"], plan["desired"], plan["launched"]["total"]
            );
        },
    );
    let verdict = verify(&cloud, &uploads, true);
    let failed_workers = fargate.failed_workers();
    for f in &failed_workers {
        eprintln!("worker failed: {f}");
    }
    let ok = verdict.ok() && failed_workers.is_empty() && report.last_launch == 0;
    if !verdict.ok() {
        eprintln!("verification failed: {verdict:#?}");
    }
    println!(
        "uploaded {total}, processed {}, in DLQ {}, ticks {}, tasks launched {}, last tick launched {}, wall {:.1} s: {}",
        verdict.processed,
        verdict.in_dlq,
        report.ticks,
        report.launched,
        report.last_launch,
        started.elapsed().as_secs_f64(),
        if ok { "OK" } else { "FAILED" }
    );
    assert!(ok, "the local pipeline failed (see above)");
}
