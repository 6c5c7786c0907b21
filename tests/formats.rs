//! PNG, WebP, GIF, BMP and TIFF: every variant against Pillow's decode (tests/formats.py makes
//! the files and Pillow's pictures), headers over the pixel limit, damaged files, and `qp resize`
//! on a folder of them.

use std::path::Path;
use std::process::Command;

use qp::image::{self, Background, Format, ImageError, Mode, ResizeSpec, Size};
use serde_json::Value;

use crate::util::{decode, pillow_python, psnr, qp, rgb, run, stderr, tempdir};

/// Runs tests/formats.py into `dir` for `background`; returns its manifest.
pub(crate) fn make_fixtures(dir: &Path, background: [u8; 3]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/formats.py");
    let [r, g, b] = background;
    let o = Command::new(pillow_python())
        .arg(script)
        .arg(dir)
        .arg(format!("{r},{g},{b}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    serde_json::from_str::<Vec<Value>>(&manifest).unwrap()
}

/// One small file of each format qp names but does not decode: (file name, bytes, cause).
pub(crate) fn unsupported_samples() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let ftyp = |brands: &[u8]| {
        let mut v = ((8 + brands.len()) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b"ftyp");
        v.extend_from_slice(brands);
        v.extend_from_slice(b"\0\0\0\x08free");
        v
    };
    let tiff_with = |tag: u16| {
        let mut v = b"II*\0\x08\0\0\0\x02\0".to_vec();
        for (t, value) in [(254u16, 1u32), (tag, 0)] {
            v.extend_from_slice(&t.to_le_bytes());
            v.extend_from_slice(&4u16.to_le_bytes());
            v.extend_from_slice(&1u32.to_le_bytes());
            v.extend_from_slice(&value.to_le_bytes());
        }
        v.extend_from_slice(&[0; 4]);
        v
    };
    vec![
        ("photo.heic", ftyp(b"heic\0\0\0\0mif1heic"), "HEIC image"),
        ("photo.avif", ftyp(b"avif\0\0\0\0avifmif1"), "AVIF image"),
        (
            "scan.jp2",
            b"\0\0\0\x0cjP  \r\n\x87\n\0\0\0\x14ftypjp2 ".to_vec(),
            "JPEG 2000 image",
        ),
        (
            "new.jxl",
            vec![0xFF, 0x0A, 0xFA, 0x7F, 0, 0],
            "JPEG XL image",
        ),
        (
            "layers.psd",
            b"8BPS\0\x01\0\0\0\0\0\0".to_vec(),
            "Photoshop document (PSD)",
        ),
        (
            "logo.svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec(),
            "SVG image",
        ),
        ("doc.pdf", b"%PDF-1.7\n%\xE2\xE3\n".to_vec(), "PDF document"),
        (
            "raw.cr2",
            b"II*\0\x10\0\0\0CR\x02\0\0\0\0\0".to_vec(),
            "camera raw image (CR2)",
        ),
        ("raw.dng", tiff_with(0xC612), "camera raw image (DNG)"),
        (
            "raw.nef",
            tiff_with(0x014A),
            "camera raw image (TIFF-based, such as NEF or ARW)",
        ),
        (
            "favicon.ico",
            vec![0, 0, 1, 0, 1, 0, 16, 16, 0, 0, 1, 0],
            "icon (ICO/CUR)",
        ),
    ]
}

/// Every format qp names is refused with its own cause, through the whole image core.
#[test]
fn unsupported_formats_are_named() {
    for (name, data, cause) in unsupported_samples() {
        let err = image::process(&data, &ResizeSpec::default()).unwrap_err();
        assert_eq!(err.to_string(), format!("unsupported: {cause}"), "{name}");
        assert_eq!(err.kind(), "unsupported_format", "{name}");
    }
}

fn spec(background: [u8; 3]) -> ResizeSpec {
    ResizeSpec {
        background: Background(background),
        ..ResizeSpec::default()
    }
}

/// Every variant decodes to Pillow's picture (upright, alpha over the background) within
/// 35 dB, over black and over a colour, and makes a 224x224 output.
#[test]
fn every_variant_matches_pillow() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for background in [[0, 0, 0], [200, 30, 90]] {
        let dir = tempdir();
        let manifest = make_fixtures(dir.path(), background);
        assert!(manifest.len() >= 50, "{}", manifest.len());
        for v in &manifest {
            let name = v["file"].as_str().unwrap();
            let data = std::fs::read(dir.path().join(name)).unwrap();
            // What qp refuses where Pillow decodes (the README lists it), with its cause.
            if let Some(cause) = v["refused"].as_str() {
                let err = image::process(&data, &spec(background)).unwrap_err();
                assert_eq!(err.to_string(), cause, "{name}");
                continue;
            }
            let want = std::fs::read(
                dir.path()
                    .join(format!("{}.rgb", v["name"].as_str().unwrap())),
            )
            .unwrap();
            let size = (
                v["width"].as_u64().unwrap() as u32,
                v["height"].as_u64().unwrap() as u32,
            );
            let spec = spec(background);
            match image::decode_upright(&data, &spec) {
                Err(e) => failures.push(format!("{name} over {background:?}: {e}")),
                Ok(p) if (p.width, p.height) != size => failures.push(format!(
                    "{name}: {}x{} where Pillow gives {}x{}",
                    p.width, p.height, size.0, size.1
                )),
                Ok(p) => {
                    let db = psnr(&rgb(&p), &want);
                    eprintln!("{name} over {background:?}: {db:.1} dB");
                    if db < 35.0 {
                        failures.push(format!("{name} over {background:?}: {db:.1} dB"));
                    }
                }
            }
            match image::process(&data, &spec) {
                Ok(out) => {
                    let (w, h, _, _) = decode(&out[0].jpeg);
                    assert_eq!((w, h), (224, 224), "{name}");
                }
                Err(e) => failures.push(format!("{name}: process: {e}")),
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{checked} checked; {failures:#?}");
}

/// Gray sources stay one channel unless a coloured background shows through their alpha.
#[test]
fn gray_stays_gray() {
    let dir = tempdir();
    make_fixtures(dir.path(), [0, 0, 0]);
    for name in [
        "png_gray8.png",
        "png_gray16.png",
        "png_la8.png",
        "tiff_gray8.tif",
    ] {
        let data = std::fs::read(dir.path().join(name)).unwrap();
        let p = image::decode_upright(&data, &spec([7, 7, 7])).unwrap();
        assert_eq!(p.channels, 1, "{name}");
    }
    let data = std::fs::read(dir.path().join("png_la8.png")).unwrap();
    let p = image::decode_upright(&data, &spec([255, 0, 0])).unwrap();
    assert_eq!(p.channels, 4);
}

/// Headers stating more pixels than the limit are refused from the header, for every format,
/// before the rest of the file is read.
#[test]
fn oversized_headers_are_refused_first() {
    let big = 60000u32;
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&big.to_be_bytes());
    png.extend_from_slice(&big.to_be_bytes());
    png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&(big as u16).to_le_bytes());
    gif.extend_from_slice(&(big as u16).to_le_bytes());
    gif.extend_from_slice(&[0, 0, 0, 0x3B]);
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&[0; 12]);
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&(big as i32).to_le_bytes());
    bmp.extend_from_slice(&(-(big as i32)).to_le_bytes());
    bmp.extend_from_slice(&[1, 0, 24, 0]);
    // WebP's extended header: a 16384x16384 canvas, nothing after it.
    let mut webp = b"RIFF\x16\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
    webp.extend_from_slice(&[0xFF, 0x3F, 0, 0xFF, 0x3F, 0]);
    // TIFF: width and height tags, 8-bit RGB, no strips.
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    let tags: [(u16, u16, u32); 5] = [
        (256, 4, big),
        (257, 4, big),
        (258, 3, 8),
        (262, 3, 2),
        (277, 3, 3),
    ];
    tiff.extend_from_slice(&(tags.len() as u16).to_le_bytes());
    for (tag, kind, value) in tags {
        tiff.extend_from_slice(&tag.to_le_bytes());
        tiff.extend_from_slice(&kind.to_le_bytes());
        tiff.extend_from_slice(&1u32.to_le_bytes());
        tiff.extend_from_slice(&value.to_le_bytes());
    }
    tiff.extend_from_slice(&[0; 4]);
    for (name, data, side) in [
        ("png", png, big),
        ("gif", gif, big),
        ("bmp", bmp, big),
        ("webp", webp, 16384),
        ("tiff", tiff, big),
    ] {
        let err = image::process(&data, &ResizeSpec::default()).unwrap_err();
        assert_eq!(
            err,
            ImageError::TooLarge {
                width: side,
                height: side,
                limit: image::DEFAULT_MAX_PIXELS
            },
            "{name}"
        );
    }
}

/// A PNG bomb: 20000x20000 pixels of 1-bit gray in a few tens of KB. Refused from its IHDR at
/// the default limit; under a raised limit it decodes.
#[test]
fn a_png_bomb_is_refused_from_its_header() {
    let dir = tempdir();
    let script = "import sys, zlib, struct\n\
        w = h = int(sys.argv[2])\n\
        def chunk(k, b): return struct.pack('>I', len(b)) + k + b + struct.pack('>I', zlib.crc32(k + b))\n\
        raw = (b'\\0' + b'\\xff' * ((w + 7) // 8)) * h\n\
        open(sys.argv[1], 'wb').write(b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 1, 0, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b''))\n";
    let path = dir.path().join("bomb.png");
    let o = Command::new(pillow_python())
        .args(["-c", script])
        .arg(&path)
        .arg("20000")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = std::fs::read(&path).unwrap();
    assert!(data.len() < 200_000, "{} bytes", data.len());
    let err = image::process(&data, &ResizeSpec::default()).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::TooLarge {
                width: 20000,
                height: 20000,
                ..
            }
        ),
        "{err}"
    );
    // The same at a limit it fits: all white.
    let spec = ResizeSpec {
        max_pixels: 400_000_000,
        sizes: vec![Size {
            width: 16,
            height: 16,
        }],
        mode: Mode::Fit,
        ..ResizeSpec::default()
    };
    let out = image::process(&data, &spec).unwrap();
    let (_, _, _, px) = decode(&out[0].jpeg);
    assert!(px.iter().all(|&v| v > 250));
}

/// Damaged files of each format: cut short is `truncated` naming the format; bytes flipped in
/// compressed data is `corrupt` (or, where the format has no check, a picture, as in Pillow).
#[test]
fn damaged_files_get_their_cause() {
    let dir = tempdir();
    make_fixtures(dir.path(), [0, 0, 0]);
    for (name, format) in [
        ("png_rgb8.png", Format::Png),
        ("png_rgb8_interlaced.png", Format::Png),
        ("webp_lossy.webp", Format::WebP),
        ("webp_lossless.webp", Format::WebP),
        ("gif.gif", Format::Gif),
        ("bmp_rgb24.bmp", Format::Bmp),
        ("tiff_rgb8.tif", Format::Tiff),
        ("tiff_lzw.tif", Format::Tiff),
    ] {
        let data = std::fs::read(dir.path().join(name)).unwrap();
        let cut = &data[..data.len() * 6 / 10];
        let err = image::process(cut, &ResizeSpec::default()).unwrap_err();
        assert_eq!(err, ImageError::Truncated(format), "{name}");
        assert_eq!(
            err.to_string(),
            format!("truncated: the {format} data ends before the image is complete")
        );
    }
    for name in ["png_rgb8.png", "gif.gif", "tiff_lzw.tif"] {
        let mut data = std::fs::read(dir.path().join(name)).unwrap();
        let at = data.len() / 2;
        for b in &mut data[at..at + 40] {
            *b ^= 0x5A;
        }
        let err = image::process(&data, &ResizeSpec::default()).unwrap_err();
        assert_eq!(err.kind(), "corrupt", "{name}: {err}");
        assert!(err.to_string().starts_with("corrupt "), "{err}");
    }
}

/// `qp resize` walks every supported suffix (any case), names outputs `NAME.EXT.jpg`, and
/// refuses an unsupported format by name.
#[test]
fn resize_walks_every_format() {
    let src = tempdir();
    make_fixtures(src.path(), [0, 0, 0]);
    let dir = tempdir();
    for (from, to) in [
        ("png_rgba8.png", "a/x.PNG"),
        ("webp_lossy.webp", "a/y.webp"),
        ("gif_animated.gif", "z.Gif"),
        ("bmp_rle8.bmp", "w.bmp"),
        ("tiff_lzw.tif", "v.TIF"),
        ("tiff_tiled.tif", "u.tiff"),
        ("png_rgb8.png", "png-named.jpg"),
    ] {
        let dest = dir.path().join(to);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(src.path().join(from), dest).unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "not walked").unwrap();
    std::fs::write(
        dir.path().join("h.heic"),
        b"\0\0\0\x18ftypheic\0\0\0\0mif1heic",
    )
    .unwrap();
    let out = tempdir();
    let o = run(qp().arg("resize").arg(dir.path()).arg("-o").arg(out.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    for name in [
        "a/x.PNG.jpg",
        "a/y.webp.jpg",
        "z.Gif.jpg",
        "w.bmp.jpg",
        "v.TIF.jpg",
        "u.tiff.jpg",
        "png-named.jpg",
    ] {
        let jpeg = std::fs::read(out.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decode(&jpeg).0, 224, "{name}");
    }
    assert!(!out.path().join("notes.txt").exists() && !out.path().join("h.heic").exists());
    // Named on the command line, a HEIC file is refused by name.
    let o = run(qp()
        .arg("resize")
        .arg(dir.path().join("h.heic"))
        .arg("-o")
        .arg(out.path()));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unsupported: HEIC image"),
        "{}",
        stderr(&o)
    );
}
