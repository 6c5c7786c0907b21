//! The one integration-test binary (ripgrep's layout): each module below is one area, and every
//! end-to-end test runs the real `qp` binary from `util`.

mod dashboard;
mod decoding;
mod drills;
mod enqueue;
mod faults;
mod formats;
mod image;
mod lambda_api;
mod local_pipeline;
mod packaging;
mod pipeline;
mod resize;
mod scale;
mod status;
mod util;
mod work;
