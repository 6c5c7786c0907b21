//! `qp resize` end to end: the real binary on files and directories.

use std::fs;
use std::path::Path;

use crate::util::{
    bad_fixtures, decode, fixture, fixtures, good_fixtures, qp, run, stderr, stdout, tempdir,
};

fn dims(path: &Path) -> (u32, u32) {
    let (w, h, _, _) =
        decode(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    (w, h)
}

#[test]
fn a_batch_with_bad_files_converts_the_rest_and_exits_1() {
    batch_with_bad_files(&[]);
}

/// One thread and more files: the read-ahead opens the files and hands them over.
#[test]
fn a_batch_read_ahead_of_one_thread_converts_the_same() {
    batch_with_bad_files(&["--jobs", "1"]);
}

fn batch_with_bad_files(args: &[&str]) {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let o = run(qp()
        .arg("resize")
        .arg(fixtures())
        .args(args)
        .arg("--out")
        .arg(&out));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for name in good_fixtures() {
        assert_eq!(dims(&out.join(&name)), (224, 224), "{name}");
    }
    for name in bad_fixtures() {
        let line = format!("{}: ", fixture(&name).display());
        assert!(err.contains(&line), "no `{line}` line in:\n{err}");
        assert!(!out.join(&name).exists(), "{name} should have no output");
    }
    assert!(
        err.contains(&format!("{} ok, 5 failed", good_fixtures().len())),
        "{err}"
    );
    assert!(err.contains("images/s"), "{err}");
    // Each failure names its cause in words a user understands.
    for cause in [
        "not an image: the file is empty",
        "unsupported: HEIC image",
        "truncated",
    ] {
        assert!(err.contains(cause), "missing `{cause}` in:\n{err}");
    }
    assert!(stdout(&o).is_empty(), "nothing on stdout when piped");
}

#[test]
fn all_good_files_exit_0_with_several_sizes() {
    let tmp = tempdir();
    let out = tmp.path().join("o");
    let o = run(qp()
        .arg("resize")
        .args([fixture("baseline_420.jpg"), fixture("odd_333x777.jpg")])
        .args([
            "--size", "224x224", "--size", "299x299", "--mode", "pad", "--jobs", "2",
        ])
        .arg("--out")
        .arg(&out));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for size in ["224x224", "299x299"] {
        let n: u32 = size[..3].parse().unwrap();
        for name in ["baseline_420.jpg", "odd_333x777.jpg"] {
            assert_eq!(dims(&out.join(size).join(name)), (n, n));
        }
    }
    assert!(!out.join("baseline_420.jpg").exists());
}

#[test]
fn sizes_and_mode_come_from_the_environment_too() {
    let tmp = tempdir();
    let o = run(qp()
        .arg("resize")
        .arg(fixture("baseline_444.jpg"))
        .arg("--out")
        .arg(tmp.path())
        .env("QP_SIZES", "100x50,64x64")
        .env("QP_MODE", "fit"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(dims(&tmp.path().join("100x50/baseline_444.jpg")), (83, 50));
    assert_eq!(dims(&tmp.path().join("64x64/baseline_444.jpg")), (64, 38));
}

#[test]
fn directories_are_mirrored_and_clashes_renamed() {
    let tmp = tempdir();
    let src = tmp.path().join("in");
    fs::create_dir_all(src.join("a/deep/er")).unwrap();
    fs::create_dir_all(src.join("b")).unwrap();
    fs::copy(fixture("baseline_420.jpg"), src.join("a/deep/er/x.jpg")).unwrap();
    fs::copy(fixture("baseline_422.jpg"), src.join("b/x.JPG")).unwrap();
    fs::write(src.join("b/notes.txt"), "not an image").unwrap();
    let other = tmp.path().join("other");
    fs::create_dir_all(&other).unwrap();
    fs::copy(fixture("baseline_444.jpg"), other.join("x.JPG")).unwrap();

    let out = tmp.path().join("out");
    let o = run(qp()
        .arg("resize")
        .arg(&src)
        .arg(other.join("x.JPG"))
        .arg(src.join("b/x.JPG"))
        .arg("--out")
        .arg(&out));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(dims(&out.join("a/deep/er/x.jpg")), (224, 224));
    assert_eq!(dims(&out.join("b/x.JPG")), (224, 224));
    // other/x.JPG wanted OUT/x.JPG: free, so it gets it. b/x.JPG named again is not redone.
    assert_eq!(dims(&out.join("x.JPG")), (224, 224));
    assert!(!out.join("notes.txt").exists() && !out.join("b/notes.txt").exists());
    assert!(stderr(&o).contains("3 ok, 0 failed"), "{}", stderr(&o));

    // Two files with the same name: the second in argument order gets a suffix, with a note.
    let out2 = tmp.path().join("out2");
    let o = run(qp()
        .arg("resize")
        .arg(src.join("a/deep/er/x.jpg"))
        .arg(src.join("b/x.JPG"))
        .arg(other.join("x.JPG"))
        .arg("--out")
        .arg(&out2));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out2.join("x.jpg").exists());
    assert!(out2.join("x.JPG").exists());
    assert!(out2.join("x_2.JPG").exists());
    assert!(stderr(&o).contains("writing x_2.JPG"), "{}", stderr(&o));
}

#[test]
fn never_overwrites_an_input_nor_walks_its_own_output() {
    let tmp = tempdir();
    let dir = tmp.path().join("photos");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(fixture("baseline_420.jpg"), dir.join("x.jpg")).unwrap();
    let before = fs::read(dir.join("x.jpg")).unwrap();

    // --out is the input's own directory: the output would replace the input.
    let o = run(qp()
        .arg("resize")
        .arg(dir.join("x.jpg"))
        .arg("--out")
        .arg(&dir));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refusing to overwrite the input"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(dir.join("x.jpg")).unwrap(), before);

    // --out inside the walked directory: walked twice, the outputs are never taken as inputs.
    for _ in 0..2 {
        let o = run(qp()
            .arg("resize")
            .arg(&dir)
            .arg("--out")
            .arg(dir.join("small")));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stderr(&o).contains("1 ok, 0 failed"), "{}", stderr(&o));
    }
    assert!(!dir.join("small/small").exists());
}

#[cfg(unix)]
#[test]
fn links_to_files_in_a_walked_directory_are_converted_and_dangling_ones_reported() {
    use std::os::unix::fs::symlink;
    let tmp = tempdir();
    let store = tmp.path().join("store");
    let src = tmp.path().join("in");
    fs::create_dir_all(&store).unwrap();
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::copy(fixture("baseline_420.jpg"), store.join("a.jpg")).unwrap();
    fs::copy(fixture("baseline_444.jpg"), src.join("sub/b.jpg")).unwrap();
    symlink(store.join("a.jpg"), src.join("linked.jpg")).unwrap();
    symlink(store.join("gone.jpg"), src.join("dangling.jpg")).unwrap();
    // A link back up the tree: not followed, so the walk ends.
    symlink(&src, src.join("sub/loop")).unwrap();
    let out = tmp.path().join("out");
    let o = run(qp().arg("resize").arg(&src).arg("--out").arg(&out));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(dims(&out.join("linked.jpg")), (224, 224));
    assert_eq!(dims(&out.join("sub/b.jpg")), (224, 224));
    assert!(!out.join("sub/loop").exists());
    let err = stderr(&o);
    assert!(err.contains("dangling.jpg: link target"), "{err}");
    assert!(err.contains("2 ok, 1 failed"), "{err}");
    assert!(store.join("a.jpg").exists() && !out.join("dangling.jpg").exists());
}

#[cfg(unix)]
#[test]
fn a_link_inside_out_cannot_lead_outside_it() {
    let tmp = tempdir();
    let src = tmp.path().join("in");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::copy(fixture("baseline_420.jpg"), src.join("sub/x.jpg")).unwrap();
    let out = tmp.path().join("out");
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir_all(&out).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("sub")).unwrap();
    let o = run(qp().arg("resize").arg(&src).arg("--out").arg(&out));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("outside the output directory"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn missing_inputs_fail_alone() {
    let tmp = tempdir();
    let o = run(qp()
        .arg("resize")
        .arg(tmp.path().join("nope.jpg"))
        .arg(fixture("tiny_1x1.jpg"))
        .arg("--out")
        .arg(tmp.path().join("o")));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("nope.jpg: No such file"),
        "{}",
        stderr(&o)
    );
    assert!(tmp.path().join("o/tiny_1x1.jpg").exists());
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["resize"],
        vec!["resize", "a.jpg", "--size", "224"],
        vec!["resize", "a.jpg", "--mode", "stretch"],
        vec!["resize", "a.jpg", "--quality", "101"],
        vec!["frobnicate"],
    ] {
        let o = run(qp().args(&args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    let o = run(qp().args(["resize", "a.jpg"]).env("QP_SIZES", "big"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("'big' is not a size"), "{}", stderr(&o));
}

#[test]
fn version_and_help() {
    let o = run(qp().arg("--version"));
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o).trim(),
        format!("qp {}", env!("CARGO_PKG_VERSION"))
    );
    let o = run(qp().arg("--help"));
    assert!(stdout(&o).contains("Examples:"));
    for sub in ["scale", "work", "resize"] {
        let o = run(qp().args([sub, "--help"]));
        assert_eq!(o.status.code(), Some(0), "{sub}");
        let help = stdout(&o);
        assert!(
            help.contains("Example"),
            "{sub} help has no example:\n{help}"
        );
        assert!(help.contains("QP_"), "{sub} help names no variable");
    }
}

/// Busybox dispatch with the real binary: called `bootstrap`, it is the scaler.
#[test]
fn the_binary_named_bootstrap_is_the_scaler() {
    let tmp = tempdir();
    let bootstrap = tmp.path().join("bootstrap");
    fs::copy(crate::util::qp_binary(), &bootstrap).unwrap();
    let mut cmd = std::process::Command::new(&bootstrap);
    crate::util::clean_env(&mut cmd);
    let o = run(cmd.arg("--help"));
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("--dry-run"), "{}", stdout(&o));
}
