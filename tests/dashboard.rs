//! The CloudWatch dashboard (terraform/dashboard.json.tftpl, rendered by terraform/dashboard.tf):
//! every metric it draws is one qp emits, under the namespace and dimensions qp emits it with
//! (`qp::metrics::EMITTED`), or one SQS publishes for the queues; the log query reads fields the
//! worker writes. A name drifting on either side leaves a widget silently empty: this catches it.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

/// What SQS publishes per queue (AWS/SQS, dimension QueueName).
const SQS_METRICS: &[&str] = &[
    "ApproximateAgeOfOldestMessage",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesVisible",
    "NumberOfEmptyReceives",
    "NumberOfMessagesDeleted",
    "NumberOfMessagesReceived",
    "NumberOfMessagesSent",
    "SentMessageSize",
];

fn terraform(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("terraform")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The variables dashboard.tf hands to templatefile, in the order written.
fn template_variables(tf: &str) -> Vec<String> {
    let start = tf
        .find("templatefile(")
        .expect("dashboard.tf renders a template");
    // The map after the path (whose own `${path.module}` has braces too).
    let open = start + tf[start..].find(", {").expect("templatefile(path, {...})") + 2;
    let close = open + tf[open..].find('}').unwrap();
    tf[open + 1..close]
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .filter(|k| !k.is_empty())
        .collect()
}

/// Replaces each `${name}` with `<name>`, failing on a name terraform does not pass.
fn render(template: &str, variables: &[String]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find('}').expect("unclosed ${") + at;
        let name = &rest[at + 2..end];
        assert!(
            variables.iter().any(|v| v == name),
            "the template uses ${{{name}}}, which dashboard.tf does not pass ({variables:?})"
        );
        out.push_str(&format!("<{name}>"));
        rest = &rest[end + 1..];
    }
    assert!(!rest.contains("%{"), "no template directives expected");
    out.push_str(rest);
    out
}

/// A metric row: [namespace, name, dim, value, dim, value, ..., {options}?].
fn row(r: &Value) -> (String, String, Vec<(String, String)>) {
    let items = r.as_array().expect("a metric row is an array");
    let strings: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
    assert!(
        items.iter().all(|i| i.is_string() || i.is_object()),
        "unexpected item in {r}"
    );
    assert!(
        !strings.contains(&"."),
        "{r}: write rows out in full, the test does not follow '.'"
    );
    assert!(strings.len() >= 2 && strings.len().is_multiple_of(2), "{r}");
    let dims = strings[2..]
        .chunks(2)
        .map(|p| (p[0].to_owned(), p[1].to_owned()))
        .collect();
    (strings[0].to_owned(), strings[1].to_owned(), dims)
}

#[test]
fn every_dashboard_metric_is_one_qp_or_sqs_emits() {
    let tf = terraform("dashboard.tf");
    assert!(tf.contains("dashboard_name = var.name"), "{tf}");
    let variables = template_variables(&tf);
    let body: Value = serde_json::from_str(&render(&terraform("dashboard.json.tftpl"), &variables))
        .expect("the rendered dashboard is JSON");
    let widgets = body["widgets"].as_array().expect("widgets");
    let queues = ["<queue>", "<dlq>"];
    let mut drawn = BTreeSet::new();
    let mut logs = 0;
    for w in widgets {
        let p = &w["properties"];
        let title = p["title"].as_str().expect("every widget has a title");
        assert_eq!(p["region"], "<region>", "{title}");
        match w["type"].as_str() {
            Some("metric") => {
                let rows = p["metrics"].as_array().expect("metrics");
                assert!(!rows.is_empty(), "{title}");
                for r in rows {
                    let (namespace, name, dims) = row(r);
                    let dim_names: Vec<&str> = dims.iter().map(|(k, _)| k.as_str()).collect();
                    match namespace.as_str() {
                        qp::metrics::NAMESPACE => {
                            assert!(
                                qp::metrics::EMITTED
                                    .contains(&(name.as_str(), dim_names.as_slice())),
                                "{title}: qp emits no {name} with dimensions {dim_names:?}"
                            );
                            assert_eq!(dims[0], ("Queue".into(), "<queue>".into()), "{title}");
                            drawn.insert(name);
                        }
                        "AWS/SQS" => {
                            assert!(SQS_METRICS.contains(&name.as_str()), "{title}: {name}");
                            assert_eq!(dim_names, ["QueueName"], "{title}: {name}");
                            assert!(queues.contains(&dims[0].1.as_str()), "{title}: {r}");
                        }
                        other => panic!("{title}: namespace {other} is neither qp's nor SQS's"),
                    }
                }
            }
            Some("log") => {
                logs += 1;
                let query = p["query"].as_str().expect("a log widget has a query");
                assert!(
                    query.starts_with("SOURCE '<worker_log_group>'"),
                    "{title}: {query}"
                );
                // The fields of the worker's per-image log line (src/work/pipeline.rs).
                for field in ["reason", "key", "outcome = 'failed'"] {
                    assert!(query.contains(field), "{title}: no {field} in {query}");
                }
            }
            other => panic!("{title}: widget type {other:?}"),
        }
    }
    assert_eq!(logs, 1, "one Logs Insights widget of failures");
    // Everything qp emits is drawn somewhere: a metric nobody looks at is noise.
    let emitted: BTreeSet<String> = qp::metrics::EMITTED
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(drawn, emitted);
}

#[test]
fn the_dashboard_url_is_an_output() {
    let outputs = terraform("outputs.tf");
    let at = outputs
        .find("output \"dashboard_url\"")
        .expect("a dashboard_url output");
    assert!(
        outputs[at..].contains("aws_cloudwatch_dashboard.this.dashboard_name"),
        "{}",
        &outputs[at..]
    );
}
