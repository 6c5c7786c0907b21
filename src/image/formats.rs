//! The formats other than JPEG: PNG, GIF, BMP and TIFF through image-rs's decoders, WebP
//! through libwebp ([`super::webp`]). Each is decoded at full size (none of them can decode
//! smaller for less work, as JPEG's DCT scaling does), upright-ready: gray stays one channel,
//! everything else becomes RGBX, alpha composited onto the background, 16-bit samples rounded
//! to 8 bits.
//!
//! Memory: the pixel limit is checked from the header before any pixel buffer exists, and the
//! decoder's own allocations (text chunks, palettes, strips) are capped too. The output is
//! converted in the decoder's buffer, so an image in flight holds one buffer of
//! max(decoded, RGBX) bytes.

use std::io::Cursor;

use image::{ColorType, ImageDecoder, Limits};

use super::background::{Background, over};
use super::{Format, ImageError, Orientation, Pixels, orient, sniff, webp};

/// Decodes `data` (already sniffed as `format`, not JPEG) to upright-ready pixels and the
/// orientation its metadata gives.
pub fn decode(
    data: &[u8],
    format: Format,
    background: Background,
    max_pixels: u64,
) -> Result<(Pixels, Orientation), ImageError> {
    if format == Format::WebP {
        return decode_webp(data, background, max_pixels);
    }
    if let Some((width, height)) = stated_size(data, format)
        && u64::from(width) * u64::from(height) > max_pixels
    {
        return Err(too_large(width, height, max_pixels));
    }
    // PhotometricInterpretation 3: image-rs's TIFF decoder has no palette support (Pillow has).
    if format == Format::Tiff
        && sniff::tiff_first_ifd(data).is_some_and(|ifd| ifd.contains(&(262, 3)))
    {
        return Err(ImageError::Unsupported("palette TIFF".into()));
    }
    let limits = decoder_limits(max_pixels);
    let cursor = Cursor::new(data);
    let err = |e| from_image(format, e);
    let decoder: Box<dyn ImageDecoder + '_> = match format {
        Format::Png => Box::new(
            image::codecs::png::PngDecoder::with_limits(cursor, limits.clone()).map_err(err)?,
        ),
        Format::Gif => Box::new(image::codecs::gif::GifDecoder::new(cursor).map_err(err)?),
        Format::Bmp => Box::new(image::codecs::bmp::BmpDecoder::new(cursor).map_err(err)?),
        Format::Tiff => Box::new(image::codecs::tiff::TiffDecoder::new(cursor).map_err(err)?),
        Format::Jpeg | Format::WebP => unreachable!("decoded elsewhere"),
    };
    read(decoder, format, background, max_pixels, limits)
}

fn read(
    mut decoder: Box<dyn ImageDecoder + '_>,
    format: Format,
    background: Background,
    max_pixels: u64,
    limits: Limits,
) -> Result<(Pixels, Orientation), ImageError> {
    let err = |e| from_image(format, e);
    let (width, height) = decoder.dimensions();
    check_size(width, height, max_pixels, format)?;
    decoder.set_limits(limits).map_err(err)?;
    // A broken orientation is no reason to reject the picture (as for JPEG's EXIF). PNG's eXIf
    // is read here, as some writers keep JPEG's "Exif\0\0" before the TIFF data; TIFF's
    // Orientation tag comes from its decoder.
    let orientation = match decoder.exif_metadata().ok().flatten() {
        Some(exif) => orient::from_exif(exif.strip_prefix(b"Exif\0\0").unwrap_or(&exif)),
        None => decoder
            .orientation()
            .ok()
            .and_then(|o| Orientation::new(o.to_exif())),
    }
    .unwrap_or_default();
    let color = decoder.color_type();
    let layout = Layout::of(color, background)
        .ok_or_else(|| ImageError::Unsupported(format!("{format} with {color:?} samples")))?;
    let pixels = width as usize * height as usize;
    let native =
        usize::try_from(decoder.total_bytes()).map_err(|_| too_large(width, height, max_pixels))?;
    let mut buf = vec![0u8; native.max(pixels * usize::from(layout.out_channels))];
    decoder.read_image(&mut buf[..native]).map_err(err)?;
    convert(&mut buf, pixels, layout, background);
    Ok((
        Pixels {
            width,
            height,
            channels: layout.out_channels,
            data: buf,
        },
        orientation,
    ))
}

/// The size a header states, read from its fixed place (TIFF: its first IFD): a hostile size is
/// refused before the decoder reads on (a PNG's chunks up to its first IDAT, a TIFF's strip
/// tables) or allocates anything for it.
fn stated_size(data: &[u8], format: Format) -> Option<(u32, u32)> {
    let u16le = |at: usize| {
        data.get(at..at + 2)
            .map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u32le = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u32be = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    match format {
        Format::Png if data.get(12..16) == Some(b"IHDR") => Some((u32be(16)?, u32be(20)?)),
        Format::Gif => Some((u16le(6)?, u16le(8)?)),
        // BITMAPCOREHEADER has 16-bit sides; the others signed 32-bit (negative: top-down rows).
        Format::Bmp if u32le(14)? == 12 => Some((u16le(18)?, u16le(20)?)),
        Format::Bmp => Some((
            (u32le(18)? as i32).unsigned_abs(),
            (u32le(22)? as i32).unsigned_abs(),
        )),
        // ImageWidth and ImageLength of the first IFD.
        Format::Tiff => {
            let ifd = sniff::tiff_first_ifd(data)?;
            let tag = |t: u16| ifd.iter().find(|e| e.0 == t).map(|e| e.1);
            Some((tag(256)?, tag(257)?))
        }
        _ => None,
    }
}

/// The decoder's own allocations beyond the image (text and ICC chunks, palettes, strip
/// buffers) are capped at the RGBA16 size of the largest image allowed, plus a margin.
fn decoder_limits(max_pixels: u64) -> Limits {
    let mut limits = Limits::no_limits();
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    limits
}

fn check_size(width: u32, height: u32, max_pixels: u64, format: Format) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt(
            format,
            format!("the header says {width}x{height}"),
        ));
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(too_large(width, height, max_pixels));
    }
    Ok(())
}

fn too_large(width: u32, height: u32, limit: u64) -> ImageError {
    ImageError::TooLarge {
        width,
        height,
        limit,
    }
}

fn decode_webp(
    data: &[u8],
    background: Background,
    max_pixels: u64,
) -> Result<(Pixels, Orientation), ImageError> {
    let f = webp::features(data)?;
    check_size(f.width, f.height, max_pixels, Format::WebP)?;
    let pixels = f.width as usize * f.height as usize;
    let mut buf = vec![0u8; pixels * 4];
    if f.animated {
        webp::first_frame_rgba(data, &f, &mut buf)?;
    } else {
        webp::decode_rgba(data, &f, &mut buf)?;
    }
    // An animation's canvas may be transparent around its first frame even without an ALPH
    // chunk in that frame.
    if f.alpha || f.animated {
        composite_rgba8(&mut buf, background);
    }
    let orientation = webp::exif(data)
        .and_then(orient::from_exif)
        .unwrap_or_default();
    Ok((
        Pixels {
            width: f.width,
            height: f.height,
            channels: 4,
            data: buf,
        },
        orientation,
    ))
}

/// How a decoder's samples become qp's pixels.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Samples per pixel in the decoder's output.
    channels: usize,
    /// 2 for 16-bit samples (native endian), else 1.
    bytes: usize,
    alpha: bool,
    /// 1 (gray) or 4 (RGBX).
    out_channels: u8,
}

impl Layout {
    fn of(color: ColorType, background: Background) -> Option<Layout> {
        let (channels, bytes, alpha) = match color {
            ColorType::L8 => (1, 1, false),
            ColorType::La8 => (2, 1, true),
            ColorType::Rgb8 => (3, 1, false),
            ColorType::Rgba8 => (4, 1, true),
            ColorType::L16 => (1, 2, false),
            ColorType::La16 => (2, 2, true),
            ColorType::Rgb16 => (3, 2, false),
            ColorType::Rgba16 => (4, 2, true),
            _ => return None,
        };
        // Gray stays gray, unless a coloured background shows through its transparency.
        let gray = channels <= 2 && (!alpha || background.is_gray());
        Some(Layout {
            channels,
            bytes,
            alpha,
            out_channels: if gray { 1 } else { 4 },
        })
    }
}

/// Converts `pixels` pixels of the decoder's layout at the start of `buf` into qp's, in place,
/// and trims `buf` to the result. Output pixels no larger than input ones are written front to
/// back, larger ones back to front, so no pixel is overwritten before it is read.
fn convert(buf: &mut Vec<u8>, pixels: usize, layout: Layout, background: Background) {
    let Layout {
        channels,
        bytes,
        alpha,
        out_channels,
    } = layout;
    let (inp, out) = (channels * bytes, usize::from(out_channels));
    let bg = background.0;
    // One sample of pixel `i`, channel `c`, as 8 bits.
    let sample = |buf: &[u8], i: usize, c: usize| -> u8 {
        let at = i * inp + c * bytes;
        if bytes == 1 {
            buf[at]
        } else {
            let v = u32::from(u16::from_ne_bytes([buf[at], buf[at + 1]]));
            // Rounded v / 257: 65535 -> 255, exactly.
            ((v * 255 + 32895) >> 16) as u8
        }
    };
    let pixel = |buf: &[u8], i: usize| -> [u8; 4] {
        let (r, g, b, a) = match channels {
            1 => {
                let v = sample(buf, i, 0);
                (v, v, v, 255)
            }
            2 => {
                let v = sample(buf, i, 0);
                (v, v, v, sample(buf, i, 1))
            }
            3 => (sample(buf, i, 0), sample(buf, i, 1), sample(buf, i, 2), 255),
            _ => (
                sample(buf, i, 0),
                sample(buf, i, 1),
                sample(buf, i, 2),
                sample(buf, i, 3),
            ),
        };
        if alpha {
            [over(r, a, bg[0]), over(g, a, bg[1]), over(b, a, bg[2]), 255]
        } else {
            [r, g, b, 255]
        }
    };
    if (inp, out, alpha) == (1, 1, false) {
        // L8: already qp's gray.
    } else if (inp, out) == (3, 4) {
        // RGB8, the common case, without the general path's per-sample dispatch. Back to front:
        // pixel i is read from 3i.. before anything is written at 4i.., which is past it.
        for i in (0..pixels).rev() {
            let (s, d) = (3 * i, 4 * i);
            let (r, g, b) = (buf[s], buf[s + 1], buf[s + 2]);
            buf[d..d + 4].copy_from_slice(&[r, g, b, 255]);
        }
    } else if (inp, out, bytes) == (4, 4, 1) {
        if alpha {
            composite_rgba8(&mut buf[..pixels * 4], background);
        }
    } else if out <= inp {
        for i in 0..pixels {
            let p = pixel(buf, i);
            buf[i * out..(i + 1) * out].copy_from_slice(&p[..out]);
        }
    } else {
        for i in (0..pixels).rev() {
            let p = pixel(buf, i);
            buf[i * out..(i + 1) * out].copy_from_slice(&p[..out]);
        }
    }
    buf.truncate(pixels * out);
}

/// RGBA8 in place to RGBX over `background`.
fn composite_rgba8(buf: &mut [u8], background: Background) {
    let [br, bg, bb] = background.0;
    for p in buf.chunks_exact_mut(4) {
        let a = p[3];
        if a != 255 {
            p[0] = over(p[0], a, br);
            p[1] = over(p[1], a, bg);
            p[2] = over(p[2], a, bb);
            p[3] = 255;
        }
    }
}

/// image-rs's errors in qp's words: running out of data is `truncated`; a decoder's complaint
/// about the data is `corrupt`; what it cannot do is `unsupported`.
fn from_image(format: Format, e: image::ImageError) -> ImageError {
    use image::ImageError as E;
    tracing::debug!(%format, error = %e, "image-rs decoder error");
    match e {
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ImageError::Truncated(format)
        }
        E::Decoding(d) if is_eof(&d.to_string()) => ImageError::Truncated(format),
        E::Decoding(_) => ImageError::Corrupt(format, "the image data is damaged".into()),
        E::Unsupported(u) => ImageError::Unsupported(unsupported(format, &u)),
        E::Limits(_) => ImageError::Unsupported(format!(
            "a {format} image that needs more memory than its pixel count allows"
        )),
        // The TIFF decoder reports damaged LZW or Deflate streams as invalid data.
        E::IoError(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            ImageError::Corrupt(format, "the image data is damaged".into())
        }
        E::IoError(io) => ImageError::Internal(format!("reading the {format} data: {io}")),
        E::Parameter(p) => ImageError::Internal(format!("decoding the {format} data: {p}")),
        E::Encoding(e) => ImageError::Internal(e.to_string()),
    }
}

/// Decoders that report the end of the data as a format error rather than an I/O one.
fn is_eof(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "unexpected end",
        "unexpected eof",
        "end of file",
        "no more data",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// What the decoder cannot do, in its own terms but without its wrapper sentence.
fn unsupported(format: Format, u: &image::error::UnsupportedError) -> String {
    use image::error::UnsupportedErrorKind as K;
    match u.kind() {
        K::Color(c) => format!("{format} with {c:?} pixels"),
        K::GenericFeature(what) => format!("{format} variant: {what}"),
        _ => format!("a {format} variant qp's decoder does not read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(color: ColorType, bg: Background) -> Layout {
        Layout::of(color, bg).unwrap()
    }

    #[test]
    fn conversions_in_place() {
        let black = Background::default();
        let red = Background([255, 0, 0]);
        // RGB8 grows to RGBX, back to front.
        let mut buf = vec![1, 2, 3, 4, 5, 6, 0, 0];
        convert(&mut buf, 2, layout(ColorType::Rgb8, black), black);
        assert_eq!(buf, [1, 2, 3, 255, 4, 5, 6, 255]);
        // RGBA16 shrinks, front to back; half-transparent white over red.
        let mut buf: Vec<u8> = [65535u16, 65535, 65535, 32896, 0, 257, 514, 65535]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        convert(&mut buf, 2, layout(ColorType::Rgba16, red), red);
        assert_eq!(buf, [255, 128, 128, 255, 0, 1, 2, 255]);
        // Gray with alpha stays gray over a gray background, becomes RGBX over a colour.
        let mut buf = vec![200, 0, 100, 255];
        convert(
            &mut buf,
            2,
            layout(ColorType::La8, Background([9; 3])),
            Background([9; 3]),
        );
        assert_eq!(buf, [9, 100]);
        let mut buf = vec![200, 0, 100, 255, 0, 0, 0, 0];
        convert(&mut buf, 2, layout(ColorType::La8, red), red);
        assert_eq!(buf, [255, 0, 0, 255, 100, 100, 100, 255]);
        // L16 to gray.
        let mut buf: Vec<u8> = [0u16, 65535, 257 * 77]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        convert(&mut buf, 3, layout(ColorType::L16, black), black);
        assert_eq!(buf, [0, 255, 77]);
    }

    #[test]
    fn float_samples_are_refused_by_name() {
        assert!(Layout::of(ColorType::Rgb32F, Background::default()).is_none());
    }
}
