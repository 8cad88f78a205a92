//! `pbzip2`: `pbzip2 -p2` compressing a generated text file — a parallel
//! compressor nobody here wrote whose large buffers cross threads and vary
//! in size. Its reader thread allocates each 900 kB input block, a
//! compressor thread frees it after compressing it into an output buffer of
//! its own size, and the writer thread frees that; each compression sets up
//! and tears down bzip2's working arrays (several MiB) on the compressor
//! thread. No pools: every block is a fresh `new[]`.

use super::{compress, Context, Program, Sample};

/// The table entry.
pub const PROGRAM: Program = Program {
    name: "pbzip2",
    about: "pbzip2 -p2 of generated text (900 kB blocks: read, compressed, written by different threads)",
    needs: &["pbzip2"],
    probe: &["pbzip2", "--version"],
    prepare,
    run,
};

const INPUT: &str = "pbzip2-input";

fn prepare(cx: &Context) -> Result<(), String> {
    compress::write_text(&cx.dir.join(INPUT), cx.scaled(24, 4) << 20)
}

fn run(cx: &Context) -> Result<Sample, String> {
    // -k keeps the input, -f overwrites the last output (pbzip2-input.bz2).
    compress::run(cx, &["pbzip2", "-p2", "-k", "-f", INPUT], INPUT)
}
