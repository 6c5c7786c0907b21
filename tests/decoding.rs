//! Every JPEG decoded as libjpeg-turbo decodes it, with one verdict at every scale.
//!
//! Fixtures are made here with libjpeg-turbo's own `cjpeg` and `jpegtran` (Debian's
//! libjpeg-turbo-progs, which scripts/setup installs) from a synthetic picture, or are small
//! files of qp's own making in `tests/jpeg-fixtures/` (its README says how). Each is decoded by
//! qp at 8/8, 6/8, 5/8, 4/8, 2/8 and 1/8 (`decode_at`, the decode step of the pipeline) and
//! compared with `djpeg -scale N/8`, libjpeg-turbo's decode at the same scale.

use std::io::Write;
use std::process::{Command, Stdio};

use qp::image::{self, Format, ImageError, ResizeSpec};

use crate::util::{psnr, rgb};

/// A file of `tests/jpeg-fixtures/` (apart from `tests/fixtures/`, which the resize and work
/// tests convert wholesale).
fn jpeg_fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/jpeg-fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const SCALES: [u8; 6] = [8, 6, 5, 4, 2, 1];

/// A 160x120 photo-like picture: smooth gradients, hard edges and a mild fine texture, enough
/// for the sampling and scan layouts below to matter. (A full-amplitude texture at the
/// Nyquist limit is no photo: there the two 4x4 IDCTs, qp's and libjpeg's, alias differently.)
fn ppm(w: usize, h: usize) -> Vec<u8> {
    let mut out = format!("P6\n{w} {h}\n255\n").into_bytes();
    for y in 0..h {
        for x in 0..w {
            let t = ((x * 7 + y * 3) % 23) as u8;
            let edge = if (x / 20 + y / 15) % 2 == 0 { 60 } else { 0 };
            out.extend_from_slice(&[
                (x * 255 / w) as u8 / 2 + edge + t / 2,
                (y * 255 / h) as u8 / 2 + 40 + t,
                (((x + y) * 255) / (w + h)) as u8 / 2 + edge,
            ]);
        }
    }
    out
}

fn tool(name: &str, args: &[&str], input: &[u8]) -> (Vec<u8>, String) {
    let mut child = Command::new(name)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name} (libjpeg-turbo-progs; scripts/setup): {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let o = child.wait_with_output().unwrap();
    (o.stdout, String::from_utf8_lossy(&o.stderr).into_owned())
}

fn cjpeg(args: &[&str]) -> Vec<u8> {
    let (jpeg, err) = tool("cjpeg", args, &ppm(160, 120));
    assert!(jpeg.starts_with(&[0xFF, 0xD8]), "cjpeg {args:?}: {err}");
    jpeg
}

/// cjpeg with a scan script (`-scans`), written to a temporary file.
fn cjpeg_scans(args: &[&str], script: &str) -> Vec<u8> {
    let dir = crate::util::tempdir();
    let path = dir.path().join("scans.txt");
    std::fs::write(&path, script).unwrap();
    let mut all = args.to_vec();
    all.extend(["-scans", path.to_str().unwrap()]);
    cjpeg(&all)
}

/// libjpeg-turbo's decode at `scale`/8 as RGB (gray expanded), with its warnings.
fn djpeg(jpeg: &[u8], scale: u8) -> (u32, u32, Vec<u8>, String) {
    let (pnm, err) = tool("djpeg", &["-scale", &format!("{scale}/8"), "-pnm"], jpeg);
    let text = |i: &mut usize| {
        while pnm[*i].is_ascii_whitespace() {
            *i += 1;
        }
        let start = *i;
        while !pnm[*i].is_ascii_whitespace() {
            *i += 1;
        }
        String::from_utf8_lossy(&pnm[start..*i]).into_owned()
    };
    assert!(pnm.len() > 2, "djpeg gave nothing: {err}");
    let mut i = 0;
    let magic = text(&mut i);
    let (w, h) = (text(&mut i).parse().unwrap(), text(&mut i).parse().unwrap());
    let _max = text(&mut i);
    let body = &pnm[i + 1..];
    let rgb = if magic == "P5" {
        body.iter().flat_map(|&v| [v, v, v]).collect()
    } else {
        body.to_vec()
    };
    (w, h, rgb, err)
}

/// qp's decode of `data` matches libjpeg-turbo's at every scale: the same size, and at least
/// `full_db` at full scale (where qp runs libjpeg-turbo itself) and 30 dB at the others (where
/// qp's own decoder may take over).
fn matches_libjpeg(name: &str, data: &[u8], full_db: f64) {
    for scale in SCALES {
        let ours = image::decode_at(data, scale, u64::MAX)
            .unwrap_or_else(|e| panic!("{name} at {scale}/8: {e}"));
        let (w, h, reference, warnings) = djpeg(data, scale);
        assert_eq!((ours.width, ours.height), (w, h), "{name} at {scale}/8");
        let db = psnr(&rgb(&ours), &reference);
        let bound = if scale == 8 { full_db } else { 30.0 };
        assert!(
            db >= bound,
            "{name} at {scale}/8: {db:.1} dB against djpeg ({warnings})"
        );
    }
}

/// The same verdict at every scale, and the whole pipeline agrees.
fn refused_everywhere(name: &str, data: &[u8], want: &ImageError) {
    for scale in SCALES {
        let err = image::decode_at(data, scale, u64::MAX)
            .map(|p| format!("{}x{}", p.width, p.height))
            .expect_err(&format!("{name} at {scale}/8 decoded"));
        assert_eq!(&err, want, "{name} at {scale}/8");
    }
    let err = image::process(data, &ResizeSpec::default()).expect_err(name);
    assert_eq!(&err, want, "{name} through process");
}

#[test]
fn non_interleaved_scans_decode_at_every_scale() {
    // One scan per component, luma sampled 2x2 and 1x2 (the green stripes).
    for sample in ["2x2,1x1,1x1", "1x2,1x1,1x1", "2x1,1x1,1x1"] {
        let jpeg = cjpeg_scans(&["-quality", "90", "-sample", sample], "0;\n1;\n2;\n");
        matches_libjpeg(&format!("non-interleaved {sample}"), &jpeg, 45.0);
    }
}

#[test]
fn chroma_finer_than_luma_decodes() {
    for sample in ["1x1,2x2,1x1", "1x1,2x1,2x1", "1x2,2x2,1x1"] {
        let jpeg = cjpeg(&["-quality", "90", "-sample", sample]);
        matches_libjpeg(&format!("sampling {sample}"), &jpeg, 45.0);
    }
}

#[test]
fn rgb_coded_arithmetic_and_progressive_decode() {
    let cases: [(&str, &[&str]); 6] = [
        ("RGB components", &["-rgb", "-quality", "90"]),
        ("arithmetic", &["-arithmetic", "-quality", "90"]),
        ("arithmetic progressive", &["-arithmetic", "-progressive"]),
        ("progressive", &["-progressive", "-quality", "85"]),
        (
            "4:2:2 restart markers",
            &["-sample", "2x1", "-restart", "1"],
        ),
        ("gray", &["-grayscale"]),
    ];
    for (name, args) in cases {
        matches_libjpeg(name, &cjpeg(args), 45.0);
    }
}

/// Progressive files exercise qp's own progressive decoder at 1/2..1/8: successive
/// approximation of DC and AC (refinement scans), bands split in pieces, non-interleaved DC,
/// end-of-band runs cut by restart markers, every sampling.
#[test]
fn progressive_scripts_decode_at_every_scale() {
    let split = "0: 0 0 0 2;\n1: 0 0 0 0;\n2: 0 0 0 0;\n0: 0 0 2 1;\n0: 0 0 1 0;\n\
                 0: 1 2 0 0;\n0: 3 9 0 3;\n0: 3 9 3 2;\n0: 3 9 2 1;\n0: 3 9 1 0;\n\
                 0: 10 63 0 1;\n0: 10 63 1 0;\n1: 1 63 0 2;\n1: 1 63 2 1;\n1: 1 63 1 0;\n\
                 2: 1 63 0 0;\n";
    let gray = "0: 0 0 0 1;\n0: 1 5 0 2;\n0: 6 63 0 2;\n0: 1 63 2 1;\n0: 0 0 1 0;\n\
                0: 1 63 1 0;\n";
    for sample in ["2x2,1x1,1x1", "1x1,1x1,1x1", "2x1,1x1,1x1", "1x2,2x2,1x1"] {
        for restart in ["0", "1", "3B"] {
            let args = ["-quality", "92", "-sample", sample, "-restart", restart];
            let name = format!("progressive {sample} restart {restart}");
            let simple = cjpeg(&[&args[..], &["-progressive"]].concat());
            let split = cjpeg_scans(&args, split);
            for (name, jpeg) in [
                (name.clone(), simple),
                (format!("{name}, split bands"), split),
            ] {
                matches_libjpeg(&name, &jpeg, 45.0);
                assert_own_decoder_takes(&name, &jpeg);
            }
        }
    }
    let jpeg = cjpeg_scans(&["-grayscale", "-restart", "2"], gray);
    matches_libjpeg("progressive gray", &jpeg, 45.0);
    assert_own_decoder_takes("progressive gray", &jpeg);
    exact_at_one_eighth("progressive gray", &jpeg);
    let jpeg = cjpeg(&["-grayscale", "-progressive", "-restart", "1"]);
    exact_at_one_eighth("progressive gray, cjpeg's script", &jpeg);
    // And baseline files, whose 1/8 decode has a loop of its own.
    for restart in ["0", "1", "3B"] {
        let jpeg = cjpeg(&["-grayscale", "-quality", "92", "-restart", restart]);
        exact_at_one_eighth(&format!("baseline gray, restart {restart}"), &jpeg);
    }
}

/// At 1/8 a block is its DC term alone, which qp rounds as libjpeg's 1x1 IDCT does: for a
/// gray file (no colour conversion, whose rounding differs by 1 here and there) qp's own
/// decoder gives libjpeg-turbo's picture exactly, so one quantization step off in any
/// block shows.
fn exact_at_one_eighth(name: &str, jpeg: &[u8]) {
    let ours = image::scaled::decode_scaled(jpeg, 1, u64::MAX)
        .unwrap_or_else(|| panic!("{name}: qp's decoder declined at 1/8"));
    assert_eq!(ours.channels, 1, "{name}");
    let (w, h, reference, _) = djpeg(jpeg, 1);
    assert_eq!((ours.width, ours.height), (w, h), "{name}");
    let reference: Vec<u8> = reference.iter().step_by(3).copied().collect();
    let differ = ours
        .pixels
        .iter()
        .zip(&reference)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        differ, 0,
        "{name} at 1/8: {differ} samples differ from djpeg's"
    );
}

/// qp's own decoder, not libjpeg-turbo after it declined, made the reduced-scale pictures.
fn assert_own_decoder_takes(name: &str, jpeg: &[u8]) {
    for eighths in image::scaled::EIGHTHS {
        assert!(
            image::scaled::decode_scaled(jpeg, eighths, u64::MAX).is_some(),
            "{name}: qp's decoder declined at {eighths}/8"
        );
    }
}

/// Where each SOS marker starts.
fn scan_starts(jpeg: &[u8]) -> Vec<usize> {
    jpeg.windows(2)
        .enumerate()
        .filter(|(_, w)| *w == [0xFF, 0xDA])
        .map(|(i, _)| i)
        .collect()
}

/// A progressive file with a scan taken out or damaged gets libjpeg-turbo's verdict at every
/// scale, whichever decoder the scale picks.
#[test]
fn damaged_progressive_files_get_one_verdict() {
    let prog = cjpeg(&["-progressive", "-quality", "90"]);
    let sos = scan_starts(&prog);
    assert!(
        sos.len() >= 8,
        "cjpeg -progressive wrote {} scans",
        sos.len()
    );
    // A refinement scan cut short, an EOI put after it.
    let last = sos[sos.len() - 1];
    let mut cut = prog[..last + (prog.len() - last) / 2].to_vec();
    cut.extend_from_slice(&[0xFF, 0xD9]);
    // Scans taken out: later refinements then contradict what came before (libjpeg's "bogus
    // progression"), or tables go missing.
    let mut cases = vec![("refinement scan cut", cut)];
    for i in [1, 2, sos.len() - 3] {
        let removed = [&prog[..sos[i]], &prog[sos[i + 1]..]].concat();
        cases.push(("scan removed", removed));
    }
    // Bytes flipped in each scan's data.
    for &at in &sos {
        let mut bad = prog.clone();
        bad[at + 20] ^= 0x5A;
        bad[at + 21] ^= 0xA5;
        cases.push(("scan data flipped", bad));
    }
    let mut refused = 0;
    for (i, (what, data)) in cases.iter().enumerate() {
        let name = format!("{what} (case {i})");
        match image::decode_at(data, 8, u64::MAX) {
            Err(err) => {
                refused_everywhere(&name, data, &err);
                refused += 1;
            }
            Ok(_) => {
                for scale in SCALES {
                    image::decode_at(data, scale, u64::MAX)
                        .unwrap_or_else(|e| panic!("{name} at {scale}/8: {e}"));
                }
            }
        }
    }
    assert!(refused >= 4, "only {refused} of {} refused", cases.len());
}

/// The committed fixtures' gradient (tests/jpeg-fixtures/README.md).
fn gradient(x: usize, y: usize) -> [u8; 3] {
    [(x * 5) as u8, (y * 8) as u8, ((x + y) * 3) as u8]
}

#[test]
fn lossless_8bit_decodes_exactly_at_full_size() {
    let data = jpeg_fixture("lossless_8bit.jpg");
    let want: Vec<u8> = (0..32)
        .flat_map(|y| (0..48).flat_map(move |x| gradient(x, y)))
        .collect();
    // libjpeg does not scale lossless files: every scale gets the full picture.
    for scale in SCALES {
        let p = image::decode_at(&data, scale, u64::MAX).unwrap();
        assert_eq!((p.width, p.height), (48, 32), "at {scale}/8");
        assert_eq!(rgb(&p), want, "at {scale}/8");
    }
    let out = image::process(&data, &ResizeSpec::default()).unwrap();
    assert_eq!((out[0].width, out[0].height), (224, 224));
}

#[test]
fn ycck_decodes_to_pillows_cmyk_conversion() {
    let data = jpeg_fixture("ycck_adobe.jpg");
    // tests/jpeg-fixtures/ycck.c: C = 5x, M = 7y, Y = 60, K = 2(x + y) (ink, 0..255).
    let want: Vec<u8> = (0..32usize)
        .flat_map(|y| {
            (0..48usize).flat_map(move |x| {
                let k = 255 - 2 * (x + y) as u32;
                [5 * x, 7 * y, 60].map(|c| ((255 - c as u32) * k / 255) as u8)
            })
        })
        .collect();
    let full = image::decode_at(&data, 8, u64::MAX).unwrap();
    assert_eq!((full.width, full.height), (48, 32));
    let db = psnr(&rgb(&full), &want);
    assert!(db > 35.0, "{db:.1} dB against the formula");
    for scale in [4, 2, 1] {
        let p = image::decode_at(&data, scale, u64::MAX).unwrap();
        let n = usize::from(8 / scale);
        assert_eq!(
            (p.width as usize, p.height as usize),
            (48 / n, 32 / n),
            "at {scale}/8"
        );
    }
}

#[test]
fn unsupported_precisions_are_named() {
    refused_everywhere(
        "12-bit",
        &jpeg_fixture("lossy_12bit.jpg"),
        &ImageError::Unsupported("12-bit JPEG".into()),
    );
    refused_everywhere(
        "16-bit lossless",
        &jpeg_fixture("lossless_16bit.jpg"),
        &ImageError::Unsupported("lossless JPEG with 16-bit samples".into()),
    );
}

/// Inserts `bytes` at the start of the segment of the first `marker` (its 0xFF).
fn insert_before(data: &[u8], marker: u8, bytes: &[u8]) -> Vec<u8> {
    let at = data
        .windows(2)
        .position(|w| w == [0xFF, marker])
        .expect("marker present");
    [&data[..at], bytes, &data[at..]].concat()
}

#[test]
fn what_libjpeg_accepts_with_a_warning_decodes() {
    let base = cjpeg(&["-quality", "90"]);
    // A truncated APP14 (too short to hold Adobe's fields), as some cameras write.
    let short_app14 = insert_before(&base, 0xDB, b"\xFF\xEE\x00\x08Adobe\x00");
    matches_libjpeg("short APP14", &short_app14, 45.0);
    // Stray bytes between two marker segments: libjpeg warns "extraneous bytes" and goes on.
    let stray = insert_before(&base, 0xC4, b"\x00\x12\x34");
    let (_, _, _, warnings) = djpeg(&stray, 8);
    assert!(warnings.contains("extraneous"), "{warnings}");
    matches_libjpeg("extraneous bytes", &stray, 45.0);
    // The EOI marker missing after complete data, baseline and progressive.
    matches_libjpeg("no EOI", &base[..base.len() - 2], 45.0);
    let prog = cjpeg(&["-progressive"]);
    matches_libjpeg("progressive, no EOI", &prog[..prog.len() - 2], 45.0);
}

#[test]
fn truncated_data_is_truncated_at_every_scale() {
    for (name, jpeg) in [
        ("baseline", cjpeg(&["-quality", "90"])),
        ("progressive", cjpeg(&["-progressive"])),
        (
            "non-interleaved",
            cjpeg_scans(&["-sample", "2x2,1x1,1x1"], "0;\n1;\n2;\n"),
        ),
    ] {
        for cut in [0.35, 0.6, 0.9] {
            let n = (jpeg.len() as f64 * cut) as usize;
            refused_everywhere(
                &format!("{name} cut at {cut}"),
                &jpeg[..n],
                &ImageError::Truncated(Format::Jpeg),
            );
        }
    }
    // A progressive file cut exactly between two scans: every scan there is complete, but
    // the picture is not.
    let prog = cjpeg(&["-progressive"]);
    let sos = scan_starts(&prog);
    refused_everywhere(
        "progressive cut between scans",
        &prog[..sos[sos.len() / 2]],
        &ImageError::Truncated(Format::Jpeg),
    );
}

#[test]
fn damaged_scan_data_is_corrupt_at_every_scale() {
    let base = cjpeg(&["-quality", "90"]);
    let sos = base.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    // The scan data cut short and an EOI put after it: "premature end of data segment".
    let mut cut = base[..sos + (base.len() - sos) / 2].to_vec();
    cut.extend_from_slice(&[0xFF, 0xD9]);
    let (_, _, _, warnings) = djpeg(&cut, 8);
    assert!(
        warnings.contains("premature end of data segment"),
        "{warnings}"
    );
    let corrupt = ImageError::Corrupt(Format::Jpeg, "the compressed image data is damaged".into());
    refused_everywhere("scan cut, EOI appended", &cut, &corrupt);
    // Restart markers out of sequence: libjpeg reports "found marker 0xd5 instead of RST3"
    // and resynchronizes, filling in. (Damage inside the entropy-coded data mostly goes unseen:
    // Huffman codes resynchronize, and libjpeg-turbo's fast path, which it takes where a whole
    // block's bytes are in its buffer, substitutes zero for a bad code without a warning.)
    let rst = cjpeg(&["-quality", "90", "-restart", "4B"]);
    let markers: Vec<usize> = rst
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1]))
        .map(|(i, _)| i + 1)
        .collect();
    assert!(
        markers.len() > 10,
        "cjpeg -restart 4B wrote {} markers",
        markers.len()
    );
    let mut found = 0;
    for &at in markers.iter().skip(3).step_by(4).take(3) {
        let mut bad = rst.clone();
        bad[at] = 0xD0 + (bad[at] - 0xD0 + 2) % 8;
        let warnings = djpeg(&bad, 8).3.to_lowercase();
        assert!(warnings.contains("instead of rst"), "{warnings}");
        // libjpeg meets the wrong marker inside the scan data first, then resynchronizes.
        let err = image::decode_at(&bad, 8, u64::MAX).unwrap_err();
        assert!(matches!(err, ImageError::Corrupt(..)), "{err}");
        refused_everywhere(&format!("restart marker at {at}"), &bad, &err);
        found += 1;
    }
    assert_eq!(found, 3);
}

#[test]
fn endless_scans_are_refused() {
    // A progressive file whose last scan repeats: libjpeg would read every copy, a pass over
    // the whole image each.
    let prog = cjpeg(&["-progressive"]);
    let last = prog.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
    let scan = &prog[last..prog.len() - 2];
    let mut hostile = prog[..prog.len() - 2].to_vec();
    for _ in 0..150 {
        hostile.extend_from_slice(scan);
    }
    hostile.extend_from_slice(&[0xFF, 0xD9]);
    let started = std::time::Instant::now();
    let err = image::decode_at(&hostile, 8, u64::MAX).unwrap_err();
    assert!(err.to_string().contains("more than 100 scans"), "{err}");
    refused_everywhere("150 repeated scans", &hostile, &err);
    // Not a timing assertion on qp's speed: a guard against the limit not applying at all.
    assert!(started.elapsed().as_secs() < 60);
}

#[test]
fn damaged_files_in_a_batch_leave_the_rest_done() {
    // Through the pipeline as the worker and `qp resize` call it: the C decoder's errors come
    // back as values, one file after another on the same thread (the decoder is reused).
    let base = cjpeg(&["-quality", "90"]);
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for i in 0..30 {
        let mut v = base.clone();
        match i % 3 {
            0 => v.truncate(v.len() * (i + 10) / 50),
            1 => {
                let at = v.len() / 2 + i;
                v[at] = 0xFF;
                v[at + 1] = 0xC4;
            }
            _ => {}
        }
        inputs.push(v);
    }
    let done = inputs
        .iter()
        .filter(|d| image::process(d, &ResizeSpec::default()).is_ok())
        .count();
    assert_eq!(
        done, 10,
        "every intact file converted, every damaged one refused"
    );
}
