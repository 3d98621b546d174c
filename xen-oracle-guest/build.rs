//! Passes the guest's linker script to the linker with an absolute path.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo::rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo::rustc-link-arg-bins=-znorelro");
    println!("cargo::rustc-link-arg-bins=--no-pie");
    println!("cargo::rerun-if-changed=linker.ld");
    println!("cargo::rerun-if-changed=build.rs");
}
