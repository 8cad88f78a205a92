//! `perl`: the system perl building a hash of 1.5 million keys holding small
//! arrays (`benches/programs/hash_build.pl`, ~600 MiB of small blocks),
//! reading it and deleting half: a program whose heap grows into fresh
//! memory for seconds, where what a page fault costs decides the time.

use super::measure::{self, Invocation};
use super::{Context, Program, Sample};
use std::time::Duration;

/// The table entry.
pub const PROGRAM: Program = Program {
    name: "perl",
    about: "perl building a hash of 1.5M keys with small arrays (~600 MiB), then deleting half",
    needs: &[PERL],
    probe: &[PERL, "-e", "1"],
    prepare,
    run,
};

const PERL: &str = "/usr/bin/perl";
const SCRIPT: &str = include_str!("../../programs/hash_build.pl");

fn prepare(cx: &Context) -> Result<(), String> {
    std::fs::write(cx.dir.join("hash_build.pl"), SCRIPT).map_err(|e| e.to_string())
}

fn run(cx: &Context) -> Result<Sample, String> {
    let keys = cx.scaled(1_500_000, 10_000);
    let arg = keys.to_string();
    let mut invocation = Invocation::new(cx, &[PERL, "hash_build.pl", &arg]);
    invocation.stdout = Some("perl.out");
    let done = measure::run_to_end(&invocation, Duration::from_secs(600))?;
    let out = std::fs::read_to_string(cx.dir.join("perl.out"))
        .map_err(|e| format!("perl output: {e}"))?;
    let kept: u64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("perl printed no checksum: {out:?}"))?;
    if kept != keys - keys / 2 {
        return Err(format!("perl kept {kept} keys of {keys}: wrong result"));
    }
    Ok(Sample::from_finished(&done))
}
