//! The hakmem configurations a breakdown runs, each in its own process, and the
//! `HAKMEM_*` variables that select them.

/// One configuration of hakmem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Short name used in tables, JSON and the estimate table below.
    pub name: &'static str,
    /// Variables set in the child (every other `HAKMEM_*` option is cleared).
    pub env: &'static [(&'static str, &'static str)],
    /// One line for people.
    pub about: &'static str,
}

/// The default: per-thread BigCache, ELO learning, evolution, call-site profiling.
pub const DEFAULT: Config = Config {
    name: "default",
    env: &[],
    about: "defaults (per-thread BigCache, ELO learning)",
};
/// The BigCache shared by all threads instead of per-thread slots.
pub const GLOBAL: Config = Config {
    name: "global",
    env: &[("HAKMEM_BIGCACHE", "global")],
    about: "global BigCache",
};
/// No BigCache: every large free goes back to the OS.
pub const NO_BIGCACHE: Config = Config {
    name: "no_bigcache",
    env: &[("HAKMEM_DISABLE_BIGCACHE", "1")],
    about: "BigCache off",
};
/// Fixed large-block strategy: no ELO selection, no evolution sampling.
pub const NO_ELO: Config = Config {
    name: "no_elo",
    env: &[("HAKMEM_DISABLE_ELO", "1")],
    about: "ELO off (fixed strategy)",
};
/// Evolution frozen from the start on the default strategy.
pub const FROZEN: Config = Config {
    name: "frozen",
    env: &[("HAKMEM_EVO_POLICY", "frozen")],
    about: "evolution frozen",
};
/// Every optional feature off: the baseline of the isolation.
pub const MINIMAL: Config = Config {
    name: "minimal",
    env: &[("HAKMEM_MINIMAL", "1")],
    about: "every optional feature off",
};

/// Not hakmem at all: the scenario's allocation-free baseline (`hakmem-bench
/// run --baseline`, for the scenarios that have one), the same loop and
/// writes with no allocator call. Default minus baseline is what all of
/// hakmem costs the scenario, measured untraced.
pub const BASELINE: Config = Config {
    name: "baseline",
    env: &[(hakmem_bench::protocol::BASELINE_ENV, "true")],
    about: "the scenario without allocator calls",
};

/// In the order they are run within each round (interleaved, so a slow phase
/// of the machine hits every configuration alike).
pub const ALL: &[Config] = &[
    DEFAULT,
    GLOBAL,
    NO_BIGCACHE,
    NO_ELO,
    FROZEN,
    MINIMAL,
    BASELINE,
];

/// The configurations run for a scenario: all of them, the baseline only if
/// the scenario has one.
pub fn for_scenario(has_baseline: bool) -> Vec<Config> {
    ALL.iter()
        .copied()
        .filter(|c| has_baseline || *c != BASELINE)
        .collect()
}

/// The configurations that are also traced with the probes.
pub const TRACED: &[Config] = &[DEFAULT, GLOBAL];

/// Pads every configuration's environment to the same size.
///
/// The environment sits at the top of the initial stack, so its size moves the
/// stack's alignment, and with it the speed of code that is a few ns per call
/// (Mytkowicz et al., "Producing wrong data without doing anything obviously
/// wrong!", ASPLOS 2009). Measured here: small-churn ran 7 ns (70%) slower per
/// operation under three of the six configurations, none of which touch the
/// small path, until the environments were made the same size.
pub const PAD: &str = "HAKMEM_BREAKDOWN_PAD";

/// Bytes `config`'s variables take in the environment block ("K=V\0").
fn env_bytes(config: &Config) -> usize {
    config.env.iter().map(|(k, v)| k.len() + v.len() + 2).sum()
}

/// The padding variable for `config`: with it, every configuration's own
/// variables take the same number of bytes (hakmem-bench's protocol clears
/// every other `HAKMEM_*` option).
pub fn padding(config: &Config) -> (String, Option<String>) {
    let widest = ALL.iter().map(env_bytes).max().unwrap_or(0);
    (PAD.into(), Some("x".repeat(widest - env_bytes(config))))
}

/// `KEY=VALUE …` for tables ("(none)" for the default).
pub fn env_label(config: &Config) -> String {
    if config.env.is_empty() {
        "(none)".into()
    } else {
        config
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configuration_has_an_environment_of_the_same_size() {
        let size = |c: &Config| -> usize {
            let (k, v) = padding(c);
            env_bytes(c) + k.len() + v.map_or(0, |v| v.len()) + 2
        };
        let sizes: Vec<usize> = ALL.iter().map(size).collect();
        assert!(sizes.iter().all(|s| *s == sizes[0]), "{sizes:?}");
    }
}
