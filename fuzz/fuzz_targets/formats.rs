//! Shared by the per-format targets: every input reaches one decoder (its signature is put in
//! front unless already there), through the whole image core with the last byte choosing the
//! geometry and background. A panic is a crash (the fuzz build aborts on panic); an Ok must be
//! a real output.

use std::borrow::Cow;

use crate::image::{self, Background, Format, Mode, ResizeSpec, Size};

pub fn run(format: Format, data: &[u8]) {
    let Some(&knob) = data.last() else {
        return;
    };
    let input: Cow<[u8]> = match format {
        Format::WebP if !data.starts_with(b"RIFF") => {
            let mut v = b"RIFF".to_vec();
            v.extend_from_slice(&(data.len() as u32 + 4).to_le_bytes());
            v.extend_from_slice(b"WEBP");
            v.extend_from_slice(data);
            Cow::Owned(v)
        }
        _ => {
            let magic: &[u8] = match format {
                Format::Png => b"\x89PNG\r\n\x1a\n",
                Format::Gif => b"GIF89a",
                Format::Bmp => b"BM",
                Format::Tiff => b"II*\0",
                _ => b"",
            };
            if data.starts_with(magic) {
                Cow::Borrowed(data)
            } else {
                Cow::Owned([magic, data].concat())
            }
        }
    };
    let spec = ResizeSpec {
        sizes: vec![Size {
            width: [1u32, 7, 32, 224][usize::from(knob % 4)],
            height: 1 + u32::from(knob >> 3),
        }],
        mode: [Mode::Fill, Mode::Fit, Mode::Pad][usize::from((knob >> 2) % 3)],
        quality: 75,
        // Small enough that hostile headers cannot make a run slow or exhaust memory.
        max_pixels: 4_000_000,
        background: Background([knob, 0, 255 - knob]),
    };
    if let Ok(out) = image::process(&input, &spec) {
        assert!(out.len() == 1 && !out[0].jpeg.is_empty());
    }
}
