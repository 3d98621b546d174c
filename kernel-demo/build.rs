//! Passes the kernel's linker script to the linker with an absolute path.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo::rustc-link-arg-bins=-T{dir}/linker.ld");
    // No PT_GNU_RELRO: the kernel has no dynamic loader to honour it.
    println!("cargo::rustc-link-arg-bins=-znorelro");
    println!("cargo::rerun-if-changed=linker.ld");
    println!("cargo::rerun-if-changed=build.rs");
}
