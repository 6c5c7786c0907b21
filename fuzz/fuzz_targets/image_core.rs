//! Fuzzes the whole image core (sniff, header, qp's reduced-scale decoder, libjpeg-turbo,
//! orientation, resize, encode), and checks that qp's own decoder never accepts what
//! libjpeg-turbo refuses at the same scale: the verdict on a file must not depend on which
//! decoder its output size picks. A panic is a crash here: the fuzz build aborts on panic, so
//! `process`'s catch_unwind safety net hides nothing.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/image/mod.rs"]
mod image;

// The image core names its failures with the crate's reasons.
#[allow(dead_code)]
#[path = "../../src/reason.rs"]
mod reason;

use image::{Mode, ResizeSpec, Size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the geometry, so the fuzzer explores every mode and decode scale.
    let Some((&knob, jpeg)) = data.split_first() else {
        return;
    };
    let mode = [Mode::Fill, Mode::Fit, Mode::Pad][usize::from(knob % 3)];
    let side = [1u32, 7, 32, 224][usize::from((knob >> 2) % 4)];
    let spec = ResizeSpec {
        sizes: vec![Size {
            width: side,
            height: side.max(1 + u32::from(knob >> 4)),
        }],
        mode,
        quality: 75,
        // Small enough that hostile headers cannot make a run slow or exhaust memory.
        max_pixels: 4_000_000,
        ..ResizeSpec::default()
    };
    let _ = image::process(jpeg, &spec);
    for eighths in image::scaled::EIGHTHS {
        if image::scaled::decode_scaled(jpeg, eighths, 4_000_000).is_some() {
            if let Err(e) = image::turbo::decode(jpeg, eighths, false) {
                panic!("qp's decoder took at {eighths}/8 what libjpeg-turbo refuses: {e}");
            }
        }
    }
});
