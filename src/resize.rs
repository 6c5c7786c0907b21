//! `qp resize`: the image core on local files, in parallel. The only part of qp that touches the
//! local file system.
//!
//! Output naming: a file argument becomes `OUT/<file name>`; a directory argument is walked
//! recursively and mirrored as `OUT/<path below the directory>`; with several sizes each output
//! goes under `OUT/<W>x<H>/`. Two inputs that would land on the same name are both kept: the
//! first (in argument order) gets the name, later ones `<stem>_2.<ext>`, `<stem>_3.<ext>`, ... and
//! a note on stderr says so. Nothing is ever written outside OUT, and an output that would
//! replace one of the inputs is refused.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ResizeArgs;
use crate::config;
use crate::image::{self, ResizeSpec};

/// File extensions picked up when walking a directory (explicit file arguments are always tried).
const JPEG_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "jpe", "jfif"];

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

pub fn run(args: ResizeArgs) -> Result<ExitCode> {
    let spec = config::resize_spec(&args.image)?;
    let jobs = args
        .jobs
        .map_or_else(config::available_cpus, |j| j as usize);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating output directory {}", args.out.display()))?;
    let out = args
        .out
        .canonicalize()
        .with_context(|| format!("resolving {}", args.out.display()))?;
    let plan = plan(&args.inputs, &out);
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
    let worker = || {
        while let Some(job) = order
            .get(next.fetch_add(1, Ordering::Relaxed))
            .map(|&i| &plan.jobs[i])
        {
            let result = process_file(job, &dirs, &spec);
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
        // No more threads than files: a thread with nothing to do only costs its start.
        for i in 0..jobs.clamp(1, plan.jobs.len().max(1)) {
            std::thread::Builder::new()
                .name(format!("qp-resize-{i}"))
                .spawn_scoped(s, worker)
                .context("starting worker threads")?;
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
        args.out.display()
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
                        Ok(e) if e.file_type().is_file() && has_jpeg_extension(e.path()) => {
                            let rel = e.path().strip_prefix(input).unwrap_or(e.path());
                            let real = real_dir.join(rel);
                            let bytes = e.metadata().map_or(0, |m| m.len());
                            let path = e.path().to_path_buf();
                            push(&mut plan, path, real, rel.to_path_buf(), bytes);
                        }
                        // A link to a file is converted under the link's name (datasets are
                        // often link farms); links to directories are not followed, so a walk
                        // never loops. A dangling link is a failure of its own.
                        Ok(e) if e.path_is_symlink() && has_jpeg_extension(e.path()) => {
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

/// `path` with links resolved, or as given when that fails (it is then only a name to compare).
fn real_path(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

fn is_same(a: &Path, b: &Path) -> bool {
    a.canonicalize().is_ok_and(|a| a == b)
}

fn has_jpeg_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| JPEG_EXTENSIONS.iter().any(|j| e.eq_ignore_ascii_case(j)))
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

/// Converts one file; returns the bytes written.
fn process_file(job: &Job, dirs: &OutDirs, spec: &ResizeSpec) -> Result<usize> {
    let data = std::fs::read(&job.input).context("reading")?;
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
}

impl OutDirs {
    fn new(out: PathBuf) -> Self {
        OutDirs {
            out,
            checked: Mutex::new(HashMap::new()),
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
        tmp_name.push(format!(".qp-{}.tmp", std::process::id()));
        let tmp = real_parent.join(tmp_name);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
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
        for yes in ["a.jpg", "b.JPEG", "c.Jpe", "d.jfif"] {
            assert!(has_jpeg_extension(Path::new(yes)), "{yes}");
        }
        for no in ["a.png", "b", "c.jpg.txt"] {
            assert!(!has_jpeg_extension(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn largest_inputs_are_converted_first_and_ties_keep_plan_order() {
        let job = |name: &str, bytes| Job {
            input: PathBuf::from(name),
            real: PathBuf::from(name),
            rel: PathBuf::from(name),
            bytes,
        };
        let jobs = [job("a", 10), job("b", 300), job("c", 10), job("d", 20)];
        assert_eq!(largest_first(&jobs), vec![1, 3, 0, 2]);
        assert!(largest_first(&[]).is_empty());
    }
}
