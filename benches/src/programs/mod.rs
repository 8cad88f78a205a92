//! `programs`: real programs × allocators through `LD_PRELOAD` — python3,
//! sort, gcc, redis-server under redis-benchmark, three multi-threaded
//! compressors (xz; zstd and pbzip2, whose large buffers cross threads),
//! perl growing a 600 MiB hash.
//!
//! Every allocator of the one table (`allocators`) that has a preloadable
//! form runs every program, in interleaved rounds (round 1 of every
//! allocator, then round 2, each round in a rotated order) after one uncounted
//! warm-up run per program; each cell is the median of its rounds, with the
//! spread. The program's environment starts clean like a measured child's
//! (`protocol::cleared_variables`), then gets `LD_PRELOAD` and the variant's
//! variables. Which library really serves the program's `malloc` is checked
//! once per program and allocator with the dynamic linker's own account
//! (`LD_DEBUG=bindings`).

pub mod measure;
pub mod report;

mod compress;
mod gcc;
mod pbzip2;
mod perl;
mod python;
mod redis;
mod sort;
mod xz;
mod zstd;

use crate::allocators::Allocator;
use crate::protocol;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// One program of the table.
pub struct Program {
    /// The name used on the command line and in tables.
    pub name: &'static str,
    /// One line for `list` and the tables.
    pub about: &'static str,
    /// Binaries it needs (absolute, or looked up on PATH).
    pub needs: &'static [&'static str],
    /// A quick invocation for the `LD_DEBUG=bindings` check of who serves `malloc`.
    pub probe: &'static [&'static str],
    /// Writes its inputs into the work directory (once, before any run).
    pub prepare: fn(&Context) -> Result<(), String>,
    /// One measured run.
    pub run: fn(&Context) -> Result<Sample, String>,
}

/// Every program, in table order. Appending one is a new file and a line here.
pub static ALL: &[Program] = &[
    python::PROGRAM,
    sort::PROGRAM,
    gcc::PROGRAM,
    redis::PROGRAM,
    xz::PROGRAM,
    zstd::PROGRAM,
    pbzip2::PROGRAM,
    perl::PROGRAM,
];

/// Look a program up by name.
pub fn find(name: &str) -> Option<&'static Program> {
    ALL.iter().find(|p| p.name == name)
}

/// Where `binary` is: itself when it has a slash, else the first hit on PATH.
pub fn which(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        return Path::new(binary).is_file().then(|| PathBuf::from(binary));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|p| p.is_file())
    })
}

impl Program {
    /// `Ok` when every binary it needs is here, otherwise which is missing.
    pub fn availability(&self) -> Result<(), String> {
        match self.needs.iter().find(|b| which(b).is_none()) {
            Some(missing) => Err(format!("{missing} not found (scripts/deps.sh installs it)")),
            None => Ok(()),
        }
    }
}

/// What a run is told.
pub struct Context<'a> {
    /// The work directory with the inputs (the program's cwd).
    pub dir: &'a Path,
    /// The program's environment changes (clean slate, LD_PRELOAD, variant).
    pub env: Vec<(String, Option<String>)>,
    /// Multiplier on the default amount of work.
    pub scale: f64,
}

impl Context<'_> {
    /// `base` scaled by the size factor, never below `min`.
    pub fn scaled(&self, base: u64, min: u64) -> u64 {
        ((base as f64 * self.scale) as u64).max(min)
    }
}

/// One measured run of one program.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Wall time of the work, s.
    pub wall_s: f64,
    /// Peak resident set, KiB.
    pub peak_kb: u64,
    /// Resident set at the end (see each program), KiB.
    pub final_kb: u64,
    /// Program-specific figures (`ops/s`, `SET req/s`, `MB/s`, …).
    pub metrics: BTreeMap<String, f64>,
}

impl Sample {
    /// A sample of a program run to its end.
    pub fn from_finished(done: &measure::Finished) -> Sample {
        Sample {
            wall_s: done.wall_s,
            peak_kb: done.memory.peak_kb,
            final_kb: done.memory.last_kb,
            metrics: BTreeMap::new(),
        }
    }
}

/// `programs` after validation.
pub struct Plan {
    /// Programs in table order.
    pub programs: Vec<&'static Program>,
    /// Allocators in table order (all with an available preloadable form).
    pub allocators: Vec<Allocator>,
    /// Measured rounds.
    pub rounds: usize,
    /// Size preset name and its multiplier.
    pub size: (&'static str, f64),
    /// `--json` file.
    pub json: Option<PathBuf>,
    /// `--markdown` file.
    pub markdown: Option<PathBuf>,
    /// `--svg` file.
    pub svg: Option<PathBuf>,
}

/// The program's environment for `allocator`.
fn environment(allocator: &Allocator) -> Vec<(String, Option<String>)> {
    let form = allocator
        .program
        .as_ref()
        .expect("validated: every planned allocator has a program form");
    let library = form.library.display().to_string();
    let mut own: Vec<(&str, &str)> = vec![("LD_PRELOAD", &library)];
    own.extend(form.env.iter().copied());
    let mut env = protocol::environment(&own, false);
    // Not a measured hakmem-bench child: only the clean slate and its own.
    env.retain(|(k, _)| k != protocol::CHILD_ENV);
    env
}

/// The library the program's own `malloc` binds to under `allocator`, from
/// the dynamic linker's `LD_DEBUG=bindings` account; `None` when unknown.
fn malloc_provider(program: &Program, allocator: &Allocator, dir: &Path) -> Option<String> {
    let mut command = std::process::Command::new(program.probe[0]);
    command
        .args(&program.probe[1..])
        .current_dir(dir)
        .env("LD_DEBUG", "bindings")
        .stdin(std::process::Stdio::null());
    protocol::apply(&mut command, &environment(allocator));
    let out = command.output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let binary = which(program.probe[0])?;
    let base = binary.file_name()?.to_string_lossy().into_owned();
    // "binding file /usr/bin/sort [0] to /usr/lib/…/libc.so.6 [0]: normal symbol `malloc'"
    text.lines()
        .filter(|l| l.contains("symbol `malloc'"))
        .filter_map(|l| l.split_once("binding file ").map(|(_, rest)| rest))
        .filter(|rest| rest.split(' ').next().is_some_and(|f| f.ends_with(&base)))
        .filter_map(|rest| rest.split_once(" to ").map(|(_, to)| to))
        .filter_map(|to| to.split(" [").next())
        .map(|to| {
            Path::new(to)
                .file_name()
                .map_or(to.to_string(), |f| f.to_string_lossy().into_owned())
        })
        // A non-PIE program's own PLT slot comes first; the last binding that
        // is not the program itself is the library serving the call.
        .rfind(|lib| *lib != base)
}

/// Run the plan; `Ok(true)` when every run succeeded.
pub fn run(plan: Plan) -> Result<bool, String> {
    let work = tempdir()?;
    let result = run_in(&plan, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn tempdir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "hakmem-bench-programs-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn run_in(plan: &Plan, work: &Path) -> Result<bool, String> {
    let started = std::time::Instant::now();
    let context = |env| Context {
        dir: work,
        env,
        scale: plan.size.1,
    };
    let steps = plan.programs.len() * (plan.allocators.len() * plan.rounds + 1);
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}")
            .expect("static template"),
    );
    // indicatif draws nothing when stderr is not a terminal (CI logs): one
    // line per run there instead.
    let lines = !std::io::stderr().is_terminal();
    let say = |what: String| {
        if lines {
            eprintln!(
                "hakmem-bench: programs: {what} ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
        bar.set_message(what);
    };

    let mut providers: BTreeMap<(usize, usize), Option<String>> = BTreeMap::new();
    for (p, program) in plan.programs.iter().enumerate() {
        (program.prepare)(&context(Vec::new()))
            .map_err(|e| format!("{}: preparing inputs: {e}", program.name))?;
        for (a, allocator) in plan.allocators.iter().enumerate() {
            providers.insert((p, a), malloc_provider(program, allocator, work));
        }
        // Uncounted: page cache, the binary's pages, the CPU's frequency.
        say(format!("{} warm-up", program.name));
        let first = &plan.allocators[0];
        (program.run)(&context(environment(first)))
            .map_err(|e| format!("{} warm-up with {}: {e}", program.name, first.name))?;
        bar.inc(1);
    }

    let n = plan.allocators.len();
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); n]; plan.programs.len()];
    let mut errors: Vec<Vec<Option<String>>> = vec![vec![None; n]; plan.programs.len()];
    let mut all_ok = true;
    for round in 0..plan.rounds {
        for (p, program) in plan.programs.iter().enumerate() {
            // Rotated each round, so no allocator always runs right after another.
            for a in (0..n).map(|i| (i + round) % n) {
                let allocator = &plan.allocators[a];
                say(format!(
                    "{} with {} (round {}/{})",
                    program.name,
                    allocator.name,
                    round + 1,
                    plan.rounds
                ));
                match (program.run)(&context(environment(allocator))) {
                    Ok(sample) => samples[p][a].push(sample),
                    Err(e) => {
                        all_ok = false;
                        let e = format!("{} with {}: {e}", program.name, allocator.name);
                        bar.suspend(|| eprintln!("hakmem-bench: {e}"));
                        errors[p][a].get_or_insert(e);
                    }
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();

    let mut rows = Vec::new();
    for (p, program) in plan.programs.iter().enumerate() {
        for (a, allocator) in plan.allocators.iter().enumerate() {
            rows.push(report::fold(
                program.name,
                &allocator.name,
                providers.remove(&(p, a)).flatten(),
                std::mem::take(&mut samples[p][a]),
                errors[p][a].take(),
            ));
        }
    }
    report::set_ratios(&mut rows);
    let result = report::Programs {
        schema_version: report::SCHEMA_VERSION,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: crate::compare::machine(),
        size: plan.size.0.to_string(),
        rounds: plan.rounds,
        seconds: started.elapsed().as_secs_f64(),
        rows,
    };
    report::write(plan, &result)?;
    Ok(all_ok)
}
