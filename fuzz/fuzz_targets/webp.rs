//! The WebP decoder path of the image core (fuzz_targets/formats.rs).
#![no_main]

mod formats;
#[allow(dead_code)]
#[path = "../../src/image/mod.rs"]
mod image;

// The image core names its failures with the crate's reasons.
#[allow(dead_code)]
#[path = "../../src/reason.rs"]
mod reason;

libfuzzer_sys::fuzz_target!(|data: &[u8]| formats::run(image::Format::WebP, data));
