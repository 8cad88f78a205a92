//! The allocator catalogue: names, how a child process gets each one, and
//! whether this machine has it.
//!
//! Two kinds: allocators linked into this binary (picked by the dispatching
//! global allocator through `HAKMEM_BENCH_ALLOCATOR`, hakmem's variants further
//! configured by its own `HAKMEM_*` options), and shared libraries put in front
//! of glibc with `LD_PRELOAD` on a system-allocator child.

use crate::dispatch::Backend;
use std::path::{Path, PathBuf};

/// hakmem's options that select a variant; cleared in every child so a value
/// in the user's shell cannot silently turn `hakmem` into another variant.
pub const HAKMEM_VARIANT_VARS: &[&str] = &[
    "HAKMEM_BIGCACHE",
    "HAKMEM_DISABLE_BIGCACHE",
    "HAKMEM_DISABLE_ELO",
    "HAKMEM_EVO_POLICY",
    "HAKMEM_MINIMAL",
];

/// How a child process gets its allocator.
#[derive(Clone, Debug)]
pub enum Kind {
    /// Linked in; `env` are extra variables (hakmem's variant options).
    Linked {
        /// Which linked allocator the dispatcher uses.
        backend: Backend,
        /// Variables set in the child's environment.
        env: &'static [(&'static str, &'static str)],
    },
    /// A shared library preloaded into a system-allocator child.
    Preload {
        /// The library; must exist for the allocator to be available.
        library: PathBuf,
        /// What to install when it is missing.
        hint: &'static str,
    },
}

/// One allocator a scenario can run with.
#[derive(Clone, Debug)]
pub struct Allocator {
    /// The name used on the command line and in tables.
    pub name: String,
    /// One line for `hakmem-bench list`.
    pub about: String,
    /// How a child gets it.
    pub kind: Kind,
    /// Whether `compare` uses it when `--allocators` is not given.
    pub default_set: bool,
}

impl Allocator {
    fn linked(
        name: &str,
        backend: Backend,
        env: &'static [(&'static str, &'static str)],
        about: &str,
    ) -> Allocator {
        Allocator {
            name: name.into(),
            about: about.into(),
            kind: Kind::Linked { backend, env },
            default_set: true,
        }
    }

    fn preload(
        name: &str,
        library: PathBuf,
        hint: &'static str,
        about: &str,
        default_set: bool,
    ) -> Self {
        Allocator {
            name: name.into(),
            about: about.into(),
            kind: Kind::Preload { library, hint },
            default_set,
        }
    }

    /// `Ok` when this machine can run it, otherwise why not.
    pub fn availability(&self) -> Result<(), String> {
        match &self.kind {
            Kind::Linked { .. } => Ok(()),
            Kind::Preload { library, hint } if !library.is_file() => Err(format!(
                "{} not found{}",
                library.display(),
                if hint.is_empty() {
                    String::new()
                } else {
                    format!(" ({hint})")
                }
            )),
            Kind::Preload { .. } => Ok(()),
        }
    }

    /// The library a preload allocator puts in front of glibc.
    pub fn preload_library(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Preload { library, .. } => Some(library),
            Kind::Linked { .. } => None,
        }
    }
}

/// Debian's shared library `file` in this architecture's multiarch directory.
fn debian_lib(file: &str) -> PathBuf {
    let multiarch = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    [multiarch.as_str(), "/usr/lib64", "/usr/lib"]
        .iter()
        .map(|dir| Path::new(dir).join(file))
        .find(|p| p.is_file())
        .unwrap_or_else(|| Path::new(&multiarch).join(file))
}

/// `target/<profile>/libhakmem.so`, built by `cargo build --release -p hakmem-preload`,
/// which sits next to this binary.
fn hakmem_preload_library() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("libhakmem.so")))
        .unwrap_or_else(|| PathBuf::from("target/release/libhakmem.so"))
}

/// Every named allocator, in the order tables list them.
pub fn catalogue() -> Vec<Allocator> {
    use Backend::*;
    vec![
        Allocator::linked(
            "hakmem",
            Hakmem,
            &[],
            "hakmem, defaults (per-thread BigCache, ELO learning)",
        ),
        Allocator::linked(
            "hakmem-frozen",
            Hakmem,
            &[("HAKMEM_EVO_POLICY", "frozen")],
            "hakmem, HAKMEM_EVO_POLICY=frozen",
        ),
        Allocator::linked(
            "hakmem-minimal",
            Hakmem,
            &[("HAKMEM_MINIMAL", "1")],
            "hakmem, HAKMEM_MINIMAL=1 (every optional feature off)",
        ),
        Allocator::linked(
            "hakmem-global",
            Hakmem,
            &[("HAKMEM_BIGCACHE", "global")],
            "hakmem, HAKMEM_BIGCACHE=global",
        ),
        Allocator::linked("mimalloc", Mimalloc, &[], "mimalloc crate, linked in"),
        Allocator::linked("jemalloc", Jemalloc, &[], "tikv-jemallocator, linked in"),
        Allocator::preload(
            "tcmalloc",
            debian_lib("libtcmalloc_minimal.so.4"),
            "apt-get install libtcmalloc-minimal4",
            "Debian's tcmalloc (minimal) via LD_PRELOAD",
            true,
        ),
        Allocator::linked("system", System, &[], "glibc malloc"),
        Allocator::preload(
            "hakmem-preload",
            hakmem_preload_library(),
            "cargo build --release -p hakmem-preload",
            "libhakmem.so via LD_PRELOAD",
            false,
        ),
        Allocator::preload(
            "mimalloc-preload",
            debian_lib("libmimalloc.so.2"),
            "apt-get install libmimalloc2.0",
            "Debian's mimalloc via LD_PRELOAD",
            false,
        ),
        Allocator::preload(
            "jemalloc-preload",
            debian_lib("libjemalloc.so.2"),
            "apt-get install libjemalloc2",
            "Debian's jemalloc via LD_PRELOAD",
            false,
        ),
    ]
}

/// Look up a name: a catalogue entry or `preload:/path/lib.so`.
pub fn resolve(name: &str) -> Result<Allocator, String> {
    if let Some(path) = name.strip_prefix("preload:") {
        if path.is_empty() {
            return Err("preload: needs a library path, e.g. preload:/usr/lib/libfoo.so".into());
        }
        // Absolute, because the child may run from another directory and the
        // path is also what the child looks for in its memory map.
        let library = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
        return Ok(Allocator::preload(name, library, "", "LD_PRELOAD", false));
    }
    catalogue()
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| {
            let names: Vec<String> = catalogue().into_iter().map(|a| a.name).collect();
            format!(
                "unknown allocator '{name}' (known: {}, preload:PATH)",
                names.join(", ")
            )
        })
}
