//! The marker structure: finding markers and length-prefixed segments in the byte stream,
//! and [`header`], the walk up to the first scan that reads the frame header and EXIF
//! without decoding anything. The decoder's own walk, which acts on every segment, is
//! `Decoder::run` in [`super::scan`].

/// What the markers before the first scan say: the frame header, and the EXIF payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    pub progressive: bool,
    /// A lossless frame (SOF3, 7, 11 or 15).
    pub lossless: bool,
    /// The TIFF structure of the last APP1 "Exif" segment (as libjpeg and Pillow keep the last).
    pub exif: Option<&'a [u8]>,
}

/// Reads the markers up to the first scan without decoding anything or building tables.
/// `None` if there is no frame header before the first scan, the marker structure breaks
/// first, or the file is not a JPEG: callers then ask libjpeg-turbo, whose error says why.
pub fn header(data: &[u8]) -> Option<Header<'_>> {
    if data.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let (mut pos, mut frame, mut exif) = (2, None, None);
    loop {
        let (marker, at) = find_marker(data, pos)?;
        pos = at + 2;
        match marker {
            0xD0..=0xD9 | 0x01 => continue,
            0xDA => break,
            _ => {}
        }
        let body = segment(data, at)?;
        pos = at + 2 + 2 + body.len();
        match marker {
            0xC4 | 0xC8 | 0xCC => {}
            0xC0..=0xCF => {
                if body.len() < 6 {
                    return None;
                }
                frame = frame.or(Some((body, marker)));
            }
            0xE1 => {
                if let Some(tiff) = body.strip_prefix(b"Exif\0\0") {
                    exif = Some(tiff);
                }
            }
            _ => {}
        }
    }
    let (body, marker) = frame?;
    Some(Header {
        height: u32::from(u16::from_be_bytes([body[1], body[2]])),
        width: u32::from(u16::from_be_bytes([body[3], body[4]])),
        components: body[5],
        progressive: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
        lossless: matches!(marker, 0xC3 | 0xC7 | 0xCB | 0xCF),
        exif,
    })
}

/// Finds the next marker at or after `from`: 0xFF followed by a byte that is neither 0x00
/// (stuffing) nor 0xFF (fill). Returns the marker byte and the position of its 0xFF.
pub(super) fn find_marker(data: &[u8], mut from: usize) -> Option<(u8, usize)> {
    loop {
        // Eight bytes at a time while none is 0xFF: entropy data is mostly that.
        while let Some(chunk) = data.get(from..).and_then(|d| d.first_chunk::<8>()) {
            let inv = !u64::from_ne_bytes(*chunk);
            if inv.wrapping_sub(0x0101_0101_0101_0101) & !inv & 0x8080_8080_8080_8080 != 0 {
                break;
            }
            from += 8;
        }
        let at = from + data.get(from..)?.iter().position(|&b| b == 0xFF)?;
        match *data.get(at + 1)? {
            0x00 | 0xFF => from = at + 1,
            m => return Some((m, at)),
        }
    }
}

/// The body of the length-prefixed segment whose marker is at `at`.
#[inline]
pub(super) fn segment(data: &[u8], at: usize) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*data.get(at + 2)?, *data.get(at + 3)?]));
    data.get(at + 4..(at + 2 + len).max(at + 4))
}

/// After a scan's entropy data from `pos`: the next marker that is not a restart marker.
pub(super) fn find_marker_after_scan(data: &[u8], mut pos: usize) -> Option<(u8, usize)> {
    loop {
        let (m, at) = find_marker(data, pos)?;
        if !(0xD0..=0xD7).contains(&m) {
            return Some((m, at));
        }
        pos = at + 2;
    }
}
