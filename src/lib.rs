//! qp turns a bucket of uploaded images into a bucket of model-ready JPEGs.
//!
//! One binary, five modes sharing one config layer and one set of AWS clients:
//!
//! - `qp resize` ([`resize`]): the image pipeline on local files, in parallel.
//! - `qp work` ([`work`]): the Fargate worker draining the S3-notification queue.
//! - `qp scale` ([`scale`]): the scheduled scaler, also the Lambda `bootstrap`.
//! - `qp status` ([`status`]) and `qp redrive` ([`redrive`]): the operator's view and the way
//!   back from the DLQ.
//! - `qp enqueue` ([`enqueue`]): objects already in S3 sent to the queue as notifications.
//! - `qp reconcile` ([`reconcile`]): which sources lack outputs, and which outputs lack sources.
//!
//! The parts:
//!
//! - [`cli`]: clap definitions only (raw flags and env vars) and the argv[0] dispatch.
//! - [`config`]: raw values in, validated settings out; errors name the variable.
//! - [`image`]: the pure image core, `&[u8]` in, JPEGs out. No files, no AWS.
//! - [`event`]: SQS message bodies to object references (pure).
//! - [`reason`]: the stable names of failures that logs, metrics and the DLQ carry.
//! - [`aws`]: the only place that talks to the AWS SDK; everything else sees traits.
//! - [`shutdown`]: the SIGTERM/Ctrl-C future injected into long-running modes.
//! - [`logging`]: tracing set-up (JSON for CloudWatch, text on a terminal).
//! - [`metrics`]: the names of the CloudWatch metrics qp emits (EMF), which the dashboard draws.

// No `unsafe` in the library but the AVX2 dispatch (`image::scaled::simd`) and the two C
// bindings (`image::turbo` for libjpeg-turbo, `image::webp` for libwebp), which allow it;
// the allocator in `src/main.rs` belongs to the binary, a crate of its own.
#![deny(unsafe_code)]

pub mod aws;
pub mod cli;
pub mod config;
pub mod enqueue;
pub mod event;
pub mod image;
pub mod logging;
pub mod metrics;
pub mod reason;
pub mod reconcile;
pub mod redrive;
pub mod resize;
pub mod scale;
pub mod shutdown;
pub mod status;
#[cfg(test)]
mod test_util;
pub mod work;

use std::process::ExitCode;

use cli::{Cli, Command};

/// Runs one parsed command line; the binary maps the result to an exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Resize(args) => resize::main(args),
        Command::Work(args) => work::main(args),
        Command::Scale(args) => scale::main(args),
        Command::Status(args) => status::main(args),
        Command::Redrive(args) => redrive::main(args),
        Command::Enqueue(args) => enqueue::main(args),
        Command::Reconcile(args) => reconcile::main(args),
    }
}
