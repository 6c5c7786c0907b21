//! The libjpeg-turbo binding: the reference decoder (every JPEG process libjpeg-turbo 3 reads,
//! at any scale N/8) and the encoder of every output.
//!
//! The C side (`shim.c`) drives libjpeg and catches its errors with setjmp, so a broken file is
//! an error value here, never a longjmp or an abort through Rust. It reports what libjpeg saw
//! (fatal error, warnings, whether the data ran out, whether every component and coefficient
//! arrived); [`verdict`] turns that into qp's decision, in qp's words. This module and the AVX2
//! dispatch are the only places allowed `unsafe`: calling C is unsafe by definition.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_uchar, c_ulong, c_void};
use std::ptr::NonNull;

use super::{Format, ImageError, Pixels};

// Links libjpeg-turbo's static library, which shim.c calls: nothing in Rust names the crate.
use turbojpeg_sys as _;

/// More scans than any encoder writes (a full successive-approximation script for 4
/// components is under 40), fewer than it takes to make one file cost minutes: each scan of a
/// progressive file is a pass over the whole image's coefficients.
pub const MAX_SCANS: u32 = 100;

#[repr(C)]
struct QpDec {
    _opaque: [u8; 0],
}

/// Mirrors `qp_info` in shim.c field for field.
#[repr(C)]
struct Info {
    scale_num: c_int,
    max_scans: c_int,
    width: c_int,
    height: c_int,
    components: c_int,
    color_space: c_int,
    precision: c_int,
    progressive: c_int,
    arith: c_int,
    lossless: c_int,
    adobe: c_int,
    out_width: c_int,
    out_height: c_int,
    out_components: c_int,
    out_kind: c_int,
    cause: c_int,
    param: c_int,
    eof: c_int,
    incomplete: c_int,
    lines: c_int,
    scans: c_int,
    bad_data: c_int,
    hit_marker: c_int,
    hit_at_eof: c_int,
    resync: c_int,
    bogus_progression: c_int,
    extraneous: c_int,
    other_warnings: c_int,
    message: [c_char; 200],
}

unsafe extern "C" {
    fn qp_dec_new() -> *mut QpDec;
    fn qp_dec_free(q: *mut QpDec);
    fn qp_dec_header(q: *mut QpDec, data: *const u8, len: usize, info: *mut Info) -> c_int;
    fn qp_dec_start(q: *mut QpDec, lossless: c_int, info: *mut Info) -> c_int;
    fn qp_dec_pixels(q: *mut QpDec, out: *mut u8, stride: usize, info: *mut Info) -> c_int;
    fn qp_encode(
        rgbx: *const u8,
        width: c_int,
        height: c_int,
        quality: c_int,
        full_chroma: c_int,
        out: *mut *mut c_uchar,
        out_len: *mut c_ulong,
        message: *mut c_char,
    ) -> c_int;
    fn qp_free(p: *mut c_void);
}

// qp_cause in shim.c.
const TRUNCATED: c_int = 1;
const CORRUPT_DATA: c_int = 2;
const CORRUPT_RESTART: c_int = 3;
const CORRUPT_PROGRESSION: c_int = 4;
const BAD_HUFFMAN: c_int = 5;
const BAD_QUANT: c_int = 6;
const BAD_FRAME: c_int = 7;
const BAD_SCAN: c_int = 8;
const BAD_STRUCTURE: c_int = 9;
const NO_IMAGE: c_int = 10;
const UNSUP_PRECISION: c_int = 11;
const UNSUP_PROCESS: c_int = 12;
const UNSUP_COMPONENTS: c_int = 13;
const TOO_MANY_SCANS: c_int = 14;
const NO_MEMORY: c_int = 15;
const ARITH_TABLE: c_int = 17;
const BAD_COEFFICIENT: c_int = 18;
const TOO_LARGE: c_int = 19;
const UNSUP_COLOR: c_int = 20;

// qp_out in shim.c.
const OUT_GRAY: c_int = 1;
const OUT_RGBX: c_int = 2;
const OUT_RGB: c_int = 3;
const OUT_YCC: c_int = 4;
const OUT_CMYK: c_int = 5;

impl Info {
    fn new(scale_num: u8) -> Info {
        // SAFETY: Info is plain integers and bytes; all zeros is a valid value.
        let mut info: Info = unsafe { std::mem::zeroed() };
        info.scale_num = c_int::from(scale_num);
        info.max_scans = MAX_SCANS as c_int;
        info
    }

    /// libjpeg's own wording of the first problem it met: for tests and debug logs only.
    fn libjpeg_message(&self) -> String {
        // SAFETY: the C side writes NUL-terminated text into the zeroed buffer, never past it
        // (format_message writes at most JMSG_LENGTH_MAX bytes, checked there).
        let text = unsafe { CStr::from_ptr(self.message.as_ptr()) };
        text.to_string_lossy().into_owned()
    }
}

/// One libjpeg decompressor, kept per thread: creating one costs its memory manager's set-up.
struct Decompressor(NonNull<QpDec>);

impl Decompressor {
    fn new() -> Result<Decompressor, ImageError> {
        // SAFETY: qp_dec_new returns an owned pointer or NULL.
        NonNull::new(unsafe { qp_dec_new() })
            .map(Decompressor)
            .ok_or(ImageError::Internal(
                "out of memory for the JPEG decoder".into(),
            ))
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the pointer came from qp_dec_new and is freed once.
        unsafe { qp_dec_free(self.0.as_ptr()) }
    }
}

fn with_decompressor<T>(
    f: impl FnOnce(&mut Decompressor) -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    thread_local! {
        static DEC: std::cell::RefCell<Option<Decompressor>> = const { std::cell::RefCell::new(None) };
    }
    DEC.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return f(&mut Decompressor::new()?);
        };
        if slot.is_none() {
            *slot = Some(Decompressor::new()?);
        }
        f(slot.as_mut().expect("set above"))
    })
}

/// What libjpeg-turbo's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    pub width: u32,
    pub height: u32,
    pub components: u32,
    pub progressive: bool,
}

/// Reads the header with libjpeg-turbo: for the cause of a header qp's own walk could not read.
pub fn header(data: &[u8]) -> Result<HeaderInfo, ImageError> {
    with_decompressor(|dec| {
        let mut info = Info::new(8);
        // SAFETY: data outlives the call; info is a valid Info; dec is a live decompressor.
        let rc = unsafe { qp_dec_header(dec.0.as_ptr(), data.as_ptr(), data.len(), &mut info) };
        if rc != 0 {
            return Err(fatal(&info));
        }
        Ok(HeaderInfo {
            width: info.width as u32,
            height: info.height as u32,
            components: info.components as u32,
            progressive: info.progressive != 0,
        })
    })
}

/// Decodes `data` at `scale_num`/8 (1..=8; lossless files always at 8/8).
///
/// `lossless` is whether the frame is SOF3/7/11/15, read by the caller's marker walk: libjpeg
/// then neither scales nor converts colour, and the conversion is done here.
pub fn decode(data: &[u8], scale_num: u8, lossless: bool) -> Result<Pixels, ImageError> {
    debug_assert!((1..=8).contains(&scale_num));
    with_decompressor(|dec| {
        let mut info = Info::new(scale_num);
        let q = dec.0.as_ptr();
        // SAFETY: as in `header`; each step runs only after the previous one succeeded, as the
        // C side requires (it also checks, and reports an internal error otherwise).
        if unsafe { qp_dec_header(q, data.as_ptr(), data.len(), &mut info) } != 0 {
            return Err(fatal(&info));
        }
        if unsafe { qp_dec_start(q, c_int::from(lossless), &mut info) } != 0 {
            return Err(fatal(&info));
        }
        let (w, h) = (info.out_width as usize, info.out_height as usize);
        let channels = info.out_components as usize;
        let stride = w * channels;
        let len = stride
            .checked_mul(h)
            .ok_or(ImageError::Internal("decoded size overflows".into()))?;
        let mut buf = Vec::new();
        if buf.try_reserve_exact(len).is_err() {
            // The C side is left started; the next header call resets it.
            return Err(ImageError::Internal(format!(
                "out of memory for a {w}x{h} decode"
            )));
        }
        // Not cleared first: libjpeg writes every byte, and clearing ~0.75 MB per ImageNet-sized
        // file was 2% of a 224 fill's CPU (perf).
        // SAFETY: buf's capacity holds h rows of `stride` bytes, as many as libjpeg writes.
        if unsafe { qp_dec_pixels(q, buf.as_mut_ptr(), stride, &mut info) } != 0 {
            return Err(fatal(&info));
        }
        // SAFETY: qp_dec_pixels succeeds only after reading scanlines up to output_height, each
        // written whole into its row: all `len` bytes are initialised.
        unsafe { buf.set_len(len) };
        verdict(&info)?;
        to_pixels(&info, buf)
    })
}

/// qp's decision on a decode that libjpeg finished, from the warnings it gave on the way.
///
/// libjpeg substitutes zeros for data it cannot read and goes on; Pillow takes the result as
/// it is. qp refuses wherever the picture is known to be wrong: a training set is better off
/// without a picture than with a grey or garbled one (README, "Which JPEGs qp decodes").
fn verdict(info: &Info) -> Result<(), ImageError> {
    let complete = info.lines == info.out_height && info.incomplete == 0;
    let cause = if info.eof != 0 && (!complete || info.hit_at_eof != 0) {
        TRUNCATED
    } else if info.bad_data != 0 || info.hit_marker != 0 {
        CORRUPT_DATA
    } else if info.resync != 0 {
        CORRUPT_RESTART
    } else if info.bogus_progression != 0 {
        CORRUPT_PROGRESSION
    } else {
        return Ok(());
    };
    Err(error(cause, info))
}

/// The error for a decode libjpeg-turbo gave up on.
fn fatal(info: &Info) -> ImageError {
    error(info.cause, info)
}

/// A cause (the shim's, or [`verdict`]'s) in qp's words.
fn error(cause: c_int, info: &Info) -> ImageError {
    let p = info.param;
    let corrupt = |what: &str| ImageError::Corrupt(Format::Jpeg, what.to_string());
    match cause {
        TRUNCATED => ImageError::Truncated(Format::Jpeg),
        CORRUPT_DATA => corrupt("the compressed image data is damaged"),
        CORRUPT_RESTART => corrupt("the restart markers are out of sequence"),
        CORRUPT_PROGRESSION => corrupt("the progressive scans contradict each other"),
        BAD_HUFFMAN => corrupt("a Huffman table is missing or invalid"),
        BAD_QUANT => corrupt("a quantization table is missing or invalid"),
        ARITH_TABLE => corrupt("an arithmetic-coding table is missing or invalid"),
        BAD_COEFFICIENT => corrupt("a coefficient is out of range"),
        BAD_FRAME => corrupt("the frame header is invalid (size, components or sampling)"),
        BAD_SCAN => corrupt("a scan header is invalid"),
        BAD_STRUCTURE => corrupt("the marker structure is broken"),
        NO_IMAGE => corrupt("no image frame before the end of the data"),
        UNSUP_PRECISION if info.lossless != 0 => {
            ImageError::Unsupported(format!("lossless JPEG with {p}-bit samples"))
        }
        UNSUP_PRECISION => ImageError::Unsupported(format!("{p}-bit JPEG")),
        UNSUP_PROCESS => ImageError::Unsupported(match p {
            0xC5..=0xC7 | 0xCD..=0xCF => "hierarchical JPEG".to_string(),
            _ => format!("JPEG process SOF{}", p & 0x0F),
        }),
        UNSUP_COMPONENTS => ImageError::Unsupported(format!("JPEG with {p} colour components")),
        UNSUP_COLOR => ImageError::Unsupported("this JPEG colour space".into()),
        TOO_MANY_SCANS => corrupt(&format!("more than {p} scans")),
        TOO_LARGE => ImageError::Unsupported("an image this large".into()),
        NO_MEMORY => ImageError::Internal("out of memory while decoding".into()),
        _ => ImageError::Internal(format!(
            "the JPEG decoder failed ({})",
            info.libjpeg_message()
        )),
    }
}

/// Packs libjpeg's output as qp's [`Pixels`]: gray, or RGBX.
fn to_pixels(info: &Info, buf: Vec<u8>) -> Result<Pixels, ImageError> {
    let (width, height) = (info.out_width as u32, info.out_height as u32);
    let (channels, data) = match info.out_kind {
        OUT_GRAY => (1, buf),
        OUT_RGBX => (4, buf),
        OUT_RGB => (
            4,
            buf.chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 0xFF])
                .collect(),
        ),
        OUT_YCC => (
            4,
            buf.chunks_exact(3)
                .flat_map(|p| ycc_to_rgbx(p[0], p[1], p[2]))
                .collect(),
        ),
        OUT_CMYK => (4, cmyk_to_rgbx(buf, info.adobe != 0)),
        k => return Err(ImageError::Internal(format!("unknown output layout {k}"))),
    };
    Ok(Pixels {
        width,
        height,
        channels,
        data,
    })
}

/// libjpeg's YCbCr -> RGB (JFIF, full range), for lossless files, where libjpeg leaves it to
/// the caller.
fn ycc_to_rgbx(y: u8, cb: u8, cr: u8) -> [u8; 4] {
    let (y, cb, cr) = (f32::from(y), f32::from(cb) - 128.0, f32::from(cr) - 128.0);
    let c = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [
        c(y + 1.402 * cr),
        c(y - 0.344_136 * cb - 0.714_136 * cr),
        c(y + 1.772 * cb),
        0xFF,
    ]
}

/// CMYK -> RGB as Pillow does it (`R = (255 - C)(255 - K) / 255`), in place. Adobe's
/// applications (the writers of an APP14 marker) store CMYK inverted, and Pillow reads it so.
fn cmyk_to_rgbx(mut buf: Vec<u8>, inverted: bool) -> Vec<u8> {
    for px in buf.chunks_exact_mut(4) {
        let [c, m, y, k] = [px[0], px[1], px[2], px[3]];
        let (c, m, y, k) = if inverted {
            (255 - c, 255 - m, 255 - y, 255 - k)
        } else {
            (c, m, y, k)
        };
        let nk = 255 - u32::from(k);
        // Pillow's MULDIV255: (a * b + 128 + ((a * b + 128) >> 8)) >> 8, exact division by 255.
        let scale = |v: u8| {
            let t = u32::from(v) * nk + 128;
            let prod = (t + (t >> 8)) >> 8;
            (nk - prod) as u8
        };
        px.copy_from_slice(&[scale(c), scale(m), scale(y), 0xFF]);
    }
    buf
}

/// Baseline JPEG of an RGBX buffer (the X byte ignored) with libjpeg's standard tables and the
/// accurate DCT. Chroma is 4:4:4 from quality 90 up and 4:2:0 below (libvips' convention): 4:2:0
/// would halve the encoding work, but costs small outputs of colourful sources ~4 dB
/// (tests/image.rs: 26.7 dB at 80x48).
pub fn encode(rgbx: &[u8], (width, height): (u32, u32), quality: u8) -> Result<Vec<u8>, String> {
    let needed = (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(4));
    if needed != Some(rgbx.len()) || width == 0 || height == 0 {
        return Err(format!(
            "the JPEG encoder was handed {} bytes for {width}x{height}",
            rgbx.len()
        ));
    }
    let (mut out, mut out_len): (*mut c_uchar, c_ulong) = (std::ptr::null_mut(), 0);
    let mut message = [0 as c_char; 200];
    // SAFETY: rgbx holds width*height RGBX pixels (checked above); the C side allocates `out`
    // with malloc (or leaves it NULL on failure) and writes at most 200 bytes of message.
    let rc = unsafe {
        qp_encode(
            rgbx.as_ptr(),
            width as c_int,
            height as c_int,
            c_int::from(quality),
            c_int::from(quality >= 90),
            &mut out,
            &mut out_len,
            message.as_mut_ptr(),
        )
    };
    if rc != 0 || out.is_null() {
        // SAFETY: NUL-terminated by the C side (or still all zeros).
        let why = unsafe { CStr::from_ptr(message.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: freeing NULL is a no-op; otherwise `out` came from malloc.
        unsafe { qp_free(out.cast()) };
        return Err(format!("the JPEG encoder failed: {why}"));
    }
    // SAFETY: the C side wrote out_len bytes at `out`; they are copied before it is freed.
    let jpeg = unsafe { std::slice::from_raw_parts(out, out_len as usize) }.to_vec();
    unsafe { qp_free(out.cast()) };
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_matches_pillows_formula() {
        // Pillow: cmyk2rgb, R = 255 - K - C*(255-K)/255 rounded, for plain CMYK.
        let px = cmyk_to_rgbx(vec![0, 128, 255, 0, 10, 20, 30, 255], false);
        assert_eq!(&px[..4], &[255, 127, 0, 0xFF]);
        assert_eq!(&px[4..], &[0, 0, 0, 0xFF]);
        let inv = cmyk_to_rgbx(vec![255, 127, 0, 255], true);
        assert_eq!(inv, vec![255, 127, 0, 0xFF]);
    }

    #[test]
    fn encode_refuses_a_short_buffer() {
        assert!(encode(&[0; 12], (2, 2), 90).is_err());
        let jpeg = encode(&[200; 16], (2, 2), 90).unwrap();
        assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]));
    }
}
