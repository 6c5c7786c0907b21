//! The Tiff decoder path of the image core (fuzz_targets/formats.rs).
#![no_main]

mod formats;
#[allow(dead_code)]
#[path = "../../src/image/mod.rs"]
mod image;

libfuzzer_sys::fuzz_target!(|data: &[u8]| formats::run(image::Format::Tiff, data));
