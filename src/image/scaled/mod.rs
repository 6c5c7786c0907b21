//! Reduced-scale JPEG decoding: 1/8, 1/4, 1/2, 5/8 or 3/4 straight from the DCT coefficients.
//!
//! Shrinking a 5120x2880 photo to 224 pixels by a full decode spends most of its time in
//! IDCT, upsampling and colour conversion of pixels that the resizer then throws away.
//! libjpeg's `scale_denom` trick avoids that:
//! at 1/8 only the DC coefficient of each 8x8 block is needed (one output pixel per block);
//! at N/8 an NxN IDCT of the low-frequency coefficients gives the block. Chroma subsampled
//! 2x both ways is decoded at twice the luma's block size instead of being upsampled (as
//! libjpeg does) where that block is at most 4x4; otherwise, and for other
//! subsampling, it gets libjpeg's triangle filter. (At 5/8 and 6/8 libjpeg-turbo computes
//! 4:2:0 chroma with a 10- or 12-point IDCT instead; upsampling costs less.)
//!
//! This module owns that fast path: baseline, extended (sequential) and progressive Huffman
//! at those scales, 8-bit only, grayscale or three-component YCbCr/RGB. Every scan is
//! read in full, so that the decoder sees the damage libjpeg-turbo reports. Anything else,
//! and any file that looks damaged or that libjpeg would warn about, yields `None`, and the
//! caller falls back to libjpeg-turbo (at the same scale, or at full scale where its own
//! scaled IDCT is slow), which also gives the authoritative error.
//!
//! Speed comes from the entropy decoder, which dominates at these scales: a 64-bit bit
//! buffer refilled 8 bytes at a time when they hold no 0xFF, lookup tables that decode a
//! DC difference or an AC coefficient (code plus extra bits) in one step, and for the AC
//! coefficients nobody needs a table that skips several of them in one step. The IDCTs
//! run on batches of blocks so that they vectorize; they and the colour conversion are
//! compiled twice, for the x86-64 baseline and for AVX2, picked at run time
//! ([`simd`]), which holds the decoder's only `unsafe`: calling the AVX2 copies.
//!
//! Laid out as decoders usually are: [`marker`] finds markers and segments and reads the
//! header; [`scan`] holds the decoder, which acts on each segment and walks each scan's
//! MCUs; [`progressive`] keeps a progressive frame's coefficients between scans;
//! [`huffman`] reads the entropy-coded bits; [`idct`] turns blocks into samples;
//! [`color`] upsamples and converts to RGBX; [`simd`] picks the AVX2 copies.

mod color;
mod huffman;
mod idct;
mod marker;
mod progressive;
mod scan;
// The only module where the crate allows `unsafe` (see `src/lib.rs`).
#[allow(unsafe_code)]
mod simd;

pub use marker::{Header, header};

use scan::Decoder;

/// Pixels decoded at a reduced scale.
pub struct Scaled {
    pub width: u32,
    pub height: u32,
    /// 1 = gray, 4 = RGBX (RGB and a spare 0xFF byte: see [`super::Pixels`]).
    pub channels: u8,
    /// Interleaved, row-major, no padding.
    pub pixels: Vec<u8>,
}

/// The scales qp's decoder takes, in eighths. Not 3/8 or 7/8: measured slower than the next
/// scale up (README, Performance).
pub const EIGHTHS: [u8; 5] = [1, 2, 4, 5, 6];

/// Decodes `data` at `eighths`/8 scale, one of [`EIGHTHS`]. Output
/// size is ceil(w * eighths / 8) x ceil(h * eighths / 8), as libjpeg's.
///
/// Returns None when the fast path does not cover this file (the caller then uses
/// libjpeg-turbo, which also gives the authoritative error for broken files), including any
/// corrupt/truncated data: never panics, never loops forever, never allocates based on
/// unchecked header sizes beyond what `max_pixels` (width*height of the full image) allows.
pub fn decode_scaled(data: &[u8], eighths: u8, max_pixels: u64) -> Option<Scaled> {
    if !EIGHTHS.contains(&eighths) {
        return None;
    }
    let n = usize::from(eighths);
    let mut dec = Decoder::default();
    dec.run(data, n, max_pixels)?;
    dec.finish(n)
}

#[cfg(test)]
mod tests {
    use super::color::ycc_to_rgbx;
    use super::marker::{find_marker, find_marker_after_scan, segment};
    use super::*;
    use crate::image::turbo;

    macro_rules! fixtures {
        ($($name:literal),* $(,)?) => {
            &[$(($name, include_bytes!(concat!("../../../tests/fixtures/", $name, ".jpg")) as &[u8])),*]
        };
    }

    const GOOD: &[(&str, &[u8])] = fixtures![
        "baseline_420",
        "baseline_422",
        "baseline_444",
        "progressive",
        "grayscale",
        "restart_interval",
        "odd_333x777",
        "thin_640x1",
        "tiny_1x1",
        "exif_orientation_1",
        "exif_orientation_2",
        "exif_orientation_3",
        "exif_orientation_4",
        "exif_orientation_5",
        "exif_orientation_6",
        "exif_orientation_7",
        "exif_orientation_8",
    ];

    const BAD: &[(&str, &[u8])] = fixtures![
        "bad_empty",
        "bad_heic",
        "bad_random",
        "bad_text",
        "bad_truncated"
    ];

    /// The reference's (libjpeg-turbo's) full-scale decode: width, height, channels (1 or 3),
    /// pixels.
    fn full_decode(data: &[u8]) -> (usize, usize, usize, Vec<u8>) {
        let p = crate::image::turbo::decode(data, 8, false).expect("libjpeg-turbo decodes it");
        let (w, h) = (p.width as usize, p.height as usize);
        if p.channels == 1 {
            return (w, h, 1, p.data);
        }
        let rgb = p
            .data
            .chunks_exact(4)
            .flat_map(|px| [px[0], px[1], px[2]])
            .collect();
        (w, h, 3, rgb)
    }

    /// Averages `denom`x`denom` boxes, partial boxes at the edges over what exists.
    fn box_average(full: &[u8], w: usize, h: usize, ch: usize, denom: usize) -> Vec<f64> {
        let (ow, oh) = (w.div_ceil(denom), h.div_ceil(denom));
        let mut out = vec![0f64; ow * oh * ch];
        for oy in 0..oh {
            for ox in 0..ow {
                let (ys, xs) = (
                    oy * denom..h.min(oy * denom + denom),
                    ox * denom..w.min(ox * denom + denom),
                );
                let count = (ys.len() * xs.len()) as f64;
                for c in 0..ch {
                    let sum: f64 = ys
                        .clone()
                        .flat_map(|y| {
                            xs.clone()
                                .map(move |x| f64::from(full[(y * w + x) * ch + c]))
                        })
                        .sum();
                    out[(oy * ow + ox) * ch + c] = sum / count;
                }
            }
        }
        out
    }

    fn psnr(ours: &[u8], reference: &[f64]) -> f64 {
        let mse = ours
            .iter()
            .zip(reference)
            .map(|(&a, &b)| (f64::from(a) - b).powi(2))
            .sum::<f64>()
            / ours.len() as f64;
        10.0 * (255.0 * 255.0 / mse.max(1e-9)).log10()
    }

    #[test]
    fn matches_box_averaged_full_decode() {
        for &(name, data) in GOOD {
            let head = header(data).expect("fixture has a frame header");
            let (w, h, ch, full) = full_decode(data);
            assert_eq!(
                (head.width as usize, head.height as usize),
                (w, h),
                "{name}"
            );
            for denom in [2u8, 4, 8] {
                let got = decode_scaled(data, 8 / denom, u64::MAX)
                    .unwrap_or_else(|| panic!("{name} 1/{denom}: fast path declined"));
                let d = usize::from(denom);
                assert_eq!(
                    (got.width as usize, got.height as usize),
                    (w.div_ceil(d), h.div_ceil(d)),
                    "{name}"
                );
                let wide = if ch == 3 { 4 } else { ch };
                assert_eq!(usize::from(got.channels), wide, "{name}");
                assert_eq!(
                    got.pixels.len(),
                    w.div_ceil(d) * h.div_ceil(d) * wide,
                    "{name}"
                );
                let ours: Vec<u8> = if ch == 3 {
                    got.pixels
                        .chunks_exact(4)
                        .flat_map(|p| [p[0], p[1], p[2]])
                        .collect()
                } else {
                    got.pixels.clone()
                };
                let db = psnr(&ours, &box_average(&full, w, h, ch, d));
                let fine = head.components == 1 || name.contains("444") || name.starts_with("odd");
                // Measured: 35.8 dB at the lowest (4:2:2 at 1/8), 45 and up for the fine ones.
                let min = if fine { 40.0 } else { 35.0 };
                eprintln!("{name} 1/{denom}: {db:.1} dB");
                assert!(db >= min, "{name} 1/{denom}: {db:.1} dB < {min}");
            }
        }
    }

    /// At 5/8 and 3/4, qp's decoder and libjpeg-turbo's own scaled decode give the same
    /// picture but for rounding and the chroma of 4:2:0 files (libjpeg-turbo computes it at
    /// twice the luma's scale with a 10- or 12-point IDCT, qp upsamples it as at 1/2).
    #[test]
    fn matches_libjpeg_turbo_at_five_and_six_eighths() {
        for &(name, data) in GOOD {
            for eighths in [5u8, 6] {
                let got = decode_scaled(data, eighths, u64::MAX)
                    .unwrap_or_else(|| panic!("{name} {eighths}/8: declined"));
                let want = turbo::decode(data, eighths, false).expect("libjpeg-turbo decodes it");
                assert_eq!(
                    (got.width, got.height, got.channels),
                    (want.width, want.height, want.channels),
                    "{name} {eighths}/8"
                );
                let reference: Vec<f64> = want.data.iter().map(|&v| f64::from(v)).collect();
                let db = psnr(&got.pixels, &reference);
                let fine = want.channels == 1 || name.contains("444");
                // Measured: MIN dB at the lowest.
                let min = if fine { 45.0 } else { 35.0 };
                eprintln!("{name} {eighths}/8: {db:.1} dB");
                assert!(db >= min, "{name} {eighths}/8: {db:.1} dB < {min}");
            }
        }
    }

    #[test]
    fn other_scales_decline() {
        let data = GOOD[0].1;
        for eighths in [0u8, 3, 7, 8, 16] {
            assert!(
                decode_scaled(data, eighths, u64::MAX).is_none(),
                "{eighths}/8"
            );
        }
    }

    #[test]
    fn max_pixels_is_respected() {
        let data = GOOD[0].1; // 640x384
        assert!(decode_scaled(data, 1, 640 * 384 - 1).is_none());
        assert!(decode_scaled(data, 1, 640 * 384).is_some());
    }

    #[test]
    fn bad_files_decline() {
        for &(name, data) in BAD {
            for eighths in EIGHTHS {
                assert!(
                    decode_scaled(data, eighths, u64::MAX).is_none(),
                    "{name} {eighths}/8"
                );
            }
        }
    }

    #[test]
    fn truncated_files_decline_or_keep_their_size() {
        for &(name, data) in GOOD {
            let head = header(data).expect("fixture has a frame header");
            let len = data.len();
            for cut in [
                0,
                1,
                2,
                3,
                20,
                200,
                600,
                len / 3,
                len / 2,
                len * 3 / 4,
                len - 200,
                len - 20,
                len - 3,
            ] {
                for eighths in EIGHTHS {
                    let Some(got) = decode_scaled(&data[..cut.min(len)], eighths, u64::MAX) else {
                        continue;
                    };
                    let n = u32::from(eighths);
                    assert_eq!(
                        (got.width, got.height),
                        ((head.width * n).div_ceil(8), (head.height * n).div_ceil(8))
                    );
                    assert_eq!(
                        got.pixels.len(),
                        (got.width * got.height) as usize * usize::from(got.channels)
                    );
                    // Entropy data cut in half cannot decode (a progressive file then
                    // lacks its last scans).
                    assert!(cut > len / 2, "{name} cut at {cut} decoded at {eighths}/8");
                }
            }
        }
    }

    /// Byte ranges of the segments that steer decoding: tables, frame, scan headers.
    fn header_segments(data: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut ranges = Vec::new();
        let mut pos = 2;
        while let Some((marker, at)) = find_marker(data, pos) {
            let Some(body) = segment(data, at) else { break };
            pos = at + 4 + body.len();
            if matches!(marker, 0xC0..=0xC2 | 0xC4 | 0xDA | 0xDB | 0xDD) {
                ranges.push(at..pos);
            }
            if marker == 0xDA {
                // Skip to the marker after the scan's data (restart markers are part of it).
                let Some((_, next)) = find_marker_after_scan(data, pos) else {
                    break;
                };
                pos = next;
            }
        }
        ranges
    }

    #[test]
    fn flipped_bytes_never_panic() {
        for &(name, data) in GOOD {
            let headers: Vec<usize> = header_segments(data).into_iter().flatten().collect();
            assert!(headers.len() > 100, "{name}: headers found");
            // Every header byte (a sample of them in the EXIF fixtures, whose tables are
            // baseline_420's), and a spread through everything else.
            let every = if name.starts_with("exif") { 5 } else { 1 };
            let offsets = headers
                .into_iter()
                .step_by(every)
                .chain((0..data.len()).step_by(131));
            let mut copy = data.to_vec();
            for (i, at) in offsets.enumerate() {
                let old = copy[at];
                copy[at] = old ^ [0xFF, 0x80, 0x01, 0x10][i % 4];
                let eighths = EIGHTHS[i % EIGHTHS.len()];
                if let Some(got) = decode_scaled(&copy, eighths, 1 << 24) {
                    let len = (got.width * got.height) as usize * usize::from(got.channels);
                    assert_eq!(got.pixels.len(), len);
                    // One verdict per file: what qp's decoder takes, libjpeg-turbo takes.
                    if let Err(e) = turbo::decode(&copy, eighths, false) {
                        panic!(
                            "{name}: byte {at} flipped, qp took at {eighths}/8 what libjpeg refuses: {e}"
                        );
                    }
                }
                copy[at] = old;
            }
        }
    }

    /// `data` with `bytes` put in at `at`.
    fn spliced(data: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
        [&data[..at], bytes, &data[at..]].concat()
    }

    /// Files libjpeg-turbo refuses for their marker structure or tables, which qp's decoder
    /// once took (found by the fuzz target): both must refuse them, at every scale.
    #[test]
    fn declines_what_libjpeg_refuses() {
        let data = fixtures!["baseline_420"][0].1;
        let (_, sos) = (2..)
            .scan(2, |pos, _| {
                let (m, at) = find_marker(data, *pos)?;
                *pos = at + 2;
                Some((m, at))
            })
            .find(|&(m, _)| m == 0xDA)
            .expect("a scan");
        let sof = (0..data.len() - 1)
            .find(|&i| data[i] == 0xFF && data[i + 1] == 0xC0)
            .expect("SOF0");
        let eoi = data.len() - 2;
        assert_eq!(&data[eoi..], [0xFF, 0xD9]);
        let mut long_sof = spliced(data, sof + 4 + 15, &[0]);
        long_sof[sof + 3] += 1;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "reserved JPG0 marker",
                spliced(data, 2, &[0xFF, 0xF0, 0, 4, 0, 0]),
            ),
            (
                "reserved RES marker",
                spliced(data, 2, &[0xFF, 0x45, 0, 4, 0, 0]),
            ),
            (
                "DAC in a Huffman file",
                spliced(data, 2, &[0xFF, 0xCC, 0, 4, 0x20, 0]),
            ),
            (
                "DRI of length 5",
                spliced(data, sos, &[0xFF, 0xDD, 0, 5, 0, 0, 0]),
            ),
            ("DHT of length 0", spliced(data, sos, &[0xFF, 0xC4, 0, 0])),
            ("DQT of length 1", spliced(data, sos, &[0xFF, 0xDB, 0, 1])),
            (
                // Two codes of length 1: the all-ones code is used.
                "Huffman table with an all-ones code",
                spliced(
                    data,
                    sos,
                    &[
                        0xFF, 0xC4, 0, 21, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                    ],
                ),
            ),
            ("SOF one byte long", long_sof),
            (
                "a second scan after a one-scan frame",
                spliced(data, eoi, &data[sos..eoi]),
            ),
        ];
        for (what, file) in cases {
            for eighths in EIGHTHS {
                assert!(
                    turbo::decode(&file, eighths, false).is_err(),
                    "{what}: libjpeg-turbo refuses it"
                );
                assert!(
                    decode_scaled(&file, eighths, u64::MAX).is_none(),
                    "{what}: qp declined at {eighths}/8"
                );
            }
        }
        // What libjpeg only skips, qp's decoder takes too: APPn and COM of any length,
        // restart and TEM markers between segments.
        for (what, file) in [
            ("APP15 with length 0", spliced(data, 2, &[0xFF, 0xEF, 0, 0])),
            ("COM", spliced(data, 2, &[0xFF, 0xFE, 0, 3, b'x'])),
            ("TEM", spliced(data, 2, &[0xFF, 0x01])),
        ] {
            assert!(
                turbo::decode(&file, 4, false).is_ok(),
                "{what}: libjpeg takes it"
            );
            assert!(
                decode_scaled(&file, 4, u64::MAX).is_some(),
                "{what}: qp takes it"
            );
        }
    }

    #[test]
    fn adobe_transform_0_means_rgb() {
        let data = fixtures!["baseline_444"][0].1;
        let ycc = decode_scaled(data, 2, u64::MAX).expect("decodes");
        // Replace the JFIF segment (which would mean YCbCr) by an Adobe one saying RGB.
        let (_, app0) = find_marker(data, 2).expect("first segment");
        assert_eq!(data[app0 + 1], 0xE0);
        let rest = app0 + 2 + usize::from(u16::from_be_bytes([data[app0 + 2], data[app0 + 3]]));
        let mut adobe = vec![0xFF, 0xD8, 0xFF, 0xEE, 0, 14];
        adobe.extend_from_slice(b"Adobe\0\x64\0\0\0\0\0");
        adobe.extend_from_slice(&data[rest..]);
        let raw = decode_scaled(&adobe, 2, u64::MAX).expect("decodes");
        assert_eq!(
            (raw.width, raw.height, raw.channels),
            (ycc.width, ycc.height, 4)
        );
        let (mut y, mut cb, mut cr) = (Vec::new(), Vec::new(), Vec::new());
        for p in raw.pixels.chunks_exact(4) {
            y.push(p[0]);
            cb.push(p[1]);
            cr.push(p[2]);
        }
        let mut converted = vec![0; raw.pixels.len()];
        ycc_to_rgbx(&y, &cb, &cr, &mut converted);
        assert_eq!(converted, ycc.pixels);
    }
}
