//! `zstd`: `zstd -T2 --long` compressing a generated text file. Its
//! multi-threaded mode hands jobs between threads: the main thread fills
//! input buffers of several MiB that a worker compresses into output buffers
//! the main thread writes out and returns, so large buffers cross threads
//! (a pipeline like `large-pipeline`, in a program nobody here wrote).

use super::measure::{self, Invocation};
use super::{Context, Program, Sample};
use std::time::Duration;

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
    super::xz::write_text(&cx.dir.join(INPUT), cx.scaled(24, 4) << 20)
}

fn run(cx: &Context) -> Result<Sample, String> {
    let invocation = Invocation {
        // -q: no progress on stderr; -f overwrites the last output.
        argv: [
            "zstd", "-q", "-T2", "-3", "--long", "-f", "-o", "zstd-out", INPUT,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        env: cx.env.clone(),
        dir: cx.dir.to_path_buf(),
        stdout: None,
    };
    let done = measure::run_to_end(&invocation, Duration::from_secs(600))?;
    let size = std::fs::metadata(cx.dir.join(INPUT)).map_or(0, |m| m.len());
    let mut sample = Sample::from_finished(&done);
    sample
        .metrics
        .insert("MB/s".into(), size as f64 / 1e6 / done.wall_s.max(1e-9));
    Ok(sample)
}
