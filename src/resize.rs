//! `qp resize`: the image core on local files, in parallel. The only part of qp that touches the
//! local file system.
//!
//! Output naming: a file argument becomes `OUT/<file name>`; a directory argument is walked
//! recursively and mirrored as `OUT/<path below the directory>`; with several sizes each output
//! goes under `OUT/<W>x<H>/`. Two inputs that would land on the same name are both kept: the
//! first (in argument order) gets the name, later ones `<stem>_2.<ext>`, `<stem>_3.<ext>`, ... and
//! a note on stderr says so. Nothing is ever written outside OUT, and an output that would
//! replace one of the inputs is refused.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{Scope, Thread};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ResizeArgs;
use crate::config::resize::ResizeConfig;
use crate::image::{self, ResizeSpec, names};

/// One input file and where its outputs go, relative to each output directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub input: PathBuf,
    /// The input with links resolved, to refuse overwriting it.
    pub real: PathBuf,
    pub rel: PathBuf,
    /// Input size in bytes: the proxy for its cost when ordering the work.
    pub bytes: u64,
}

/// The outcome of planning: jobs to run, and inputs that failed before running (missing paths).
#[derive(Debug, Default)]
pub struct Plan {
    pub jobs: Vec<Job>,
    pub failures: Vec<(PathBuf, String)>,
    /// Renames made to avoid clashes: (input, new relative name).
    pub renamed: Vec<(PathBuf, PathBuf)>,
}

/// The `qp resize` entry: validated settings, then [`run`].
pub fn main(args: ResizeArgs) -> Result<ExitCode> {
    run(&ResizeConfig::from_args(args)?)
}

/// Converts every input into `cfg.out`; exit 1 if any file failed.
pub fn run(cfg: &ResizeConfig) -> Result<ExitCode> {
    let (spec, jobs) = (&cfg.spec, cfg.jobs);
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("creating output directory {}", cfg.out.display()))?;
    let out = cfg
        .out
        .canonicalize()
        .with_context(|| format!("resolving {}", cfg.out.display()))?;
    let plan = plan(&cfg.inputs, &out);
    for (input, rel) in &plan.renamed {
        eprintln!(
            "{}: output name already taken by another input; writing {}",
            input.display(),
            rel.display()
        );
    }
    let bar = progress_bar(plan.jobs.len());
    let started = Instant::now();
    let bytes_out = AtomicUsize::new(0);
    let ok = AtomicUsize::new(0);
    let report =
        |path: &Path, cause: &str| bar.suspend(|| eprintln!("{}: {cause}", path.display()));
    for (path, cause) in &plan.failures {
        report(path, cause);
    }
    let dirs = OutDirs::new(out);
    let order = largest_first(&plan.jobs);
    let next = AtomicUsize::new(0);
    let threads = jobs.clamp(1, plan.jobs.len().max(1));
    let read_ahead = ReadAhead::new(&plan.jobs, &order, &next);
    let worker = || {
        loop {
            let taken = next.fetch_add(1, Ordering::Relaxed);
            read_ahead.taken(taken);
            let Some(job) = order.get(taken).map(|&i| &plan.jobs[i]) else {
                break;
            };
            let result = process_file(job, read_ahead.take(taken), &dirs, spec);
            bar.inc(1);
            match result {
                Ok(n) => {
                    bytes_out.fetch_add(n, Ordering::Relaxed);
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => report(&job.input, &format!("{e:#}")),
            }
        }
    };
    std::thread::scope(|s| {
        // With no more files than threads, each thread's first read is all there is to hide.
        let _read_ahead = (plan.jobs.len() > threads).then(|| read_ahead.start(s));
        // No more threads than files: a thread with nothing to do only costs its start.
        let workers = (0..threads)
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("qp-resize-{i}"))
                    .spawn_scoped(s, worker)
            })
            .collect::<std::io::Result<Vec<_>>>()
            .context("starting worker threads")?;
        for handle in workers {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        anyhow::Ok(())
    })?;
    let ok = ok.into_inner();
    bar.finish_and_clear();
    let failed = plan.jobs.len() - ok + plan.failures.len();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "qp: {ok} ok, {failed} failed in {secs:.2} s ({:.1} images/s, {} threads, {} KiB written to {})",
        ok as f64 / secs.max(1e-9),
        jobs,
        bytes_out.load(Ordering::Relaxed) / 1024,
        cfg.out.display()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn progress_bar(len: usize) -> ProgressBar {
    // Only for a person watching: piped or redirected output stays clean.
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

/// Lists the files to convert and their output names. Inputs are taken in argument order, so
/// names and clash suffixes are deterministic. `out` is canonical; it is never walked into.
pub fn plan(inputs: &[PathBuf], out: &Path) -> Plan {
    let mut plan = Plan::default();
    let mut taken: HashSet<PathBuf> = HashSet::new();
    let mut seen_inputs: HashSet<PathBuf> = HashSet::new();
    let mut push = |plan: &mut Plan, input: PathBuf, real: PathBuf, rel: PathBuf, bytes: u64| {
        // The same file named twice (or reached through two arguments) is converted once.
        if !seen_inputs.insert(real.clone()) {
            return;
        }
        let rel = output_rel(&rel);
        let unique = unique_name(&rel, &taken);
        if unique != rel {
            plan.renamed.push((input.clone(), unique.clone()));
        }
        taken.insert(unique.clone());
        plan.jobs.push(Job {
            input,
            real,
            rel: unique,
            bytes,
        });
    };
    for input in inputs {
        match std::fs::metadata(input) {
            Err(e) => plan.failures.push((input.clone(), e.to_string())),
            Ok(m) if m.is_dir() => {
                // Entries are reached without following links, so each one's real path is the
                // directory's plus the relative path: one canonicalize per argument, not per file.
                let real_dir = real_path(input);
                let walker = walkdir::WalkDir::new(input)
                    .follow_links(false)
                    .sort_by_file_name()
                    .into_iter()
                    .filter_entry(|e| !(e.file_type().is_dir() && is_same(e.path(), out)));
                for entry in walker {
                    match entry {
                        Err(e) => {
                            let path = e.path().unwrap_or(input).to_path_buf();
                            plan.failures.push((path, e.to_string()));
                        }
                        Ok(e) if e.file_type().is_file() && has_image_suffix(e.path()) => {
                            let rel = e.path().strip_prefix(input).unwrap_or(e.path());
                            let real = real_dir.join(rel);
                            let bytes = e.metadata().map_or(0, |m| m.len());
                            let path = e.path().to_path_buf();
                            push(&mut plan, path, real, rel.to_path_buf(), bytes);
                        }
                        // A link to a file is converted under the link's name (datasets are
                        // often link farms); links to directories are not followed, so a walk
                        // never loops. A dangling link is a failure of its own.
                        Ok(e) if e.path_is_symlink() && has_image_suffix(e.path()) => {
                            let rel = e.path().strip_prefix(input).unwrap_or(e.path());
                            let path = e.path().to_path_buf();
                            match std::fs::metadata(&path) {
                                Ok(m) if m.is_file() => {
                                    let real = real_path(&path);
                                    push(&mut plan, path, real, rel.to_path_buf(), m.len());
                                }
                                Ok(_) => {}
                                Err(err) => {
                                    plan.failures.push((path, format!("link target: {err}")))
                                }
                            }
                        }
                        Ok(_) => {}
                    }
                }
            }
            Ok(m) => match input.file_name() {
                Some(name) => {
                    let real = real_path(input);
                    push(&mut plan, input.clone(), real, PathBuf::from(name), m.len())
                }
                None => plan
                    .failures
                    .push((input.clone(), "not a file name".to_string())),
            },
        }
    }
    plan
}

/// The order to convert the jobs in: largest input first (ties in plan order). Threads take the
/// next job as they finish one, so a large image is never the one left running alone at the end
/// while the other threads idle; file size stands in for decode time.
fn largest_first(jobs: &[Job]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].bytes));
    order
}

/// Has the kernel read the next inputs in the work order while the threads convert the current
/// ones. A file not in the page cache otherwise stalls its thread on the disk with its core
/// idle: a first run over a folder of small photos took ~1.3x as long as the same run with the
/// files cached (bench/resize_cold.sh). It opens each file and advises `WILLNEED` (the kernel
/// reads asynchronously) and hands the open file to the thread that takes it; anything it
/// cannot open is left to that thread to open and report.
struct ReadAhead<'a> {
    jobs: &'a [Job],
    order: &'a [usize],
    /// The next position in `order` a thread will take.
    next: &'a AtomicUsize,
    /// `starts[k]`: bytes of the files before position `k` in `order`.
    starts: Vec<u64>,
    /// Its thread, once started.
    thread: OnceLock<Thread>,
    /// Files it has opened, by position in `order`, until a thread takes them.
    opened: Vec<Mutex<Option<File>>>,
    stop: AtomicBool,
}

impl<'a> ReadAhead<'a> {
    /// How far ahead of the threads: enough queued reads to keep a disk busy, not so many
    /// that the first ones could be evicted again before they are used.
    const FILES: usize = 16;
    const BYTES: u64 = 64 << 20;
    /// It is woken once per this many files taken, not for each: a wake-up is a context switch
    /// on a core that is converting images.
    const BATCH: usize = 8;
    /// `WILLNEED` reads at most about the device's read-ahead window per call (128 KiB by
    /// default), so larger files are advised in pieces of that size.
    const PIECE: u64 = 128 << 10;

    fn new(jobs: &'a [Job], order: &'a [usize], next: &'a AtomicUsize) -> Self {
        let starts = std::iter::once(0)
            .chain(order.iter().scan(0, |sum, &i| {
                *sum += jobs[i].bytes;
                Some(*sum)
            }))
            .collect();
        ReadAhead {
            jobs,
            order,
            next,
            starts,
            thread: OnceLock::new(),
            opened: order.iter().map(|_| Mutex::new(None)).collect(),
            stop: AtomicBool::new(false),
        }
    }

    /// Called by a thread that has just taken position `taken` (past the end when no work is
    /// left: then it always wakes the read-ahead, so that it ends).
    fn taken(&self, taken: usize) {
        if let Some(thread) = self.thread.get()
            && (taken.is_multiple_of(Self::BATCH) || taken >= self.order.len())
        {
            thread.unpark();
        }
    }

    /// Whether the file at position `k` is due now that the threads have taken the positions
    /// before `taken`: within FILES and BYTES of them (the one right after them always is).
    fn due(&self, k: usize, taken: usize) -> bool {
        k < taken + Self::FILES && (k <= taken || self.starts[k] - self.starts[taken] < Self::BYTES)
    }

    /// Starts its thread in `scope`. It ends after the last file, or when the returned guard is
    /// dropped: the threads' caller drops it once they are done (or gone), so that a scope
    /// never waits on it. Without it (it could not start) the run is only slower on cold files.
    fn start<'s, 'env>(&'env self, scope: &'s Scope<'s, 'env>) -> Stop<'env, 'a> {
        if let Ok(handle) = std::thread::Builder::new()
            .name("qp-read-ahead".into())
            .spawn_scoped(scope, || self.run())
        {
            let _ = self.thread.set(handle.thread().clone());
        }
        Stop(self)
    }

    /// Advises each file in order as it comes within reach of the threads, parked while it is
    /// far enough ahead.
    fn run(&self) {
        for (k, &i) in self.order.iter().enumerate() {
            let taken = loop {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                let taken = self.next.load(Ordering::Relaxed);
                if self.due(k, taken) {
                    break taken;
                }
                std::thread::park();
            };
            if k < taken {
                continue;
            }
            let Some(file) = advise(&self.jobs[i].input) else {
                continue;
            };
            let mut slot = self.opened[k].lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(file);
            // Taken meanwhile (its thread opened the file itself): close it now, not at the end.
            if self.next.load(Ordering::Relaxed) > k {
                slot.take();
            }
        }
    }

    /// The file at position `k`, if it was opened here: its thread reads it instead of opening
    /// it again (for cached files the second path lookup was most of what read-ahead cost).
    fn take(&self, k: usize) -> Option<File> {
        self.opened
            .get(k)?
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Stops the read-ahead when dropped.
struct Stop<'r, 'a>(&'r ReadAhead<'a>);

impl Drop for Stop<'_, '_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.0.thread.get() {
            thread.unpark();
        }
    }
}

/// Opens a regular file and `posix_fadvise(WILLNEED)`s all of it. `None` on any error (the
/// thread that converts it opens it again and reports the error) and for anything but a
/// regular file: opened non-blocking so that a FIFO named as an input cannot hang this.
fn advise(path: &Path) -> Option<File> {
    use rustix::fs::{FileType, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty()).ok()?;
    let stat = rustix::fs::fstat(&fd).ok()?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return None;
    }
    // Linux (what qp ships for) has posix_fadvise, macOS has not: there, files are only
    // opened ahead.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        use rustix::fs::Advice;
        use std::num::NonZeroU64;
        let len = u64::try_from(stat.st_size).ok()?;
        let mut offset = 0;
        while offset < len {
            let piece = (len - offset).min(ReadAhead::PIECE);
            rustix::fs::fadvise(&fd, offset, NonZeroU64::new(piece), Advice::WillNeed).ok()?;
            offset += piece;
        }
    }
    Some(File::from(fd))
}

/// The whole of `file` (`len`: its expected size), refusing politely if that much memory
/// cannot be had. Room for one byte more than planned, so a file of the planned size takes
/// two `read`s and nothing else (`read_to_end` first asks the size again: `fstat`, `lseek`).
fn read_all(file: &File, len: u64) -> std::io::Result<Vec<u8>> {
    use rustix::buffer::spare_capacity;
    let mut data = Vec::new();
    data.try_reserve_exact(usize::try_from(len).unwrap_or(usize::MAX).saturating_add(1))?;
    loop {
        if data.len() == data.capacity() {
            // It grew since it was planned.
            data.try_reserve(data.len())?;
        }
        match rustix::io::read(file, spare_capacity(&mut data)) {
            Ok(0) => return Ok(data),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// `path` with links resolved, or as given when that fails (it is then only a name to compare).
fn real_path(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

fn is_same(a: &Path, b: &Path) -> bool {
    a.canonicalize().is_ok_and(|a| a == b)
}

/// Whether a walk picks up the file at `path` (explicit file arguments are always tried).
fn has_image_suffix(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| names::has_image_suffix(&n.to_string_lossy()))
}

/// Where the outputs of the input at `rel` go: the same relative path, its name as
/// [`names::output_name`] gives it (`b.png` -> `b.png.jpg`: outputs are JPEG).
fn output_rel(rel: &Path) -> PathBuf {
    let Some(name) = rel.file_name() else {
        return rel.to_path_buf();
    };
    match names::output_name(&name.to_string_lossy()) {
        Cow::Borrowed(_) => rel.to_path_buf(),
        Cow::Owned(_) => {
            let mut renamed = name.to_os_string();
            renamed.push(".jpg");
            rel.with_file_name(renamed)
        }
    }
}

/// `rel`, or `<stem>_N.<ext>` with the smallest N >= 2 not yet taken.
fn unique_name(rel: &Path, taken: &HashSet<PathBuf>) -> PathBuf {
    if !taken.contains(rel) {
        return rel.to_path_buf();
    }
    let stem = rel.file_stem().unwrap_or_default().to_os_string();
    let ext = rel.extension().map(|e| e.to_os_string());
    (2u64..)
        .map(|n| {
            let mut name: OsString = stem.clone();
            name.push(format!("_{n}"));
            if let Some(ext) = &ext {
                name.push(".");
                name.push(ext);
            }
            rel.with_file_name(name)
        })
        .find(|candidate| !taken.contains(candidate))
        .expect("an unused suffix exists")
}

/// Converts one file (`opened`: the input, if the read-ahead opened it); returns the bytes
/// written.
fn process_file(
    job: &Job,
    opened: Option<File>,
    dirs: &OutDirs,
    spec: &ResizeSpec,
) -> Result<usize> {
    let data = match opened {
        Some(file) => Ok(file),
        None => File::open(&job.input),
    }
    .and_then(|file| read_all(&file, job.bytes))
    .context("reading")?;
    let outputs = image::process(&data, spec)?;
    let several = spec.sizes.len() > 1;
    let mut written = 0;
    for resized in outputs {
        let dest = if several {
            dirs.out.join(resized.size.to_string()).join(&job.rel)
        } else {
            dirs.out.join(&job.rel)
        };
        dirs.write(&dest, &resized.jpeg, &job.real)?;
        written += resized.jpeg.len();
    }
    Ok(written)
}

/// The output directory (canonical) and the directories below it already created and checked,
/// so a run of thousands of files does one mkdir and one canonicalize per directory, not per file.
struct OutDirs {
    out: PathBuf,
    /// Output directory as named -> the same with links resolved (known to be inside `out`).
    checked: Mutex<HashMap<PathBuf, PathBuf>>,
    /// In temporary names (asked once: under musl each `getpid` is a system call).
    pid: u32,
}

impl OutDirs {
    fn new(out: PathBuf) -> Self {
        OutDirs {
            out,
            checked: Mutex::new(HashMap::new()),
            pid: std::process::id(),
        }
    }

    /// Creates `dir` if needed and resolves it; an error if it resolves outside `out`.
    fn resolve(&self, dir: &Path, dest: &Path) -> Result<PathBuf> {
        if let Some(real) = self
            .checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(dir)
        {
            return Ok(real.clone());
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let real = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        if !real.starts_with(&self.out) {
            anyhow::bail!(
                "refusing to write {}: it resolves outside the output directory",
                dest.display()
            );
        }
        self.checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dir.to_path_buf(), real.clone());
        Ok(real)
    }

    /// Writes `bytes` to `dest` atomically (temp file + rename), after checking that `dest` is
    /// inside the output directory once links are resolved and is not the input (`real_input`).
    fn write(&self, dest: &Path, bytes: &[u8], real_input: &Path) -> Result<()> {
        let parent = dest.parent().context("output path has no directory")?;
        let real_parent = self.resolve(parent, dest)?;
        let file_name = dest.file_name().context("output path has no file name")?;
        let real_dest = real_parent.join(file_name);
        if real_input == real_dest {
            anyhow::bail!(
                "refusing to overwrite the input with its output ({})",
                dest.display()
            );
        }
        let mut tmp_name = OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(".qp-{}.tmp", self.pid));
        let tmp = real_parent.join(tmp_name);
        let write = || -> std::io::Result<()> {
            // rustix's open, not std's: musl follows every O_CLOEXEC open with an fcntl (for
            // kernels before 2.6.23), a system call per output.
            use rustix::fs::{Mode, OFlags};
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC;
            let mut f = File::from(rustix::fs::open(&tmp, flags, Mode::from_raw_mode(0o666))?);
            f.write_all(bytes)?;
            std::fs::rename(&tmp, &real_dest)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow::Error::new(e).context(format!("writing {}", dest.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clashing_names_get_numbered_suffixes() {
        let mut taken = HashSet::new();
        taken.insert(PathBuf::from("a/x.jpg"));
        assert_eq!(
            unique_name(Path::new("a/x.jpg"), &taken),
            PathBuf::from("a/x_2.jpg")
        );
        taken.insert(PathBuf::from("a/x_2.jpg"));
        assert_eq!(
            unique_name(Path::new("a/x.jpg"), &taken),
            PathBuf::from("a/x_3.jpg")
        );
        assert_eq!(
            unique_name(Path::new("y.jpg"), &taken),
            PathBuf::from("y.jpg")
        );
        taken.insert(PathBuf::from("noext"));
        assert_eq!(
            unique_name(Path::new("noext"), &taken),
            PathBuf::from("noext_2")
        );
    }

    #[test]
    fn extensions() {
        for yes in [
            "a.jpg", "b.JPEG", "c.Jpe", "d.jfif", "e.png", "f.WebP", "g.tiff",
        ] {
            assert!(has_image_suffix(Path::new(yes)), "{yes}");
        }
        for no in ["a.heic", "b", "c.jpg.txt"] {
            assert!(!has_image_suffix(Path::new(no)), "{no}");
        }
        assert_eq!(output_rel(Path::new("a/b.png")), Path::new("a/b.png.jpg"));
        assert_eq!(output_rel(Path::new("a/b.jpg")), Path::new("a/b.jpg"));
    }

    fn job(name: &Path, bytes: u64) -> Job {
        Job {
            input: name.to_path_buf(),
            real: name.to_path_buf(),
            rel: PathBuf::from(name.file_name().unwrap_or_default()),
            bytes,
        }
    }

    #[test]
    fn largest_inputs_are_converted_first_and_ties_keep_plan_order() {
        let job = |name: &str, bytes| job(Path::new(name), bytes);
        let jobs = [job("a", 10), job("b", 300), job("c", 10), job("d", 20)];
        assert_eq!(largest_first(&jobs), vec![1, 3, 0, 2]);
        assert!(largest_first(&[]).is_empty());
    }

    #[test]
    fn read_ahead_keeps_within_its_window_of_files_and_bytes() {
        let mut jobs: Vec<Job> = (0..40)
            .map(|i| job(Path::new(&format!("{i}.jpg")), 1 << 20))
            .collect();
        jobs[25].bytes = 64 << 20;
        let order: Vec<usize> = (0..jobs.len()).collect();
        let next = AtomicUsize::new(0);
        let ahead = ReadAhead::new(&jobs, &order, &next);
        assert!(ahead.due(0, 0) && ahead.due(15, 0) && !ahead.due(16, 0));
        assert!(ahead.due(25, 10), "15 MiB ahead");
        assert!(!ahead.due(26, 11), "79 MiB ahead");
        assert!(!ahead.due(26, 25), "behind 64 MiB not yet taken");
        assert!(
            ahead.due(25, 25),
            "the next file is always due, however large"
        );
        assert!(ahead.due(3, 10), "already taken: passed over");
    }

    /// The plan's size is a hint: a file that grew or shrank since is read as it is now.
    #[test]
    fn read_all_reads_the_file_as_it_is_not_as_planned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jpg");
        let contents: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &contents).unwrap();
        for planned in [0, 1, 99_999, 100_000, 100_001, 1 << 20] {
            let file = File::open(&path).unwrap();
            let data = read_all(&file, planned).unwrap();
            assert!(
                data == contents,
                "planned {planned}: read {} bytes",
                data.len()
            );
        }
        std::fs::write(&path, b"").unwrap();
        assert!(
            read_all(&File::open(&path).unwrap(), 10)
                .unwrap()
                .is_empty()
        );
        let too_much = read_all(&File::open(&path).unwrap(), u64::MAX).unwrap_err();
        assert_eq!(too_much.kind(), std::io::ErrorKind::OutOfMemory);
    }

    #[test]
    fn read_ahead_hands_opened_files_to_the_threads_and_ends_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let n = 40;
        let jobs: Vec<Job> = (0..n)
            .map(|i| {
                let path = dir.path().join(format!("{i}.jpg"));
                std::fs::write(&path, vec![i as u8; 1000 + i]).unwrap();
                job(&path, 1000 + i as u64)
            })
            .collect();
        // Not regular files: left to the threads, and a FIFO must not block the read-ahead.
        let (fifo, missing) = (5, 7);
        std::fs::remove_file(&jobs[fifo].input).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &jobs[fifo].input,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::fs::remove_file(&jobs[missing].input).unwrap();
        let order: Vec<usize> = (0..n).collect();
        let next = AtomicUsize::new(0);
        let ahead = ReadAhead::new(&jobs, &order, &next);
        let filled = |k: usize| ahead.opened[k].lock().unwrap().is_some();
        // Waits up to 10 s for `done`, failing with `what` after that.
        let eventually = |done: &dyn Fn() -> bool, what: &str| {
            let until = Instant::now() + std::time::Duration::from_secs(10);
            while !done() {
                assert!(Instant::now() < until, "{what}");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        };
        let wait_for = |k: usize| eventually(&|| filled(k), &format!("position {k} never opened"));
        std::thread::scope(|s| {
            let handle = s.spawn(|| ahead.run());
            ahead.thread.set(handle.thread().clone()).unwrap();
            // Should an assertion fail, its unwinding stops the read-ahead: no hanging scope.
            let _stop = Stop(&ahead);
            wait_for(ReadAhead::FILES - 1);
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!filled(ReadAhead::FILES), "ran ahead of its window");
            // One thread's loop: take a position, then its file; each time after the read-ahead
            // got there, as when the disk keeps up.
            for (k, job) in jobs.iter().enumerate() {
                let special = k == fifo || k == missing;
                wait_for(if special { k + 1 } else { k });
                let taken = next.fetch_add(1, Ordering::Relaxed);
                ahead.taken(taken);
                assert_eq!(taken, k);
                let Some(file) = ahead.take(k) else {
                    assert!(special, "position {k} not handed over");
                    continue;
                };
                assert!(!special, "position {k} handed over");
                let data = read_all(&file, job.bytes).unwrap();
                assert_eq!(data, vec![k as u8; 1000 + k]);
            }
            // The thread's last look, past the end: the read-ahead ends by itself.
            ahead.taken(next.fetch_add(1, Ordering::Relaxed));
            eventually(&|| handle.is_finished(), "the read-ahead did not end");
        });
        assert!((0..n).all(|k| !filled(k)), "a file left open");
    }
}
