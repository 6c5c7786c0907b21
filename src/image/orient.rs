//! EXIF orientation: cameras store pixels as the sensor saw them and record in a tag how to turn
//! them upright. Models must see the upright picture, so the tag is applied after decoding.

use super::Pixels;

/// The EXIF orientation tag, 1-8 (1 is upright).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Orientation(u8);

impl Orientation {
    pub fn new(tag: u8) -> Option<Orientation> {
        (1..=8).contains(&tag).then_some(Orientation(tag))
    }

    pub fn tag(self) -> u8 {
        self.0.max(1)
    }

    /// Orientations 5-8 turn the picture by 90 degrees, swapping width and height.
    pub fn swaps_axes(self) -> bool {
        self.0 >= 5
    }

    pub fn display_size(self, w: u32, h: u32) -> (u32, u32) {
        if self.swaps_axes() { (h, w) } else { (w, h) }
    }
}

/// Reads the orientation from an EXIF (TIFF) payload; None if absent or unreadable, which means
/// upright: a broken EXIF block is no reason to reject the picture.
pub fn from_exif(tiff: &[u8]) -> Option<Orientation> {
    let exif = exif::Reader::new().read_raw(tiff.to_vec()).ok()?;
    let field = exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)?;
    let value = field.value.get_uint(0)?;
    Orientation::new(u8::try_from(value).ok()?)
}

/// Returns the upright image.
pub fn apply(p: Pixels, o: Orientation) -> Pixels {
    let (w, h) = (p.width as usize, p.height as usize);
    let c = usize::from(p.channels);
    // For each upright pixel (x, y), the stored pixel it comes from.
    let source: fn(usize, usize, usize, usize) -> (usize, usize) = match o.tag() {
        1 => return p,
        2 => |x, y, w, _| (w - 1 - x, y),
        3 => |x, y, w, h| (w - 1 - x, h - 1 - y),
        4 => |x, y, _, h| (x, h - 1 - y),
        5 => |x, y, _, _| (y, x),
        6 => |x, y, _, h| (y, h - 1 - x),
        7 => |x, y, w, h| (w - 1 - y, h - 1 - x),
        _ => |x, y, w, _| (w - 1 - y, x),
    };
    let (dw, dh) = o.display_size(p.width, p.height);
    let (dw, dh) = (dw as usize, dh as usize);
    let mut out = vec![0u8; p.data.len()];
    for y in 0..dh {
        for x in 0..dw {
            let (sx, sy) = source(x, y, w, h);
            let from = (sy * w + sx) * c;
            let to = (y * dw + x) * c;
            out[to..to + c].copy_from_slice(&p.data[from..from + c]);
        }
    }
    Pixels {
        width: dw as u32,
        height: dh as u32,
        channels: p.channels,
        data: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3x2 gray image:  1 2 3 / 4 5 6.
    fn sample() -> Pixels {
        Pixels {
            width: 3,
            height: 2,
            channels: 1,
            data: vec![1, 2, 3, 4, 5, 6],
        }
    }

    #[test]
    fn every_orientation_maps_as_exif_defines() {
        // The stored pixels that, with tag N, display as the upright sample.
        let cases: [(u8, u32, Vec<u8>); 8] = [
            (1, 3, vec![1, 2, 3, 4, 5, 6]),
            (2, 3, vec![3, 2, 1, 6, 5, 4]),
            (3, 3, vec![6, 5, 4, 3, 2, 1]),
            (4, 3, vec![4, 5, 6, 1, 2, 3]),
            (5, 2, vec![1, 4, 2, 5, 3, 6]),
            (6, 2, vec![3, 6, 2, 5, 1, 4]),
            (7, 2, vec![6, 3, 5, 2, 4, 1]),
            (8, 2, vec![4, 1, 5, 2, 6, 3]),
        ];
        for (tag, stored_w, stored) in cases {
            let p = Pixels {
                width: stored_w,
                height: 6 / stored_w,
                channels: 1,
                data: stored,
            };
            let upright = apply(p, Orientation::new(tag).unwrap());
            assert_eq!(upright, sample(), "orientation {tag}");
        }
    }

    #[test]
    fn invalid_tags_are_ignored() {
        assert_eq!(Orientation::new(0), None);
        assert_eq!(Orientation::new(9), None);
        assert_eq!(Orientation::default().tag(), 1);
        assert_eq!(from_exif(b"not tiff"), None);
    }
}
