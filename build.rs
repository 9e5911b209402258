//! Generates `include/imbed.h` from `src/ffi` with cbindgen (pinned in
//! Cargo.toml), adding the version macros from Cargo.toml. The header is
//! rewritten only when its text changes, so builds do not dirty the tree.

use std::path::Path;

fn main() {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");

    // The shared library names its ABI: programs record `libimbed.so.MAJOR`
    // and keep working across minor releases (docs/C-API.md, "ABI policy").
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("set by cargo");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libimbed.so.{major}");
    }

    let version = std::env::var("CARGO_PKG_VERSION").expect("set by cargo");
    let part = |name: &str| std::env::var(name).expect("set by cargo");
    let macros = format!(
        "\n/* The version of this header; imbed_version() gives the library's. */\n\
         #define IMBED_VERSION \"{version}\"\n\
         #define IMBED_VERSION_MAJOR {}\n\
         #define IMBED_VERSION_MINOR {}\n\
         #define IMBED_VERSION_PATCH {}\n",
        part("CARGO_PKG_VERSION_MAJOR"),
        part("CARGO_PKG_VERSION_MINOR"),
        part("CARGO_PKG_VERSION_PATCH"),
    );
    let config =
        cbindgen::Config::from_file(Path::new(&crate_dir).join("cbindgen.toml")).expect("cbindgen.toml is valid");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .with_after_include(macros)
        .generate()
        .expect("cbindgen could not generate the header");
    let mut text = Vec::new();
    bindings.write(&mut text);
    let header = Path::new(&crate_dir).join("include").join("imbed.h");
    if std::fs::read(&header).ok().as_deref() != Some(&text[..]) {
        std::fs::create_dir_all(header.parent().expect("has a parent")).expect("include/ is writable");
        std::fs::write(&header, text).expect("include/imbed.h is writable");
    }
}
