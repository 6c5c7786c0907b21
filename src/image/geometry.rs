//! Output geometry: where to crop, how big to resize, where to pad, and how far the decoder may
//! shrink the image for free before the resize.

use std::fmt;
use std::str::FromStr;

use super::Size;

/// How an image is made to fit a `WxH` size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Cover `WxH`, then centre-crop: exactly `WxH`, nothing distorted, edges cut.
    #[default]
    Fill,
    /// Shrink to fit inside `WxH`, keeping the aspect ratio; never enlarges. This is what
    /// Pillow's `Image.thumbnail((W, H))` does.
    Fit,
    /// Fit inside `WxH` (enlarging if needed), then letterbox with black to exactly `WxH`.
    Pad,
}

impl Mode {
    pub const NAMES: [&'static str; 3] = ["fill", "fit", "pad"];
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Fill => "fill",
            Mode::Fit => "fit",
            Mode::Pad => "pad",
        })
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fill" => Ok(Mode::Fill),
            "fit" => Ok(Mode::Fit),
            "pad" => Ok(Mode::Pad),
            _ => Err(format!("'{s}' is not a mode: expected fill, fit or pad")),
        }
    }
}

/// The geometry of one output, in full-scale (upright) source coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    /// Source region to resize: left, top, width, height (fractional: the centre crop need not
    /// fall on whole pixels).
    pub crop: (f64, f64, f64, f64),
    /// Size the crop is resized to.
    pub inner: (u32, u32),
    /// Size of the encoded output (differs from `inner` only when padding).
    pub output: (u32, u32),
    /// Where `inner` sits inside `output`.
    pub offset: (u32, u32),
}

impl Plan {
    pub fn new(mode: Mode, (w, h): (u32, u32), size: Size) -> Plan {
        let (wf, hf) = (f64::from(w), f64::from(h));
        let (tw, th) = (f64::from(size.width), f64::from(size.height));
        let full = (0.0, 0.0, wf, hf);
        let scaled = |s: f64, max: (u32, u32)| {
            (
                ((wf * s).round() as u32).clamp(1, max.0),
                ((hf * s).round() as u32).clamp(1, max.1),
            )
        };
        match mode {
            Mode::Fill => {
                let s = (tw / wf).max(th / hf);
                let (cw, ch) = ((tw / s).min(wf), (th / s).min(hf));
                let out = (size.width, size.height);
                Plan {
                    crop: ((wf - cw) / 2.0, (hf - ch) / 2.0, cw, ch),
                    inner: out,
                    output: out,
                    offset: (0, 0),
                }
            }
            Mode::Fit => {
                let s = (tw / wf).min(th / hf).min(1.0);
                let inner = scaled(s, (w, h));
                Plan {
                    crop: full,
                    inner,
                    output: inner,
                    offset: (0, 0),
                }
            }
            Mode::Pad => {
                let s = (tw / wf).min(th / hf);
                let inner = scaled(s, (size.width, size.height));
                Plan {
                    crop: full,
                    inner,
                    output: (size.width, size.height),
                    offset: ((size.width - inner.0) / 2, (size.height - inner.1) / 2),
                }
            }
        }
    }

    /// Source pixels per output pixel along the tighter axis.
    fn reduction(&self) -> f64 {
        let (_, _, cw, ch) = self.crop;
        (cw / f64::from(self.inner.0)).min(ch / f64::from(self.inner.1))
    }
}

/// The JPEG decode scale N/8: the smallest of qp's own decoder's ([`super::scaled::EIGHTHS`])
/// and 8/8 that still leaves at least one decoded pixel per output pixel for every requested
/// size. Decoding at N/8 in the DCT domain keeps the block's N x N lowest frequencies, a
/// proper low-pass filter, so the resize after it loses nothing. Not 3/8 or 7/8, where qp's
/// own decoder measured slower than the next scale up: 3/8 against 4/8 1.09x over a whole
/// fit, 7/8 against libjpeg-turbo's full decode (whose IDCT has SIMD) 1.07x (README,
/// Performance).
pub fn decode_scale(w: u32, h: u32, sizes: &[Size], mode: Mode) -> u8 {
    let reduction = sizes
        .iter()
        .map(|&s| Plan::new(mode, (w, h), s).reduction())
        .fold(f64::INFINITY, f64::min);
    // The smallest N with N/8 >= 1/reduction; the tolerance keeps an exact ratio (2.0) at 4/8.
    super::scaled::EIGHTHS
        .into_iter()
        .chain([8])
        .find(|&n| f64::from(n) * reduction >= 8.0 - 1e-9)
        .unwrap_or(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(w: u32, h: u32) -> Size {
        Size {
            width: w,
            height: h,
        }
    }

    #[test]
    fn fill_crops_the_centre() {
        let p = Plan::new(Mode::Fill, (640, 384), size(224, 224));
        assert_eq!(p.output, (224, 224));
        assert_eq!(p.inner, (224, 224));
        assert_eq!(p.crop, (128.0, 0.0, 384.0, 384.0));
    }

    #[test]
    fn fit_never_enlarges_and_keeps_aspect() {
        assert_eq!(
            Plan::new(Mode::Fit, (640, 384), size(224, 224)).output,
            (224, 134)
        );
        assert_eq!(
            Plan::new(Mode::Fit, (100, 50), size(224, 224)).output,
            (100, 50)
        );
        assert_eq!(
            Plan::new(Mode::Fit, (640, 1), size(224, 224)).output,
            (224, 1)
        );
    }

    #[test]
    fn pad_letterboxes_to_the_exact_size() {
        let p = Plan::new(Mode::Pad, (640, 384), size(224, 224));
        assert_eq!(p.output, (224, 224));
        assert_eq!(p.inner, (224, 134));
        assert_eq!(p.offset, (0, 45));
        let tiny = Plan::new(Mode::Pad, (1, 1), size(299, 299));
        assert_eq!((tiny.inner, tiny.output), ((299, 299), (299, 299)));
    }

    #[test]
    fn scale_table() {
        let s224 = [size(224, 224)];
        // (w, h, mode, sizes) -> N of the N/8 decode scale
        let cases: &[(u32, u32, Mode, &[Size], u8)] = &[
            (5120, 2880, Mode::Fill, &s224, 1),
            (5120, 2880, Mode::Fit, &s224, 1),
            (2560, 1600, Mode::Fill, &s224, 2),
            (2560, 1600, Mode::Fit, &s224, 1),
            // ImageNet's median: 375 rows do not cover 224 at 4/8 (188), they do at 5/8 (235).
            (500, 375, Mode::Fill, &s224, 5),
            (500, 375, Mode::Fit, &s224, 4),
            (400, 300, Mode::Fit, &s224, 5),
            (500, 500, Mode::Fit, &s224, 4),
            (300, 300, Mode::Fill, &s224, 6),
            // 3/8 would do; qp has no 3/8 decode (see decode_scale).
            (800, 600, Mode::Fit, &s224, 4),
            // 7/8 would do; qp has no 7/8 decode (see decode_scale).
            (256, 256, Mode::Fill, &s224, 8),
            (448, 448, Mode::Fill, &s224, 4),
            (640, 1, Mode::Fit, &s224, 8),
            (224, 224, Mode::Fill, &s224, 8),
            (100, 100, Mode::Pad, &s224, 8),
            (
                5120,
                2880,
                Mode::Fill,
                &[size(224, 224), size(1024, 1024)],
                4,
            ),
        ];
        for &(w, h, mode, sizes, want) in cases {
            assert_eq!(
                decode_scale(w, h, sizes, mode),
                want,
                "{w}x{h} {mode} {sizes:?}"
            );
        }
    }

    #[test]
    fn modes_parse() {
        assert_eq!("FIT".parse::<Mode>(), Ok(Mode::Fit));
        assert!("crop".parse::<Mode>().is_err());
        for name in Mode::NAMES {
            assert_eq!(name.parse::<Mode>().unwrap().to_string(), name);
        }
    }
}
