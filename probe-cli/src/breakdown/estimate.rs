//! From runs to the table: the two estimates of every component, their noise,
//! and where they disagree.
//!
//! * **Probe estimate**: the component's TSC-timed total in the traced default
//!   run, per operation, minus what an empty component reads (back-to-back
//!   timestamps) per instance; for malloc/free/realloc also minus hakmem's
//!   timing cost per nested instance. hakmem already excludes the probe hits
//!   themselves (`hakmem/src/probe.rs`, `PROBE_CYCLES`).
//! * **Isolation estimate**: median ns/op with the feature on minus median
//!   ns/op with it off, each from its own untraced processes.
//! * **Noise**: a robust standard deviation across runs, 1.4826 × the median
//!   absolute deviation (one preempted run out of five moves it little; for two
//!   runs it is half their difference × 1.48), of each configuration for the
//!   isolation delta, combined as sqrt(a² + b²), and of the traced runs for the
//!   probes. Two estimates *disagree* when they differ by more than twice their
//!   combined noise, sqrt(probe² + isolation²).

use super::configs;
use super::model::{
    Calibration, ConfigSummary, IsolationEstimate, ProbeEstimate, Row, TraceSummary,
    TracedComponent,
};
use std::collections::BTreeMap;

/// One untraced run, reduced to what the estimates need.
#[derive(Clone, Debug)]
pub struct PlainRun {
    pub ops: u64,
    pub ns_per_op: f64,
    pub syscalls: BTreeMap<String, u64>,
    pub page_faults: u64,
    pub peak_rss_kb: u64,
    pub rss_after_kb: u64,
}

/// One traced run, reduced to what the estimates need.
#[derive(Clone, Debug, Default)]
pub struct TracedRun {
    pub ops: u64,
    /// Per probe component: calls, total ns as measured, and total ns with
    /// the timing floors taken out (the report's mean times the calls).
    pub components: BTreeMap<String, (u64, f64, f64)>,
    /// The floors the report subtracted (ns: an empty component, what one
    /// more component adds to an operation) and how many measurements made
    /// them in the target (0: probe-cli's own, from attach).
    pub floors: (f64, f64, u64),
    /// Probe hits: the exit probes only (component instances are counted and
    /// timed in the target and read from its memory, with no probe hit).
    pub hits: u64,
    pub syscalls: BTreeMap<String, u64>,
    pub page_faults: Option<u64>,
}

/// Components whose time is a whole allocator call; the others run inside them.
const TOP_LEVEL: &[&str] = &["malloc", "free", "realloc"];

/// Median (hakmem-bench's, the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    hakmem_bench::stats::median(values).unwrap_or(0.0)
}

/// 1.4826 × the median absolute deviation (the standard deviation for normal
/// data, robust to an outlier); 0 for fewer than two values.
pub fn robust_sigma(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = median(values);
    let deviations: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
    1.4826 * median(&deviations)
}

/// How far apart two estimates may be before they disagree, in units of
/// their combined noise.
pub const DISAGREE_SIGMAS: f64 = 2.0;

/// The standard a traced figure is held to: within this fraction of the
/// isolation figure, or within [`CLOSE_NS`] (issue 14: "within 20% (or 2 ns)
/// of what isolation measures for it untraced").
pub const CLOSE_FRACTION: f64 = 0.2;
/// See [`CLOSE_FRACTION`].
pub const CLOSE_NS: f64 = 2.0;

/// Whether the probe figure `probe` is close to the isolation figure
/// `isolation` by that standard.
pub fn close(probe: f64, isolation: f64) -> bool {
    (probe - isolation).abs() <= (CLOSE_FRACTION * isolation.abs()).max(CLOSE_NS)
}

fn median_u64(values: impl Iterator<Item = u64>) -> u64 {
    hakmem_bench::stats::median_u64(&values.collect::<Vec<_>>()).unwrap_or(0)
}

/// Median of each key over the maps.
fn median_counts<'a>(
    maps: impl Iterator<Item = &'a BTreeMap<String, u64>>,
) -> BTreeMap<String, u64> {
    let maps: Vec<&BTreeMap<String, u64>> = maps.collect();
    let mut keys: Vec<&String> = maps.iter().flat_map(|m| m.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            (
                k.clone(),
                median_u64(maps.iter().map(|m| m.get(k).copied().unwrap_or(0))),
            )
        })
        .collect()
}

/// A configuration over its measured runs.
pub fn summarize_config(config: &configs::Config, runs: &[PlainRun]) -> ConfigSummary {
    let samples: Vec<f64> = runs.iter().map(|r| r.ns_per_op).collect();
    ConfigSummary {
        name: config.name,
        env: configs::env_label(config),
        about: config.about,
        runs: runs.len(),
        ops: runs.first().map_or(0, |r| r.ops),
        ns_per_op: median(&samples),
        noise_ns: robust_sigma(&samples),
        samples_ns_per_op: samples,
        syscalls: median_counts(runs.iter().map(|r| &r.syscalls)),
        page_faults: median_u64(runs.iter().map(|r| r.page_faults)),
        peak_rss_kb: median_u64(runs.iter().map(|r| r.peak_rss_kb)),
        rss_after_kb: median_u64(runs.iter().map(|r| r.rss_after_kb)),
    }
}

/// Per operation in one traced run: (calibrated ns, raw ns, calls) of the
/// components `names` summed.
fn per_op(run: &TracedRun, names: &[&str]) -> (f64, f64, f64) {
    let ops = run.ops.max(1) as f64;
    let mut raw = 0.0;
    let mut calibrated = 0.0;
    let mut calls = 0u64;
    for name in names {
        if let Some(&(n, total, cooked)) = run.components.get(*name) {
            raw += total;
            calibrated += cooked;
            calls += n;
        }
    }
    (calibrated / ops, raw / ops, calls as f64 / ops)
}

/// The probe estimate of `names` over the traced runs.
fn probe_estimate(runs: &[TracedRun], names: &'static [&'static str]) -> Option<ProbeEstimate> {
    if runs.is_empty() {
        return None;
    }
    let each: Vec<(f64, f64, f64)> = runs.iter().map(|r| per_op(r, names)).collect();
    let cooked: Vec<f64> = each.iter().map(|e| e.0).collect();
    let raw: Vec<f64> = each.iter().map(|e| e.1).collect();
    let calls: Vec<f64> = each.iter().map(|e| e.2).collect();
    let ns_per_op = median(&cooked);
    let calls_per_op = median(&calls);
    Some(ProbeEstimate {
        ns_per_op,
        noise_ns: robust_sigma(&cooked),
        raw_ns_per_op: median(&raw),
        calls_per_op,
        ns_per_call: (calls_per_op > 0.0).then(|| ns_per_op / calls_per_op),
        components: names.to_vec(),
        samples_ns_per_op: cooked,
    })
}

/// `on` − `off` of the probe estimates of `names` (two traced configurations).
fn probe_difference(
    on: &[TracedRun],
    off: &[TracedRun],
    names: &'static [&'static str],
) -> Option<ProbeEstimate> {
    let a = probe_estimate(on, names)?;
    let b = probe_estimate(off, names)?;
    Some(ProbeEstimate {
        ns_per_op: a.ns_per_op - b.ns_per_op,
        noise_ns: a.noise_ns.hypot(b.noise_ns),
        raw_ns_per_op: a.raw_ns_per_op - b.raw_ns_per_op,
        calls_per_op: a.calls_per_op,
        ns_per_call: (a.calls_per_op > 0.0).then(|| (a.ns_per_op - b.ns_per_op) / a.calls_per_op),
        components: names.to_vec(),
        samples_ns_per_op: Vec::new(),
    })
}

/// How a row gets its probe estimate.
enum Probe {
    /// No probe times it.
    None,
    /// These components in the traced default run.
    Sum(&'static [&'static str]),
    /// These components, traced global-BigCache run minus traced default run.
    GlobalMinusDefault(&'static [&'static str]),
}

/// One row of the table, as data.
struct Spec {
    key: &'static str,
    component: &'static str,
    probe: Probe,
    /// (on, off) configurations.
    isolation: Option<(configs::Config, configs::Config)>,
    mitigable: &'static str,
    guess: Option<&'static str>,
    note: &'static str,
}

const BIGCACHE: &[&str] = &["bigcache_lookup", "bigcache_put"];

/// The table's rows, in the origin analysis's order, then the core of the allocator.
const ROWS: &[Spec] = &[
    Spec {
        key: "elo_select",
        component: "ELO strategy selection",
        probe: Probe::Sum(&["elo_select"]),
        isolation: Some((configs::DEFAULT, configs::NO_ELO)),
        mitigable: "yes: HAKMEM_DISABLE_ELO=1 or HAKMEM_EVO_POLICY=frozen",
        guess: Some("100-200"),
        note: "HAKMEM_DISABLE_ELO also stops evolution sampling and fixes the strategy: the delta includes both",
    },
    Spec {
        key: "evolution",
        component: "Evolution tracking (learn vs frozen)",
        probe: Probe::None,
        isolation: Some((configs::DEFAULT, configs::FROZEN)),
        mitigable: "yes: HAKMEM_EVO_POLICY=frozen",
        guess: Some("10-20"),
        note: "no probe times the sampling (two getrusage per sampled block); frozen also stops ELO selection",
    },
    Spec {
        key: "bigcache",
        component: "BigCache lookup + put",
        probe: Probe::Sum(BIGCACHE),
        isolation: Some((configs::DEFAULT, configs::NO_BIGCACHE)),
        mitigable: "partial: switching it off loses the reuse",
        guess: Some("50-100"),
        note: "the isolation delta is net: it includes the mmap/munmap and page faults the cache saves",
    },
    Spec {
        key: "bigcache_global",
        component: "Global instead of per-thread BigCache",
        probe: Probe::GlobalMinusDefault(BIGCACHE),
        isolation: Some((configs::GLOBAL, configs::DEFAULT)),
        mitigable: "yes: HAKMEM_BIGCACHE=thread (the default)",
        guess: None,
        note: "both estimates: global minus per-thread",
    },
    Spec {
        key: "header",
        component: "Large-block header",
        probe: Probe::Sum(&["header"]),
        isolation: None,
        mitigable: "no: free needs it",
        guess: Some("30-50"),
        note: "no option removes the header; the probe times the write on a fresh mapping",
    },
    Spec {
        key: "features",
        component: "All optional features",
        probe: Probe::Sum(&["elo_select", "bigcache_lookup", "bigcache_put"]),
        isolation: Some((configs::DEFAULT, configs::MINIMAL)),
        mitigable: "yes: HAKMEM_MINIMAL=1",
        guess: Some("190-370"),
        note: "minimal also turns off call-site profiling and evolution sampling (no probe for either)",
    },
    Spec {
        key: "os",
        component: "OS map/unmap/purge",
        probe: Probe::Sum(&[
            "os_map",
            "os_unmap",
            "os_purge",
            "os_advise",
            "os_remap",
            "os_protect",
        ]),
        isolation: None,
        mitigable: "partial: BigCache, HAKMEM_PURGE_DELAY_MS",
        guess: None,
        note: "syscall time inside hakmem; page faults are paid later, by the program",
    },
    Spec {
        key: "large",
        component: "Large allocation (whole path)",
        probe: Probe::Sum(&["large_alloc"]),
        isolation: None,
        mitigable: "-",
        guess: None,
        note: "contains BigCache lookup, ELO selection, header and OS map",
    },
    Spec {
        key: "small",
        component: "Small blocks (fast path + refill)",
        probe: Probe::Sum(&["small_fast", "small_refill", "remote_free"]),
        isolation: None,
        mitigable: "no: the core",
        guess: None,
        note: "free of small blocks is in the free component only",
    },
    Spec {
        key: "hakmem",
        component: "All of hakmem (malloc+free+realloc)",
        probe: Probe::Sum(TOP_LEVEL),
        isolation: Some((configs::DEFAULT, configs::BASELINE)),
        mitigable: "-",
        guess: None,
        note: "every row above runs inside this one; isolation: the scenario minus its allocation-free \
               baseline (hakmem-bench run --baseline), which also counts the calls into hakmem and the \
               page faults its memory causes in the program's own writes, where the probes time the inside",
    },
];

/// The keys of every row, in order.
#[cfg(test)]
pub fn row_keys() -> Vec<&'static str> {
    ROWS.iter().map(|r| r.key).collect()
}

/// The table.
pub fn rows(
    configs: &[ConfigSummary],
    traces: &BTreeMap<&'static str, Vec<TracedRun>>,
) -> Vec<Row> {
    let summary = |name: &str| configs.iter().find(|c| c.name == name);
    let total = summary(configs::DEFAULT.name).map_or(0.0, |c| c.ns_per_op);
    let none = Vec::new();
    let default_runs = traces.get(configs::DEFAULT.name).unwrap_or(&none);
    let global_runs = traces.get(configs::GLOBAL.name).unwrap_or(&none);
    ROWS.iter()
        .map(|spec| {
            let probe = match spec.probe {
                Probe::None => None,
                Probe::Sum(names) => probe_estimate(default_runs, names),
                Probe::GlobalMinusDefault(names) => {
                    probe_difference(global_runs, default_runs, names)
                }
            };
            let isolation = spec.isolation.and_then(|(on, off)| {
                let (a, b) = (summary(on.name)?, summary(off.name)?);
                Some(IsolationEstimate {
                    ns_per_op: a.ns_per_op - b.ns_per_op,
                    noise_ns: a.noise_ns.hypot(b.noise_ns),
                    on: on.name,
                    off: off.name,
                })
            });
            let disagree = match (&probe, &isolation) {
                (Some(p), Some(i)) => Some(
                    (p.ns_per_op - i.ns_per_op).abs()
                        > DISAGREE_SIGMAS * p.noise_ns.hypot(i.noise_ns),
                ),
                _ => None,
            };
            let close = match (&probe, &isolation) {
                (Some(p), Some(i)) => Some(close(p.ns_per_op, i.ns_per_op)),
                _ => None,
            };
            let cost = probe
                .as_ref()
                .map(|p| p.ns_per_op)
                .or(isolation.as_ref().map(|i| i.ns_per_op));
            Row {
                key: spec.key,
                component: spec.component,
                probe,
                isolation,
                share: cost.filter(|_| total > 0.0).map(|c| c / total),
                mitigable: spec.mitigable,
                origin_guess_ns: spec.guess,
                disagree,
                close,
                note: spec.note,
            }
        })
        .collect()
}

/// A traced configuration over its runs.
pub fn summarize_trace(
    config: &'static str,
    runs: &[TracedRun],
    cal: &Calibration,
) -> TraceSummary {
    let mut names: Vec<&String> = runs.iter().flat_map(|r| r.components.keys()).collect();
    names.sort();
    names.dedup();
    let components = names
        .into_iter()
        .map(|name| {
            let each: Vec<(f64, f64)> = runs
                .iter()
                .map(|r| {
                    let ops = r.ops.max(1) as f64;
                    let (calls, _, cooked) =
                        r.components.get(name).copied().unwrap_or((0, 0.0, 0.0));
                    (calls as f64 / ops, cooked / ops)
                })
                .collect();
            let calls_per_op = median(&each.iter().map(|e| e.0).collect::<Vec<_>>());
            let ns_per_op = median(&each.iter().map(|e| e.1).collect::<Vec<_>>());
            TracedComponent {
                component: name.clone(),
                calls_per_op,
                ns_per_op,
                ns_per_call: if calls_per_op > 0.0 {
                    ns_per_op / calls_per_op
                } else {
                    0.0
                },
            }
        })
        .collect();
    let hits: Vec<f64> = runs
        .iter()
        .map(|r| r.hits as f64 / r.ops.max(1) as f64)
        .collect();
    let faults: Vec<u64> = runs.iter().filter_map(|r| r.page_faults).collect();
    TraceSummary {
        config,
        runs: runs.len(),
        ops: runs.first().map_or(0, |r| r.ops),
        components,
        probe_hits_per_op: median(&hits),
        probe_added_ns_per_op: median(&hits) * cal.probe_hit_ns,
        floor_component_ns: median(&runs.iter().map(|r| r.floors.0).collect::<Vec<_>>()),
        floor_nested_ns: median(&runs.iter().map(|r| r.floors.1).collect::<Vec<_>>()),
        floor_measurements: median_u64(runs.iter().map(|r| r.floors.2)),
        syscalls: median_counts(runs.iter().map(|r| &r.syscalls)),
        page_faults: (!faults.is_empty()).then(|| median_u64(faults.into_iter())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(ns: f64) -> PlainRun {
        PlainRun {
            ops: 100,
            ns_per_op: ns,
            syscalls: BTreeMap::from([("mmap".to_string(), 4)]),
            page_faults: 7,
            peak_rss_kb: 1,
            rss_after_kb: 1,
        }
    }

    fn traced(elo_total: f64) -> TracedRun {
        TracedRun {
            ops: 100,
            // The report's floors: 10 ns per component, malloc's 10 and
            // 20 per component timed inside it.
            components: BTreeMap::from([
                ("malloc".to_string(), (100, 100.0 * 300.0, 100.0 * 270.0)),
                (
                    "elo_select".to_string(),
                    (100, elo_total, elo_total - 100.0 * 10.0),
                ),
            ]),
            hits: 200,
            ..Default::default()
        }
    }

    #[test]
    fn medians_and_ranges() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        // Deviations from the median 2: 1, 3, 0 -> median 1.
        assert!((robust_sigma(&[1.0, 5.0, 2.0]) - 1.4826).abs() < 1e-12);
        assert!((robust_sigma(&[1.0, 3.0]) - 1.4826).abs() < 1e-12);
        assert_eq!(robust_sigma(&[1.0]), 0.0);
        // One wild run out of five hardly moves it.
        assert!(robust_sigma(&[10.0, 11.0, 10.0, 11.0, 500.0]) < 2.0);
    }

    #[test]
    fn every_row_with_both_estimates_where_both_exist() {
        let configs: Vec<ConfigSummary> = configs::ALL
            .iter()
            .map(|c| {
                let base = if c.name == "default" { 1100.0 } else { 1000.0 };
                summarize_config(c, &[plain(base - 5.0), plain(base), plain(base + 5.0)])
            })
            .collect();
        let traces = BTreeMap::from([
            (
                "default",
                vec![traced(100.0 * 110.0), traced(100.0 * 110.0)],
            ),
            ("global", vec![traced(100.0 * 110.0)]),
        ]);
        let rows = rows(&configs, &traces);
        assert_eq!(rows.iter().map(|r| r.key).collect::<Vec<_>>(), row_keys());
        let elo = rows.iter().find(|r| r.key == "elo_select").unwrap();
        let p = elo.probe.as_ref().unwrap();
        // 110 ns per call read, 10 ns of it the empty-component floor.
        assert!((p.ns_per_op - 100.0).abs() < 1e-9, "{p:?}");
        assert_eq!(p.raw_ns_per_op, 110.0);
        assert_eq!(p.ns_per_call, Some(100.0));
        let i = elo.isolation.as_ref().unwrap();
        assert_eq!(i.ns_per_op, 100.0);
        assert!((i.noise_ns - 1.4826 * 5.0 * 2f64.sqrt()).abs() < 1e-9);
        assert_eq!(elo.disagree, Some(false));
        assert!((elo.share.unwrap() - 100.0 / 1100.0).abs() < 1e-9);
        // malloc: 300 per call read, minus 10 floor, minus 20 timing per nested hit.
        let all = rows.iter().find(|r| r.key == "hakmem").unwrap();
        assert!((all.probe.as_ref().unwrap().ns_per_op - 270.0).abs() < 1e-9);
        // Default minus the allocation-free baseline: 1100 - 1000.
        assert_eq!(all.isolation.as_ref().unwrap().ns_per_op, 100.0);
        assert_eq!(all.close, Some(false));
        // A scenario without a baseline: no isolation figure for all of hakmem.
        let without: Vec<ConfigSummary> = configs::for_scenario(false)
            .iter()
            .map(|c| summarize_config(c, &[plain(1000.0)]))
            .collect();
        let table = super::rows(&without, &traces);
        let all = table.iter().find(|r| r.key == "hakmem").unwrap();
        assert!(all.isolation.is_none() && all.disagree.is_none() && all.close.is_none());
        let header = rows.iter().find(|r| r.key == "header").unwrap();
        assert_eq!(header.probe.as_ref().unwrap().calls_per_op, 0.0);
    }

    #[test]
    fn close_is_within_a_fifth_or_two_ns() {
        assert!(close(12.0, 10.0) && close(8.0, 10.0));
        assert!(!close(12.1, 10.0) && !close(7.9, 10.0));
        // Below 10 ns, 2 ns is the wider bound.
        assert!(close(5.9, 4.0) && close(2.0, 4.0) && !close(6.1, 4.0));
        assert!(close(1100.0, 1000.0) && !close(1300.0, 1000.0));
    }

    #[test]
    fn a_gap_beyond_the_noise_is_flagged() {
        let configs: Vec<ConfigSummary> = configs::ALL
            .iter()
            .map(|c| {
                let base = if c.name == "default" { 2000.0 } else { 1000.0 };
                summarize_config(c, &[plain(base), plain(base + 10.0)])
            })
            .collect();
        let traces = BTreeMap::from([("default", vec![traced(100.0 * 110.0)])]);
        let rows = rows(&configs, &traces);
        let elo = rows.iter().find(|r| r.key == "elo_select").unwrap();
        assert_eq!(elo.disagree, Some(true));
        // No traced global run: no probe estimate for that row.
        let global = rows.iter().find(|r| r.key == "bigcache_global").unwrap();
        assert!(global.probe.is_none());
    }
}
