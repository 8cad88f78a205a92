//! `xz`: `xz -T2 -2` compressing a generated text file — a multi-threaded
//! compressor whose threads each hold buffers of several MiB.

use super::{compress, Context, Program, Sample};

/// The table entry.
pub const PROGRAM: Program = Program {
    name: "xz",
    about: "xz -T2 -2 of generated text (two compressor threads, MiB buffers)",
    needs: &["xz"],
    probe: &["xz", "--version"],
    prepare,
    run,
};

const INPUT: &str = "xz-input";

fn prepare(cx: &Context) -> Result<(), String> {
    compress::write_text(&cx.dir.join(INPUT), cx.scaled(6, 1) << 20)
}

fn run(cx: &Context) -> Result<Sample, String> {
    // To a file next to the input (-k keeps it, -f overwrites the last output).
    compress::run(
        cx,
        &["xz", "-T2", "-2", "-k", "-f", "-S", ".out", INPUT],
        INPUT,
    )
}
