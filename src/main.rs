//! The `qp` binary: parse, dispatch, map the outcome to an exit code. Everything else is in the
//! library.

use std::process::ExitCode;

// musl's allocator is slow under the many small allocations of the AWS SDK and the resizer's
// buffers (measured by bench/alloc.sh, numbers in the README); the static build uses jemalloc.
// The `system-alloc` feature keeps musl's, for that measurement only.
#[cfg(all(target_env = "musl", not(feature = "system-alloc")))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match qp::cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        // Help and --version exit 0, usage errors 2, as clap decides.
        Err(e) => e.exit(),
    };
    match qp::run(cli) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("qp: {e:#}");
            if e.downcast_ref::<qp::config::ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `qp ... | head` closing the pipe early is not a failure.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
