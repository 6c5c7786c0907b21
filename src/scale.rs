//! `qp scale` (filled in by the scaler issue).
use std::process::ExitCode;

pub fn main(_args: crate::cli::ScaleArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("qp scale is not built yet")
}
