//! Settings of `qp resize`: [`ResizeConfig::from_args`] validates the raw flags/variables.

use std::path::PathBuf;

use super::{ConfigError, available_cpus, resize_spec};
use crate::cli::ResizeArgs;
use crate::image::ResizeSpec;

/// Validated settings of a local run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResizeConfig {
    /// Files and directories, as given.
    pub inputs: Vec<PathBuf>,
    /// Output directory, as given (created by the run).
    pub out: PathBuf,
    /// Files processed at once.
    pub jobs: usize,
    pub spec: ResizeSpec,
}

impl ResizeConfig {
    pub fn from_args(args: ResizeArgs) -> Result<ResizeConfig, ConfigError> {
        Ok(ResizeConfig {
            spec: resize_spec(&args.image)?,
            jobs: args.jobs.map_or_else(available_cpus, |j| j as usize),
            inputs: args.inputs,
            out: args.out,
        })
    }
}
