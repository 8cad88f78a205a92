//! `sort`: GNU sort (`LC_ALL=C`, 256 MiB buffer) of a generated file of
//! random lines — many short strings allocated, compared and freed.

use super::measure::{self, Invocation};
use super::{Context, Program, Sample};
use crate::rng::Rng;
use std::io::Write;
use std::time::Duration;

/// The table entry.
pub const PROGRAM: Program = Program {
    name: "sort",
    about: "GNU sort of random text lines (LC_ALL=C, -S 256M)",
    needs: &["sort"],
    probe: &["sort", "--version"],
    prepare,
    run,
};

const INPUT: &str = "lines.txt";
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

fn prepare(cx: &Context) -> Result<(), String> {
    let lines = cx.scaled(2_000_000, 20_000);
    let file = std::fs::File::create(cx.dir.join(INPUT)).map_err(|e| e.to_string())?;
    let mut out = std::io::BufWriter::new(file);
    let mut rng = Rng::new(42);
    for i in 0..lines {
        let word = &LETTERS[..1 + rng.below(20)];
        writeln!(
            out,
            "{:08x} {i} {}",
            rng.next_u64() as u32,
            std::str::from_utf8(word).expect("ascii")
        )
        .map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

fn run(cx: &Context) -> Result<Sample, String> {
    let mut invocation = Invocation::new(cx, &["sort", "-S", "256M", "-o", "sorted.txt", INPUT]);
    invocation.env.push(("LC_ALL".into(), Some("C".into())));
    let done = measure::run_to_end(&invocation, Duration::from_secs(600))?;
    Ok(Sample::from_finished(&done))
}
