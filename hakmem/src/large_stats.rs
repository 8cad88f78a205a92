//! Counters of the large-block machinery (BigCache, ELO, evolution).

/// Large-block counters in [`crate::Stats`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LargeStats {}

impl LargeStats {
    pub fn collect() -> Self {
        LargeStats {}
    }
}

pub fn print(_s: &LargeStats) {}
