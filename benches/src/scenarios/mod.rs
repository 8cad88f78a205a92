//! The workloads: each a documented, deterministic (fixed-seed) allocation pattern.
//!
//! A scenario gets its size and thread count in [`Params`] and returns an
//! [`Outcome`]: how many operations it did and a latency histogram in
//! picoseconds per operation (see `timing`). What one "operation" is differs per
//! scenario and is stated in each module's documentation; comparisons are only
//! ever made between allocators on the same scenario.

use crate::timing::{new_histogram, Recorder};
use hdrhistogram::Histogram;

pub mod cache_scratch;
pub mod cache_thrash;
pub mod cfrac;
pub mod espresso;
pub mod fragmentation;
pub mod glibc_simple;
pub mod glibc_thread;
pub mod large_phase;
pub mod large_pipeline;
pub mod large_realloc;
pub mod large_reuse;
pub mod large_varied;
pub mod larson;
pub mod mstress;
pub mod realloc;
pub mod rptest;
pub mod small_churn;
pub mod small_churn_mt;
pub mod vm;
pub mod xthread;

/// What a scenario is told.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Worker threads for multi-threaded scenarios (single-threaded ones ignore it).
    pub threads: usize,
    /// Multiplier on the scenario's default amount of work (tiny = 0.005).
    pub scale: f64,
}

impl Params {
    /// `base` scaled by the size factor, never below `min`.
    pub fn scaled(&self, base: u64, min: u64) -> u64 {
        ((base as f64 * self.scale) as u64).max(min)
    }
}

/// What a scenario reports back.
pub struct Outcome {
    /// Operations performed (the denominator of ns/op).
    pub ops: u64,
    /// Threads that did the work (1 for single-threaded scenarios).
    pub threads: usize,
    /// Per-batch time per operation in picoseconds, all threads merged.
    pub latency: Histogram<u64>,
    /// Time spent setting up what is not the workload (a baseline's pool),
    /// ns: left out of the run's elapsed time.
    pub setup_ns: u64,
}

impl Outcome {
    /// Merge the recorders of all worker threads.
    pub fn from_recorders(threads: usize, recorders: impl IntoIterator<Item = Recorder>) -> Self {
        let mut latency = new_histogram();
        let mut ops = 0;
        for recorder in recorders {
            let (n, histogram) = recorder.finish();
            ops += n;
            latency
                .add(&histogram)
                .expect("all recorders share the same bounds");
        }
        Outcome {
            ops,
            threads,
            latency,
            setup_ns: 0,
        }
    }

    /// This outcome with `setup` (the time a baseline spent preparing its
    /// pool before the loop) left out of the run's elapsed time.
    pub fn after_setup(mut self, setup: std::time::Duration) -> Self {
        self.setup_ns = setup.as_nanos() as u64;
        self
    }
}

/// One entry of the scenario table.
pub struct Scenario {
    /// The name used on the command line.
    pub name: &'static str,
    /// One line for `hakmem-bench list`.
    pub about: &'static str,
    /// Whether `--threads` changes it.
    pub threaded: bool,
    /// Runs the workload once.
    pub run: fn(&Params) -> Outcome,
    /// Runs the workload's allocation-free baseline (`run --baseline`): the
    /// same loop, the same writes to memory, its blocks taken from a
    /// [`crate::block::Pool`] set up before the clock, and no allocator call.
    /// The scenario's time minus the baseline's is what the allocator costs it
    /// (`probe-cli breakdown` puts that beside the traced figure). Only
    /// single-threaded scenarios whose blocks are one size class of work have one.
    pub baseline: Option<fn(&Params) -> Outcome>,
}

/// Every scenario, in the order tables list them. Appending one is a new file
/// in this folder and a line here.
pub static ALL: &[Scenario] = &[
    vm::SCENARIO,
    large_reuse::SCENARIO,
    large_varied::SCENARIO,
    large_pipeline::SCENARIO,
    large_phase::SCENARIO,
    large_realloc::SCENARIO,
    small_churn::SCENARIO,
    small_churn_mt::SCENARIO,
    larson::SCENARIO,
    xthread::SCENARIO,
    cache_scratch::SCENARIO,
    mstress::SCENARIO,
    realloc::SCENARIO,
    fragmentation::SCENARIO,
    glibc_simple::SCENARIO,
    // Small-object shapes of the public allocator benchmark suite (issue 15).
    cfrac::SCENARIO,
    espresso::SCENARIO,
    rptest::SCENARIO,
    cache_thrash::SCENARIO,
    glibc_thread::SCENARIO,
];

/// Named sets of scenarios, accepted wherever a scenario list is (`compare
/// --scenario small`), besides `all`.
pub static GROUPS: &[(&str, &str, &[&str])] = &[
    (
        "small",
        "small objects (up to a few KiB): the public allocator suite's shapes",
        &[
            "small-churn",
            "small-churn-mt",
            "larson",
            "xthread",
            "cache-scratch",
            "cache-thrash",
            "mstress",
            "glibc-simple",
            "glibc-thread",
            "cfrac",
            "espresso",
            "rptest",
        ],
    ),
    (
        "large",
        "large blocks (hundreds of KiB and up)",
        &[
            "vm",
            "large-reuse",
            "large-varied",
            "large-pipeline",
            "large-phase",
            "large-realloc",
        ],
    ),
];

/// Look a scenario up by its command-line name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// The scenarios of a group (`all` or one of [`GROUPS`]); `None` when `name`
/// is not a group.
pub fn group(name: &str) -> Option<Vec<&'static Scenario>> {
    if name == "all" {
        return Some(ALL.iter().collect());
    }
    let (_, _, members) = GROUPS.iter().find(|(group, _, _)| *group == name)?;
    Some(members.iter().filter_map(|m| find(m)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_member_is_a_scenario_and_groups_do_not_shadow_scenarios() {
        for (name, _, members) in GROUPS {
            assert!(find(name).is_none(), "group {name} shadows a scenario");
            assert_eq!(group(name).unwrap().len(), members.len(), "group {name}");
        }
        assert_eq!(group("all").unwrap().len(), ALL.len());
        assert!(group("vm").is_none());
    }
}
