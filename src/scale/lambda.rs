//! Lambda mode: the same tick behind `lambda_runtime`. Each invocation (an EventBridge scheduled
//! event) is one tick whose event id is the event's `id`; the response is the [`Report`].
//!
//! Errors map to the Runtime API as Lambda expects: a config error is an init error (posted here:
//! `lambda_runtime` only reports its own init failures), an AWS error or a tick that launched
//! nothing when it had to is an invocation error carrying the message.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

use super::{Report, TickError, tick};
use crate::config::ConfigError;
use crate::config::scale::ScaleConfig;

/// Serves invocations until the runtime stops.
pub async fn serve(cfg: ScaleConfig) -> anyhow::Result<ExitCode> {
    let clients = crate::aws::Clients::load(false).await;
    let (cfg, clients) = (&cfg, &clients);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(cfg, clients, event).await
    }))
    .await
    .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// The tick's id: `--event-id` if given, else the event's `id` (EventBridge), else the request id
/// (a manual test invoke; Lambda keeps it across its own retries).
pub fn event_id(cfg: &ScaleConfig, payload: &Value, request_id: &str) -> String {
    if let Some(id) = &cfg.event_id {
        return id.clone();
    }
    match payload.get("id").and_then(Value::as_str) {
        Some(id) if !id.trim().is_empty() => id.to_owned(),
        _ => request_id.to_owned(),
    }
}

async fn handle(
    cfg: &ScaleConfig,
    clients: &crate::aws::Clients,
    event: LambdaEvent<Value>,
) -> Result<Report, Diagnostic> {
    let id = event_id(cfg, &event.payload, &event.context.request_id);
    match tick(cfg, &clients.sqs, &clients.ecs, &id).await {
        Ok(report) => {
            // EventBridge discards the response of its asynchronous invocations: the log is where
            // the report is read.
            tracing::info!(report = %json(&report), "{}", report.reason);
            super::metrics::emit(&crate::metrics::Sink::stdout(), cfg, &clients.ecs, &report).await;
            Ok(report)
        }
        Err(e) => {
            let (error_type, report) = match &e {
                TickError::Aws(_) => ("qp.AwsError", None),
                TickError::NothingLaunched(r) => ("qp.NothingLaunched", Some(json(r))),
            };
            tracing::error!(event_id = %id, report = report.unwrap_or_default(), "{e}");
            Err(Diagnostic {
                error_type: error_type.into(),
                error_message: e.to_string(),
            })
        }
    }
}

fn json(r: &Report) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

/// Posts a config error to `/runtime/init/error` (blocking, before any runtime exists). Failing
/// to post is only logged: the process exits with the error either way, which Lambda reports too.
pub fn report_init_error(api: &str, e: &ConfigError) {
    let body =
        serde_json::json!({"errorType": "qp.ConfigError", "errorMessage": e.message}).to_string();
    let request = format!(
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\n\
         Lambda-Runtime-Function-Error-Type: Runtime.InitError\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let post = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect(api)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(request.as_bytes())?;
        // The status line is all we need; the body does not matter.
        let mut status = String::new();
        BufReader::new(stream).read_line(&mut status)?;
        Ok(status.trim_end().to_owned())
    };
    match post() {
        Ok(status) if status.contains(" 202 ") || status.contains(" 200 ") => {}
        Ok(status) => eprintln!("qp: posting the init error to {api}: {status}"),
        Err(err) => eprintln!("qp: posting the init error to {api}: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_sources() {
        let mut cfg = crate::config::scale::test_config();
        let scheduled: Value = serde_json::from_str(
            r#"{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
                "detail-type":"Scheduled Event","source":"aws.events","account":"123456789012",
                "time":"2015-10-08T16:53:06Z","region":"us-east-1",
                "resources":["arn:aws:events:us-east-1:123456789012:rule/my-scheduled-rule"],
                "detail":{}}"#,
        )
        .unwrap();
        assert_eq!(
            event_id(&cfg, &scheduled, "req"),
            "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa"
        );
        assert_eq!(event_id(&cfg, &serde_json::json!({}), "req"), "req");
        assert_eq!(event_id(&cfg, &serde_json::json!({"id": ""}), "req"), "req");
        cfg.event_id = Some("forced".into());
        assert_eq!(event_id(&cfg, &scheduled, "req"), "forced");
    }
}
