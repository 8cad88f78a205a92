//! The breakdown's result, as `--json` writes it. Times are ns per operation of
//! the scenario (thread-time: a multi-threaded scenario's threads add up), as
//! hakmem-bench defines the operation; "noise" is a spread across runs (see
//! `estimate.rs`).

use serde::Serialize;
use std::collections::BTreeMap;

/// Bumped whenever a field changes meaning or disappears (adding one does not).
pub const SCHEMA_VERSION: u32 = 1;

/// The whole breakdown of one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Breakdown {
    pub schema_version: u32,
    /// The probe-cli command line that produced it.
    pub command: String,
    pub scenario: String,
    /// hakmem-bench size of the untraced runs, and of the traced ones.
    pub size: String,
    pub trace_size: String,
    /// Measured untraced runs per configuration (plus `warmup` uncounted).
    pub runs: usize,
    pub warmup: usize,
    /// Traced runs per traced configuration.
    pub trace_runs: usize,
    /// Threads the scenario ran with.
    pub threads: usize,
    /// The hakmem-bench binary.
    pub bench: String,
    /// Whether the runs were in the real-time class (`--realtime`).
    pub realtime: bool,
    pub calibration: Calibration,
    /// Median ns per operation of the default configuration, untraced: the
    /// "total" every share is a fraction of.
    pub total_ns_per_op: f64,
    /// Its robust standard deviation across runs.
    pub total_noise_ns: f64,
    /// Time in hakmem per operation (probes, default configuration).
    pub hakmem_ns_per_op: Option<f64>,
    /// The origin analysis's table, with both estimates.
    pub rows: Vec<Row>,
    /// Every configuration's untraced runs.
    pub configs: Vec<ConfigSummary>,
    /// Every traced configuration.
    pub traces: Vec<TraceSummary>,
}

/// What the probe figures are corrected by.
#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    /// Cost of one probe hit to the traced program (not in the component
    /// figures; it slows the traced run), ns.
    pub probe_hit_ns: f64,
    /// What a component with no work in it reads (back-to-back timestamps),
    /// subtracted from every component instance, ns.
    pub empty_component_ns: f64,
    /// What hakmem records for an empty malloc/free/realloc, subtracted from
    /// each of their instances, ns.
    pub empty_operation_ns: f64,
    /// What a probed component adds to the figure of the one around it: its
    /// timestamps (hakmem takes its record update out of the outer figure), ns.
    pub nested_component_ns: f64,
}

/// One row of the table: a component, and the two independent estimates of its cost.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Stable key (`elo_select`, `bigcache`, …).
    pub key: &'static str,
    /// Name for people.
    pub component: &'static str,
    /// From the probes (None where no probe times this component).
    pub probe: Option<ProbeEstimate>,
    /// From feature isolation (None where no option switches it off).
    pub isolation: Option<IsolationEstimate>,
    /// Cost / the default configuration's total time per operation (probe
    /// estimate if there is one, else the isolation delta).
    pub share: Option<f64>,
    /// Whether (and how) the cost can be avoided.
    pub mitigable: &'static str,
    /// The origin analysis's guess per allocation, ns.
    pub origin_guess_ns: Option<&'static str>,
    /// True when both estimates exist and differ by more than twice their combined noise.
    pub disagree: Option<bool>,
    /// True when both estimates exist and the probe figure is within 20% or
    /// 2 ns of the isolation figure (`estimate::close`).
    pub close: Option<bool>,
    /// What the estimates do and do not include.
    pub note: &'static str,
}

/// A component's cost from the probes.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeEstimate {
    /// Calibrated: the empty-component reading subtracted per instance.
    pub ns_per_op: f64,
    /// Robust standard deviation across traced runs (see `estimate.rs`).
    pub noise_ns: f64,
    /// Before calibration (an upper bound).
    pub raw_ns_per_op: f64,
    /// Component instances per operation.
    pub calls_per_op: f64,
    /// Calibrated ns per instance.
    pub ns_per_call: Option<f64>,
    /// The probe components summed.
    pub components: Vec<&'static str>,
    /// Each traced run's calibrated ns per operation, in run order (empty
    /// for a difference of two configurations).
    pub samples_ns_per_op: Vec<f64>,
}

/// A component's cost from feature isolation: time with it on minus off.
#[derive(Clone, Debug, Serialize)]
pub struct IsolationEstimate {
    pub ns_per_op: f64,
    /// sqrt(noise_on² + noise_off²), each a robust standard deviation across runs.
    pub noise_ns: f64,
    /// Configuration with the feature on, and off.
    pub on: &'static str,
    pub off: &'static str,
}

/// One configuration over its untraced runs (medians).
#[derive(Clone, Debug, Serialize)]
pub struct ConfigSummary {
    pub name: &'static str,
    /// `HAKMEM_*` variables set.
    pub env: String,
    pub about: &'static str,
    pub runs: usize,
    /// Operations per run.
    pub ops: u64,
    pub ns_per_op: f64,
    /// Robust standard deviation of ns per operation across runs.
    pub noise_ns: f64,
    /// Every run's ns per operation.
    pub samples_ns_per_op: Vec<f64>,
    /// Memory syscalls per run, by name (median).
    pub syscalls: BTreeMap<String, u64>,
    /// Minor + major page faults per run (median).
    pub page_faults: u64,
    /// Peak RSS, KiB (median).
    pub peak_rss_kb: u64,
    /// RSS after the workload, KiB (median).
    pub rss_after_kb: u64,
}

/// One traced configuration over its traced runs (medians).
#[derive(Clone, Debug, Serialize)]
pub struct TraceSummary {
    pub config: &'static str,
    pub runs: usize,
    /// Operations per traced run.
    pub ops: u64,
    pub components: Vec<TracedComponent>,
    /// Probe hits per operation, and the time they added to the traced run
    /// (hits × the calibrated hit cost; not in any component figure).
    pub probe_hits_per_op: f64,
    pub probe_added_ns_per_op: f64,
    /// The timing floors subtracted (medians over the runs, ns): what an
    /// empty component reads, and what one more component timed inside an
    /// operation adds to it.
    pub floor_component_ns: f64,
    pub floor_nested_ns: f64,
    /// How many floor measurements the target's threads made per run
    /// (median; 0: probe-cli's own floors from attach were used).
    pub floor_measurements: u64,
    /// Memory syscalls per run seen by the BPF trace (median).
    pub syscalls: BTreeMap<String, u64>,
    /// Page faults per run seen by perf in the traced run (median), if counted.
    pub page_faults: Option<u64>,
}

/// One probe component of a traced configuration.
#[derive(Clone, Debug, Serialize)]
pub struct TracedComponent {
    pub component: String,
    pub calls_per_op: f64,
    /// Calibrated ns per operation.
    pub ns_per_op: f64,
    /// Calibrated ns per call.
    pub ns_per_call: f64,
}
