//! Compiles mimalloc 3 from the sources libmimalloc-sys ships.
//!
//! libmimalloc-sys builds one major version per build (its `v2` feature),
//! and cargo unifies that feature across the workspace, where hakmem-bench
//! links mimalloc 2. Its package holds both versions' sources, and its build
//! script tells dependents where the chosen one's headers are
//! (`DEP_MIMALLOC_INCLUDE_DIR`, `c_src/mimalloc/vN/include`); the 3.x tree is
//! beside it. It is compiled here with libmimalloc-sys's own release settings
//! (`static.c`, the whole library in one unit) into a static library that
//! only this crate links.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    let include = env::var("DEP_MIMALLOC_INCLUDE_DIR")
        .expect("libmimalloc-sys did not report its include directory (DEP_MIMALLOC_INCLUDE_DIR)");
    let v3 = v3_root(Path::new(&include));
    let source = v3.join("src").join("static.c");
    assert!(
        source.is_file(),
        "{} is missing: the pinned libmimalloc-sys no longer ships mimalloc 3 where expected",
        source.display()
    );
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rerun-if-changed=build.rs");

    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let mut build = cc::Build::new();
    build
        .file(&source)
        .include(v3.join("include"))
        .include(v3.join("src"))
        .flag("-Wno-error=date-time")
        // Static TLS, as libmimalloc-sys builds it: a preloaded library is
        // loaded at start-up, so the initial-exec model is available to it.
        .flag_if_supported("-ftls-model=initial-exec")
        .define("MI_DEBUG", "0");
    if release {
        build
            .define("MI_BUILD_RELEASE", None)
            .define("NDEBUG", None);
    }
    build.compile("mimalloc_v3");
}

/// `…/c_src/mimalloc/v3` from `…/c_src/mimalloc/vN/include`.
fn v3_root(include: &Path) -> PathBuf {
    include
        .parent()
        .and_then(Path::parent)
        .map(|versions| versions.join("v3"))
        .unwrap_or_else(|| panic!("unexpected include directory {}", include.display()))
}
