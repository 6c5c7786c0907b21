//! The image core on the fixture JPEGs: geometry, orientation, quality and errors.

use qp::image::{self, ImageError, Mode, ResizeSpec, Size};

use crate::util::{bad_fixtures, decode, fixture_bytes, good_fixtures, psnr};

fn spec(mode: Mode, sizes: &[(u32, u32)]) -> ResizeSpec {
    ResizeSpec {
        sizes: sizes
            .iter()
            .map(|&(width, height)| Size { width, height })
            .collect(),
        mode,
        ..ResizeSpec::default()
    }
}

/// Display size of a fixture (orientation applied), from an independent full decode (a PNG's
/// from its IHDR).
fn upright_size(name: &str) -> (u32, u32) {
    let data = fixture_bytes(name);
    let (w, h) = if data.starts_with(b"\x89PNG") {
        let be = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
        (be(16), be(20))
    } else {
        let (w, h, _, _) = decode(&data);
        (w, h)
    };
    let swaps = ["5", "6", "7", "8"]
        .iter()
        .any(|n| name == format!("exif_orientation_{n}.jpg"));
    if swaps { (h, w) } else { (w, h) }
}

#[test]
fn every_good_fixture_in_every_mode_has_the_exact_size() {
    let sizes = [(224, 224), (299, 299), (100, 40)];
    for name in good_fixtures() {
        let data = fixture_bytes(&name);
        let (w, h) = upright_size(&name);
        for mode in [Mode::Fill, Mode::Fit, Mode::Pad] {
            let out = image::process(&data, &spec(mode, &sizes))
                .unwrap_or_else(|e| panic!("{name} {mode}: {e}"));
            assert_eq!(out.len(), sizes.len());
            for (resized, &(tw, th)) in out.iter().zip(&sizes) {
                let want = match mode {
                    Mode::Fill | Mode::Pad => (tw, th),
                    Mode::Fit => {
                        let s = (f64::from(tw) / f64::from(w))
                            .min(f64::from(th) / f64::from(h))
                            .min(1.0);
                        (
                            ((f64::from(w) * s).round() as u32).max(1),
                            ((f64::from(h) * s).round() as u32).max(1),
                        )
                    }
                };
                let (dw, dh, channels, _) = decode(&resized.jpeg);
                assert_eq!((dw, dh), want, "{name} {mode} {tw}x{th}");
                assert_eq!((resized.width, resized.height), want);
                assert_eq!(channels, 3, "{name}: outputs are RGB");
            }
        }
    }
}

/// The eight orientation fixtures store the pixels transformed so that honouring the tag shows
/// the same upright picture: every output must match orientation 1's, and the white block of the
/// base picture must be near the top-left corner.
#[test]
fn exif_orientations_all_give_the_same_upright_image() {
    for mode in [Mode::Fill, Mode::Fit, Mode::Pad] {
        let s = spec(mode, &[(224, 224)]);
        let reference = image::process(&fixture_bytes("exif_orientation_1.jpg"), &s).unwrap();
        let (rw, rh, _, ref_px) = decode(&reference[0].jpeg);
        for n in 2..=8 {
            let name = format!("exif_orientation_{n}.jpg");
            let out = image::process(&fixture_bytes(&name), &s).unwrap();
            let (w, h, _, px) = decode(&out[0].jpeg);
            assert_eq!((w, h), (rw, rh), "{name} {mode}");
            let db = psnr(&px, &ref_px);
            assert!(db > 30.0, "{name} {mode}: {db:.1} dB against orientation 1");
        }
    }
    // The white block: brightest quadrant of the upright picture is the top-left one.
    let out = image::process(
        &fixture_bytes("exif_orientation_6.jpg"),
        &spec(Mode::Fit, &[(640, 640)]),
    )
    .unwrap();
    let (w, h, _, px) = decode(&out[0].jpeg);
    assert_eq!((w, h), (640, 384));
    let quadrant_mean = |qx: u32, qy: u32| {
        let mut sum = 0u64;
        for y in qy * h / 2..(qy + 1) * h / 2 {
            for x in qx * w / 2..(qx + 1) * w / 2 {
                let i = ((y * w + x) * 3) as usize;
                sum += u64::from(px[i]) + u64::from(px[i + 1]) + u64::from(px[i + 2]);
            }
        }
        sum
    };
    let top_left = quadrant_mean(0, 0);
    for (qx, qy) in [(1, 0), (0, 1), (1, 1)] {
        assert!(top_left > quadrant_mean(qx, qy), "white block not top-left");
    }
}

#[test]
fn every_bad_fixture_gets_its_clear_error() {
    let expected: &[(&str, ImageError)] = &[
        ("bad_empty.jpg", ImageError::Empty),
        ("bad_heic.jpg", ImageError::UnsupportedFormat("HEIC image")),
        ("bad_text.jpg", ImageError::NotImage("this is text")),
        (
            "bad_truncated.jpg",
            ImageError::Truncated(image::Format::Jpeg),
        ),
    ];
    let names = bad_fixtures();
    assert_eq!(names.len(), 5, "{names:?}");
    for name in names {
        let err = image::process(&fixture_bytes(&name), &ResizeSpec::default()).expect_err(&name);
        match expected.iter().find(|(n, _)| *n == name) {
            Some((_, want)) => assert_eq!(&err, want, "{name}"),
            // Random bytes: whatever they resemble, a "not an image" or "corrupt" verdict.
            None => assert!(
                matches!(err, ImageError::NotImage(_) | ImageError::Corrupt(..)),
                "{name}: {err:?}"
            ),
        }
        assert!(!err.to_string().is_empty());
    }
}

/// Exact area average of `src` (w x h, c channels) over the region `crop` into ow x oh: every
/// source pixel contributes in proportion to its overlap with the output pixel's footprint.
fn area_average(
    src: &[u8],
    (w, h, c): (usize, usize, usize),
    crop: (f64, f64, f64, f64),
    (ow, oh): (usize, usize),
) -> Vec<u8> {
    let (cl, ct, cw, ch) = crop;
    let (sx, sy) = (cw / ow as f64, ch / oh as f64);
    let mut out = vec![0u8; ow * oh * c];
    for oy in 0..oh {
        let (y0, y1) = (ct + oy as f64 * sy, ct + (oy + 1) as f64 * sy);
        for ox in 0..ow {
            let (x0, x1) = (cl + ox as f64 * sx, cl + (ox + 1) as f64 * sx);
            let mut acc = vec![0f64; c];
            let mut total = 0f64;
            for y in y0.floor() as usize..(y1.ceil() as usize).min(h) {
                let wy = (y1.min(y as f64 + 1.0) - y0.max(y as f64)).max(0.0);
                for x in x0.floor() as usize..(x1.ceil() as usize).min(w) {
                    let wx = (x1.min(x as f64 + 1.0) - x0.max(x as f64)).max(0.0);
                    let weight = wx * wy;
                    total += weight;
                    for k in 0..c {
                        acc[k] += weight * f64::from(src[(y * w + x) * c + k]);
                    }
                }
            }
            for k in 0..c {
                out[(oy * ow + ox) * c + k] = (acc[k] / total).round() as u8;
            }
        }
    }
    out
}

/// Output quality against an exact area-average of the full-resolution decode, at shrink factors
/// that use the full decoder (1.x), and each reduced-scale decode (2, 4, 8), in fill and fit.
#[test]
fn quality_against_an_exact_area_average() {
    for name in [
        "baseline_420.jpg",
        "baseline_422.jpg",
        "baseline_444.jpg",
        "progressive.jpg",
        "grayscale.jpg",
        "restart_interval.jpg",
    ] {
        let data = fixture_bytes(name);
        let (w, h, c, full) = decode(&data);
        let full_rgb: Vec<u8> = if c == 1 {
            full.iter().flat_map(|&v| [v, v, v]).collect()
        } else {
            full
        };
        // 640x384 sources.
        let cases: &[(Mode, (u32, u32))] = &[
            (Mode::Fit, (320, 192)),
            (Mode::Fit, (160, 96)),
            (Mode::Fit, (80, 48)),
            (Mode::Fit, (300, 300)),
            (Mode::Fill, (224, 224)),
            (Mode::Fill, (48, 48)),
            (Mode::Fill, (299, 100)),
        ];
        for &(mode, (tw, th)) in cases {
            let out = image::process(&data, &spec(mode, &[(tw, th)])).unwrap();
            let (ow, oh, _, px) = decode(&out[0].jpeg);
            let plan = image::Plan::new(
                mode,
                (w, h),
                Size {
                    width: tw,
                    height: th,
                },
            );
            assert_eq!((ow, oh), plan.output);
            let reference = area_average(
                &full_rgb,
                (w as usize, h as usize, 3),
                plan.crop,
                (ow as usize, oh as usize),
            );
            let db = psnr(&px, &reference);
            assert!(db >= 30.0, "{name} {mode} {tw}x{th}: {db:.1} dB");
        }
    }
}

#[test]
fn several_sizes_come_from_one_call_and_quality_matters() {
    let data = fixture_bytes("baseline_420.jpg");
    let out = image::process(&data, &spec(Mode::Fill, &[(224, 224), (299, 299)])).unwrap();
    assert_eq!(
        out.iter().map(|r| (r.width, r.height)).collect::<Vec<_>>(),
        [(224, 224), (299, 299)]
    );
    let low = image::process(
        &data,
        &ResizeSpec {
            quality: 30,
            ..spec(Mode::Fill, &[(224, 224)])
        },
    )
    .unwrap();
    assert!(low[0].jpeg.len() < out[0].jpeg.len());
}

/// CMYK JPEGs (Adobe APP14, as Photoshop and Pillow write them) come out as RGB close to the
/// picture they were made from.
#[test]
fn cmyk_adobe_jpeg_decodes_to_rgb() {
    let s = spec(Mode::Fit, &[(160, 96)]);
    let rgb = image::process(&fixture_bytes("baseline_444.jpg"), &s).unwrap();
    let cmyk = image::process(&fixture_bytes("cmyk_adobe.jpg"), &s).unwrap();
    let (_, _, _, a) = decode(&rgb[0].jpeg);
    let (_, _, _, b) = decode(&cmyk[0].jpeg);
    let db = psnr(&a, &b);
    assert!(
        db > 25.0,
        "CMYK output differs from the RGB one: {db:.1} dB"
    );
}

/// Truncating a good file anywhere gives an error or an image, never a panic.
#[test]
fn truncations_and_corruptions_never_panic() {
    for name in [
        "baseline_420.jpg",
        "progressive.jpg",
        "restart_interval.jpg",
    ] {
        let data = fixture_bytes(name);
        let s = spec(Mode::Fill, &[(64, 64)]);
        for cut in (0..data.len()).step_by(data.len() / 40 + 1) {
            let _ = image::process(&data[..cut], &s);
        }
        let mut seed = 0x9E37_79B9u32;
        for _ in 0..60 {
            let mut bad = data.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let at = seed as usize % bad.len();
                bad[at] ^= (seed >> 8) as u8 | 1;
            }
            if let Err(ImageError::Internal(msg)) = image::process(&bad, &s) {
                panic!("{name}: internal error (caught panic): {msg}");
            }
        }
    }
}

/// Letterbox bars are black whichever decoder produced the picture.
#[test]
fn pad_bars_are_black_from_both_decoders() {
    let data = fixture_bytes("baseline_420.jpg");
    // 224: decoded at reduced scale (src/image/scaled.rs); 1280: enlarged from zune-jpeg's
    // full-scale decode.
    for side in [224, 1280] {
        let out = image::process(&data, &spec(Mode::Pad, &[(side, side)])).unwrap();
        let (w, h, channels, px) = decode(&out[0].jpeg);
        assert_eq!((w, h, channels), (side, side, 3));
        // The fixture is landscape: the bars are the top and bottom rows.
        for y in [0, h - 1] {
            for x in 0..w {
                let i = ((y * w + x) * 3) as usize;
                assert!(
                    px[i..i + 3].iter().all(|&v| v <= 4),
                    "{side}: pixel ({x}, {y}) is {:?}, not black",
                    &px[i..i + 3]
                );
            }
        }
    }
}
