//! `list`: the scenarios, and which allocators this machine can run and why not.

use crate::allocators;
use crate::cli::SyscallMode;
use crate::programs;
use crate::scenarios;
use crate::syscount;
use std::io::Write;

/// Print the tables to stdout. A reader that closes the pipe early
/// (`hakmem-bench list | head`) ends the listing quietly.
pub fn list() {
    let mut out = std::io::stdout().lock();
    match write_all(&mut out) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => eprintln!("hakmem-bench: writing the list: {e}"),
        Ok(()) => {}
    }
}

fn write_all(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "scenarios:")?;
    for s in scenarios::ALL {
        let threads = if s.threaded { "threads" } else { "1 thread" };
        writeln!(out, "  {:<16} {:<9} {}", s.name, threads, s.about)?;
    }
    writeln!(out, "\nscenario groups (`compare --scenario GROUP`):")?;
    writeln!(out, "  {:<16} every scenario", "all")?;
    for (name, about, members) in scenarios::GROUPS {
        writeln!(out, "  {name:<16} {about}: {}", members.join(", "))?;
    }
    writeln!(out, "\nallocators:")?;
    for a in allocators::catalogue() {
        let status = match a.availability() {
            Ok(()) if a.default_set => "available".to_string(),
            Ok(()) => "available (not in the default set)".to_string(),
            Err(why) => format!("missing: {why}"),
        };
        writeln!(out, "  {:<17} {:<40} {}", a.name, status, a.about)?;
    }
    let (name, status) = ("preload:PATH", "if PATH exists");
    writeln!(
        out,
        "  {name:<17} {status:<40} any malloc library via LD_PRELOAD"
    )?;
    writeln!(
        out,
        "\nprograms (`programs`, every allocator through LD_PRELOAD):"
    )?;
    for p in programs::ALL {
        let status = match p.availability() {
            Ok(()) => "available".to_string(),
            Err(why) => format!("missing: {why}"),
        };
        writeln!(out, "  {:<17} {:<40} {}", p.name, status, p.about)?;
    }
    writeln!(
        out,
        "\nsyscall counting: {}",
        syscount::choose(SyscallMode::Auto).label()
    )
}
