//! `zstd`: `zstd -T2 --long` compressing a generated text file. Its
//! multi-threaded mode hands jobs between threads: the main thread fills
//! input buffers of several MiB that a worker compresses into output buffers
//! the main thread writes out and returns, so large buffers cross threads
//! (a pipeline like `large-pipeline`, in a program nobody here wrote).

use super::{compress, Context, Program, Sample};

/// The table entry.
pub const PROGRAM: Program = Program {
    name: "zstd",
    about: "zstd -T2 --long of generated text (jobs of MiB buffers handed between threads)",
    needs: &["zstd"],
    probe: &["zstd", "--version"],
    prepare,
    run,
};

const INPUT: &str = "zstd-input";

fn prepare(cx: &Context) -> Result<(), String> {
    compress::write_text(&cx.dir.join(INPUT), cx.scaled(24, 4) << 20)
}

fn run(cx: &Context) -> Result<Sample, String> {
    // -q: no progress on stderr; -f overwrites the last output.
    let argv = [
        "zstd", "-q", "-T2", "-3", "--long", "-f", "-o", "zstd-out", INPUT,
    ];
    compress::run(cx, &argv, INPUT)
}
