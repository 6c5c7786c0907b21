//! Listing in key order, with the first level listed concurrently.
//!
//! ```text
//!  per target: ListObjectsV2 Delimiter=/ ──► segments in key order ──► the consumer, in order
//!                 │ objects at this level ──► Objects(page part)
//!                 └ each folder ──► Folder: its own full listing, started at once (runs ahead)
//! ```
//!
//! The consumer reads every key in S3's order (UTF-8 byte order, as `String` compares), so the
//! last key it took is a correct `--start-after` for the next run, while up to [`LIST_AHEAD`]
//! folders per target (and every target) are listed at the same time. Memory stays bounded:
//! each running-ahead listing holds at most [`PAGES_AHEAD`] pages.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::aws::listing::{ListError, Listed, Lister, PageRequest};
use crate::config::enqueue::Target;

/// Folders (per target) whose listing may run ahead of the consumer.
pub const LIST_AHEAD: usize = 8;
/// Pages a running-ahead listing may hold.
const PAGES_AHEAD: usize = 2;

type PageRx = mpsc::Receiver<Result<Vec<Listed>, ListError>>;

enum Segment {
    Objects(Vec<Listed>),
    Folder(PageRx),
    Failed(ListError),
}

/// The keys of every target, in order: targets as given (sorted by the config), keys in S3's
/// order within each.
pub struct Listing {
    targets: VecDeque<(Arc<str>, mpsc::Receiver<Segment>)>,
    folder: Option<PageRx>,
    ready: VecDeque<Listed>,
}

/// Starts listing every target now; [`Listing::next`] hands out the keys.
pub fn list<L: Lister>(lister: Arc<L>, targets: &[Target], start_after: Option<&str>) -> Listing {
    let targets = targets
        .iter()
        .map(|t| {
            let (tx, rx) = mpsc::channel(LIST_AHEAD);
            tokio::spawn(level(
                lister.clone(),
                t.clone(),
                start_after.map(str::to_string),
                tx,
            ));
            (Arc::from(t.bucket.as_str()), rx)
        })
        .collect();
    Listing {
        targets,
        folder: None,
        ready: VecDeque::new(),
    }
}

impl Listing {
    /// The next object and its bucket; None when every target is done.
    pub async fn next(&mut self) -> Result<Option<(Arc<str>, Listed)>, ListError> {
        loop {
            let Some((bucket, segments)) = self.targets.front_mut() else {
                return Ok(None);
            };
            if let Some(obj) = self.ready.pop_front() {
                return Ok(Some((bucket.clone(), obj)));
            }
            if let Some(folder) = &mut self.folder {
                match folder.recv().await {
                    Some(Ok(page)) => self.ready.extend(page),
                    Some(Err(e)) => return Err(e),
                    None => self.folder = None,
                }
                continue;
            }
            match segments.recv().await {
                Some(Segment::Objects(objects)) => self.ready.extend(objects),
                Some(Segment::Folder(rx)) => self.folder = Some(rx),
                Some(Segment::Failed(e)) => return Err(e),
                None => {
                    self.targets.pop_front();
                }
            }
        }
    }
}

/// Lists one target's first level (Delimiter=/) and turns it into segments in key order.
async fn level<L: Lister>(
    lister: Arc<L>,
    target: Target,
    start_after: Option<String>,
    tx: mpsc::Sender<Segment>,
) {
    let from = start_after
        .as_deref()
        .map(|s| level_start_after(&target.prefix, s));
    let mut token: Option<String> = None;
    loop {
        let page = lister
            .page(PageRequest {
                bucket: &target.bucket,
                prefix: &target.prefix,
                delimiter: Some("/"),
                start_after: from.as_deref(),
                token: token.as_deref(),
            })
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Segment::Failed(e)).await;
                return;
            }
        };
        for part in interleave(page.objects, page.prefixes) {
            let segment = match part {
                Part::Objects(mut objects) => {
                    if let Some(s) = &start_after {
                        objects.retain(|o| o.key.as_str() > s.as_str());
                    }
                    Segment::Objects(objects)
                }
                Part::Folder(folder) => {
                    if start_after
                        .as_deref()
                        .is_some_and(|s| !folder_reaches(&folder, s))
                    {
                        continue;
                    }
                    let (ftx, frx) = mpsc::channel(PAGES_AHEAD);
                    tokio::spawn(folder_listing(
                        lister.clone(),
                        target.bucket.clone(),
                        folder,
                        start_after.clone(),
                        ftx,
                    ));
                    Segment::Folder(frx)
                }
            };
            // The consumer is gone (shutdown, or an error elsewhere): stop listing.
            if tx.send(segment).await.is_err() {
                return;
            }
        }
        match page.next {
            Some(t) => token = Some(t),
            None => return,
        }
    }
}

/// Every key under `folder`, page by page.
async fn folder_listing<L: Lister>(
    lister: Arc<L>,
    bucket: String,
    folder: String,
    start_after: Option<String>,
    tx: mpsc::Sender<Result<Vec<Listed>, ListError>>,
) {
    let from = start_after.filter(|s| s.as_str() > folder.as_str());
    let mut token: Option<String> = None;
    loop {
        let page = lister
            .page(PageRequest {
                bucket: &bucket,
                prefix: &folder,
                delimiter: None,
                start_after: from.as_deref(),
                token: token.as_deref(),
            })
            .await;
        let (mut objects, next) = match page {
            Ok(p) => (p.objects, p.next),
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if let Some(s) = &from {
            objects.retain(|o| o.key.as_str() > s.as_str());
        }
        if tx.send(Ok(objects)).await.is_err() {
            return;
        }
        match next {
            Some(t) => token = Some(t),
            None => return,
        }
    }
}

/// A page of a delimited listing, objects and folders merged back into key order.
#[derive(Debug, PartialEq, Eq)]
enum Part {
    Objects(Vec<Listed>),
    Folder(String),
}

fn interleave(objects: Vec<Listed>, folders: Vec<String>) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut run = Vec::new();
    let mut folders = folders.into_iter().peekable();
    for o in objects {
        while let Some(f) = folders.next_if(|f| f.as_str() < o.key.as_str()) {
            if !run.is_empty() {
                parts.push(Part::Objects(std::mem::take(&mut run)));
            }
            parts.push(Part::Folder(f));
        }
        run.push(o);
    }
    if !run.is_empty() {
        parts.push(Part::Objects(run));
    }
    parts.extend(folders.map(Part::Folder));
    parts
}

/// The StartAfter of a delimited listing of `prefix` resuming after key `s`. When `s` lies in a
/// folder, that folder must still be listed, and S3 emulators differ on whether a folder sorting
/// before StartAfter is returned (moto drops it): start just before the folder instead, and
/// let the client-side filter drop what lies before `s`.
fn level_start_after(prefix: &str, s: &str) -> String {
    match s.strip_prefix(prefix).and_then(|rest| rest.find('/')) {
        Some(slash) => s[..prefix.len() + slash].to_string(),
        None => s.to_string(),
    }
}

/// Whether a folder can hold keys after `s`: it sorts after `s`, or `s` lies inside it.
fn folder_reaches(folder: &str, s: &str) -> bool {
    folder > s || s.starts_with(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str) -> Listed {
        Listed {
            key: key.into(),
            size: 1,
            etag: "e".into(),
            last_modified_ms: 0,
        }
    }

    #[test]
    fn pages_interleave_in_key_order() {
        let parts = interleave(
            vec![obj("a.jpg"), obj("b.jpg"), obj("c.jpg")],
            vec!["a/".into(), "b0/".into(), "d/".into(), "e/".into()],
        );
        assert_eq!(
            parts,
            [
                Part::Objects(vec![obj("a.jpg")]),
                Part::Folder("a/".into()),
                Part::Objects(vec![obj("b.jpg")]),
                // '0' sorts before 'c'.
                Part::Folder("b0/".into()),
                Part::Objects(vec![obj("c.jpg")]),
                Part::Folder("d/".into()),
                Part::Folder("e/".into()),
            ]
        );
        assert_eq!(interleave(vec![], vec![]), []);
    }

    #[test]
    fn resuming_inside_a_folder_lists_that_folder() {
        assert_eq!(level_start_after("", "a/b/c.jpg"), "a");
        assert_eq!(level_start_after("p/", "p/x y/z.jpg"), "p/x y");
        assert_eq!(level_start_after("p/", "p/z.jpg"), "p/z.jpg");
        assert_eq!(level_start_after("p/", "o/z.jpg"), "o/z.jpg");
        assert!(folder_reaches("a/", "a/b/c.jpg"));
        assert!(folder_reaches("b/", "a/b/c.jpg"));
        assert!(!folder_reaches("a-b/", "a/b/c.jpg"));
        assert!(!folder_reaches("a/a/", "a/b/c.jpg"));
    }
}
