//! `probe-cli calibrate`: what tracing costs on this machine.
//!
//! Runs hakmem's own probe code (linked into probe-cli) in loops: an event that
//! is only counted (what a traced program pays on most calls), the timestamps
//! around an empty component (the floor under every timed figure, subtracted
//! from the reported means), a timed component inside another (what nesting
//! adds to the outer one), and the exit probe with its real BPF program
//! attached (the only trap tracing makes, once per process).

use crate::elf;
use crate::error::{Error, Result};
use crate::probes::Probes;
use hakmem::probe::{self, Component};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Instant;
/// What tracing costs.
#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    /// Median over the rounds of the added ns per call of the exit probe with
    /// its uprobe and BPF program attached (it copies a whole record).
    pub probe_hit_ns: f64,
    /// ns per call of the exit probe function with nothing attached.
    pub unprobed_call_ns: f64,
    /// ns a traced program pays per component instance that is counted, not timed.
    pub counted_event_ns: f64,
    /// ns hakmem spends timing one component instance (two TSC reads).
    pub timing_ns: f64,
    /// ns between two back-to-back timestamps.
    pub back_to_back_ns: f64,
    /// ns hakmem's records give an operation (malloc, free, realloc) with
    /// nothing in it: the floor under every top-level figure.
    pub empty_operation_ns: f64,
    /// ns hakmem's records give a component with nothing in it, timed inside
    /// an operation: the floor under every other component figure.
    pub empty_component_ns: f64,
    /// ns an empty component timed inside an operation adds to the
    /// operation's recorded figure (its timestamps; hakmem leaves its record
    /// update out).
    pub nested_component_ns: f64,
    /// Calls per round.
    pub iterations: u32,
    /// Rounds.
    pub rounds: u32,
    /// Every round's probe hit cost, ns.
    pub per_round_ns: Vec<f64>,
}

/// ns per call of `f` over `n` calls.
fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn hit() {
    // The very function hakmem calls at exit, with a whole record.
    probe::hakmem_probe_final(&probe::hakmem_records_final, probe::COMPONENTS.len() as u32);
}

/// Median ns of `n` readings of `f` (in TSC cycles): a preemption in the
/// middle of the loop moves a mean, not a median.
fn median_reading(n: u32, mut f: impl FnMut() -> u64) -> f64 {
    let tsc = crate::tsc::Tsc::calibrate(std::time::Duration::from_millis(20));
    let cycles: Vec<f64> = (0..n).map(|_| f() as f64).collect();
    tsc.ns(hakmem_bench::stats::median(&cycles).unwrap_or(0.0))
}

/// What a component with nothing in it reads: two back-to-back timestamps.
fn empty_component(n: u32) -> f64 {
    median_reading(n, || {
        let t = hakmem::probe::now();
        std::hint::black_box(hakmem::probe::now()).wrapping_sub(t)
    })
}

/// Mean TSC cycles per timed instance that hakmem's records gained for
/// `component` over `n` runs of `f` (every slot summed: while this process is
/// not traced, only `f` records anything).
fn recorded(n: u32, component: Component, mut f: impl FnMut()) -> f64 {
    let sum = || {
        let used =
            (probe::hakmem_records_used.load(Ordering::Acquire) as usize).min(probe::MAX_RECORDS);
        probe::hakmem_records[..used]
            .iter()
            .map(|r| &r.components[component as usize])
            .fold((0u64, 0u64), |(c, t), x| {
                (
                    c + x.sum_cycles.load(Ordering::Relaxed),
                    t + x.timed.load(Ordering::Relaxed),
                )
            })
    };
    let (c0, t0) = sum();
    for _ in 0..n {
        f();
    }
    let (c1, t1) = sum();
    (c1 - c0) as f64 / (t1 - t0).max(1) as f64
}

/// What hakmem's own records say about empty work, in ns, as the median of
/// `rounds` rounds of `n` (every operation timed): an empty operation
/// (malloc's figure with nothing between its timestamps), an empty component
/// inside one (small_fast's figure), and what that component adds to the
/// operation's figure. These are the floors the reports subtract: they hold
/// everything the timing itself leaves in a figure, as the target records it.
fn recorded_floors(n: u32, rounds: u32) -> (f64, f64, f64) {
    let tsc = crate::tsc::Tsc::calibrate(std::time::Duration::from_millis(20));
    let period = probe::hakmem_sample_period.swap(1, Ordering::Relaxed);
    let interval = probe::hakmem_sample_interval.swap(0, Ordering::Relaxed);
    let nested_op = || {
        let t = probe::start_op(false);
        let i = probe::start();
        probe::emit(Component::SmallFast, i, 0);
        probe::emit(Component::Malloc, t, 0);
    };
    let (mut op, mut inner, mut nested) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let empty_op = recorded(n, Component::Malloc, || {
            let t = probe::start_op(false);
            probe::emit(Component::Malloc, t, 0);
        });
        let with_inner = recorded(n, Component::Malloc, nested_op);
        let inner_empty = recorded(n, Component::SmallFast, nested_op);
        op.push(tsc.ns(empty_op));
        inner.push(tsc.ns(inner_empty));
        nested.push(tsc.ns(with_inner - empty_op));
    }
    probe::hakmem_sample_period.store(period, Ordering::Relaxed);
    probe::hakmem_sample_interval.store(interval, Ordering::Relaxed);
    let med = |v: &[f64]| hakmem_bench::stats::median(v).unwrap_or(0.0).max(0.0);
    (med(&op), med(&inner), med(&nested))
}

/// Measures the probe hit cost in this process.
pub fn measure(iterations: u32, rounds: u32) -> Result<Calibration> {
    if iterations == 0 || rounds == 0 {
        return Err(Error::Usage(
            "--iterations and --rounds must be positive".into(),
        ));
    }
    let exe =
        std::env::current_exe().map_err(Error::other("locating probe-cli's own executable"))?;
    let info = elf::inspect(&exe).map_err(Error::Other)?;
    let offset = info.probe_offset.ok_or_else(|| {
        Error::Other(format!(
            "{} has no {} symbol",
            exe.display(),
            elf::PROBE_FUNCTION
        ))
    })?;

    let timing_ns = per_call(iterations, || {
        let t = hakmem::probe::now();
        std::hint::black_box(hakmem::probe::now().wrapping_sub(t));
    });
    let back_to_back_ns = empty_component(iterations);
    let (empty_operation_ns, empty_component_ns, nested_component_ns) =
        recorded_floors(iterations, rounds);
    let mut counted = Vec::new();
    for _ in 0..rounds {
        counted.push(per_call(iterations, || {
            probe::emit(Component::SmallFast, 0, std::hint::black_box(3))
        }));
    }
    let counted_event_ns = hakmem_bench::stats::median(&counted).unwrap_or(0.0);

    // The exit probe copies a whole record per hit: fewer calls suffice. The
    // record's pages must be resident (as hakmem's are: it writes them just
    // before), since the BPF program's read cannot fault them in.
    for c in &probe::hakmem_records_final.components {
        c.calls.store(0, Ordering::Relaxed);
        for b in &c.hist {
            b.store(0, Ordering::Relaxed);
        }
    }
    let calls = (iterations / 10).max(1);
    let mut plain = Vec::new();
    for _ in 0..rounds {
        plain.push(per_call(calls, hit));
    }
    let unprobed_call_ns = hakmem_bench::stats::median(&plain).unwrap_or(0.0);
    let mut probes = Probes::load(false)?;
    probes.watch(std::process::id())?;
    probes.attach_final(&exe, offset, Some(std::process::id()))?;
    let mut per_round_ns = Vec::new();
    for _ in 0..rounds {
        per_round_ns.push(per_call(calls, hit) - unprobed_call_ns);
    }
    if !probes.read()?.finals.contains_key(&std::process::id()) {
        return Err(Error::Kernel(
            "the exit probe's uprobe never fired in calibration".into(),
        ));
    }
    let probe_hit_ns = hakmem_bench::stats::median(&per_round_ns).unwrap_or(0.0);
    Ok(Calibration {
        probe_hit_ns,
        unprobed_call_ns,
        counted_event_ns,
        timing_ns,
        back_to_back_ns,
        empty_operation_ns,
        empty_component_ns,
        nested_component_ns,
        iterations,
        rounds,
        per_round_ns,
    })
}

/// Prints a calibration for people.
pub fn print(c: &Calibration) {
    println!("what tracing costs a traced program on this machine");
    println!(
        "  counted event:    {:>9.1} ns  (a component instance that is counted, not timed)",
        c.counted_event_ns
    );
    println!(
        "  TSC timing pair:  {:>9.1} ns  (per timed component)",
        c.timing_ns
    );
    println!(
        "  back-to-back TSC: {:>9.1} ns  (two timestamps with nothing between them)",
        c.back_to_back_ns
    );
    println!(
        "  empty operation:  {:>9.1} ns  (what hakmem records for a malloc/free with nothing in it; subtracted from their means)",
        c.empty_operation_ns
    );
    println!(
        "  empty component:  {:>9.1} ns  (what hakmem records for a component with nothing in it; subtracted from means)",
        c.empty_component_ns
    );
    println!(
        "  nested component: {:>9.1} ns  (what a timed inner component adds to the operation around it)",
        c.nested_component_ns
    );
    println!(
        "  exit probe hit:   {:>9.1} ns  (median of {} rounds; once per process, at exit)",
        c.probe_hit_ns, c.rounds
    );
    let rounds: Vec<String> = c.per_round_ns.iter().map(|r| format!("{r:.0}")).collect();
    println!("  rounds:           {} ns", rounds.join(", "));
    println!("  call, no probe:   {:>9.1} ns", c.unprobed_call_ns);
    println!("hakmem counts every component instance in its own memory and times about one");
    println!(
        "operation per hakmem_sample_interval TSC cycles a thread (an adaptive period), with every"
    );
    println!("component inside it; no call traps into the kernel.");
}
