//! The five-part trace report (target, components, syscalls, perf counters,
//! correlation): built from the raw counts, printed as text, JSON or Prometheus.

use crate::perf::Reading;
use crate::probes::KernelCounts;
use crate::syscalls::{self, SyscallRow, SyscallSource};
use crate::target::Target;
use crate::tsc::Tsc;
use hakmem_ebpf::layout::{HIST_BUCKETS, MISC_COUNTERS};
use serde::Serialize;
use std::fmt::Write as _;

/// Bumped whenever a field changes meaning or disappears (adding one does not).
pub const SCHEMA_VERSION: u32 = 1;

/// Components whose time is the whole of an allocator call; the others run inside them.
const TOP_LEVEL: &[&str] = &["malloc", "free", "realloc"];

/// The components each one times directly inside itself (a realloc's inner
/// work reports as these too: its figure keeps that timing cost). Each
/// nested timed instance, at any depth ([`nested`]), adds its own timestamps
/// to every figure around it, which the report takes back out
/// (`probe.nested_component_ns`); hakmem leaves its record update out of
/// them itself.
const CHILDREN: &[(&str, &[&str])] = &[
    ("malloc", &["small_fast", "small_refill", "large_alloc"]),
    (
        "free",
        &["remote_free", "bigcache_put", "os_unmap", "os_purge"],
    ),
    (
        "large_alloc",
        &[
            "bigcache_lookup",
            "elo_select",
            "header",
            "os_map",
            "os_advise",
            "os_protect",
        ],
    ),
    ("header", &["os_map", "os_advise", "os_protect"]),
    ("bigcache_put", &["os_unmap", "os_purge"]),
];

/// Every component timed inside `name`, at any depth, once each.
fn nested(name: &str) -> Vec<&'static str> {
    let mut found: Vec<&'static str> = Vec::new();
    let mut todo = vec![name];
    while let Some(n) = todo.pop() {
        let children = CHILDREN
            .iter()
            .find(|(p, _)| *p == n)
            .map_or(&[][..], |(_, c)| c);
        for &c in children {
            if !found.contains(&c) {
                found.push(c);
                todo.push(c);
            }
        }
    }
    found
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    /// True for the report printed when the trace ends.
    pub final_report: bool,
    /// Seconds since the probes were attached.
    pub elapsed_s: f64,
    pub target: TargetPart,
    pub components: Vec<ComponentRow>,
    /// True when `syscalls` has rows: always, since hakmem counts its own
    /// when the kernel's tracepoints are not attached (false meant
    /// `--no-syscalls`, which is gone).
    pub syscalls_counted: bool,
    /// Where `syscalls` comes from: `hakmem` (its own calls, counted in the
    /// process; the default) or `kernel` (every memory syscall of the traced
    /// processes, `--kernel-syscalls`).
    pub syscall_source: SyscallSource,
    pub syscalls: Vec<SyscallRow>,
    pub perf: PerfPart,
    pub correlation: Correlation,
    pub probe: ProbePart,
    /// Every process traced (the first, and with following, its descendants).
    pub processes: Vec<ProcessRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProcessRow {
    pub pid: u32,
    /// The traced process that forked it (0 for the first).
    pub parent: u32,
    /// Command name after its last exec.
    pub command: String,
    pub running: bool,
    /// False when no hakmem was found in it (a static binary, a scrubbed environment).
    pub hakmem: bool,
    /// Top-level calls: malloc (the whole malloc family), free, realloc.
    pub malloc: u64,
    pub free: u64,
    pub realloc: u64,
    /// Large blocks: each size band that has seen one, its evolution phase
    /// and the strategy it uses (frozen) or rates best so far (learning),
    /// as last read from the process's memory.
    pub evolution: Vec<BandRow>,
}

/// One size band's strategy choice (`hakmem::large::evolution`).
#[derive(Clone, Debug, Serialize)]
pub struct BandRow {
    /// The band's sizes, e.g. `2-8 MiB`.
    pub band: &'static str,
    /// `learn`, `frozen` or `locked` (frozen for the run by an option).
    pub phase: &'static str,
    /// The strategy's name (`hakmem::large::elo::STRATEGIES`).
    pub strategy: &'static str,
}

/// The bands a process published (see [`BandRow`]).
fn band_rows(words: Option<[u32; hakmem::large::evolution::BANDS]>) -> Vec<BandRow> {
    use hakmem::large::{elo, evolution};
    let Some(words) = words else {
        return Vec::new();
    };
    words
        .iter()
        .zip(evolution::BAND_NAMES)
        .filter_map(|(&w, band)| {
            let (phase, s) = evolution::published(w)?;
            Some(BandRow {
                band,
                phase: match phase {
                    evolution::Phase::Learn => "learn",
                    evolution::Phase::Frozen => "frozen",
                    evolution::Phase::Locked => "locked",
                },
                strategy: elo::STRATEGIES.get(s as usize).map_or("?", |x| x.name),
            })
        })
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetPart {
    pub pid: u32,
    pub command: String,
    /// File hakmem's code is in.
    pub hakmem: String,
    pub linkage: crate::target::Linkage,
    /// `HAKMEM_*` options of the process ("defaults" when none).
    pub options: Vec<String>,
    /// "running", "exited", or "exited with status N" / "killed by signal N".
    pub state: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ComponentRow {
    pub id: u32,
    pub component: String,
    /// Every instance, counted exactly.
    pub calls: u64,
    /// Instances timed (sampled; see `probe.method`).
    pub timed: u64,
    /// Time of all instances: the timed instances' mean times `calls` (raw,
    /// nothing subtracted; each timed instance weighed by how many it stands for).
    pub total_ns: f64,
    /// Mean of the timed instances minus the calibrated cost of timing an empty
    /// component (see `probe.empty_component_ns`).
    pub mean_ns: f64,
    /// Mean of the timed instances as measured.
    pub raw_mean_ns: f64,
    /// From the log2 histogram, interpolated inside the bucket.
    pub p50_ns: f64,
    pub p99_ns: f64,
    pub max_ns: f64,
    /// Fraction of the time spent in malloc, free and realloc (components nest, so
    /// inner components' shares add up to less than the whole).
    pub share_of_alloc_time: f64,
    /// Sum of the probe's `arg` (bytes or hits, depending on the component).
    pub arg_sum: u64,
    /// Events with a non-zero `arg` (BigCache hits, ...).
    pub arg_nonzero: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct PerfPart {
    /// "per_thread" (threads found in /proc/PID/task) or "inherited" (from exec).
    pub scope: &'static str,
    pub threads: usize,
    pub counters: Vec<Reading>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Correlation {
    /// malloc-family calls seen (the `malloc` component).
    pub allocations: u64,
    /// Per 1,000 allocations; absent when no allocation was seen.
    pub per_1000_allocations: Option<Per1000>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Per1000 {
    pub syscalls: f64,
    pub mmap: f64,
    pub munmap: f64,
    pub madvise: f64,
    pub page_faults: Option<f64>,
    /// Time in malloc, free and realloc, µs.
    pub alloc_time_us: f64,
    /// Time in the watched syscalls, µs.
    pub syscall_time_us: f64,
    /// CPU time of the whole process, µs.
    pub task_clock_us: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbePart {
    /// How the figures were made, in one sentence.
    pub method: String,
    /// Component instances counted (the sum of every component's calls).
    pub hits: u64,
    /// The sampling period a thread starts at (operations timed 1 in this
    /// many, with everything inside them); with `sample_interval_us` null,
    /// every thread's fixed period. The effective rate of each component is
    /// its `calls` over its `timed`.
    pub sample_period: u32,
    /// Target time between two timed operations of one thread, µs: each
    /// thread doubles or halves its period (16..=2^20) to keep near it. None:
    /// fixed period.
    pub sample_interval_us: Option<f64>,
    /// What hakmem records for a component with nothing in it (timed inside
    /// an operation), measured at attach and subtracted from the means of
    /// every component but malloc, free and realloc, ns.
    pub empty_component_ns: Option<f64>,
    /// What hakmem records for a malloc/free with nothing in it, measured at
    /// attach and subtracted from malloc's, free's and realloc's means, ns.
    pub empty_operation_ns: Option<f64>,
    /// What one timed component inside an operation adds to the operation's
    /// recorded figure (its timestamps: hakmem leaves its record update
    /// out), measured at attach and subtracted from malloc's and free's means
    /// once per nested instance, ns.
    pub nested_component_ns: Option<f64>,
    /// How many empty timings the target's threads made after their samples
    /// (hakmem's `timing_floor` component), whose means are the three floors
    /// above; None: the target made none (an older hakmem, or no sample
    /// yet), and the floors are probe-cli's own, measured at attach.
    pub floor_measurements: Option<u64>,
    /// Exit probes that fired (one per process that exited normally).
    pub exit_probes: u64,
    /// Cost of one exit probe hit measured at attach (see `probe-cli calibrate`), ns.
    pub hit_cost_ns: Option<f64>,
    /// Exit probes x hit cost: time the probes themselves added, ms. (Counting
    /// and sampled timing cost the target a few ns per call; no trap.)
    pub added_ms: Option<f64>,
    /// TSC frequency used to convert cycles, GHz.
    pub tsc_ghz: f64,
    /// Kernel-side bookkeeping (events lost to full maps, unknown ids, gate stops).
    pub kernel: std::collections::BTreeMap<&'static str, u64>,
}

/// What a report is made of.
pub struct Inputs<'a> {
    pub target: &'a Target,
    pub state: String,
    pub counts: &'a KernelCounts,
    pub processes: &'a [crate::session::ProcessCounts],
    pub sample_period: u32,
    pub sample_interval: Option<u64>,
    pub empty_component_ns: Option<f64>,
    pub empty_operation_ns: Option<f64>,
    pub nested_component_ns: Option<f64>,
    pub perf: Vec<Reading>,
    pub perf_scope: &'static str,
    pub perf_threads: usize,
    pub tsc: Tsc,
    pub hit_cost_ns: Option<f64>,
    pub elapsed_s: f64,
    pub final_report: bool,
    /// The syscall programs were attached: the syscall rows are the
    /// kernel's, else hakmem's own.
    pub kernel_syscalls: bool,
}

/// The value below which fraction `q` of the histogram's samples fall, linearly
/// interpolated inside its log2 bucket and capped by the observed maximum.
pub fn percentile(hist: &[u64; HIST_BUCKETS], q: f64, max: u64) -> u64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (bucket, &n) in hist.iter().enumerate() {
        if n == 0 || seen + n < rank {
            seen += n;
            continue;
        }
        let lo = if bucket == 0 { 0 } else { 1u64 << bucket };
        let hi = if bucket >= 63 {
            u64::MAX
        } else {
            (1u64 << (bucket + 1)) - 1
        };
        let within = (rank - seen) as f64 / n as f64;
        let v = lo as f64 + (hi - lo) as f64 * within;
        return (v as u64).min(max);
    }
    max
}

/// hakmem's own record of its timing floor (see `hakmem::probe::Component::TimingFloor`):
/// not a component of the allocator, never a row.
const FLOOR_ID: usize = hakmem::probe::Component::TimingFloor as usize;

/// What the report subtracts from the means, ns.
struct Floors {
    /// From malloc's, free's and realloc's.
    operation: Option<f64>,
    /// From every other component's.
    component: Option<f64>,
    /// From a top-level operation's, per component timed inside it.
    nested: Option<f64>,
    /// The target's own floor measurements they come from, if any.
    measurements: Option<u64>,
}

impl Floors {
    /// The target's own floors when its threads measured them (hakmem times
    /// an empty component inside an empty operation after every sample, with
    /// the code that times real ones: the same thread, caches and clock),
    /// else probe-cli's from attach. An empty operation runs the very code
    /// of an empty component (a stamp, the call into the recording code, a
    /// stamp); what one more component inside adds is the empty operation's
    /// figure around it minus that.
    fn of(i: &Inputs<'_>) -> Floors {
        match i.counts.components.get(FLOOR_ID).filter(|s| s.timed > 0) {
            Some(s) => {
                let n = s.timed as f64;
                let component = i.tsc.ns(s.sum_cycles as f64) / n;
                let around = i.tsc.ns(s.sum_arg as f64) / n;
                Floors {
                    operation: Some(component),
                    component: Some(component),
                    nested: Some((around - component).max(0.0)),
                    measurements: Some(s.timed),
                }
            }
            None => Floors {
                operation: i.empty_operation_ns,
                component: i.empty_component_ns,
                nested: i.nested_component_ns,
                measurements: None,
            },
        }
    }
}

fn component_name(id: usize) -> String {
    hakmem::probe::COMPONENTS
        .get(id)
        .map_or_else(|| format!("component_{id}"), |(_, n)| n.to_string())
}

/// Builds the report.
pub fn build(i: Inputs<'_>) -> Report {
    let ns = |cycles: u64| i.tsc.ns(cycles as f64);
    let floors = Floors::of(&i);
    // Timed instances nested in one instance of each top-level component: the
    // children's counts over the parent's (a child is timed exactly when its
    // parent is, with the parent's weight, so the ratio of counts is that of
    // timed instances).
    let calls_of = |name: &str| {
        hakmem::probe::COMPONENTS
            .iter()
            .position(|(_, n)| *n == name)
            .and_then(|id| i.counts.components.get(id))
            .map_or(0, |s| s.calls)
    };
    let nested_per_call = |name: &str| -> f64 {
        let own = calls_of(name);
        if own == 0 {
            return 0.0;
        }
        nested(name).iter().map(|c| calls_of(c)).sum::<u64>() as f64 / own as f64
    };
    let mut components: Vec<ComponentRow> = i
        .counts
        .components
        .iter()
        .enumerate()
        .filter(|(id, s)| s.calls > 0 && *id != FLOOR_ID)
        .map(|(id, s)| {
            // sum_cycles and hist weigh each timed instance by how many it
            // stands for (see hakmem::probe): their ratio is the mean.
            let estimated: u64 = s.hist.iter().sum();
            let raw_mean = if estimated > 0 {
                ns(s.sum_cycles) / estimated as f64
            } else {
                0.0
            };
            let name = component_name(id);
            let floor = if TOP_LEVEL.contains(&name.as_str()) {
                floors.operation.unwrap_or(0.0)
            } else {
                floors.component.unwrap_or(0.0)
            } + nested_per_call(&name) * floors.nested.unwrap_or(0.0);
            let cooked = |v: f64| (v - floor).max(0.0);
            ComponentRow {
                id: id as u32,
                component: name,
                calls: s.calls,
                timed: s.timed,
                total_ns: raw_mean * s.calls as f64,
                mean_ns: cooked(raw_mean),
                raw_mean_ns: raw_mean,
                p50_ns: cooked(ns(percentile(&s.hist, 0.50, s.max_cycles))),
                p99_ns: cooked(ns(percentile(&s.hist, 0.99, s.max_cycles))),
                max_ns: ns(s.max_cycles),
                share_of_alloc_time: 0.0,
                arg_sum: s.sum_arg,
                arg_nonzero: s.nonzero_arg,
            }
        })
        .collect();
    let top: f64 = components
        .iter()
        .filter(|c| TOP_LEVEL.contains(&c.component.as_str()))
        .map(|c| c.total_ns)
        .sum();
    let whole = if top > 0.0 {
        top
    } else {
        components.iter().map(|c| c.total_ns).sum()
    };
    for c in &mut components {
        c.share_of_alloc_time = if whole > 0.0 { c.total_ns / whole } else { 0.0 };
    }

    let (syscall_source, syscalls) = if i.kernel_syscalls {
        (
            SyscallSource::Kernel,
            syscalls::kernel_rows(&i.counts.syscalls),
        )
    } else {
        (
            SyscallSource::Hakmem,
            syscalls::hakmem_rows(&i.counts.components, i.tsc, floors.component.unwrap_or(0.0)),
        )
    };

    let allocations = components
        .iter()
        .find(|c| c.component == "malloc")
        .map_or(0, |c| c.calls);
    let perf_value = |name: &str| i.perf.iter().find(|r| r.name == name).and_then(|r| r.value);
    let per_1000 = (allocations > 0).then(|| {
        let k = 1000.0 / allocations as f64;
        let sc = |name: &str| {
            syscalls
                .iter()
                .find(|s| s.syscall == name)
                .map_or(0, |s| s.count) as f64
                * k
        };
        Per1000 {
            syscalls: syscalls.iter().map(|s| s.count).sum::<u64>() as f64 * k,
            mmap: sc("mmap"),
            munmap: sc("munmap"),
            madvise: sc("madvise"),
            page_faults: perf_value("page_faults").map(|v| v as f64 * k),
            alloc_time_us: top * k / 1000.0,
            syscall_time_us: syscalls.iter().map(|s| s.total_ns).sum::<u64>() as f64 * k / 1000.0,
            task_clock_us: perf_value("task_clock").map(|v| v as f64 * k / 1000.0),
        }
    });

    let hits: u64 = i
        .counts
        .components
        .iter()
        .enumerate()
        .filter(|(id, _)| *id != FLOOR_ID)
        .map(|(_, s)| s.calls)
        .sum();
    let interval_us = i
        .sample_interval
        .filter(|&c| c > 0)
        .map(|c| i.tsc.ns(c as f64) / 1e3);
    let options = if i.target.options.is_empty() {
        vec!["defaults".to_string()]
    } else {
        i.target.options.clone()
    };
    Report {
        schema_version: SCHEMA_VERSION,
        final_report: i.final_report,
        elapsed_s: i.elapsed_s,
        target: TargetPart {
            pid: i.target.pid,
            command: i.target.command.clone(),
            hakmem: i.target.hakmem_path.display().to_string(),
            linkage: i.target.linkage,
            options,
            state: i.state,
        },
        components,
        syscalls_counted: true,
        syscall_source,
        syscalls,
        perf: PerfPart {
            scope: i.perf_scope,
            threads: i.perf_threads,
            counters: i.perf,
        },
        correlation: Correlation {
            allocations,
            per_1000_allocations: per_1000,
        },
        probe: ProbePart {
            method: format!(
                "every call counted exactly in hakmem's per-thread records (a small malloc \
                 or free on the fast path by the calls taken of the thread's grant); malloc, \
                 free and realloc timed {} with every component inside them: when a \
                 thread's random grant is used up, a burst of {} consecutive calls whose \
                 first {} only warm the timed path up (not in any figure) and whose others \
                 share the calls since the previous burst (one longer than {} TSC cycles, a \
                 preemption, for itself only); malloc's avg size is that of the calls off \
                 the fast path; each component's calls / timed is its effective rate; \
                 the large-block, OS and ELO components timed on every call, between \
                 serialised TSC reads (lfence; rdtsc; lfence); subtracted from the means: \
                 what the same timing code records for empty work, {} ({})",
                sampling_rule(i.sample_period, interval_us),
                hakmem::probe::SAMPLE_BURST,
                hakmem::probe::SAMPLE_WARMUP,
                hakmem::probe::OUTLIER_CYCLES,
                match floors.measurements {
                    Some(n) => format!(
                        "measured in the target by the sampled threads themselves after \
                         each sample (mean of {n})"
                    ),
                    None => "measured in probe-cli at attach".to_string(),
                },
                match (floors.operation, floors.component, floors.nested) {
                    (Some(o), Some(e), Some(n)) => format!(
                        "{o:.1} ns per operation, {e:.1} ns per component, and from malloc's \
                         and free's {n:.1} ns per component timed inside them"
                    ),
                    _ => "not measured: nothing subtracted".to_string(),
                }
            ),
            hits,
            sample_period: i.sample_period,
            sample_interval_us: interval_us,
            empty_component_ns: floors.component,
            empty_operation_ns: floors.operation,
            nested_component_ns: floors.nested,
            floor_measurements: floors.measurements,
            exit_probes: i.counts.finals.len() as u64,
            hit_cost_ns: i.hit_cost_ns,
            added_ms: i
                .hit_cost_ns
                .map(|c| c * i.counts.finals.len() as f64 / 1e6),
            tsc_ghz: i.tsc.ticks_per_ns,
            kernel: MISC_COUNTERS
                .iter()
                .copied()
                .zip(i.counts.misc.iter().copied())
                .collect(),
        },
        processes: i
            .processes
            .iter()
            .map(|p| {
                let calls = |name: &str| {
                    let id = hakmem::probe::COMPONENTS
                        .iter()
                        .position(|(_, n)| *n == name)
                        .expect("a known component");
                    p.components.as_ref().map_or(0, |c| c[id].calls)
                };
                ProcessRow {
                    pid: p.pid,
                    parent: p.parent,
                    command: p.comm.clone(),
                    running: p.running,
                    hakmem: p.components.is_some(),
                    malloc: calls("malloc"),
                    free: calls("free"),
                    realloc: calls("realloc"),
                    evolution: band_rows(p.bands),
                }
            })
            .collect(),
    }
}

/// How operations were chosen for timing, in words.
fn sampling_rule(period: u32, interval_us: Option<f64>) -> String {
    match interval_us {
        Some(us) => format!(
            "at an adaptive rate (each thread starts at 1 in {period} and doubles or halves \
             its period, {}..={}, to time about one call every {us:.0} µs)",
            hakmem::probe::MIN_ADAPTIVE_PERIOD,
            hakmem::probe::MAX_ADAPTIVE_PERIOD
        ),
        None => format!("1 in {period} calls on average"),
    }
}

/// A duration in ns for people: "512 ns", "3.4 µs", "12.1 ms", "2.50 s".
pub fn human_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A byte count for people.
pub fn human_bytes(b: f64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// What a component's `arg` means, summarised (see `hakmem::probe::Component`).
fn detail(c: &ComponentRow) -> String {
    let pct = 100.0 * c.arg_nonzero as f64 / c.calls as f64;
    match c.component.as_str() {
        // The fast path of a traced malloc sums no size: the mean of the
        // calls that did (every realloc and large allocation, a small malloc
        // off the fast path).
        "malloc" | "realloc" | "large_alloc" => format!(
            "avg size {}",
            human_bytes(c.arg_sum as f64 / c.arg_nonzero.max(1) as f64)
        ),
        // Only timed frees look their block's size up.
        "free" => format!(
            "avg block {}",
            human_bytes(c.arg_sum as f64 / c.arg_nonzero.max(1) as f64)
        ),
        "os_map" | "os_unmap" | "os_purge" => format!("{} total", human_bytes(c.arg_sum as f64)),
        "bigcache_lookup" => format!("hit {pct:.1}%"),
        "bigcache_put" => format!("cached {pct:.1}%"),
        _ => String::new(),
    }
}

/// The report as text for a terminal.
pub fn text(r: &Report) -> String {
    let mut o = String::new();
    let t = &r.target;
    let title = if r.final_report {
        "final report"
    } else {
        "report"
    };
    let _ = writeln!(o, "== hakmem trace: {title} after {:.2} s ==", r.elapsed_s);
    let _ = writeln!(o, "target      pid {} ({}), {}", t.pid, t.state, t.command);
    let _ = writeln!(o, "hakmem      {} ({:?})", t.hakmem, t.linkage);
    let _ = writeln!(o, "mode        {}", t.options.join(" "));

    let _ = writeln!(
        o,
        "\ncomponents (counted exactly and TSC-timed inside hakmem, timed {}; means net of the timing's own cost; share = of malloc+free+realloc time)",
        sampling_rule(r.probe.sample_period, r.probe.sample_interval_us)
    );
    if r.components.is_empty() {
        let _ = writeln!(
            o,
            "  no probe events (the target made no allocations while traced)"
        );
    } else {
        let _ = writeln!(
            o,
            "  {:<16} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>7}  detail",
            "component", "calls", "timed", "mean", "p50", "p99", "max", "share"
        );
        for c in &r.components {
            let _ = writeln!(
                o,
                "  {:<16} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10} {:>6.1}%  {}",
                c.component,
                c.calls,
                c.timed,
                human_ns(c.mean_ns),
                human_ns(c.p50_ns),
                human_ns(c.p99_ns),
                human_ns(c.max_ns),
                100.0 * c.share_of_alloc_time,
                detail(c)
            );
        }
    }

    let _ = writeln!(o, "\nsyscalls ({})", r.syscall_source.describe());
    let _ = writeln!(
        o,
        "  {:<10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "syscall", "count", "total", "mean", "max", "failed", "bytes"
    );
    for s in &r.syscalls {
        let _ = writeln!(
            o,
            "  {:<10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10}",
            s.syscall,
            s.count,
            human_ns(s.total_ns as f64),
            human_ns(s.mean_ns),
            human_ns(s.max_ns as f64),
            s.failed,
            human_bytes(s.bytes as f64)
        );
    }

    let _ = writeln!(
        o,
        "\nperf counters ({}, {} thread(s))",
        r.perf.scope, r.perf.threads
    );
    for p in &r.perf.counters {
        let value = match (p.value, p.unit) {
            (Some(v), "ns") => human_ns(v as f64),
            (Some(v), _) => v.to_string(),
            (None, _) => p.note.clone().unwrap_or_else(|| "not supported".into()),
        };
        let _ = writeln!(o, "  {:<18} {:>14}", p.name, value);
    }

    let _ = writeln!(
        o,
        "\ncorrelation ({} allocations)",
        r.correlation.allocations
    );
    match &r.correlation.per_1000_allocations {
        None => {
            let _ = writeln!(o, "  no allocations seen");
        }
        Some(k) => {
            let opt = |v: Option<f64>, unit: &str| {
                v.map_or("n/a".to_string(), |v| format!("{v:.2}{unit}"))
            };
            let _ = writeln!(
                o,
                "  per 1,000 allocations: {:.2} syscalls (mmap {:.2}, munmap {:.2}, madvise {:.2}), {} page faults",
                k.syscalls,
                k.mmap,
                k.munmap,
                k.madvise,
                opt(k.page_faults, "")
            );
            let _ = writeln!(
                o,
                "  time per 1,000 allocations: {} in hakmem, {} in syscalls, {} CPU (task clock)",
                human_ns(k.alloc_time_us * 1000.0),
                human_ns(k.syscall_time_us * 1000.0),
                k.task_clock_us
                    .map_or("n/a".to_string(), |v| human_ns(v * 1000.0))
            );
        }
    }

    if r.processes.len() > 1 {
        let _ = writeln!(o, "\nprocesses ({} traced)", r.processes.len());
        let _ = writeln!(
            o,
            "  {:>8} {:>8} {:<16} {:>10} {:>10} {:>10}  state",
            "pid", "parent", "command", "malloc", "free", "realloc"
        );
        for p in &r.processes {
            let _ = writeln!(
                o,
                "  {:>8} {:>8} {:<16} {:>10} {:>10} {:>10}  {}{}",
                p.pid,
                p.parent,
                p.command,
                p.malloc,
                p.free,
                p.realloc,
                if p.running { "running" } else { "exited" },
                if p.hakmem { "" } else { ", no hakmem" }
            );
        }
    }

    let evolving: Vec<&ProcessRow> = r
        .processes
        .iter()
        .filter(|p| !p.evolution.is_empty())
        .collect();
    if !evolving.is_empty() {
        let _ = writeln!(
            o,
            "\nlarge-block strategy by size band (bands that have seen a block)"
        );
        for p in evolving {
            let bands: Vec<String> = p
                .evolution
                .iter()
                .map(|b| {
                    let how = match b.phase {
                        "learn" => "learning, best so far",
                        "frozen" => "frozen on",
                        _ => "locked on",
                    };
                    format!("{}: {how} {}", b.band, b.strategy)
                })
                .collect();
            let who = if r.processes.len() > 1 {
                format!("{:>8} ", p.pid)
            } else {
                String::new()
            };
            let _ = writeln!(o, "  {who}{}", bands.join("; "));
        }
    }

    let p = &r.probe;
    let _ = writeln!(o, "\nmethod      {}", p.method);
    let cost = match (p.hit_cost_ns, p.added_ms) {
        (Some(c), Some(a)) => format!(
            " x {} = {} added to the target",
            human_ns(c),
            human_ns(a * 1e6)
        ),
        _ => String::new(),
    };
    let _ = writeln!(
        o,
        "probe       {} component instances counted; {} exit probe(s){cost}; TSC {:.3} GHz",
        p.hits, p.exit_probes, p.tsc_ghz
    );
    let lost: Vec<String> = p
        .kernel
        .iter()
        .filter(|(n, v)| **v > 0 && **n != "forks_followed")
        .map(|(n, v)| format!("{n} {v}"))
        .collect();
    if !lost.is_empty() {
        let _ = writeln!(o, "kernel      {}", lost.join(", "));
    }
    o
}

/// The report in the Prometheus text exposition format (counters since attach;
/// component durations as a histogram with the log2 buckets as `le` bounds).
pub fn prometheus(r: &Report, counts: &KernelCounts, tsc: Tsc) -> String {
    let mut o = String::new();
    let pid = r.target.pid;
    let head = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };

    head(
        &mut o,
        "hakmem_component_duration_seconds",
        "histogram",
        "Time hakmem spent per component instance (TSC, probe cost excluded).",
    );
    for c in &r.components {
        let stats = &counts.components[c.id as usize];
        let labels = format!("pid=\"{pid}\",component=\"{}\"", c.component);
        let mut cumulative = 0u64;
        let last = stats.hist.iter().rposition(|&n| n > 0).unwrap_or(0);
        for (bucket, n) in stats.hist.iter().enumerate().take(last + 1) {
            cumulative += n;
            let upper_cycles = if bucket >= 63 {
                u64::MAX as f64
            } else {
                ((1u64 << (bucket + 1)) - 1) as f64
            };
            let _ = writeln!(
                o,
                "hakmem_component_duration_seconds_bucket{{{labels},le=\"{:e}\"}} {cumulative}",
                tsc.ns(upper_cycles) / 1e9
            );
        }
        let _ = writeln!(
            o,
            "hakmem_component_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            c.calls
        );
        let _ = writeln!(
            o,
            "hakmem_component_duration_seconds_sum{{{labels}}} {:e}",
            c.total_ns / 1e9
        );
        let _ = writeln!(
            o,
            "hakmem_component_duration_seconds_count{{{labels}}} {}",
            c.calls
        );
    }
    head(
        &mut o,
        "hakmem_component_arg_total",
        "counter",
        "Sum of the probe argument per component (bytes or hits).",
    );
    for c in &r.components {
        let _ = writeln!(
            o,
            "hakmem_component_arg_total{{pid=\"{pid}\",component=\"{}\"}} {}",
            c.component, c.arg_sum
        );
    }

    head(
        &mut o,
        "hakmem_syscalls_total",
        "counter",
        "Memory syscalls of the process: hakmem's own, counted in the process, or with probe-cli --kernel-syscalls every one the kernel saw (the report's syscall_source).",
    );
    for s in &r.syscalls {
        let _ = writeln!(
            o,
            "hakmem_syscalls_total{{pid=\"{pid}\",syscall=\"{}\"}} {}",
            s.syscall, s.count
        );
    }
    head(
        &mut o,
        "hakmem_syscall_seconds_total",
        "counter",
        "Time spent in memory syscalls.",
    );
    for s in &r.syscalls {
        let _ = writeln!(
            o,
            "hakmem_syscall_seconds_total{{pid=\"{pid}\",syscall=\"{}\"}} {:e}",
            s.syscall,
            s.total_ns as f64 / 1e9
        );
    }
    head(
        &mut o,
        "hakmem_syscall_bytes_total",
        "counter",
        "Length arguments of the successful memory syscalls.",
    );
    for s in &r.syscalls {
        let _ = writeln!(
            o,
            "hakmem_syscall_bytes_total{{pid=\"{pid}\",syscall=\"{}\"}} {}",
            s.syscall, s.bytes
        );
    }
    head(
        &mut o,
        "hakmem_perf_events_total",
        "counter",
        "perf counters of the process (task_clock in ns); absent where not supported.",
    );
    for p in &r.perf.counters {
        if let Some(v) = p.value {
            let _ = writeln!(
                o,
                "hakmem_perf_events_total{{pid=\"{pid}\",event=\"{}\"}} {v}",
                p.name
            );
        }
    }
    head(
        &mut o,
        "hakmem_probe_hits_total",
        "counter",
        "Probe events seen (each cost the target one uprobe hit).",
    );
    let _ = writeln!(
        o,
        "hakmem_probe_hits_total{{pid=\"{pid}\"}} {}",
        r.probe.hits
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_components_are_every_descendant_once() {
        let mut m = nested("malloc");
        m.sort();
        assert_eq!(
            m,
            [
                "bigcache_lookup",
                "elo_select",
                "header",
                "large_alloc",
                "os_advise",
                "os_map",
                "os_protect",
                "small_fast",
                "small_refill"
            ]
        );
        let mut f = nested("free");
        f.sort();
        assert_eq!(f, ["bigcache_put", "os_purge", "os_unmap", "remote_free"]);
        assert!(nested("os_map").is_empty());
    }

    #[test]
    fn percentile_interpolates_inside_the_bucket() {
        let mut h = [0u64; HIST_BUCKETS];
        h[10] = 100; // values in [1024, 2047]
        let p50 = percentile(&h, 0.5, 5000);
        assert!((1400..1600).contains(&p50), "p50 {p50}");
        assert_eq!(percentile(&h, 1.0, 1500), 1500, "capped by the max");
        assert_eq!(percentile(&[0; HIST_BUCKETS], 0.5, 0), 0);
    }

    #[test]
    fn percentile_picks_the_right_bucket() {
        let mut h = [0u64; HIST_BUCKETS];
        h[3] = 99;
        h[20] = 1;
        assert!(percentile(&h, 0.99, u64::MAX) < 16);
        assert!(percentile(&h, 1.0, u64::MAX) >= 1 << 20);
    }

    #[test]
    fn human_units() {
        assert_eq!(human_ns(512.0), "512 ns");
        assert_eq!(human_ns(3_400.0), "3.4 µs");
        assert_eq!(human_bytes(2.0 * 1024.0 * 1024.0), "2.0 MiB");
    }
}
