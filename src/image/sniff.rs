//! What a file is, from its first bytes (never its name): one of the formats qp decodes, a
//! known format it does not (each named, so the DLQ says "HEIC image", not "not an image"), or
//! not an image at all.

use std::fmt;

use super::ImageError;

/// The formats qp decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    WebP,
    Gif,
    Bmp,
    Tiff,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::WebP => "WebP",
            Format::Gif => "GIF",
            Format::Bmp => "BMP",
            Format::Tiff => "TIFF",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The format of `data`, or why qp will not decode it.
pub fn sniff(data: &[u8]) -> Result<Format, ImageError> {
    if data.is_empty() {
        return Err(ImageError::Empty);
    }
    // A JPEG is FF D8 and then a marker; libjpeg-turbo reads past junk before the first marker
    // (with a warning), so any FF D8 start is a JPEG, damaged or not, and libjpeg gives the
    // verdict.
    if data.starts_with(&[0xFF, 0xD8]) {
        return Ok(Format::Jpeg);
    }
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if data.starts_with(b"RIFF") && data.get(8..12) == Some(b"WEBP") {
        return Ok(Format::WebP);
    }
    if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        return Ok(Format::Gif);
    }
    if is_bmp(data) {
        return Ok(Format::Bmp);
    }
    if data.starts_with(b"II*\0") || data.starts_with(b"MM\0*") {
        return match raw_in_tiff(data) {
            Some(kind) => Err(ImageError::UnsupportedFormat(kind)),
            None => Ok(Format::Tiff),
        };
    }
    if let Some(kind) = other_format(data) {
        return Err(ImageError::UnsupportedFormat(kind));
    }
    Err(ImageError::NotImage(if is_text(data) {
        "this is text"
    } else {
        "no signature of a known image format"
    }))
}

/// `BM`, then a file header whose DIB header size is one BMP defines: two letters alone are
/// too common a start of text.
fn is_bmp(data: &[u8]) -> bool {
    data.starts_with(b"BM")
        && data
            .get(14..18)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
            .is_some_and(|size| matches!(size, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124))
}

/// Formats recognised only to be named in the refusal.
fn other_format(data: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| data.get(offset..offset + magic.len()) == Some(magic);
    if at(4, b"ftyp") {
        // ISO base media: the major brand, then the compatible ones, say what is inside.
        let end = data.len().min(
            data.get(0..4)
                .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize),
        );
        let brands: Vec<&[u8]> = data
            .get(8..end.max(12))
            .unwrap_or_default()
            .chunks_exact(4)
            .collect();
        let has = |names: &[&[u8]]| brands.iter().any(|b| names.contains(b));
        return Some(if has(&[b"avif", b"avis"]) {
            "AVIF image"
        } else if has(&[
            b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
        ]) {
            "HEIC image"
        } else if has(&[b"crx "]) {
            "camera raw image (CR3)"
        } else if has(&[b"jxl "]) {
            "JPEG XL image"
        } else {
            "video or media file (ISO base media)"
        });
    }
    Some(
        if at(0, b"\0\0\0\x0cjP  \r\n\x87\n") || at(0, &[0xFF, 0x4F, 0xFF, 0x51]) {
            "JPEG 2000 image"
        } else if at(0, b"\0\0\0\x0cJXL \r\n\x87\n") || at(0, &[0xFF, 0x0A]) {
            "JPEG XL image"
        } else if at(0, b"8BPS") {
            "Photoshop document (PSD)"
        } else if at(0, b"%PDF") {
            "PDF document"
        } else if at(0, b"FUJIFILMCCD-RAW") {
            "camera raw image (RAF)"
        } else if at(0, b"IIRO") || at(0, b"IIRS") || at(0, b"MMOR") {
            "camera raw image (ORF)"
        } else if at(0, b"IIU\0") {
            "camera raw image (RW2)"
        } else if (at(0, &[0, 0, 1, 0]) || at(0, &[0, 0, 2, 0]))
            && data.get(4..6).is_some_and(|n| n != [0, 0])
            && data.get(8) == Some(&0)
        {
            "icon (ICO/CUR)"
        } else if is_svg(data) {
            "SVG image"
        } else if at(0, b"RIFF") {
            "RIFF file that is not WebP"
        } else {
            return None;
        },
    )
}

/// XML or HTML-ish text whose first element is `<svg`.
fn is_svg(data: &[u8]) -> bool {
    let head = &data[..data.len().min(4096)];
    let text = String::from_utf8_lossy(head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head));
    let t = text.trim_start();
    (t.starts_with("<?xml") || t.starts_with("<svg") || t.starts_with("<!DOCTYPE svg"))
        && t.contains("<svg")
}

fn is_text(data: &[u8]) -> bool {
    data.iter()
        .take(512)
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace())
}

/// Camera raw files that are TIFF by their first bytes. Decoded as TIFF they would give their
/// small embedded preview, not the photo: a wrong picture. Canon's CR2 marks itself at offset 8;
/// DNG has a DNGVersion tag; Nikon, Sony, Pentax and others put the raw data in sub-IFDs of a
/// first IFD that holds a preview.
fn raw_in_tiff(data: &[u8]) -> Option<&'static str> {
    if data.get(8..10) == Some(b"CR") {
        return Some("camera raw image (CR2)");
    }
    let entries = tiff_first_ifd(data)?;
    let value = |tag: u16| entries.iter().find(|e| e.0 == tag).map(|e| e.1);
    if value(0xC612).is_some() {
        return Some("camera raw image (DNG)");
    }
    // SubIFDs, and NewSubfileType bit 0: this IFD is a reduced-resolution copy of another image.
    (value(0x014A).is_some() && value(0x00FE).is_some_and(|v| v & 1 == 1))
        .then_some("camera raw image (TIFF-based, such as NEF or ARW)")
}

/// The entries of a TIFF file's first IFD: (tag, value), the value as stored inline for a
/// single SHORT or LONG (an offset otherwise). None if the file ends before the IFD does.
pub(super) fn tiff_first_ifd(data: &[u8]) -> Option<Vec<(u16, u32)>> {
    let big = data.starts_with(b"MM");
    let u16_at = |o: usize| {
        let s = data.get(o..o + 2)?;
        Some(if big {
            u16::from_be_bytes([s[0], s[1]])
        } else {
            u16::from_le_bytes([s[0], s[1]])
        })
    };
    let u32_at = |o: usize| {
        let s = data.get(o..o + 4)?;
        let b = [s[0], s[1], s[2], s[3]];
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = u32_at(4)? as usize;
    let count = usize::from(u16_at(ifd)?);
    (0..count.min(1024))
        .map(|i| {
            let entry = ifd.checked_add(2 + 12 * i)?;
            let (tag, kind, n) = (u16_at(entry)?, u16_at(entry + 2)?, u32_at(entry + 4)?);
            let value = match (kind, n) {
                (3, 1) => u32::from(u16_at(entry + 8)?),
                _ => u32_at(entry + 8)?,
            };
            Some((tag, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(data: &[u8]) -> String {
        sniff(data).unwrap_err().to_string()
    }

    /// A little-endian TIFF whose first IFD holds `entries` (tag, type, value).
    fn tiff(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = b"II*\0\x08\0\0\0".to_vec();
        v.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for &(tag, kind, value) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&kind.to_le_bytes());
            v.extend_from_slice(&1u32.to_le_bytes());
            v.extend_from_slice(&value.to_le_bytes());
        }
        v.extend_from_slice(&[0; 4]);
        v
    }

    #[test]
    fn decoded_formats_by_content() {
        let bmp = |size: u32| {
            let mut v = b"BM".to_vec();
            v.extend_from_slice(&[0; 12]);
            v.extend_from_slice(&size.to_le_bytes());
            v
        };
        for (data, want) in [
            (b"\xFF\xD8\xFF\xE0".to_vec(), Format::Jpeg),
            // Damaged after the SOI: still a JPEG (libjpeg gives the verdict).
            (b"\xFF\xD8\x00\x00".to_vec(), Format::Jpeg),
            (b"\x89PNG\r\n\x1a\n\0\0".to_vec(), Format::Png),
            (b"RIFF\0\0\0\0WEBPVP8 ".to_vec(), Format::WebP),
            (b"GIF89a\x01\0".to_vec(), Format::Gif),
            (b"GIF87a\x01\0".to_vec(), Format::Gif),
            (bmp(40), Format::Bmp),
            (bmp(124), Format::Bmp),
            (bmp(12), Format::Bmp),
            (tiff(&[(256, 3, 8)]), Format::Tiff),
            (b"MM\0*\0\0\0\x08\0\0".to_vec(), Format::Tiff),
        ] {
            assert_eq!(sniff(&data), Ok(want), "{data:?}");
        }
    }

    #[test]
    fn every_other_format_is_named() {
        let ftyp = |brands: &[u8]| {
            let mut v = ((8 + brands.len()) as u32).to_be_bytes().to_vec();
            v.extend_from_slice(b"ftyp");
            v.extend_from_slice(brands);
            v
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (ftyp(b"heic\0\0\0\0mif1heic"), "HEIC image"),
            (ftyp(b"mif1\0\0\0\0mif1heic"), "HEIC image"),
            (ftyp(b"avif\0\0\0\0avifmif1"), "AVIF image"),
            (ftyp(b"mif1\0\0\0\0avifmif1miaf"), "AVIF image"),
            (ftyp(b"crx \0\0\0\x01crx isom"), "camera raw image (CR3)"),
            (
                ftyp(b"isom\0\0\x02\0isomiso2mp41"),
                "video or media file (ISO base media)",
            ),
            (
                b"\0\0\0\x0cjP  \r\n\x87\n\0\0\0\x14ftypjp2 ".to_vec(),
                "JPEG 2000 image",
            ),
            (vec![0xFF, 0x4F, 0xFF, 0x51, 0, 0x2F], "JPEG 2000 image"),
            (b"\0\0\0\x0cJXL \r\n\x87\n".to_vec(), "JPEG XL image"),
            (vec![0xFF, 0x0A, 0xFA, 0x7F], "JPEG XL image"),
            (b"8BPS\0\x01\0\0".to_vec(), "Photoshop document (PSD)"),
            (b"%PDF-1.7\n".to_vec(), "PDF document"),
            (
                b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec(),
                "SVG image",
            ),
            (
                b"\xEF\xBB\xBF  <svg width=\"10\"></svg>".to_vec(),
                "SVG image",
            ),
            (
                b"II*\0\x10\0\0\0CR\x02\0".to_vec(),
                "camera raw image (CR2)",
            ),
            (
                tiff(&[(254, 4, 1), (256, 3, 160), (0xC612, 1, 0x0104)]),
                "camera raw image (DNG)",
            ),
            (
                tiff(&[(254, 4, 1), (256, 3, 160), (0x014A, 4, 100)]),
                "camera raw image (TIFF-based, such as NEF or ARW)",
            ),
            (b"FUJIFILMCCD-RAW 0201".to_vec(), "camera raw image (RAF)"),
            (b"IIRO\x08\0\0\0".to_vec(), "camera raw image (ORF)"),
            (b"IIU\0\x08\0\0\0".to_vec(), "camera raw image (RW2)"),
            (vec![0, 0, 1, 0, 1, 0, 16, 16, 0, 0], "icon (ICO/CUR)"),
            (
                b"RIFF\0\0\0\0WAVEfmt ".to_vec(),
                "RIFF file that is not WebP",
            ),
        ];
        for (data, kind) in cases {
            let err = sniff(&data).unwrap_err();
            assert_eq!(err, ImageError::UnsupportedFormat(kind), "{data:?}");
            assert_eq!(err.to_string(), format!("unsupported: {kind}"));
            assert_eq!(err.kind(), "unsupported_format");
        }
        // A TIFF with sub-IFDs whose first image is the full one (no reduced flag) is a TIFF.
        assert_eq!(
            sniff(&tiff(&[(256, 3, 160), (0x014A, 4, 100)])),
            Ok(Format::Tiff)
        );
    }

    #[test]
    fn what_is_not_an_image_says_what_it_is() {
        assert_eq!(sniff(b""), Err(ImageError::Empty));
        assert_eq!(refused(b""), "not an image: the file is empty");
        assert_eq!(refused(b"hello world\n"), "not an image: this is text");
        assert_eq!(refused(b"BMW 320i\n"), "not an image: this is text");
        assert_eq!(
            refused(&[0x00, 0x9C, 0x13, 0x77, 0xFE]),
            "not an image: no signature of a known image format"
        );
        assert_eq!(sniff(b"GIF8").unwrap_err().kind(), "not_image");
    }
}
