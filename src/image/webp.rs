//! WebP through libwebp (the library Pillow and browsers use), decoded straight into qp's RGBX
//! buffer. libwebp reports errors as status codes and never aborts, so no C shim is needed.
#![allow(unsafe_code)]

use libwebp_sys as sys;

use super::{Format, ImageError};

/// What the RIFF header says, before any pixel is decoded.
pub struct Features {
    pub width: u32,
    pub height: u32,
    pub alpha: bool,
    pub animated: bool,
}

pub fn features(data: &[u8]) -> Result<Features, ImageError> {
    let mut f = sys::WebPBitstreamFeatures {
        width: 0,
        height: 0,
        has_alpha: 0,
        has_animation: 0,
        format: 0,
        pad: [0; 5],
    };
    // SAFETY: libwebp reads at most `data.len()` bytes and writes only `f`.
    let status = unsafe { sys::WebPGetFeatures(data.as_ptr(), data.len(), &mut f) };
    check(status)?;
    let side = |v: i32| u32::try_from(v).ok().filter(|&v| v > 0);
    let (Some(width), Some(height)) = (side(f.width), side(f.height)) else {
        return Err(corrupt("the header gives no image size"));
    };
    Ok(Features {
        width,
        height,
        alpha: f.has_alpha != 0,
        animated: f.has_animation != 0,
    })
}

/// Decodes a still WebP into `out` (RGBA, `width * 4` bytes a row, exactly sized).
pub fn decode_rgba(data: &[u8], f: &Features, out: &mut [u8]) -> Result<(), ImageError> {
    assert_eq!(out.len(), f.width as usize * f.height as usize * 4);
    let mut config = sys::WebPDecoderConfig::new()
        .map_err(|()| ImageError::Internal("libwebp's decoder version does not match".into()))?;
    config.output.colorspace = sys::WEBP_CSP_MODE::MODE_RGBA;
    config.output.is_external_memory = 1;
    config.output.u.RGBA = sys::WebPRGBABuffer {
        rgba: out.as_mut_ptr(),
        stride: i32::try_from(f.width * 4).map_err(|_| corrupt("the image is too wide"))?,
        size: out.len(),
    };
    // SAFETY: libwebp writes only inside the external buffer described above, which `out`
    // outlives; it checks the buffer is large enough for the image before writing.
    let status = unsafe { sys::WebPDecode(data.as_ptr(), data.len(), &mut config) };
    // External memory: nothing of libwebp's to free, but the call is the documented pairing.
    // SAFETY: `config.output` was initialised by WebPInitDecoderConfig.
    unsafe { sys::WebPFreeDecBuffer(&mut config.output) };
    check(status)?;
    if (config.output.width, config.output.height) != (f.width as i32, f.height as i32) {
        return Err(corrupt("the decoded size differs from the header"));
    }
    Ok(())
}

/// The first frame of an animated WebP, composited on its canvas as a viewer shows it first,
/// into `out` (RGBA, canvas-sized).
pub fn first_frame_rgba(data: &[u8], f: &Features, out: &mut [u8]) -> Result<(), ImageError> {
    assert_eq!(out.len(), f.width as usize * f.height as usize * 4);
    let mut options = sys::WebPAnimDecoderOptions {
        color_mode: sys::WEBP_CSP_MODE::MODE_RGBA,
        use_threads: 0,
        padding: [0; 7],
    };
    let input = sys::WebPData {
        bytes: data.as_ptr(),
        size: data.len(),
    };
    // SAFETY: `options` and `input` live across the calls; `data` outlives the decoder, which is
    // deleted before returning on every path.
    unsafe {
        if sys::WebPAnimDecoderOptionsInit(&mut options) == 0 {
            return Err(ImageError::Internal(
                "libwebp's demuxer version does not match".into(),
            ));
        }
        options.color_mode = sys::WEBP_CSP_MODE::MODE_RGBA;
        let dec = sys::WebPAnimDecoderNew(&input, &options);
        if dec.is_null() {
            return Err(corrupt("the animation's frames cannot be read"));
        }
        let mut info = sys::WebPAnimInfo::default();
        let mut frame: *mut u8 = std::ptr::null_mut();
        let mut timestamp = 0;
        let ok = sys::WebPAnimDecoderGetInfo(dec, &mut info) != 0
            && (info.canvas_width, info.canvas_height) == (f.width, f.height)
            && sys::WebPAnimDecoderGetNext(dec, &mut frame, &mut timestamp) != 0
            && !frame.is_null();
        if ok {
            // The frame is the decoder's canvas: canvas_width * 4 * canvas_height bytes.
            out.copy_from_slice(std::slice::from_raw_parts(frame, out.len()));
        }
        sys::WebPAnimDecoderDelete(dec);
        if !ok {
            return Err(corrupt("the first frame of the animation is damaged"));
        }
    }
    Ok(())
}

fn corrupt(what: &str) -> ImageError {
    ImageError::Corrupt(Format::WebP, what.into())
}

/// libwebp's status in qp's words.
fn check(status: sys::VP8StatusCode) -> Result<(), ImageError> {
    use sys::VP8StatusCode::*;
    match status {
        VP8_STATUS_OK => Ok(()),
        VP8_STATUS_NOT_ENOUGH_DATA => Err(ImageError::Truncated(Format::WebP)),
        VP8_STATUS_BITSTREAM_ERROR => Err(corrupt("the compressed image data is damaged")),
        VP8_STATUS_UNSUPPORTED_FEATURE => Err(ImageError::Unsupported(
            "a WebP feature libwebp does not decode".into(),
        )),
        VP8_STATUS_OUT_OF_MEMORY => Err(ImageError::Internal(
            "out of memory decoding the WebP image".into(),
        )),
        other => Err(ImageError::Internal(format!("libwebp said {other:?}"))),
    }
}

/// The EXIF payload of a WebP file's `EXIF` chunk (extended format), for the orientation.
pub fn exif(data: &[u8]) -> Option<&[u8]> {
    let mut at = 12;
    while let Some(head) = data.get(at..at + 8) {
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let body = data.get(at + 8..(at + 8).checked_add(size)?)?;
        if &head[..4] == b"EXIF" {
            // Some writers keep JPEG's APP1 prefix.
            return Some(body.strip_prefix(b"Exif\0\0").unwrap_or(body));
        }
        at += 8 + size + (size & 1);
    }
    None
}
