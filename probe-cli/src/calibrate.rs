//! `probe-cli calibrate`: what one probe hit costs the traced program on this machine.
//!
//! Calls hakmem's own nop5 probe function (linked into probe-cli) in a loop, without
//! and with the real `hakmem_probe_event` BPF program attached to it, and takes the
//! difference per call. The BPF map's call count checks that every call was a hit.

use crate::elf;
use crate::error::{Error, Result};
use crate::probes::Probes;
use serde::Serialize;
use std::time::Instant;

/// The measured cost of one probe hit.
#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    /// Median over the rounds of the added ns per call with the uprobe attached.
    pub probe_hit_ns: f64,
    /// ns per call of the nop5 function with nothing attached.
    pub unprobed_call_ns: f64,
    /// ns hakmem spends timing one component instance (two TSC reads).
    pub timing_ns: f64,
    /// ns a component with nothing in it reads (back-to-back timestamps): the
    /// floor under every component figure.
    pub empty_component_ns: f64,
    /// ns an empty component timed (and probed) inside another adds to the
    /// outer one's figure: its timestamps, the event call around the probe hit,
    /// and what the trap leaves cold. hakmem subtracts the hit itself.
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
    // The very function hakmem reports to: same nop5 entry, same uprobe path.
    hakmem::probe::emit_cycles(hakmem::probe::Component::Malloc, 1, 0);
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

/// What an outer component reads around one probed, empty inner component.
fn nested_component(n: u32) -> f64 {
    median_reading(n, || {
        let t = hakmem::probe::now();
        let inner = hakmem::probe::now();
        hakmem::probe::emit(hakmem::probe::Component::SmallFast, inner, 0);
        hakmem::probe::now().wrapping_sub(t)
    })
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
    let empty_component_ns = empty_component(iterations);
    let mut plain = Vec::new();
    for _ in 0..rounds {
        plain.push(per_call(iterations, hit));
    }
    let unprobed_call_ns = hakmem_bench::stats::median(&plain).unwrap_or(0.0);

    let mut probes = Probes::load(std::process::id())?;
    probes.attach_components(&exe, offset)?;
    let mut per_round_ns = Vec::new();
    for _ in 0..rounds {
        per_round_ns.push(per_call(iterations, hit) - unprobed_call_ns);
    }
    let hits = probes.read()?.components[hakmem::probe::Component::Malloc as usize].calls;
    let expected = u64::from(iterations) * u64::from(rounds);
    if hits != expected {
        return Err(Error::Kernel(format!(
            "the uprobe saw {hits} of {expected} calls"
        )));
    }
    let probe_hit_ns = hakmem_bench::stats::median(&per_round_ns).unwrap_or(0.0);
    // After the count check: these events are hits too.
    let nested_component_ns = (nested_component(iterations) - empty_component_ns).max(0.0);
    Ok(Calibration {
        probe_hit_ns,
        unprobed_call_ns,
        timing_ns,
        empty_component_ns,
        nested_component_ns,
        iterations,
        rounds,
        per_round_ns,
    })
}

/// Prints a calibration for people.
pub fn print(c: &Calibration) {
    println!("probe hit cost (uprobe on hakmem_probe_event + BPF aggregation)");
    println!(
        "  per hit:          {:>9.1} ns  (median of {} rounds x {} calls)",
        c.probe_hit_ns, c.rounds, c.iterations
    );
    let rounds: Vec<String> = c.per_round_ns.iter().map(|r| format!("{r:.0}")).collect();
    println!("  rounds:           {} ns", rounds.join(", "));
    println!("  call, no probe:   {:>9.1} ns", c.unprobed_call_ns);
    println!(
        "  TSC timing pair:  {:>9.1} ns  (hakmem's own cost per timed component)",
        c.timing_ns
    );
    println!(
        "  empty component:  {:>9.1} ns  (what a component with nothing in it reads)",
        c.empty_component_ns
    );
    println!(
        "  nested component: {:>9.1} ns  (what a probed component adds to the one around it)",
        c.nested_component_ns
    );
    println!("No component figure includes a probe hit: a component's own hit comes after its");
    println!("timestamps, and hakmem subtracts the hits of the components timed inside another");
    println!("(malloc around small_fast, ...); the outer one still carries the inner one's timing");
    println!("(nested component). Each probe event slows the traced program by one hit.");
}
