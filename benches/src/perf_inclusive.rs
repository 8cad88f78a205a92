//! `hakmem-bench perf-inclusive`: what `perf` says each part of hakmem costs
//! an untraced run, next to what `probe-cli breakdown` traced for it: the
//! traced-vs-isolation table of `scripts/true-figures.sh`.
//!
//! Input (stdin): `perf script -F comm,ip,sym` of untraced runs of one
//! scenario (call graphs: a line with the command, then one line per frame,
//! a blank line between samples). A sample counts when its stack is inside
//! the measured loop (`hakmem_bench::child::measure`); it counts for a part
//! of hakmem when any of its frames is that part's (inclusive time: the
//! kernel work below a mapping or a fault counts for the hakmem code that
//! caused it, as it does in the probes' figures). A part's isolation figure
//! is its share of the measured samples times the untraced default
//! configuration's ns per operation from the breakdown (`--breakdown`).

use serde_json::Value;
use std::io::{self, BufRead, Write};
use std::path::Path;

/// A part of hakmem: the breakdown row it stands for, and the symbol
/// prefixes (or, for `__rust_*`, substrings) of its frames.
struct Part {
    key: &'static str,
    frames: &'static [&'static str],
}

/// With LTO the small-block fast path lives inside the global allocator's
/// shims: "all of hakmem" takes them in; no part isolates the small path.
const PARTS: &[Part] = &[
    Part {
        key: "hakmem",
        frames: &[
            "hakmem::",
            "<hakmem::",
            "__rust_alloc",
            "__rust_dealloc",
            "__rust_realloc",
        ],
    },
    Part {
        key: "large",
        frames: &["hakmem::large::path::alloc"],
    },
    Part {
        key: "bigcache",
        frames: &["hakmem::large::bigcache"],
    },
    Part {
        key: "os",
        frames: &["hakmem::vm::", "hakmem::os::"],
    },
    Part {
        key: "elo_select",
        frames: &["hakmem::large::elo"],
    },
];

/// The frame that marks a sample of the measured loop.
const MEASURED: &str = "hakmem_bench::child::measure";

fn matches(sym: &str, prefix: &str) -> bool {
    if prefix.starts_with("__rust_") {
        sym.contains(prefix)
    } else {
        sym.starts_with(prefix)
    }
}

/// Samples counted: inside the measured loop, and per part.
#[derive(Debug, Default, PartialEq)]
pub struct Counts {
    /// Samples inside the measured loop.
    pub measured: u64,
    /// Of those, the samples of each of [`PARTS`] (in order).
    pub parts: Vec<u64>,
}

impl Counts {
    /// Counts `perf script -F comm,ip,sym` text.
    pub fn read(input: impl BufRead) -> io::Result<Counts> {
        let mut c = Counts {
            measured: 0,
            parts: vec![0; PARTS.len()],
        };
        let mut frames: Vec<String> = Vec::new();
        for line in input.lines() {
            let line = line?;
            if line.trim().is_empty() {
                c.add(&frames);
                frames.clear();
            } else if line.starts_with('\t') {
                // "\t<ip> <symbol>"
                let t = line.trim();
                let sym = t.split_once(' ').map_or("", |(_, s)| s.trim());
                frames.push(sym.to_string());
            } else {
                c.add(&frames);
                frames.clear();
                frames.push(String::new()); // the command line starts a sample
            }
        }
        c.add(&frames);
        Ok(c)
    }

    fn add(&mut self, frames: &[String]) {
        if !frames.iter().any(|f| f.starts_with(MEASURED)) {
            return;
        }
        self.measured += 1;
        for (n, part) in self.parts.iter_mut().zip(PARTS) {
            if frames
                .iter()
                .any(|f| part.frames.iter().any(|p| matches(f, p)))
            {
                *n += 1;
            }
        }
    }
}

/// One row of the table.
#[derive(Debug)]
pub struct Row {
    /// The breakdown row's name.
    pub component: String,
    /// Probes: ns per operation and its noise.
    pub traced: Option<(f64, f64)>,
    /// perf: share of the measured samples, ns per operation, and the
    /// share's sampling error in ns (binomial).
    pub isolation: (f64, f64, f64),
}

impl Row {
    /// Within 20% or 2 ns of the isolation figure.
    pub fn agrees(&self) -> Option<bool> {
        let (t, _) = self.traced?;
        let i = self.isolation.1;
        Some((t - i).abs() <= (0.2 * i).max(2.0))
    }
}

/// The table's rows from the counts and a `probe-cli breakdown --json` document.
pub fn rows(c: &Counts, breakdown: &Value) -> Vec<Row> {
    let ns_per_op = breakdown["configs"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "default"))
        .and_then(|c| c["ns_per_op"].as_f64())
        .unwrap_or(0.0);
    let n = c.measured.max(1) as f64;
    PARTS
        .iter()
        .zip(&c.parts)
        .map(|(part, &k)| {
            let row = breakdown["rows"]
                .as_array()
                .and_then(|a| a.iter().find(|r| r["key"] == part.key));
            let p = k as f64 / n;
            let err = (p * (1.0 - p) / n).sqrt() * ns_per_op;
            Row {
                component: row
                    .and_then(|r| r["component"].as_str())
                    .unwrap_or(part.key)
                    .to_string(),
                traced: row.and_then(|r| {
                    Some((
                        r["probe"]["ns_per_op"].as_f64()?,
                        r["probe"]["noise_ns"].as_f64()?,
                    ))
                }),
                isolation: (p, p * ns_per_op, err),
            }
        })
        .collect()
}

fn ns(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{:.2} µs", v / 1000.0)
    } else {
        format!("{v:.1} ns")
    }
}

/// Reads stdin and the breakdown, prints the table (Markdown to `md` too).
pub fn run(breakdown: &Path, md: Option<&Path>) -> io::Result<()> {
    let b: Value = serde_json::from_slice(&std::fs::read(breakdown)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let c = Counts::read(io::stdin().lock())?;
    let rows = rows(&c, &b);
    let mut table = format!(
        "traced vs isolation: {} ({} perf samples in the measured loop; untraced default {} per operation)\n\n\
         | component | traced (probes), per op | isolation (perf, inclusive), per op | share of samples | traced ÷ isolation | within 20% or 2 ns |\n\
         |---|---:|---:|---:|---:|---|\n",
        b["scenario"].as_str().unwrap_or("?"),
        c.measured,
        ns(b["configs"][0]["ns_per_op"].as_f64().unwrap_or(0.0)),
    );
    for r in &rows {
        let traced = r
            .traced
            .map_or("-".to_string(), |(t, e)| format!("{} ± {}", ns(t), ns(e)));
        let ratio = r
            .traced
            .filter(|_| r.isolation.1 > 0.0)
            .map_or("-".to_string(), |(t, _)| {
                format!("{:.2}", t / r.isolation.1)
            });
        let verdict = match r.agrees() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        table += &format!(
            "| {} | {traced} | {} ± {} | {:.1}% | {ratio} | {verdict} |\n",
            r.component,
            ns(r.isolation.1),
            ns(r.isolation.2),
            r.isolation.0 * 100.0
        );
    }
    io::stdout().lock().write_all(table.as_bytes())?;
    if let Some(md) = md {
        std::fs::write(md, &table)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "hakmem-bench \n\
        \t    1234 __rustc::__rust_alloc\n\
        \t    1235 hakmem_bench::child::measure\n\
        \n\
        hakmem-bench \n\
        \tffffffff clear_page_erms\n\
        \t    2222 hakmem::large::path::alloc_general\n\
        \t    2223 __rustc::__rust_alloc\n\
        \t    2224 hakmem_bench::child::measure\n\
        \n\
        hakmem-bench \n\
        \t    3333 hakmem_bench::scenarios::vm::run\n\
        \t    3334 hakmem_bench::child::measure\n\
        \n\
        hakmem-bench \n\
        \t    4444 _dl_map_object\n\
        \n";

    #[test]
    fn samples_count_inclusively_inside_the_measured_loop() {
        let c = Counts::read(SCRIPT.as_bytes()).unwrap();
        assert_eq!(c.measured, 3, "the loader's sample is outside the loop");
        assert_eq!(c.parts[0], 2, "all of hakmem");
        assert_eq!(c.parts[1], 1, "the large path, with the fault below it");
        assert_eq!(c.parts[2], 0);
    }

    #[test]
    fn rows_scale_the_shares_by_the_untraced_time() {
        let c = Counts {
            measured: 100,
            parts: vec![50, 10, 0, 0, 0],
        };
        let b = serde_json::json!({
            "configs": [{"name": "default", "ns_per_op": 20.0}],
            "rows": [{"key": "hakmem", "component": "All of hakmem",
                      "probe": {"ns_per_op": 11.5, "noise_ns": 1.0}},
                     {"key": "large", "component": "Large",
                      "probe": {"ns_per_op": 5.0, "noise_ns": 1.0}}],
        });
        let r = rows(&c, &b);
        assert_eq!(r[0].isolation.1, 10.0);
        assert_eq!(r[0].agrees(), Some(true), "within 20%");
        assert_eq!(r[1].isolation.1, 2.0);
        assert_eq!(r[1].agrees(), Some(false), "3 ns off and 150%");
        assert!(r[2].traced.is_none() && r[2].agrees().is_none());
    }
}
