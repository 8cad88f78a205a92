//! perf counters of the target: software events always, hardware events where the
//! CPU (or the hypervisor) exposes them — "not supported" otherwise.

use perf_event::events::{Cache, CacheId, CacheOp, CacheResult, Event, Hardware, Software};
use perf_event::{Builder, Counter};
use serde::Serialize;
use std::collections::HashMap;

/// One counter kind the report shows.
struct Kind {
    name: &'static str,
    unit: &'static str,
    make: fn(&mut Builder<'static>),
}

fn sw(b: &mut Builder<'static>, e: Software) {
    b.event(e);
}

fn hw(b: &mut Builder<'static>, e: impl Event + 'static) {
    b.event(e);
}

const KINDS: &[Kind] = &[
    Kind {
        name: "page_faults",
        unit: "",
        make: |b| sw(b, Software::PAGE_FAULTS),
    },
    Kind {
        name: "minor_faults",
        unit: "",
        make: |b| sw(b, Software::PAGE_FAULTS_MIN),
    },
    Kind {
        name: "major_faults",
        unit: "",
        make: |b| sw(b, Software::PAGE_FAULTS_MAJ),
    },
    Kind {
        name: "context_switches",
        unit: "",
        make: |b| sw(b, Software::CONTEXT_SWITCHES),
    },
    Kind {
        name: "cpu_migrations",
        unit: "",
        make: |b| sw(b, Software::CPU_MIGRATIONS),
    },
    Kind {
        name: "task_clock",
        unit: "ns",
        make: |b| sw(b, Software::TASK_CLOCK),
    },
    Kind {
        name: "cycles",
        unit: "",
        make: |b| hw(b, Hardware::CPU_CYCLES),
    },
    Kind {
        name: "instructions",
        unit: "",
        make: |b| hw(b, Hardware::INSTRUCTIONS),
    },
    Kind {
        name: "cache_misses",
        unit: "",
        make: |b| hw(b, Hardware::CACHE_MISSES),
    },
    Kind {
        name: "dtlb_misses",
        unit: "",
        make: |b| {
            hw(
                b,
                Cache {
                    which: CacheId::DTLB,
                    operation: CacheOp::READ,
                    result: CacheResult::MISS,
                },
            )
        },
    },
];

/// One counter's value in a report.
#[derive(Clone, Debug, Serialize)]
pub struct Reading {
    /// Counter name (`page_faults`, `task_clock`, ...).
    pub name: &'static str,
    /// Unit (`ns` for task_clock, empty for counts).
    pub unit: &'static str,
    /// The count, or None when the counter cannot be opened here.
    pub value: Option<u64>,
    /// Why the value is missing ("not supported", ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How the counters follow the target's threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One counter set per thread found in /proc/PID/task, rescanned at every
    /// `refresh` (an already running process; threads that come and go between two
    /// refreshes are missed).
    PerThread,
    /// One inherited counter set on the main thread, opened before the program
    /// starts: every later thread and child is counted when it exits (`run`).
    Inherited,
}

/// The target's counters.
pub struct PerfCounters {
    pid: u32,
    scope: Scope,
    /// Per kind: why it cannot be opened, once known.
    unsupported: Vec<Option<String>>,
    /// Per thread: one counter per kind (None where unsupported).
    threads: HashMap<u32, Vec<Option<Counter>>>,
}

impl PerfCounters {
    /// Opens the counters on `pid` (per `scope`).
    pub fn open(pid: u32, scope: Scope) -> PerfCounters {
        let mut counters = PerfCounters {
            pid,
            scope,
            unsupported: vec![None; KINDS.len()],
            threads: HashMap::new(),
        };
        counters.refresh();
        counters
    }

    /// Opens counters on threads that appeared since the last call.
    pub fn refresh(&mut self) {
        let tids: Vec<u32> = match self.scope {
            Scope::Inherited => vec![self.pid],
            Scope::PerThread => std::fs::read_dir(format!("/proc/{}/task", self.pid))
                .map(|dir| {
                    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default(),
        };
        for tid in tids {
            if self.threads.contains_key(&tid) {
                continue;
            }
            let set = (0..KINDS.len()).map(|k| self.open_one(k, tid)).collect();
            self.threads.insert(tid, set);
        }
    }

    fn open_one(&mut self, kind: usize, tid: u32) -> Option<Counter> {
        if self.unsupported[kind].is_some() {
            return None;
        }
        let mut builder = Builder::new(Software::DUMMY);
        (KINDS[kind].make)(&mut builder);
        builder
            .observe_pid(tid as i32)
            .any_cpu()
            // Faults and switches happen in the kernel on the target's behalf.
            .exclude_kernel(false)
            .inherit(self.scope == Scope::Inherited)
            .enabled(true);
        match builder.build() {
            Ok(counter) => Some(counter),
            Err(e) => {
                // A thread that just exited is no reason to call a counter unsupported.
                if e.raw_os_error() != Some(libc::ESRCH) {
                    self.unsupported[kind] = Some(match e.raw_os_error() {
                        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) | Some(libc::ENODEV) => {
                            "not supported".into()
                        }
                        Some(libc::EACCES) | Some(libc::EPERM) => "not permitted".into(),
                        _ => format!("cannot open: {e}"),
                    });
                }
                None
            }
        }
    }

    /// Sums every kind over the threads.
    pub fn read(&mut self) -> Vec<Reading> {
        let mut totals = vec![0u64; KINDS.len()];
        for set in self.threads.values_mut() {
            for (k, counter) in set.iter_mut().enumerate() {
                if let Some(c) = counter {
                    // An exited thread's counter keeps its final value.
                    totals[k] += c.read().unwrap_or(0);
                }
            }
        }
        KINDS
            .iter()
            .enumerate()
            .map(|(k, kind)| Reading {
                name: kind.name,
                unit: kind.unit,
                value: self.unsupported[k].is_none().then_some(totals[k]),
                note: self.unsupported[k].clone(),
            })
            .collect()
    }

    /// Threads with counters.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}
