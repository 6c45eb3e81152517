//! Records the target triple this crate is compiled for, so a host picks the
//! library of its own target out of an archive.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=WAXOSUIT_PAR_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
