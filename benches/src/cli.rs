//! Command-line parsing (clap) and validation into plain settings.
//!
//! Parsing and validation are separate steps: clap checks the shape, then
//! [`validate`] resolves names against the scenario and allocator tables so
//! every bad argument gets the same one-line error and exit code 2.

use crate::allocators::{self, Allocator};
use crate::programs;
use crate::scenarios::{self, Scenario};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Workloads × allocators: hakmem against mimalloc, jemalloc, tcmalloc and glibc,
/// one process per allocator per run.
#[derive(Parser, Debug)]
#[command(name = "hakmem-bench", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Scenarios and allocators available on this machine.
    List,
    /// One scenario with one allocator, in one child process.
    Run(RunArgs),
    /// Scenarios × allocators, one process per allocator per run; prints the table.
    Compare(CompareArgs),
    /// Real programs × allocators through LD_PRELOAD, interleaved rounds; prints the table.
    Programs(ProgramsArgs),
    /// Groups `perf report` self time (stdin) by hakmem component (scripts/perf-profile.sh).
    PerfGroup(PerfGroupArgs),
    /// perf's inclusive time of hakmem's parts (`perf script` on stdin) next to a
    /// breakdown's traced figures (scripts/true-figures.sh).
    PerfInclusive(PerfInclusiveArgs),
}

/// `perf-inclusive` arguments.
#[derive(Args, Debug)]
pub struct PerfInclusiveArgs {
    /// `probe-cli breakdown --json` output of the same scenario.
    #[arg(long, value_name = "FILE")]
    pub breakdown: PathBuf,
    /// Also write the table (Markdown) to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

/// `perf-group` arguments.
#[derive(Args, Debug)]
pub struct PerfGroupArgs {
    /// What was profiled (the table's heading).
    #[arg(long, default_value = "")]
    pub title: String,
    /// Also write the table as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

/// `programs` arguments.
#[derive(Args, Debug)]
pub struct ProgramsArgs {
    /// Programs, comma-separated [default: every one whose binaries are installed].
    #[arg(long, value_delimiter = ',')]
    pub program: Vec<String>,
    /// Allocators, comma-separated [default: every available one of the
    /// default set with a preloadable form].
    #[arg(long, value_delimiter = ',')]
    pub allocators: Vec<String>,
    /// Measured rounds per program and allocator.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Amount of work per run (tiny: for tests, the numbers mean nothing).
    #[arg(long, value_enum, default_value_t = Size::Default)]
    pub size: Size,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the table as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write a grouped bar chart as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// Amount of work per run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Size {
    /// A few milliseconds per scenario: for tests.
    Tiny,
    /// A tenth of the default.
    Small,
    /// About 0.1–0.5 s per scenario and allocator on a current core.
    Default,
    /// Four times the default.
    Large,
}

impl Size {
    /// Multiplier on each scenario's default amount of work.
    pub fn scale(self) -> f64 {
        match self {
            Size::Tiny => 0.005,
            Size::Small => 0.1,
            Size::Default => 1.0,
            Size::Large => 4.0,
        }
    }

    /// The command-line spelling.
    pub fn name(self) -> &'static str {
        match self {
            Size::Tiny => "tiny",
            Size::Small => "small",
            Size::Default => "default",
            Size::Large => "large",
        }
    }
}

/// How syscalls are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SyscallMode {
    /// perf tracepoint counters, else strace, else n/a.
    Auto,
    /// perf tracepoint counters only.
    Perf,
    /// strace -f -c only (slower; counts the whole process).
    Strace,
    /// Do not count.
    Off,
}

/// Options shared by `run` and `compare`.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Worker threads for multi-threaded scenarios [default: available cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Amount of work per run.
    #[arg(long, value_enum, default_value_t = Size::Default)]
    pub size: Size,
    /// Idle time after the workload before reading "RSS after", so delayed
    /// purges can run (hakmem's default purge delay is 10 ms).
    #[arg(long, default_value_t = 50)]
    pub idle_ms: u64,
    /// How mmap/munmap/madvise are counted.
    #[arg(long, value_enum, default_value_t = SyscallMode::Auto)]
    pub syscalls: SyscallMode,
}

/// `run` arguments.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Scenario name (see `list`).
    #[arg(long)]
    pub scenario: String,
    /// Allocator name (see `list`) or preload:/path/lib.so.
    #[arg(long)]
    pub allocator: String,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Run the scenario's allocation-free baseline instead: the same loop and
    /// writes, blocks from a pool set up before the clock, no allocator call
    /// (vm, large-reuse, small-churn). The scenario's time minus the
    /// baseline's is what the allocator costs it.
    #[arg(long, env = crate::protocol::BASELINE_ENV)]
    pub baseline: bool,
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
}

/// `compare` arguments.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Scenarios, comma-separated; a group (`all`, `small`, `large`) stands
    /// for its scenarios.
    #[arg(long, value_delimiter = ',', required = true)]
    pub scenario: Vec<String>,
    /// Allocators, comma-separated [default: every available one of hakmem,
    /// hakmem-frozen, hakmem-minimal, hakmem-global, mimalloc, jemalloc, tcmalloc, system].
    #[arg(long, value_delimiter = ',')]
    pub allocators: Vec<String>,
    /// Measured runs per allocator and scenario.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Uncounted warm-up runs per allocator and scenario.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the table as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write a grouped bar chart as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
}

/// `run` after validation.
pub struct RunPlan {
    /// The scenario.
    pub scenario: &'static Scenario,
    /// The allocator (available on this machine).
    pub allocator: Allocator,
    /// Print JSON.
    pub json: bool,
    /// Run the scenario's baseline.
    pub baseline: bool,
    /// Shared options, threads resolved.
    pub common: Common,
}

/// `compare` after validation.
pub struct ComparePlan {
    /// Scenarios in table order.
    pub scenarios: Vec<&'static Scenario>,
    /// Allocators in table order (all available).
    pub allocators: Vec<Allocator>,
    /// The rest, unchanged.
    pub args: CompareArgs,
}

/// A validated command.
pub enum Plan {
    /// `list`.
    List,
    /// `run`.
    Run(RunPlan),
    /// `compare`.
    Compare(ComparePlan),
    /// `programs`.
    Programs(programs::Plan),
    /// `perf-group`.
    PerfGroup(PerfGroupArgs),
    /// `perf-inclusive`.
    PerfInclusive(PerfInclusiveArgs),
}

/// Threads when `--threads` is not given: the machine's cores.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn resolve_common(mut common: Common) -> Result<Common, String> {
    match common.threads {
        Some(0) => return Err("--threads must be at least 1".into()),
        None => common.threads = Some(default_threads()),
        Some(_) => {}
    }
    Ok(common)
}

fn scenario(name: &str) -> Result<&'static Scenario, String> {
    scenarios::find(name).ok_or_else(|| {
        let names: Vec<&str> = scenarios::ALL.iter().map(|s| s.name).collect();
        format!(
            "unknown scenario '{name}' (known: {}; groups: all, {})",
            names.join(", "),
            scenarios::GROUPS
                .iter()
                .map(|(g, _, _)| *g)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// `scenario`, unless a baseline is asked of one that has none.
fn with_baseline(scenario: &'static Scenario, baseline: bool) -> Result<&'static Scenario, String> {
    if baseline && scenario.baseline.is_none() {
        let with: Vec<&str> = scenarios::ALL
            .iter()
            .filter(|s| s.baseline.is_some())
            .map(|s| s.name)
            .collect();
        return Err(format!(
            "scenario '{}' has no baseline (these do: {})",
            scenario.name,
            with.join(", ")
        ));
    }
    Ok(scenario)
}

fn available_allocator(name: &str) -> Result<Allocator, String> {
    let allocator = allocators::resolve(name)?;
    allocator
        .availability()
        .map_err(|why| format!("allocator '{name}' is not available here: {why}"))?;
    Ok(allocator)
}

/// Resolve names and check values; every error is one line for stderr.
pub fn validate(cli: Cli) -> Result<Plan, String> {
    match cli.command {
        Command::List => Ok(Plan::List),
        Command::PerfGroup(args) => Ok(Plan::PerfGroup(args)),
        Command::PerfInclusive(args) => Ok(Plan::PerfInclusive(args)),
        Command::Run(args) => Ok(Plan::Run(RunPlan {
            scenario: with_baseline(scenario(&args.scenario)?, args.baseline)?,
            allocator: available_allocator(&args.allocator)?,
            json: args.json,
            baseline: args.baseline,
            common: resolve_common(args.common)?,
        })),
        Command::Compare(mut args) => {
            if args.runs == 0 {
                return Err("--runs must be at least 1".into());
            }
            args.common = resolve_common(args.common)?;
            let mut scenarios: Vec<&'static Scenario> = Vec::new();
            for name in &args.scenario {
                let named = match scenarios::group(name.trim()) {
                    Some(group) => group,
                    None => vec![scenario(name.trim())?],
                };
                for s in named {
                    if !scenarios.iter().any(|x| x.name == s.name) {
                        scenarios.push(s);
                    }
                }
            }
            let allocators = if args.allocators.is_empty() {
                allocators::catalogue()
                    .into_iter()
                    .filter(|a| a.default_set && a.availability().is_ok())
                    .collect()
            } else {
                let mut list: Vec<Allocator> = Vec::new();
                for name in &args.allocators {
                    let a = available_allocator(name.trim())?;
                    if !list.iter().any(|x| x.name == a.name) {
                        list.push(a);
                    }
                }
                list
            };
            Ok(Plan::Compare(ComparePlan {
                scenarios,
                allocators,
                args,
            }))
        }
        Command::Programs(args) => validate_programs(args).map(Plan::Programs),
    }
}

fn validate_programs(args: ProgramsArgs) -> Result<programs::Plan, String> {
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let mut list: Vec<&'static programs::Program> = Vec::new();
    if args.program.is_empty() {
        for p in programs::ALL {
            match p.availability() {
                Ok(()) => list.push(p),
                Err(why) => eprintln!("hakmem-bench: program {} skipped: {why}", p.name),
            }
        }
    } else {
        for name in &args.program {
            let p = programs::find(name.trim()).ok_or_else(|| {
                let names: Vec<&str> = programs::ALL.iter().map(|p| p.name).collect();
                format!("unknown program '{name}' (known: {})", names.join(", "))
            })?;
            p.availability()
                .map_err(|why| format!("program '{}' is not available here: {why}", p.name))?;
            if !list.iter().any(|x| x.name == p.name) {
                list.push(p);
            }
        }
    }
    if list.is_empty() {
        return Err("no program is available here (scripts/deps.sh installs them)".into());
    }
    let allocators: Vec<Allocator> = if args.allocators.is_empty() {
        allocators::catalogue()
            .into_iter()
            .filter(|a| a.default_set)
            .filter(|a| match a.program_availability() {
                Ok(_) => true,
                Err(why) => {
                    eprintln!("hakmem-bench: allocator {} skipped: {why}", a.name);
                    false
                }
            })
            .collect()
    } else {
        let mut list: Vec<Allocator> = Vec::new();
        for name in &args.allocators {
            let a = allocators::resolve(name.trim())?;
            a.program_availability()
                .map_err(|why| format!("allocator '{name}' cannot run programs here: {why}"))?;
            if !list.iter().any(|x| x.name == a.name) {
                list.push(a);
            }
        }
        list
    };
    Ok(programs::Plan {
        programs: list,
        allocators,
        rounds: args.rounds,
        size: (args.size.name(), args.size.scale()),
        json: args.json,
        markdown: args.markdown,
        svg: args.svg,
    })
}
