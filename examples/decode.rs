//! Decodes image files with qp's image core at one scale (JPEG; other formats at full size) and
//! nothing else (no resize, no encode):
//! bench/imagenet.sh times it against Pillow's decode.
//!
//!     cargo run --release --example decode -- SCALE FILE_OR_DIR...    (SCALE: N of N/8)
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(scale) = args.next().and_then(|s| s.parse::<u8>().ok()) else {
        eprintln!("usage: decode SCALE(1-8) FILE_OR_DIR...");
        return ExitCode::from(2);
    };
    let mut files = Vec::new();
    for a in args {
        let p = std::path::PathBuf::from(a);
        if p.is_dir() {
            let mut v: Vec<_> = std::fs::read_dir(&p)
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            v.sort();
            files.extend(v);
        } else {
            files.push(p);
        }
    }
    let (mut ok, mut failed, mut pixels) = (0u64, 0u64, 0u64);
    for f in &files {
        let decoded = std::fs::read(f)
            .map_err(|e| e.to_string())
            .and_then(|d| qp::image::decode_at(&d, scale, u64::MAX).map_err(|e| e.to_string()));
        match decoded {
            Ok(p) => {
                ok += 1;
                pixels += u64::from(p.width) * u64::from(p.height);
            }
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e}", f.display());
            }
        }
    }
    eprintln!("{ok} decoded ({pixels} pixels), {failed} failed");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
