//! Compiles qp's C side of the libjpeg-turbo binding (src/image/turbo/shim.c) against the
//! headers of the libjpeg-turbo that turbojpeg-sys builds and links statically. The fuzz crate
//! (fuzz/build.rs) compiles the same file through `compile_shim`.
fn main() {
    compile_shim("src/image/turbo/shim.c");
}

pub fn compile_shim(shim: &str) {
    println!("cargo:rerun-if-changed={shim}");
    // turbojpeg-sys (links = "turbojpeg") passes its install's include directories on.
    let includes = std::env::var("DEP_TURBOJPEG_INCLUDE")
        .expect("turbojpeg-sys did not say where libjpeg-turbo's headers are");
    let mut build = cc::Build::new();
    build
        .file(shim)
        .warnings(true)
        .extra_warnings(true)
        .opt_level(2);
    for dir in includes.split(',').filter(|d| !d.is_empty()) {
        build.include(dir);
    }
    build.compile("qp_turbo");
}
