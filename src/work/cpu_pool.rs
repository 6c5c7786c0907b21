//! The CPU side of `qp work`: a fixed set of threads that decode, resize and encode, fed by the
//! message tasks on the async runtime.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::image::{self, ImageError, ResizeSpec, Resized};

/// The decode/resize/encode threads: exactly `cpus` of them, so a 1-vCPU task runs one.
///
/// Plain threads on a channel rather than rayon: between images rayon's idle workers spin on
/// `sched_yield` (~35 calls per image in `bench/work.sh`), CPU a worker that waits on the
/// network half the time pays for nothing. An idle thread here sleeps in `recv`.
pub struct CpuPool {
    jobs: std::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

impl CpuPool {
    pub fn new(threads: usize) -> anyhow::Result<CpuPool> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("qp-cpu-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting, never while working.
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(job) = job else { return };
                        // image::process catches its own panics; this is the last line of
                        // defence, keeping the thread for the next image.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                            tracing::error!("panic on a CPU thread");
                        }
                    }
                })?;
        }
        // The threads end when the pool (the only sender) is dropped.
        Ok(CpuPool { jobs })
    }

    /// Runs the image core on a pool thread.
    pub async fn process(
        &self,
        data: Vec<u8>,
        spec: Arc<ResizeSpec>,
    ) -> Result<Vec<Resized>, ImageError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(image::process(&data, &spec));
        });
        if self.jobs.send(job).is_err() {
            return Err(ImageError::Internal("the CPU threads are gone".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(ImageError::Internal("the CPU thread died".into())))
    }
}
