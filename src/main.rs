//! The `qp` binary: parse, dispatch, map the outcome to an exit code. Everything else is in the
//! library.

use std::process::ExitCode;

// musl's allocator is slow under the many small allocations of the AWS SDK and the resizer's
// buffers (measured by bench/alloc.sh, numbers in the README); the static build uses jemalloc,
// also for the C code (libjpeg-turbo, aws-lc: the `unprefixed_malloc_on_supported_platforms`
// feature). The `system-alloc` feature keeps musl's, for that measurement only.
#[cfg(all(target_env = "musl", not(feature = "system-alloc")))]
#[global_allocator]
static ALLOC: alloc::MemsetZeroed = alloc::MemsetZeroed(tikv_jemallocator::Jemalloc);

#[cfg(all(target_env = "musl", not(feature = "system-alloc")))]
mod alloc {
    use std::alloc::{GlobalAlloc, Layout};

    /// Below this, zeroed allocations are plain ones cleared with memset.
    const MEMSET_UP_TO: usize = 4 << 20;

    /// jemalloc hands out a reused block as zeroed by `madvise(MADV_DONTNEED)`, so every page of
    /// it faults back in on first touch: with the image buffers (`vec![0; n]`, a few hundred KB
    /// per image) that was ~85 page faults and ~15% of the CPU time per small image. Clearing a
    /// block that is still mapped and cached is far cheaper at these sizes.
    pub struct MemsetZeroed(pub tikv_jemallocator::Jemalloc);

    // SAFETY: every method forwards to the inner allocator with the same layout; alloc_zeroed
    // only adds clearing the `layout.size()` bytes that a successful `alloc` returned.
    unsafe impl GlobalAlloc for MemsetZeroed {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            unsafe { self.0.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if layout.size() > MEMSET_UP_TO {
                return unsafe { self.0.alloc_zeroed(layout) };
            }
            // black_box: LLVM would otherwise fold malloc + memset back into calloc.
            let p = std::hint::black_box(unsafe { self.0.alloc(layout) });
            if !p.is_null() {
                unsafe { p.write_bytes(0, layout.size()) };
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { self.0.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            unsafe { self.0.realloc(ptr, layout, new_size) }
        }
    }
}

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
