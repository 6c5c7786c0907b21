//! The image core: JPEG bytes in, model-ready JPEGs out. Pure: no files, no network.
//!
//! Every mode calls [`process`]: `qp resize` on local files, `qp work` on S3 objects.
//! The steps are: sniff the bytes, read the header (refusing oversized images before any pixel
//! buffer exists), pick a decode scale N/8, decode, apply the EXIF orientation, then for each
//! requested size crop/resize/pad with fast_image_resize and encode with libjpeg-turbo.
//!
//! Decoding: libjpeg-turbo ([`turbo`]) is the reference and decodes every file at every scale.
//! qp's own DCT-domain decoder ([`scaled`]) takes the 1/8, 1/4, 1/2, 5/8 and 6/8 scales of the
//! files it reads completely and cleanly (Huffman, 8-bit, gray or 3 components), where it is
//! faster; anything else, or anything it finds odd, goes to libjpeg-turbo, so the verdict on a
//! file never depends on the output size.

mod background;
mod formats;
mod geometry;
pub mod names;
mod orient;
pub mod scaled;
mod sniff;
pub mod turbo;
mod webp;

use std::fmt;
use std::str::FromStr;

use fast_image_resize as fr;

use crate::reason::FailureReason;

pub use background::Background;
pub use geometry::{Mode, Plan};
pub use orient::Orientation;
pub use sniff::{Format, sniff};

/// Default JPEG quality of the outputs: high enough that encoding artefacts stay well below what
/// the resize itself changes, while a 224x224 output stays around 15-25 KB.
pub const DEFAULT_QUALITY: u8 = 90;

/// Default pixel limit. A full-scale decode needs 4 bytes per pixel (RGBX), and a progressive or
/// multi-scan file another 2 bytes per sample for libjpeg's coefficient buffer (3 at 4:2:0, 6 at
/// 4:4:4), so 100 MP stays within 1 GB: two images in flight fit in a 2 GB Fargate task. Photos
/// shrunk by DCT scaling never allocate their full-size pixels at all.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// An output size, `WxH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Size {
    /// Largest side accepted for an output: JPEG itself stops at 65535, and anything near it is no
    /// model input.
    pub const MAX_SIDE: u32 = 16384;
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{s}' is not a size: expected WxH such as 224x224");
        let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let w: u32 = w.trim().parse().map_err(|_| bad())?;
        let h: u32 = h.trim().parse().map_err(|_| bad())?;
        if w == 0 || h == 0 || w > Self::MAX_SIDE || h > Self::MAX_SIDE {
            return Err(format!(
                "'{s}' is out of range: width and height must be 1 to {}",
                Self::MAX_SIDE
            ));
        }
        Ok(Size {
            width: w,
            height: h,
        })
    }
}

/// What to produce from each input image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResizeSpec {
    /// One output per size, all from a single decode.
    pub sizes: Vec<Size>,
    pub mode: Mode,
    /// JPEG quality, 1-100.
    pub quality: u8,
    /// Images with more pixels than this are refused from their header alone.
    pub max_pixels: u64,
    /// What transparent pixels are composited onto, and `pad`'s letterbox colour.
    pub background: Background,
}

impl Default for ResizeSpec {
    fn default() -> Self {
        ResizeSpec {
            sizes: vec![Size {
                width: 224,
                height: 224,
            }],
            mode: Mode::Fill,
            quality: DEFAULT_QUALITY,
            max_pixels: DEFAULT_MAX_PIXELS,
            background: Background::default(),
        }
    }
}

/// One encoded output.
#[derive(Clone, Debug)]
pub struct Resized {
    /// The size that was asked for (in `fit` mode the image may be smaller).
    pub size: Size,
    pub width: u32,
    pub height: u32,
    /// A baseline RGB JPEG.
    pub jpeg: Vec<u8>,
}

/// Why an image could not be converted. Every variant is a property of the bytes, so retrying the
/// same object never helps: the worker treats all of them as permanent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    #[error("not an image: the file is empty")]
    Empty,
    #[error("not an image: {0}")]
    NotImage(&'static str),
    /// A known format qp does not decode (HEIC, AVIF, camera raw, ...), named.
    #[error("unsupported: {0}")]
    UnsupportedFormat(&'static str),
    #[error("truncated: the {0} data ends before the image is complete")]
    Truncated(Format),
    #[error(
        "too large: {width}x{height} exceeds the limit of {limit} pixels (raise --max-pixels / QP_MAX_PIXELS)"
    )]
    TooLarge { width: u32, height: u32, limit: u64 },
    /// A variant of a decoded format that qp does not take (12-bit JPEG, float TIFF, ...).
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("corrupt {0}: {1}")]
    Corrupt(Format, String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ImageError {
    /// The cause's stable name, for logs, metrics and the DLQ's reason attribute.
    pub fn kind(&self) -> FailureReason {
        match self {
            ImageError::Empty | ImageError::NotImage(_) => FailureReason::NotImage,
            ImageError::UnsupportedFormat(_) => FailureReason::UnsupportedFormat,
            ImageError::Truncated(_) => FailureReason::Truncated,
            ImageError::TooLarge { .. } => FailureReason::TooLarge,
            ImageError::Unsupported(_) => FailureReason::Unsupported,
            ImageError::Corrupt(..) => FailureReason::Corrupt,
            ImageError::Internal(_) => FailureReason::Internal,
        }
    }
}

/// Decodes `data` once and produces one JPEG per size in `spec`.
///
/// Never panics: a panic anywhere below (a decoder bug on hostile input) is caught and reported as
/// [`ImageError::Internal`], so one bad file cannot take down a batch or a worker.
pub fn process(data: &[u8], spec: &ResizeSpec) -> Result<Vec<Resized>, ImageError> {
    match std::panic::catch_unwind(|| process_inner(data, spec)) {
        Ok(result) => result,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic in the image pipeline".into());
            Err(ImageError::Internal(msg))
        }
    }
}

fn process_inner(data: &[u8], spec: &ResizeSpec) -> Result<Vec<Resized>, ImageError> {
    let (pixels, display) = decode_for(data, spec)?;
    with_resizer(|resizer| {
        spec.sizes
            .iter()
            .map(|&size| {
                let plan = Plan::new(spec.mode, display, size);
                render(resizer, &pixels, display, &plan, spec).map(|(w, h, jpeg)| Resized {
                    size,
                    width: w,
                    height: h,
                    jpeg,
                })
            })
            .collect()
    })
}

/// The upright pixels [`process`] resizes for `spec`: decoded, turned by the orientation the
/// file's metadata gives, transparency composited onto the background. A JPEG comes at the
/// smallest scale N/8 that still serves every output size; other formats at full size.
pub fn decode_upright(data: &[u8], spec: &ResizeSpec) -> Result<Pixels, ImageError> {
    decode_for(data, spec).map(|(pixels, _)| pixels)
}

/// [`decode_upright`], and the upright size at full scale that the output geometry is planned
/// in.
fn decode_for(data: &[u8], spec: &ResizeSpec) -> Result<(Pixels, (u32, u32)), ImageError> {
    match sniff(data)? {
        Format::Jpeg => decode_jpeg(data, spec),
        format => {
            let (pixels, o) = formats::decode(data, format, spec.background, spec.max_pixels)?;
            let pixels = orient::apply(pixels, o);
            let display = (pixels.width, pixels.height);
            Ok((pixels, display))
        }
    }
}

/// A JPEG's upright pixels, decoded at the smallest scale N/8 that still serves every output,
/// and its upright size at full scale.
fn decode_jpeg(data: &[u8], spec: &ResizeSpec) -> Result<(Pixels, (u32, u32)), ImageError> {
    let header = read_header(data, spec.max_pixels)?;
    let display = header.orientation.display_size(header.width, header.height);
    let scale = geometry::decode_scale(display.0, display.1, &spec.sizes, spec.mode);
    let decoded = decode(data, &header, scale, spec.max_pixels)?;
    Ok((orient::apply(decoded, header.orientation), display))
}

/// Runs `f` with this thread's resizer. Kept from image to image, its scratch buffer is
/// allocated and cleared once instead of per image; one grown by a big image is freed after
/// it, so a thread never holds more than `KEEP` bytes between images.
fn with_resizer<T>(f: impl FnOnce(&mut fr::Resizer) -> T) -> T {
    const KEEP: usize = 4 << 20;
    thread_local! {
        static RESIZER: std::cell::RefCell<fr::Resizer> = std::cell::RefCell::new(fr::Resizer::new());
    }
    RESIZER.with(|cell| {
        // Nothing in `f` calls back into here; were it ever to, a fresh resizer beats a panic.
        let Ok(mut resizer) = cell.try_borrow_mut() else {
            return f(&mut fr::Resizer::new());
        };
        let out = f(&mut resizer);
        if resizer.size_of_internal_buffers() > KEEP {
            resizer.reset_internal_buffers();
        }
        out
    })
}

/// Decoded pixels: interleaved, 1 (gray) or 4 (RGBX: RGB and a spare byte) channels.
///
/// RGBX, not RGB: four bytes a pixel keep every pixel in one 32-bit lane, which the colour
/// conversion, fast_image_resize and libjpeg-turbo all process faster than three, more than
/// paying for the extra byte (small images, same-build A/B of whole runs: 9% less CPU in `fit`
/// mode, 4% in `fill`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

/// What the header tells before any pixel is decoded.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    /// As stored, before orientation.
    pub width: u32,
    pub height: u32,
    pub orientation: Orientation,
    /// A lossless frame (SOF3, 7, 11 or 15): libjpeg decodes it at full scale only.
    pub lossless: bool,
}

/// Reads the markers up to the first scan: size, and orientation from EXIF.
///
/// qp's own marker walk first (no tables built, nothing allocated). Where it gives up (broken
/// marker structure, no frame header, a 0 dimension), libjpeg-turbo reads the header to say
/// what is wrong.
pub fn read_header(data: &[u8], max_pixels: u64) -> Result<Header, ImageError> {
    let (width, height, orientation, lossless) = match scaled::header(data) {
        Some(h) if h.width > 0 && h.height > 0 => {
            (h.width, h.height, orientation(h.exif), h.lossless)
        }
        _ => {
            let h = turbo::header(data)?;
            (h.width, h.height, Orientation::default(), false)
        }
    };
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt(
            Format::Jpeg,
            format!("the frame header says {width}x{height}"),
        ));
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ImageError::TooLarge {
            width,
            height,
            limit: max_pixels,
        });
    }
    Ok(Header {
        width,
        height,
        orientation,
        lossless,
    })
}

/// The orientation an EXIF payload gives; upright without one, and for a broken one: a broken
/// EXIF block is no reason to reject the picture.
fn orientation(exif: Option<&[u8]>) -> Orientation {
    exif.and_then(orient::from_exif).unwrap_or_default()
}

/// Decodes `data` at `scale`/8 (1..=8), as stored (no orientation applied): the decode step of
/// [`process`] on its own, for benchmarks and conformance checks. Formats other than JPEG
/// decode at full size whatever the scale, transparency over black.
pub fn decode_at(data: &[u8], scale: u8, max_pixels: u64) -> Result<Pixels, ImageError> {
    match sniff(data)? {
        Format::Jpeg => {
            let header = read_header(data, max_pixels)?;
            decode(data, &header, scale.clamp(1, 8), max_pixels)
        }
        format => Ok(formats::decode(data, format, Background::default(), max_pixels)?.0),
    }
}

/// Decodes at `scale`/8: qp's own decoder where it applies (1, 2, 4, 5, 6), libjpeg-turbo
/// otherwise, at the same scale (at 5/8 and 6/8 slower than its full decode, but only
/// for the few files qp's decoder leaves to it: CMYK, arithmetic coding, odd sampling).
fn decode(data: &[u8], header: &Header, scale: u8, max_pixels: u64) -> Result<Pixels, ImageError> {
    if scale < 8
        && !header.lossless
        && let Some(s) = scaled::decode_scaled(data, scale, max_pixels)
    {
        return Ok(Pixels {
            width: s.width,
            height: s.height,
            channels: s.channels,
            data: s.pixels,
        });
    }
    let scale = if header.lossless { 8 } else { scale };
    let pixels = turbo::decode(data, scale, header.lossless)?;
    let want = (
        (u64::from(header.width) * u64::from(scale)).div_ceil(8),
        (u64::from(header.height) * u64::from(scale)).div_ceil(8),
    );
    if (u64::from(pixels.width), u64::from(pixels.height)) != want {
        return Err(ImageError::Corrupt(
            Format::Jpeg,
            "the decoded size differs from the header".into(),
        ));
    }
    Ok(pixels)
}

/// A shift of the crop's left edge, in source pixels. fast_image_resize 6.1 resizes u8 images
/// rows first, then columns from the first output column's source window on, assuming that
/// window starts leftmost. It trims a window's leading zero weights, and Catmull-Rom is zero at
/// one and two pixels from its centre: when the first output column's centre falls exactly on a
/// source pixel, its window starts a pixel or two right of the next column's, and the
/// subtraction wraps (an out-of-bounds read: found by the WebP fuzz target, 64x1 filled into
/// 7x2; about 1 in 1,500 random fill geometries). 1/4096 of a pixel never lands there, and
/// changes no output visibly.
const CROP_NUDGE: f64 = 1.0 / 4096.0;

/// Resizes `pixels` (already upright, `display` is its size at full scale) per `plan`, then
/// encodes. Returns the output width, height and JPEG bytes.
fn render(
    resizer: &mut fr::Resizer,
    pixels: &Pixels,
    display: (u32, u32),
    plan: &Plan,
    spec: &ResizeSpec,
) -> Result<(u32, u32, Vec<u8>), ImageError> {
    let internal = |e: &dyn fmt::Display| ImageError::Internal(e.to_string());
    // The plan is in full-scale coordinates; the decode may be 1/2..1/8 of that.
    let sx = f64::from(pixels.width) / f64::from(display.0);
    let sy = f64::from(pixels.height) / f64::from(display.1);
    let (cl, ct, cw, ch) = plan.crop;
    let (iw, ih) = plan.inner;
    let options = fr::ResizeOptions::new()
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::CatmullRom))
        // The fourth byte is padding, not alpha: nothing to premultiply.
        .use_alpha(false)
        .crop(
            cl * sx + CROP_NUDGE,
            ct * sy,
            (cw * sx).min(f64::from(pixels.width)) - CROP_NUDGE,
            (ch * sy).min(f64::from(pixels.height)),
        );
    let resized = if pixels.channels == 1 {
        resize_typed::<fr::pixels::U8>(resizer, pixels, (iw, ih), &options)
    } else {
        resize_typed::<fr::pixels::U8x4>(resizer, pixels, (iw, ih), &options)
    }
    .map_err(|e| internal(&e))?;
    let rgbx = to_rgbx(resized, pixels.channels);
    let (ow, oh) = plan.output;
    let rgbx = if (ow, oh) == (iw, ih) {
        rgbx
    } else {
        pad(&rgbx, (iw, ih), (ow, oh), plan.offset, spec.background)
    };
    let jpeg = turbo::encode(&rgbx, (ow, oh), spec.quality).map_err(|e| internal(&e))?;
    Ok((ow, oh, jpeg))
}

/// Resizes through the typed API: only the two pixel types qp decodes to are compiled in, where
/// the dynamic `Resizer::resize` instantiates every pixel type and SIMD variant (~3 MB of the
/// static binary).
fn resize_typed<P: fr::PixelTrait>(
    resizer: &mut fr::Resizer,
    pixels: &Pixels,
    (width, height): (u32, u32),
    options: &fr::ResizeOptions,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let src =
        fr::images::TypedImageRef::<P>::from_buffer(pixels.width, pixels.height, &pixels.data)?;
    let mut out = vec![0u8; width as usize * height as usize * usize::from(pixels.channels)];
    let mut dst = fr::images::TypedImage::<P>::from_buffer(width, height, &mut out)?;
    resizer.resize_typed(&src, &mut dst, options)?;
    Ok(out)
}

/// Outputs are always RGB (encoded from RGBX): models expect colour even from gray sources.
fn to_rgbx(buf: Vec<u8>, channels: u8) -> Vec<u8> {
    if channels == 4 {
        return buf;
    }
    buf.iter().flat_map(|&v| [v, v, v, 0xFF]).collect()
}

/// Places an `inner` RGBX image at `offset` on an `outer` canvas of the background colour
/// (letterboxing).
fn pad(
    rgbx: &[u8],
    inner: (u32, u32),
    outer: (u32, u32),
    offset: (u32, u32),
    background: Background,
) -> Vec<u8> {
    let (iw, ih) = (inner.0 as usize, inner.1 as usize);
    let (ow, oh) = (outer.0 as usize, outer.1 as usize);
    let (ox, oy) = (offset.0 as usize, offset.1 as usize);
    let mut out = background.rgbx().repeat(ow * oh);
    for y in 0..ih {
        let src = &rgbx[y * iw * 4..(y + 1) * iw * 4];
        let at = ((oy + y) * ow + ox) * 4;
        out[at..at + iw * 4].copy_from_slice(src);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_reject() {
        assert_eq!(
            "224x224".parse::<Size>(),
            Ok(Size {
                width: 224,
                height: 224
            })
        );
        assert_eq!(
            " 299X300 ".parse::<Size>().map(|s| s.to_string()),
            Ok("299x300".into())
        );
        for bad in ["", "224", "x224", "0x10", "10x0", "axb", "-1x5", "20000x20"] {
            assert!(bad.parse::<Size>().is_err(), "{bad} should not parse");
        }
    }

    /// A minimal JPEG header claiming 65000x65000: refused from the header, before any buffer.
    #[test]
    fn oversized_header_is_refused_before_decoding() {
        let data = huge_header(65000, 65000);
        let err = process(&data, &ResizeSpec::default()).unwrap_err();
        assert_eq!(
            err,
            ImageError::TooLarge {
                width: 65000,
                height: 65000,
                limit: DEFAULT_MAX_PIXELS
            }
        );
        assert!(
            err.to_string()
                .starts_with("too large: 65000x65000 exceeds")
        );
    }

    pub(crate) fn huge_header(w: u16, h: u16) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        // DQT: one table of ones.
        v.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x43, 0x00]);
        v.extend_from_slice(&[1u8; 64]);
        // SOF0, 8-bit, 1 component.
        v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 0x08]);
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&[0x01, 0x01, 0x11, 0x00]);
        // DHT: a DC table with one 1-bit code, and an AC table likewise.
        for class in [0x00u8, 0x10] {
            v.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x14, class, 1]);
            v.extend_from_slice(&[0u8; 15]);
            v.push(0);
        }
        // SOS and a little entropy data.
        v.extend_from_slice(&[
            0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x00, 0x00,
        ]);
        v.extend_from_slice(&[0xFF, 0xD9]);
        v
    }

    /// qp's marker walk and libjpeg-turbo's header reader agree on every fixture and on
    /// damaged copies of them: the same size, or both an error (the walk then defers to
    /// libjpeg-turbo, so the error is the same too).
    #[test]
    fn own_header_walk_agrees_with_libjpeg() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut checked = 0;
        for entry in std::fs::read_dir(&fixtures).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "jpg") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let mut variants = vec![data.clone(), huge_header(300, 200)];
            // Cut inside the markers, and a segment length pointing past the end.
            for cut in [3, 20, 100, 300] {
                variants.push(data[..cut.min(data.len())].to_vec());
            }
            if data.len() > 6 {
                let mut long = data.clone();
                long[4..6].copy_from_slice(&[0xFF, 0xF0]);
                variants.push(long);
            }
            for v in &variants {
                let ours = read_header(v, u64::MAX).ok().map(|h| (h.width, h.height));
                let reference = turbo::header(v)
                    .ok()
                    .map(|h| (h.width, h.height))
                    .filter(|&(w, h)| w > 0 && h > 0);
                assert_eq!(ours, reference, "{}", path.display());
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} headers checked");
        // The orientation is read on the fast path.
        let six = std::fs::read(fixtures.join("exif_orientation_6.jpg")).unwrap();
        let fast = scaled::header(&six).unwrap();
        assert_eq!(orient::from_exif(fast.exif.unwrap()), Orientation::new(6));
    }

    /// Geometries whose first output column's centre falls on a source pixel, which made
    /// fast_image_resize read outside the image (in a debug build: a subtraction overflow).
    #[test]
    fn crops_that_align_a_column_with_a_pixel_resize() {
        for (src, size) in [((64, 1), (7, 2)), ((64, 4), (7, 8)), ((49, 10), (37, 36))] {
            let pixels = Pixels {
                width: src.0,
                height: src.1,
                channels: 4,
                data: vec![90; src.0 as usize * src.1 as usize * 4],
            };
            let size = Size {
                width: size.0,
                height: size.1,
            };
            let plan = Plan::new(Mode::Fill, src, size);
            let spec = ResizeSpec::default();
            let (w, h, jpeg) = with_resizer(|r| render(r, &pixels, src, &plan, &spec)).unwrap();
            assert_eq!((w, h), (size.width, size.height));
            assert!(jpeg.starts_with(&[0xFF, 0xD8]));
        }
    }

    #[test]
    fn error_kinds_are_stable() {
        assert_eq!(ImageError::Truncated(Format::Png).kind(), "truncated");
        assert_eq!(ImageError::NotImage("x").kind(), "not_image");
        assert_eq!(
            ImageError::TooLarge {
                width: 1,
                height: 1,
                limit: 0
            }
            .kind(),
            "too_large"
        );
    }
}
