//! What the compressors (`xz`, `zstd`, `pbzip2`) share: their generated text input and
//! a run timed to its end, reported in MB/s of input.

use super::measure::{self, Invocation};
use super::{Context, Sample};
use crate::rng::Rng;
use std::io::Write;
use std::time::Duration;

/// Writes `bytes` of generated text (lines of words and numbers, a little
/// binary noise as real data has) to `path`: the compressors' input.
pub fn write_text(path: &std::path::Path, bytes: u64) -> Result<(), String> {
    let mut rng = Rng::new(42);
    let words: Vec<String> = (0..5000)
        .map(|_| {
            (0..rng.range(2, 9))
                .map(|_| (b'a' + rng.below(26) as u8) as char)
                .collect()
        })
        .collect();
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut out = std::io::BufWriter::new(file);
    let mut written = 0;
    while written < bytes {
        let mut line: Vec<u8> = Vec::with_capacity(128);
        for i in 0..12 {
            if i > 0 {
                line.push(b' ');
            }
            line.extend_from_slice(words[rng.below(words.len())].as_bytes());
        }
        line.extend_from_slice(format!(" {}\n", rng.next_u64() >> 24).as_bytes());
        // Some incompressible bytes, as real data has.
        if rng.below(20) == 0 {
            line.extend((0..32).map(|_| rng.next_u64() as u8));
        }
        out.write_all(&line).map_err(|e| e.to_string())?;
        written += line.len() as u64;
    }
    out.flush().map_err(|e| e.to_string())
}

/// One run of `argv` (a compressor reading `input` in the work directory),
/// with the input's MB/s beside the usual figures.
pub fn run(cx: &Context, argv: &[&str], input: &str) -> Result<Sample, String> {
    let done = measure::run_to_end(&Invocation::new(cx, argv), Duration::from_secs(600))?;
    let size = std::fs::metadata(cx.dir.join(input)).map_or(0, |m| m.len());
    let mut sample = Sample::from_finished(&done);
    sample
        .metrics
        .insert("MB/s".into(), size as f64 / 1e6 / done.wall_s.max(1e-9));
    Ok(sample)
}
