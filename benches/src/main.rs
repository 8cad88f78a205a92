//! `hakmem-bench`: workloads × allocators, one process per allocator per run.
//!
//! `main` only parses, validates and maps outcomes to exit codes: 0 done,
//! 1 a run failed, 2 bad arguments (always one line on stderr).
//! Everything else is the `hakmem_bench` library (see its `lib.rs` for the layers).

use clap::error::ErrorKind;
use clap::Parser;
use hakmem_bench::{
    child, cli, compare, dispatch, launch, list, model, perf_group, perf_inclusive, programs,
    syscount, table,
};
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: dispatch::Dispatch = dispatch::Dispatch;

/// Exit code for bad arguments (clap's own choice too).
const USAGE: u8 = 2;

/// A subcommand's result as the exit status, its error on stderr.
fn exit_code(command: &str, result: Result<(), impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hakmem-bench: {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("hakmem-bench: {message}");
    ExitCode::from(USAGE)
}

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(USAGE);
        }
        // clap's message spans several lines (usage, tips); its first line says it all.
        Err(e) => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            return usage_error(first.trim_start_matches("error: "));
        }
    };
    let plan = match cli::validate(cli) {
        Ok(plan) => plan,
        Err(message) => return usage_error(&message),
    };
    match plan {
        cli::Plan::List => {
            list::list();
            ExitCode::SUCCESS
        }
        cli::Plan::Run(run) if child::is_child() => match child::measure(&run) {
            Ok(report) => {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("report serialises")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hakmem-bench: {e}");
                ExitCode::FAILURE
            }
        },
        cli::Plan::Run(run) => {
            let method = syscount::choose(run.common.syscalls);
            match launch::run_child(
                run.scenario,
                &run.allocator,
                &run.common,
                &method,
                run.baseline,
            ) {
                Ok(report) if run.json => {
                    println!(
                        "{}",
                        serde_json::to_string(&report).expect("report serialises")
                    );
                    ExitCode::SUCCESS
                }
                Ok(report) => {
                    print_run(&report);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("hakmem-bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        cli::Plan::PerfGroup(args) => exit_code(
            "perf-group",
            perf_group::run(&args.title, args.markdown.as_deref()),
        ),
        cli::Plan::PerfInclusive(args) => exit_code(
            "perf-inclusive",
            perf_inclusive::run(&args.breakdown, args.markdown.as_deref()),
        ),
        cli::Plan::Programs(plan) => match programs::run(plan) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("hakmem-bench: {e}");
                ExitCode::FAILURE
            }
        },
        cli::Plan::Compare(plan) => match compare::compare(plan) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("hakmem-bench: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `run` without `--json`: one readable block.
fn print_run(r: &model::RunReport) {
    let c = &r.child;
    println!(
        "{} with {} ({} thread(s), {} ops)",
        c.scenario, c.allocator, c.threads, c.ops
    );
    println!(
        "  ns/op        {} median, {} p99, {} mean (wall x threads / ops)",
        table::fmt_ns(c.p50_ns),
        table::fmt_ns(c.p99_ns),
        table::fmt_ns(c.ns_per_op)
    );
    println!("  page faults  {} minor, {} major", c.minflt, c.majflt);
    let counts: Vec<String> = r
        .syscalls
        .counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "  syscalls     {} ({})",
        if counts.is_empty() {
            "n/a".into()
        } else {
            counts.join(", ")
        },
        r.syscalls.source
    );
    println!("  peak RSS     {}", table::fmt_kib(Some(c.peak_rss_kb)));
    println!(
        "  RSS after    {} (after {} ms idle: {})",
        table::fmt_kib(Some(c.rss_after_kb)),
        c.idle_ms,
        table::fmt_kib(Some(c.rss_idle_kb))
    );
    if let Some(provider) = &c.malloc_provider {
        println!("  malloc from  {provider}");
    }
    for (k, v) in &c.allocator_stats {
        println!("  {k:<20} {v}");
    }
}
