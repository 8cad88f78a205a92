//! probe-cli: watch hakmem's components live in a running process with eBPF.
//!
//! `main` only parses and maps errors to exit codes (0 done, 2 usage, 3 not
//! permitted, 4 no such process / no hakmem in it, or a target that fails); the
//! commands live in their modules.

mod breakdown;
mod calibrate;
mod cli;
mod elf;
mod error;
mod perf;
mod privileges;
mod probes;
mod records;
mod registration;
mod report;
mod run;
mod session;
mod syscalls;
mod target;
mod trace;
mod tracefs;
mod tsc;

use clap::Parser;
use cli::{Cli, Command};
use std::io::Write;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(args) => trace::run(args),
        Command::Run(args) => run::run(args),
        Command::Breakdown(args) => breakdown::run(args),
        Command::Calibrate(args) => crate::privileges::check(false)
            .and_then(|()| calibrate::measure(args.iterations, args.rounds))
            .map(|c| {
                if args.json {
                    println!(
                        "{}",
                        serde_json::to_string(&c).expect("calibration serialises")
                    );
                } else {
                    calibrate::print(&c);
                }
            }),
    };
    if let Err(e) = result {
        // A closed stderr must not turn an error into an abort.
        let _ = writeln!(std::io::stderr(), "probe-cli: {e}");
        std::process::exit(e.exit_code());
    }
}
