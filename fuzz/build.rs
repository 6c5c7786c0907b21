//! The image core's C shim, compiled as the main crate's build script does.
#[allow(dead_code)]
#[path = "../build.rs"]
mod qp_build;

fn main() {
    qp_build::compile_shim("../src/image/turbo/shim.c");
}
