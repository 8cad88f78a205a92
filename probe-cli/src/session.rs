//! A trace in progress: the attached probes, the perf counters and the clock, and
//! the reports they make (printed, and written for Prometheus).

use crate::cli::OutputArgs;
use crate::error::{Error, Result};
use crate::perf::{PerfCounters, Scope};
use crate::probes::{add_components, sub_components, KernelCounts, Probes};
use crate::records;
use crate::report;
use crate::target::{self, Target};
use crate::tsc::Tsc;
use hakmem_ebpf::{ComponentStats, ProcessTotals};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// Probe hits of the short calibration every trace makes before attaching.
const QUICK_CALIBRATION: (u32, u32) = (20_000, 3);

/// What probing costs on this machine, measured quickly (None if the
/// measurement failed: the reports then omit what depends on it).
pub fn quick_calibration() -> Option<crate::calibrate::Calibration> {
    crate::calibrate::measure(QUICK_CALIBRATION.0, QUICK_CALIBRATION.1).ok()
}

/// A numeric hakmem option in our environment (which `run`'s processes inherit).
fn inherited_setting(name: &str) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    std::env::var_os(name).and_then(|v| hakmem::options::parse_u64(v.as_bytes()))
}

/// Where a command's reports go when there is no `-o FILE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultStream {
    /// `trace`: the tracer's stdout is nobody else's.
    Stdout,
    /// `run`: stdout belongs to the traced program.
    Stderr,
}

/// Opens the report destination: `-o FILE` (created or truncated now, so that an
/// unwritable path is a usage error before anything touches the kernel), or the
/// command's default stream.
pub fn open_sink(output: &OutputArgs, default: DefaultStream) -> Result<Box<dyn Write + Send>> {
    match &output.output {
        Some(path) => std::fs::File::create(path)
            .map(|f| Box::new(f) as Box<dyn Write + Send>)
            .map_err(|e| Error::Usage(format!("-o {}: {e}", path.display()))),
        None if default == DefaultStream::Stdout => Ok(Box::new(std::io::stdout())),
        None => Ok(Box::new(std::io::stderr())),
    }
}

/// Everything a trace holds while it runs.
pub struct Session {
    /// The traced process.
    pub target: Target,
    /// The attached BPF programs.
    pub probes: Probes,
    perf: PerfCounters,
    scope: Scope,
    tsc: Tsc,
    hit_cost_ns: Option<f64>,
    empty_component_ns: Option<f64>,
    empty_operation_ns: Option<f64>,
    nested_component_ns: Option<f64>,
    started: Instant,
    output: OutputArgs,
    sink: Box<dyn Write + Send>,
    /// What is known of every process image the trace saw, by (tgid, execs).
    images: BTreeMap<(u32, u32), Image>,
    /// The root's counts when the trace attached (subtracted from its image).
    baseline: Option<(u32, Vec<ComponentStats>)>,
    /// hakmem's sampling period, as last read from a traced process.
    sample_period: Option<u32>,
    /// hakmem's target interval between a thread's samples (TSC cycles, 0:
    /// fixed period), as last read from a traced process.
    sample_interval: Option<u64>,
    /// Images `new_images` returned already.
    adopted: std::collections::BTreeSet<(u32, u32)>,
    /// When the processes' memory was last read ([`Session::refresh`]).
    last_read: Instant,
}

/// How often `run` and `trace` read the traced processes' memory between
/// reports ([`Session::refresh_if_due`]).
const READ_EVERY: Duration = Duration::from_millis(100);

/// One process image (a tgid between two execs) and its counts.
#[derive(Default)]
struct Image {
    /// Where hakmem is in it (None: not looked up yet, or not found).
    target: Option<Target>,
    /// Its last totals read from its memory.
    last: Option<ProcessTotals>,
    /// Lookups that found no hakmem (a process that maps none is not retried forever).
    misses: u32,
    /// Its size bands' evolution words, as last read from its memory.
    bands: Option<[u32; hakmem::large::evolution::BANDS]>,
}

/// A process of the trace with its counts, for the report.
pub struct ProcessCounts {
    /// tgid.
    pub pid: u32,
    /// The tgid that forked it (0 for the first).
    pub parent: u32,
    /// Its command name after its last exec.
    pub comm: String,
    /// Still running.
    pub running: bool,
    /// Its counts since the trace began (None: no hakmem seen in it).
    pub components: Option<Vec<ComponentStats>>,
    /// Its size bands' evolution words as last read (None: never read).
    pub bands: Option<[u32; hakmem::large::evolution::BANDS]>,
}

impl Session {
    /// Starts the clock on attached probes and opened counters.
    pub fn new(
        target: Target,
        probes: Probes,
        perf: PerfCounters,
        scope: Scope,
        calibration: Option<crate::calibrate::Calibration>,
        output: OutputArgs,
        sink: Box<dyn Write + Send>,
    ) -> Session {
        let tsc = Tsc::calibrate(Duration::from_millis(20));
        Session {
            target,
            probes,
            perf,
            scope,
            tsc,
            hit_cost_ns: calibration.as_ref().map(|c| c.probe_hit_ns),
            empty_component_ns: calibration.as_ref().map(|c| c.empty_component_ns),
            empty_operation_ns: calibration.as_ref().map(|c| c.empty_operation_ns),
            nested_component_ns: calibration.as_ref().map(|c| c.nested_component_ns),
            started: Instant::now(),
            output,
            sink,
            images: BTreeMap::new(),
            baseline: None,
            sample_period: None,
            sample_interval: None,
            adopted: std::collections::BTreeSet::new(),
            last_read: Instant::now(),
        }
    }

    /// Takes the root's current counts as the zero of the report (`trace
    /// --pid`: what the process did before the tracer came is not reported).
    pub fn set_baseline(&mut self) -> Result<()> {
        let totals = records::read_totals(&self.target)?;
        self.baseline = Some((self.target.pid, totals.components.to_vec()));
        Ok(())
    }

    /// Every traced process's counts, now: from `finals` when hakmem handed
    /// them over at exit, from the process's memory while it runs, else the
    /// last read. An image replaced by exec counts nothing (its totals died
    /// with it; the program it became is what was asked about).
    fn process_counts(&mut self, counts: &KernelCounts) -> Vec<ProcessCounts> {
        let mut out = Vec::new();
        for (&pid, p) in &counts.processes {
            let key = (pid, p.execs);
            let image = self.images.entry(key).or_default();
            let running = p.exited == 0 && target::alive(pid);
            let totals = if let Some(f) = counts.finals.get(&pid) {
                Some(*f)
            } else if running {
                if image.target.is_none() && image.misses < 20 {
                    match target::locate(pid) {
                        Ok(t) => image.target = Some(t),
                        Err(_) => image.misses += 1,
                    }
                }
                if let Some(t) = &image.target {
                    if let Ok(read) = records::read_totals(t) {
                        image.last = Some(read);
                    }
                    if let Some(bands) = records::read_bands(t) {
                        image.bands = Some(bands);
                    }
                    if let Some(period) = t.elf.sample_period.and_then(|a| t.read_u32(a).ok()) {
                        self.sample_period = Some(period);
                    }
                    let mut interval = [0u8; 8];
                    if let Some(a) = t.elf.sample_interval {
                        if t.read(a, &mut interval).is_ok() {
                            self.sample_interval = Some(u64::from_ne_bytes(interval));
                        }
                    }
                }
                image.last
            } else {
                image.last
            };
            let comm_bytes: Vec<u8> = p.comm.iter().flat_map(|w| w.to_ne_bytes()).collect();
            let comm = String::from_utf8_lossy(&comm_bytes)
                .trim_end_matches('\0')
                .to_string();
            let components = totals.map(|t| {
                let mut c = t.components.to_vec();
                if let Some((root, base)) = &self.baseline {
                    if *root == pid && p.execs == 0 {
                        sub_components(&mut c, base);
                    }
                }
                c
            });
            out.push(ProcessCounts {
                pid,
                parent: p.parent,
                comm,
                running,
                components,
                bands: image.bands,
            });
        }
        // Images replaced by exec keep nothing: drop what we knew of them.
        self.images
            .retain(|(pid, execs), _| counts.processes.get(pid).is_some_and(|p| p.execs == *execs));
        out
    }

    /// Opens counters on threads that appeared since the last poll.
    pub fn poll_threads(&mut self) {
        self.perf.refresh();
    }

    /// Reads everything into a report (without printing it).
    pub fn snapshot(
        &mut self,
        state: &str,
        final_report: bool,
    ) -> Result<(report::Report, KernelCounts)> {
        let mut counts = self.probes.read()?;
        let processes = self.process_counts(&counts);
        let mut total = records::zero();
        for p in &processes {
            if let Some(c) = &p.components {
                add_components(&mut total, c);
            }
        }
        counts.components = total;
        let perf = self.perf.read();
        let r = report::build(report::Inputs {
            kernel_syscalls: self.probes.counts_syscalls(),
            target: &self.target,
            state: state.to_string(),
            counts: &counts,
            processes: &processes,
            // Not read from a running process (it exited first): what it
            // inherited from us (`run`), else hakmem's defaults.
            sample_period: self.sample_period.unwrap_or_else(|| {
                inherited_setting("HAKMEM_TRACE_PERIOD")
                    .and_then(|p| u32::try_from(p).ok())
                    .unwrap_or(hakmem::probe::DEFAULT_SAMPLE_PERIOD)
            }),
            sample_interval: self.sample_interval.or_else(|| {
                Some(
                    inherited_setting("HAKMEM_TRACE_INTERVAL")
                        .unwrap_or(hakmem::probe::DEFAULT_SAMPLE_INTERVAL),
                )
            }),
            empty_component_ns: self.empty_component_ns,
            empty_operation_ns: self.empty_operation_ns,
            nested_component_ns: self.nested_component_ns,
            perf,
            perf_scope: match self.scope {
                Scope::PerThread => "per_thread",
                Scope::Inherited => "inherited",
            },
            perf_threads: self.perf.threads(),
            tsc: self.tsc,
            hit_cost_ns: self.hit_cost_ns,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            final_report,
        });
        Ok((r, counts))
    }

    /// Reads everything and prints one report (and rewrites the Prometheus file).
    pub fn report(&mut self, state: &str, final_report: bool) -> Result<()> {
        let snapshot = self.snapshot(state, final_report)?;
        self.print(snapshot)
    }

    /// Reads the running processes' records again (so that a process about
    /// to be killed keeps its counts up to now, and the report has what only
    /// their memory holds: the size bands' strategies, which the exit probe
    /// does not carry).
    pub fn refresh(&mut self) {
        if let Ok(counts) = self.probes.read() {
            self.process_counts(&counts);
        }
        self.last_read = Instant::now();
    }

    /// [`Session::refresh`] if [`READ_EVERY`] has passed since the last
    /// read: `run` and `trace` call it on every turn of their loops.
    pub fn refresh_if_due(&mut self) {
        if self.last_read.elapsed() >= READ_EVERY {
            self.refresh();
        }
    }

    /// The traced processes still running, the first included.
    pub fn running(&self) -> Vec<u32> {
        let Ok(counts) = self.probes.read() else {
            return vec![self.target.pid];
        };
        counts
            .processes
            .iter()
            .filter(|(pid, p)| p.exited == 0 && target::alive(**pid))
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// Followed process images (not the first) seen for the first time since
    /// the last call, that run with hakmem in them.
    pub fn new_images(&mut self) -> Vec<Target> {
        let Ok(counts) = self.probes.read() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (&pid, p) in &counts.processes {
            let key = (pid, p.execs);
            if pid == self.target.pid || p.exited != 0 || self.adopted.contains(&key) {
                continue;
            }
            if let Ok(t) = target::locate(pid) {
                self.adopted.insert(key);
                out.push(t);
            }
        }
        out
    }

    /// Prints a report made by `snapshot` (and rewrites the Prometheus file).
    pub fn print(&mut self, (r, counts): (report::Report, KernelCounts)) -> Result<()> {
        let text = if self.output.json {
            serde_json::to_string(&r).map_err(|e| Error::Other(format!("encoding JSON: {e}")))?
                + "\n"
        } else {
            report::text(&r) + "\n"
        };
        // A closed pipe (probe-cli ... | head) is the reader's choice, not an error.
        let _ = self
            .sink
            .write_all(text.as_bytes())
            .and_then(|_| self.sink.flush());
        if let Some(path) = &self.output.prometheus {
            let tmp = path.with_extension("prom.tmp");
            std::fs::write(&tmp, report::prometheus(&r, &counts, self.tsc))
                .and_then(|_| std::fs::rename(&tmp, path))
                .map_err(|e| Error::Other(format!("writing {}: {e}", path.display())))?;
        }
        Ok(())
    }
}
