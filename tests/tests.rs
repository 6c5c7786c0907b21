//! The one integration-test binary (ripgrep's layout): each module below is one area, and every
//! end-to-end test runs the real `qp` binary from `util`.

mod drills;
mod enqueue;
mod faults;
mod image;
mod lambda_api;
mod packaging;
mod pipeline;
mod resize;
mod scale;
mod util;
mod work;
