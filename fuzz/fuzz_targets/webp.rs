//! The WebP decoder path of the image core (fuzz_targets/formats.rs).
#![no_main]

#[allow(dead_code)]
#[path = "../../src/image/mod.rs"]
mod image;
mod formats;

libfuzzer_sys::fuzz_target!(|data: &[u8]| formats::run(image::Format::WebP, data));
