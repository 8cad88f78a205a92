//! `hakmem-bench` as a library: the scenarios, the allocator table, the
//! measured-child protocol, and the comparison machinery.
//!
//! The binary (`src/main.rs`) only parses arguments and maps outcomes to exit
//! codes; `probe-cli breakdown` uses [`protocol`] and [`syscount`] to start
//! the same measured children.
//!
//! Dependencies point one way: `stats`, `rng`, `block`, `timing` ←
//! `scenarios` ← `child` (one run in-process) ← `protocol` + `launch` (a child
//! from outside, its syscalls counted) ← `compare` / `programs` (many runs ×
//! table / matrix / JSON / Markdown / SVG).

#![warn(missing_docs)]

pub mod aggregate;
pub mod allocator_stats;
pub mod allocators;
pub mod block;
pub mod child;
pub mod cli;
pub mod compare;
pub mod dispatch;
pub mod launch;
pub mod list;
pub mod matrix;
pub mod model;
pub mod perf_group;
pub mod perf_inclusive;
pub mod process;
pub mod programs;
pub mod protocol;
pub mod rng;
pub mod scenarios;
pub mod stats;
pub mod svg;
pub mod syscount;
pub mod table;
pub mod timing;
