//! The one table of `HAKMEM_*` options, parsed once without allocating.
//!
//! Parsing happens on the first slow-path call, never while the library is
//! being loaded. Values are read with `getenv` (a pointer into `environ`, no
//! allocation). A value that does not parse gets one warning line on stderr
//! naming the variable and the value used instead. Parsing has no other
//! effect: the thread context applies the options (`HAKMEM_TRACE` included)
//! when it sets up the first heap.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU8, Ordering};

/// Where freed large blocks wait for reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BigCacheMode {
    /// Per-thread slots indexed by call site and size class (the default).
    Thread,
    /// One cache shared by all threads (to compare against).
    Global,
    /// No caching: every large free goes back to the OS.
    Off,
}

/// `HAKMEM_THP`: how hakmem learns whether the kernel gives huge pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thp {
    /// Measure it once, and what huge faults cost as they come (the
    /// default; see `thp.rs`).
    Probe,
    /// Take it as given and worth it, without measuring.
    Grant,
    /// Take it as refused, without measuring (a kernel that gives none).
    Refuse,
}

/// `HAKMEM_HUGEPAGES`: transparent huge pages on small-object segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugePages {
    /// Never (4 KiB pages only).
    Off,
    /// On small and medium pages once `small::segment::THP_MIN_CARVED`
    /// bytes of them are carved, and before that on a thread's second
    /// small-page segment (the default; see `small/segment.rs`).
    Auto,
    /// On every segment from the first.
    Always,
}

/// The parsed options. `Copy` so that readers never hold a reference into the static.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// `HAKMEM_BIGCACHE` / `HAKMEM_DISABLE_BIGCACHE`.
    pub bigcache: BigCacheMode,
    /// `HAKMEM_DISABLE_ELO=1`: fixed large-block strategy, no learning.
    pub disable_elo: bool,
    /// `HAKMEM_EVO_POLICY=frozen`: start frozen on the default strategy.
    pub evo_frozen: bool,
    /// `HAKMEM_MINIMAL=1`: every optional feature off.
    pub minimal: bool,
    /// `HAKMEM_STATS=1`: print statistics to stderr at exit.
    pub print_stats: bool,
    /// `HAKMEM_PROFILE=1`: print the call-site profile at exit.
    pub print_profile: bool,
    /// `HAKMEM_PURGE_DELAY_MS`: how long unused memory waits before going back to the OS, in ms
    /// (free small-block memory waits `small::purge::RETAIN_DELAYS` times as long).
    pub purge_delay_ms: u64,
    /// `HAKMEM_BIGCACHE_MAX_MB`: bound on bytes held by the BigCache, in MiB.
    pub bigcache_max_mb: u64,
    /// `HAKMEM_VERBOSE=1`: report every foreign pointer, not only the first.
    pub verbose: bool,
    /// `HAKMEM_HUGEPAGES`: when segments ask for transparent huge pages
    /// (only ever where the kernel gives them, `thp::granted`).
    pub huge_pages: HugePages,
    /// `HAKMEM_TRACE=1`: time components from the start, as if a tracer had
    /// attached (lets `probe-cli run` see the very first allocations).
    pub trace_at_start: bool,
    /// `HAKMEM_TRACE_INTERVAL`: while traced, target TSC cycles between two
    /// timed operations of a thread (0: every thread keeps the period of
    /// `HAKMEM_TRACE_PERIOD`); None: hakmem's default (see `probe`).
    pub trace_interval: Option<u64>,
    /// `HAKMEM_TRACE_PERIOD`: while traced, the sampling period a thread
    /// starts at (a power of two; 1 times every operation); None: default.
    pub trace_period: Option<u32>,
    /// `HAKMEM_BACKGROUND_PURGE=0`: no background purge thread (free memory
    /// then goes back to the OS only on allocator activity).
    pub background_purge: bool,
    /// `HAKMEM_THP`: measure, or force, whether the kernel gives huge pages.
    pub thp: Thp,
}

impl Options {
    /// The values used when no variable is set.
    pub const DEFAULT: Options = Options {
        bigcache: BigCacheMode::Thread,
        disable_elo: false,
        evo_frozen: false,
        minimal: false,
        print_stats: false,
        print_profile: false,
        purge_delay_ms: 10,
        bigcache_max_mb: 64,
        verbose: false,
        trace_at_start: false,
        trace_interval: None,
        trace_period: None,
        huge_pages: HugePages::Auto,
        background_purge: true,
        thp: Thp::Probe,
    };

    /// Profiling is an optional feature: off under `HAKMEM_MINIMAL`.
    pub fn profiling(&self) -> bool {
        !self.minimal
    }
}

/// One row of the option table: the variable, its accepted values, and how it
/// changes [`Options`]. The README's table is this table.
pub struct OptionSpec {
    /// The environment variable.
    pub name: &'static str,
    /// The values it accepts.
    pub values: &'static str,
    /// What it does.
    pub meaning: &'static str,
    apply: fn(&mut Options, &[u8]) -> Result<(), &'static str>,
}

fn flag(v: &[u8]) -> Result<bool, ()> {
    match v {
        b"1" | b"yes" | b"true" | b"on" => Ok(true),
        b"0" | b"no" | b"false" | b"off" | b"" => Ok(false),
        _ => Err(()),
    }
}

/// The option table (order = the order in which they are applied; later rows
/// may override earlier ones, e.g. `HAKMEM_MINIMAL` overrides the BigCache mode).
pub const TABLE: &[OptionSpec] = &[
    OptionSpec {
        name: "HAKMEM_BIGCACHE",
        values: "thread (default), global, off",
        meaning: "where freed large blocks wait for reuse",
        apply: |o, v| {
            o.bigcache = match v {
                b"thread" => BigCacheMode::Thread,
                b"global" => BigCacheMode::Global,
                b"off" => BigCacheMode::Off,
                _ => return Err("thread"),
            };
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_DISABLE_BIGCACHE",
        values: "1",
        meaning: "same as HAKMEM_BIGCACHE=off",
        apply: |o, v| {
            if flag(v).map_err(|_| "0")? {
                o.bigcache = BigCacheMode::Off;
            }
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_DISABLE_ELO",
        values: "1",
        meaning: "fixed large-block strategy, no learning",
        apply: |o, v| {
            o.disable_elo = flag(v).map_err(|_| "0")?;
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_EVO_POLICY",
        values: "learn (default), frozen",
        meaning: "evolution lifecycle: learn, then freeze on the best strategy",
        apply: |o, v| {
            o.evo_frozen = match v {
                b"learn" => false,
                b"frozen" => true,
                _ => return Err("learn"),
            };
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_MINIMAL",
        values: "1",
        meaning: "every optional feature off (BigCache, ELO, evolution, profiling, background purge)",
        apply: |o, v| {
            if flag(v).map_err(|_| "0")? {
                o.minimal = true;
                o.bigcache = BigCacheMode::Off;
                o.disable_elo = true;
                o.evo_frozen = true;
                o.background_purge = false;
            }
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_STATS",
        values: "1",
        meaning: "print statistics to stderr at exit",
        apply: |o, v| {
            o.print_stats = flag(v).map_err(|_| "0")?;
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_PROFILE",
        values: "1",
        meaning: "print the call-site profile at exit",
        apply: |o, v| {
            o.print_profile = flag(v).map_err(|_| "0")?;
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_PURGE_DELAY_MS",
        values: "integer (default 10)",
        meaning: "how long unused memory waits before it goes back to the OS (free small-block pages and segments wait 8 times as long)",
        apply: |o, v| {
            o.purge_delay_ms = parse_u64(v).ok_or("10")?;
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_BIGCACHE_MAX_MB",
        values: "integer (default 64)",
        meaning: "bound on memory held by the BigCache",
        apply: |o, v| {
            o.bigcache_max_mb = parse_u64(v).ok_or("64")?;
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_VERBOSE",
        values: "1",
        meaning: "report every foreign pointer passed to free/realloc, not just the first",
        apply: |o, v| {
            o.verbose = flag(v).map_err(|_| "0")?;
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_HUGEPAGES",
        values: "auto (default), 0, 1",
        meaning: "transparent huge pages on the segments of blocks up to 512 KiB, where the kernel gives them: auto once the process has 32 MiB of small/medium pages carved, or on a thread's second segment of blocks up to 8 KiB (not the 128-512 KiB blocks), 1 from the first, 0 never; fewer faults and TLB misses, but RSS moves in 2 MiB steps",
        apply: |o, v| {
            o.huge_pages = match v {
                b"auto" => HugePages::Auto,
                _ => match flag(v).map_err(|_| "auto")? {
                    true => HugePages::Always,
                    false => HugePages::Off,
                },
            };
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_BACKGROUND_PURGE",
        values: "1 (default), 0",
        meaning: "a background thread (started at the first large free) gives free large memory back to the OS about a purge delay after it was freed, also while the program is idle",
        apply: |o, v| {
            o.background_purge = flag(v).map_err(|_| "1")?;
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_THP",
        values: "probe (default), grant, refuse",
        meaning: "whether the kernel gives transparent huge pages, and whether they pay: measured at the first large allocation and then by every huge fault hakmem times (probe), or taken as given and worth it (grant) or refused (refuse); only where they are given are the huge-page strategies the default and explored, and only while they pay do segments under HAKMEM_HUGEPAGES=auto and the span heap's arenas ask for them",
        apply: |o, v| {
            o.thp = match v {
                b"probe" => Thp::Probe,
                b"grant" => Thp::Grant,
                b"refuse" => Thp::Refuse,
                _ => return Err("probe"),
            };
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_TRACE",
        values: "1",
        meaning: "time components from the first allocation on, for a tracer that attaches at exec",
        apply: |o, v| {
            o.trace_at_start = flag(v).map_err(|_| "0")?;
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_TRACE_INTERVAL",
        values: "TSC cycles (default 524288), 0",
        meaning: "while traced, each thread adapts its sampling period to time about one operation per this many TSC cycles; 0 keeps every thread at HAKMEM_TRACE_PERIOD",
        apply: |o, v| {
            o.trace_interval = Some(parse_u64(v).ok_or("524288")?);
            Ok(())
        },
    },
    OptionSpec {
        name: "HAKMEM_TRACE_PERIOD",
        values: "a power of two (default 256)",
        meaning: "while traced, the sampling period each thread starts at (1 in N operations timed; 1 times every one)",
        apply: |o, v| {
            let n = parse_u64(v)
                .filter(|n| n.is_power_of_two() && *n <= 1 << 20)
                .ok_or("256")?;
            o.trace_period = Some(n as u32);
            Ok(())
        },
    },
];

/// Parses a decimal `u64` (ASCII digits only, no sign, no overflow).
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(n)
}

/// Builds [`Options`] from a lookup function; `warn` receives (name, bad value,
/// value used instead) for each variable that does not parse.
pub fn parse_with<'a>(
    lookup: &mut dyn FnMut(&str) -> Option<&'a [u8]>,
    warn: &mut dyn FnMut(&str, &[u8], &str),
) -> Options {
    let mut o = Options::DEFAULT;
    for spec in TABLE {
        if let Some(v) = lookup(spec.name) {
            if let Err(used) = (spec.apply)(&mut o, v) {
                warn(spec.name, v, used);
            }
        }
    }
    o
}

/// The value of environment variable `name` (at most 32 bytes), without
/// allocating.
pub(crate) fn getenv(name: &str) -> Option<&'static [u8]> {
    // Names are at most 32 bytes; build the C string on the stack.
    let mut buf = [0u8; 40];
    buf[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: NUL-terminated; getenv returns a pointer into environ or NULL.
    let p = unsafe { libc::getenv(buf.as_ptr() as *const libc::c_char) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv's result is a NUL-terminated string that lives as long as
    // environ is not modified; we copy what we need before returning.
    Some(unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes())
}

fn warn_stderr(name: &str, bad: &[u8], used: &str) {
    let bad = core::str::from_utf8(&bad[..bad.len().min(64)]).unwrap_or("<non-UTF-8>");
    crate::diag::warn(format_args!("{name}={bad:?} is not valid; using {used}"));
}

struct Slot(UnsafeCell<Options>);
// SAFETY: written once by the thread that wins the STATE 0→1 exchange, before
// STATE becomes 2 (Release); read only after observing 2 (Acquire).
unsafe impl Sync for Slot {}

static STATE: AtomicU8 = AtomicU8::new(0);
static VALUE: Slot = Slot(UnsafeCell::new(Options::DEFAULT));

/// The process's options, parsed on first use.
#[inline]
pub fn get() -> Options {
    if STATE.load(Ordering::Acquire) == 2 {
        // SAFETY: see `Slot`.
        return unsafe { *VALUE.0.get() };
    }
    init()
}

#[cold]
fn init() -> Options {
    // The winner parses with warnings and publishes; a thread racing with it
    // parses silently for itself (same environment, same result). No lock, so a
    // fork in the middle leaves nothing held.
    let won = STATE
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    let opts = parse_with(&mut |n| getenv(n), &mut |n, b, u| {
        if won {
            warn_stderr(n, b, u)
        }
    });
    if won {
        // SAFETY: only the winner writes, before publishing.
        unsafe { *VALUE.0.get() = opts };
        STATE.store(2, Ordering::Release);
        if opts.print_stats || opts.print_profile {
            crate::os::keep_stderr();
        }
    }
    opts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> (Options, usize) {
        let mut warnings = 0;
        let o = parse_with(
            &mut |n| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.as_bytes())
            },
            &mut |_, _, _| warnings += 1,
        );
        (o, warnings)
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        assert_eq!(parse(&[]), (Options::DEFAULT, 0));
    }

    #[test]
    fn each_variable_changes_its_field() {
        let (o, w) = parse(&[
            ("HAKMEM_BIGCACHE", "global"),
            ("HAKMEM_DISABLE_ELO", "1"),
            ("HAKMEM_EVO_POLICY", "frozen"),
            ("HAKMEM_STATS", "1"),
            ("HAKMEM_PROFILE", "1"),
            ("HAKMEM_PURGE_DELAY_MS", "250"),
            ("HAKMEM_BIGCACHE_MAX_MB", "64"),
            ("HAKMEM_THP", "refuse"),
        ]);
        assert_eq!(w, 0);
        assert_eq!(o.thp, Thp::Refuse);
        assert_eq!(o.bigcache, BigCacheMode::Global);
        assert!(o.disable_elo && o.evo_frozen && o.print_stats && o.print_profile);
        assert_eq!((o.purge_delay_ms, o.bigcache_max_mb), (250, 64));
        assert!(!o.minimal);
    }

    #[test]
    fn disable_bigcache_and_minimal_turn_features_off() {
        assert_eq!(
            parse(&[("HAKMEM_DISABLE_BIGCACHE", "1")]).0.bigcache,
            BigCacheMode::Off
        );
        let (o, _) = parse(&[("HAKMEM_MINIMAL", "1"), ("HAKMEM_BIGCACHE", "thread")]);
        assert!(o.minimal && o.disable_elo && o.evo_frozen && !o.profiling());
        assert_eq!(o.bigcache, BigCacheMode::Off);
    }

    #[test]
    fn bad_values_warn_once_each_and_keep_defaults() {
        let (o, w) = parse(&[
            ("HAKMEM_BIGCACHE", "sometimes"),
            ("HAKMEM_PURGE_DELAY_MS", "-5"),
            ("HAKMEM_BIGCACHE_MAX_MB", "99999999999999999999999"),
            ("HAKMEM_STATS", "maybe"),
            ("HAKMEM_THP", "sometimes"),
        ]);
        assert_eq!(w, 5);
        assert_eq!(o.thp, Thp::Probe);
        assert_eq!(o.bigcache, BigCacheMode::Thread);
        assert_eq!(o.purge_delay_ms, 10);
        assert_eq!(o.bigcache_max_mb, 64);
        assert!(!o.print_stats);
    }

    #[test]
    fn parse_u64_rejects_junk() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b""), None);
    }
}
