//! `python3`: the system interpreter with `PYTHONMALLOC=malloc` (every Python
//! object through the allocator under test) running `benches/programs/alloc_heavy.py`:
//! dicts, strings, JSON and byte buffers built and dropped in rounds.

use super::measure::{self, Invocation};
use super::{Context, Program, Sample};
use std::time::Duration;

/// The table entry.
pub const PROGRAM: Program = Program {
    name: "python3",
    about: "python3 (PYTHONMALLOC=malloc) building and dropping dicts, JSON, buffers",
    needs: &[PYTHON],
    probe: &[PYTHON, "-c", "pass"],
    prepare,
    run,
};

/// The system interpreter: a pyenv shim on PATH is a shell script that may
/// pick another interpreter (and would add a bash process to the figures).
const PYTHON: &str = "/usr/bin/python3";
const SCRIPT: &str = include_str!("../../programs/alloc_heavy.py");

fn prepare(cx: &Context) -> Result<(), String> {
    std::fs::write(cx.dir.join("alloc_heavy.py"), SCRIPT).map_err(|e| e.to_string())
}

fn run(cx: &Context) -> Result<Sample, String> {
    let rounds = cx.scaled(8, 1);
    let objects = cx.scaled(40_000, 2_000);
    let mut env = cx.env.clone();
    env.push(("PYTHONMALLOC".into(), Some("malloc".into())));
    let out = cx.dir.join("python.out");
    let invocation = Invocation {
        argv: vec![
            PYTHON.into(),
            "alloc_heavy.py".into(),
            rounds.to_string(),
            objects.to_string(),
        ],
        env,
        dir: cx.dir.to_path_buf(),
        stdout: Some("python.out"),
    };
    let done = measure::run_to_end(&invocation, Duration::from_secs(600))?;
    let text = std::fs::read_to_string(&out).map_err(|e| format!("python3 output: {e}"))?;
    let report: serde_json::Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or("python3 printed no report")?;
    let mut sample = Sample::from_finished(&done);
    if let Some(rss) = report["rss_after_kib"].as_u64() {
        // Its own VmRSS after it freed everything: what the allocator kept.
        sample.final_kb = rss;
    }
    if let Some(ops) = report["ops_per_s"].as_f64() {
        sample.metrics.insert("ops/s".into(), ops);
    }
    Ok(sample)
}
