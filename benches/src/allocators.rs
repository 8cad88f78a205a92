//! The allocator catalogue: names, how a child process gets each one, and
//! whether this machine has it.
//!
//! Two kinds: allocators linked into this binary (picked by the dispatching
//! global allocator through `HAKMEM_BENCH_ALLOCATOR`, hakmem's variants further
//! configured by its own `HAKMEM_*` options), and shared libraries put in front
//! of glibc with `LD_PRELOAD` on a system-allocator child.
//!
//! Every entry also says how it gets into a program that is not ours
//! (`programs`): a library for `LD_PRELOAD` and the variables it needs. This
//! is the one allocator table; no script keeps another.

use crate::dispatch::Backend;
use std::path::{Path, PathBuf};

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
    /// Whether `compare` and `programs` use it when `--allocators` is not given.
    pub default_set: bool,
    /// How `programs` puts it into a real program; `None` when it cannot.
    pub program: Option<ProgramForm>,
}

/// An allocator as a real program gets it: a preloaded library and variables.
#[derive(Clone, Debug)]
pub struct ProgramForm {
    /// The library put in front of the program's own allocator.
    pub library: PathBuf,
    /// Variables set in the program's environment (hakmem's variant options).
    pub env: &'static [(&'static str, &'static str)],
    /// What to install or build when the library is missing.
    pub hint: &'static str,
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
            program: None,
        }
    }

    /// The same allocator in real programs: `library` preloaded with `env`.
    fn in_programs(
        mut self,
        library: PathBuf,
        env: &'static [(&'static str, &'static str)],
        hint: &'static str,
    ) -> Self {
        self.program = Some(ProgramForm { library, env, hint });
        self
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
            kind: Kind::Preload {
                library: library.clone(),
                hint,
            },
            default_set,
            program: Some(ProgramForm {
                library,
                env: &[],
                hint,
            }),
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

    /// `Ok` when `programs` can run it on this machine, otherwise why not.
    pub fn program_availability(&self) -> Result<&ProgramForm, String> {
        match &self.program {
            None => Err(format!("{} has no preloadable form", self.name)),
            Some(p) if !p.library.is_file() => Err(format!(
                "{} not found{}",
                p.library.display(),
                if p.hint.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", p.hint)
                }
            )),
            Some(p) => Ok(p),
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

/// `file` in this binary's directory (`target/<profile>/`), where the
/// workspace's libraries land.
fn next_to_binary(file: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(file)))
        .unwrap_or_else(|| Path::new("target/release").join(file))
}

/// glibc's own library: preloaded, it puts glibc's malloc in front of the
/// allocator a program links (Debian's redis-server links jemalloc).
fn libc_library() -> PathBuf {
    let multiarch = format!("/lib/{}-linux-gnu/libc.so.6", std::env::consts::ARCH);
    [multiarch.as_str(), "/lib64/libc.so.6", "/lib/libc.so.6"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(multiarch))
}

const HAKMEM_HINT: &str = "cargo build --release -p hakmem-preload";
const MIMALLOC3_HINT: &str = "cargo build --release -p mimalloc3-preload";
const MIMALLOC_HINT: &str = "apt-get install libmimalloc2.0";
const JEMALLOC_HINT: &str = "apt-get install libjemalloc2";

/// Every named allocator, in the order tables list them.
pub fn catalogue() -> Vec<Allocator> {
    use Backend::*;
    let hakmem = next_to_binary("libhakmem.so");
    vec![
        Allocator::linked(
            "hakmem",
            Hakmem,
            &[],
            "hakmem, defaults (per-thread BigCache, ELO learning)",
        )
        .in_programs(hakmem.clone(), &[], HAKMEM_HINT),
        Allocator::linked(
            "hakmem-frozen",
            Hakmem,
            FROZEN,
            "hakmem, HAKMEM_EVO_POLICY=frozen",
        )
        .in_programs(hakmem.clone(), FROZEN, HAKMEM_HINT),
        Allocator::linked(
            "hakmem-minimal",
            Hakmem,
            MINIMAL,
            "hakmem, HAKMEM_MINIMAL=1 (every optional feature off)",
        )
        .in_programs(hakmem.clone(), MINIMAL, HAKMEM_HINT),
        Allocator::linked(
            "hakmem-global",
            Hakmem,
            GLOBAL,
            "hakmem, HAKMEM_BIGCACHE=global",
        )
        .in_programs(hakmem.clone(), GLOBAL, HAKMEM_HINT),
        Allocator::linked(
            "hakmem-nobg",
            Hakmem,
            NO_BACKGROUND,
            "hakmem, HAKMEM_BACKGROUND_PURGE=0 (what the background purge thread costs or saves)",
        )
        .in_programs(hakmem.clone(), NO_BACKGROUND, HAKMEM_HINT),
        Allocator::linked(
            "mimalloc",
            Mimalloc,
            &[],
            "mimalloc 2 (the crate's v2 sources), linked in; programs: Debian's libmimalloc.so.2",
        )
        .in_programs(debian_lib("libmimalloc.so.2"), &[], MIMALLOC_HINT),
        Allocator::preload(
            "mimalloc3",
            next_to_binary("libmimalloc3.so"),
            MIMALLOC3_HINT,
            "mimalloc 3 (the crate's v3 sources) via LD_PRELOAD (benches/mimalloc3)",
            true,
        ),
        jemalloc(),
        Allocator::preload(
            "tcmalloc",
            debian_lib("libtcmalloc_minimal.so.4"),
            "apt-get install libtcmalloc-minimal4",
            "Debian's tcmalloc (minimal) via LD_PRELOAD",
            true,
        ),
        Allocator::linked("system", System, &[], "glibc malloc").in_programs(
            libc_library(),
            &[],
            "",
        ),
        Allocator::preload(
            "hakmem-preload",
            hakmem,
            HAKMEM_HINT,
            "libhakmem.so via LD_PRELOAD",
            false,
        ),
        Allocator::preload(
            "mimalloc-preload",
            debian_lib("libmimalloc.so.2"),
            MIMALLOC_HINT,
            "Debian's mimalloc 2 via LD_PRELOAD",
            false,
        ),
        Allocator::preload(
            "jemalloc-preload",
            debian_lib("libjemalloc.so.2"),
            JEMALLOC_HINT,
            "Debian's jemalloc via LD_PRELOAD",
            false,
        ),
    ]
}

/// jemalloc linked in (tikv-jemallocator, feature `linked-jemalloc`).
#[cfg(feature = "linked-jemalloc")]
fn jemalloc() -> Allocator {
    Allocator::linked(
        "jemalloc",
        Backend::Jemalloc,
        &[],
        "tikv-jemallocator, linked in; programs: Debian's libjemalloc.so.2",
    )
    .in_programs(debian_lib("libjemalloc.so.2"), &[], JEMALLOC_HINT)
}

/// jemalloc without the `linked-jemalloc` feature: Debian's library,
/// preloaded (the same 5.3 release the crate bundles).
#[cfg(not(feature = "linked-jemalloc"))]
fn jemalloc() -> Allocator {
    Allocator::preload(
        "jemalloc",
        debian_lib("libjemalloc.so.2"),
        JEMALLOC_HINT,
        "Debian's jemalloc via LD_PRELOAD (--features linked-jemalloc links tikv-jemallocator in)",
        true,
    )
}

const FROZEN: &[(&str, &str)] = &[("HAKMEM_EVO_POLICY", "frozen")];
const MINIMAL: &[(&str, &str)] = &[("HAKMEM_MINIMAL", "1")];
const GLOBAL: &[(&str, &str)] = &[("HAKMEM_BIGCACHE", "global")];
const NO_BACKGROUND: &[(&str, &str)] = &[("HAKMEM_BACKGROUND_PURGE", "0")];

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
