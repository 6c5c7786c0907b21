//! `qp work` (filled in by the worker issue).
use std::process::ExitCode;

pub fn main(_args: crate::cli::WorkArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("qp work is not built yet")
}
