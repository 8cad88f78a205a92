//! `list`: the scenarios, and which allocators this machine can run and why not.

use crate::allocators;
use crate::cli::SyscallMode;
use crate::programs;
use crate::scenarios;
use crate::syscount;

/// Print both tables to stdout.
pub fn list() {
    println!("scenarios:");
    for s in scenarios::ALL {
        let threads = if s.threaded { "threads" } else { "1 thread" };
        println!("  {:<16} {:<9} {}", s.name, threads, s.about);
    }
    println!("\nscenario groups (`compare --scenario GROUP`):");
    println!("  {:<16} every scenario", "all");
    for (name, about, members) in scenarios::GROUPS {
        println!("  {name:<16} {about}: {}", members.join(", "));
    }
    println!("\nallocators:");
    for a in allocators::catalogue() {
        let status = match a.availability() {
            Ok(()) if a.default_set => "available".to_string(),
            Ok(()) => "available (not in the default set)".to_string(),
            Err(why) => format!("missing: {why}"),
        };
        println!("  {:<17} {:<40} {}", a.name, status, a.about);
    }
    let (name, status) = ("preload:PATH", "if PATH exists");
    println!("  {name:<17} {status:<40} any malloc library via LD_PRELOAD");
    println!("\nprograms (`programs`, every allocator through LD_PRELOAD):");
    for p in programs::ALL {
        let status = match p.availability() {
            Ok(()) => "available".to_string(),
            Err(why) => format!("missing: {why}"),
        };
        println!("  {:<17} {:<40} {}", p.name, status, p.about);
    }
    println!(
        "\nsyscall counting: {}",
        syscount::choose(SyscallMode::Auto).label()
    );
}
