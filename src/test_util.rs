//! Helpers shared by the unit tests.

/// Runs a future to completion on a one-thread runtime (with timers), for tests of async code
/// that need no `#[tokio::test]` set-up of their own.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
