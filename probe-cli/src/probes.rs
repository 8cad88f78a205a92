//! The kernel side of a trace: loads hakmem-ebpf's programs for one process,
//! attaches them, and reads their maps.

use crate::error::{Error, Result};
use aya::maps::PerCpuArray;
use aya::programs::uprobe::UProbeLinkId;
use aya::programs::uprobe::UProbeScope;
use aya::programs::{TracePoint, UProbe};
use aya::{Ebpf, EbpfLoader};
use hakmem_ebpf::layout::{HIST_BUCKETS, MAX_COMPONENTS, MISC_COUNTERS, SYSCALLS};
use hakmem_ebpf::{ComponentStats, SyscallStats};
use std::num::NonZeroU32;
use std::path::Path;

/// Everything the programs aggregated so far, summed over the CPUs.
#[derive(Clone, Debug)]
pub struct KernelCounts {
    /// Indexed by component id (`MAX_COMPONENTS` slots).
    pub components: Vec<ComponentStats>,
    /// Indexed like `hakmem_ebpf::layout::SYSCALLS`.
    pub syscalls: Vec<SyscallStats>,
    /// Indexed like `hakmem_ebpf::layout::MISC_COUNTERS`.
    pub misc: Vec<u64>,
}

/// The loaded programs of one trace.
pub struct Probes {
    ebpf: Ebpf,
    pid: NonZeroU32,
    gate: Option<UProbeLinkId>,
}

/// Turns an aya error into one line, as a privilege error when the kernel said EPERM.
fn bpf_error(what: &str, e: &(dyn std::error::Error + 'static)) -> Error {
    let mut chain = one_line(&e.to_string());
    let mut source = e.source();
    // EPERM is a missing privilege; EACCES is the verifier refusing a program.
    let mut denied = false;
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&one_line(&s.to_string()));
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            denied |= io.raw_os_error() == Some(libc::EPERM);
        }
        source = s.source();
    }
    if denied {
        Error::NotPermitted(format!(
            "{what}: {chain} (needs root, or CAP_BPF + CAP_PERFMON)"
        ))
    } else if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        // Older kernels without BTF may refuse the BTF-described maps.
        Error::Kernel(format!(
            "{what}: {chain} (this kernel has no BTF: /sys/kernel/btf/vmlinux is missing)"
        ))
    } else {
        Error::Kernel(format!("{what}: {chain}"))
    }
}

/// Errors are one line: a verifier log is cut down to its first line and the
/// verdict (the line before "verification time").
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines
        .iter()
        .position(|l| l.starts_with("verification time"))
    {
        Some(i) if i > 0 => format!("{} ... {}", lines[0], lines[i - 1]),
        _ => lines.join(" "),
    }
}

impl Probes {
    /// Loads the programs filtered on process `pid` (nothing is attached yet).
    pub fn load(pid: u32) -> Result<Probes> {
        if !Path::new("/sys/bus/event_source/devices/uprobe").exists() {
            return Err(Error::Kernel(
                "this kernel has no uprobes (CONFIG_UPROBE_EVENTS)".into(),
            ));
        }
        let pid = NonZeroU32::new(pid).ok_or(Error::NoProcess(0))?;
        let ebpf = EbpfLoader::new()
            .override_global("target_tgid", &pid.get(), true)
            .load(hakmem_ebpf::BPF_OBJECT)
            .map_err(|e| bpf_error("loading the BPF programs", &e))?;
        Ok(Probes {
            ebpf,
            pid,
            gate: None,
        })
    }

    fn uprobe(&mut self, name: &str) -> Result<&mut UProbe> {
        let program: &mut UProbe = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| Error::Other(format!("BPF object has no program {name}")))?
            .try_into()
            .map_err(|e| bpf_error(name, &e))?;
        if program.fd().is_err() {
            program
                .load()
                .map_err(|e| bpf_error(&format!("loading {name}"), &e))?;
        }
        Ok(program)
    }

    /// Attaches the per-component aggregation to hakmem's probe function, found at
    /// `offset` in `file`.
    pub fn attach_components(&mut self, file: &Path, offset: u64) -> Result<()> {
        let pid = self.pid;
        self.uprobe("hakmem_probe_event")?
            .attach(offset, file, UProbeScope::OneProcess(pid))
            .map_err(|e| bpf_error(&format!("attaching a uprobe to {}", file.display()), &e))?;
        Ok(())
    }

    /// Attaches the run gate (stops the process once at `offset` in `file`, its
    /// entry point) so the tracer can arm hakmem before the program runs.
    pub fn attach_gate(&mut self, file: &Path, offset: u64) -> Result<()> {
        let pid = self.pid;
        let link = self
            .uprobe("hakmem_run_gate")?
            .attach(offset, file, UProbeScope::OneProcess(pid))
            .map_err(|e| bpf_error(&format!("attaching the run gate to {}", file.display()), &e))?;
        self.gate = Some(link);
        Ok(())
    }

    /// Removes the run gate once it has done its job.
    pub fn detach_gate(&mut self) -> Result<()> {
        if let Some(link) = self.gate.take() {
            self.uprobe("hakmem_run_gate")?
                .detach(link)
                .map_err(|e| bpf_error("detaching the run gate", &e))?;
        }
        Ok(())
    }

    /// Attaches the syscall latency programs (raw_syscalls tracepoints).
    pub fn attach_syscalls(&mut self) -> Result<()> {
        for (name, event) in [("sys_enter", "sys_enter"), ("sys_exit", "sys_exit")] {
            let program: &mut TracePoint = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| Error::Other(format!("BPF object has no program {name}")))?
                .try_into()
                .map_err(|e| bpf_error(name, &e))?;
            program
                .load()
                .map_err(|e| bpf_error(&format!("loading {name}"), &e))?;
            program
                .attach("raw_syscalls", event)
                .map_err(|e| bpf_error(&format!("attaching raw_syscalls:{event}"), &e))?;
        }
        Ok(())
    }

    /// Reads and sums every map.
    pub fn read(&self) -> Result<KernelCounts> {
        let read_err = |e: aya::maps::MapError| bpf_error("reading a BPF map", &e);
        let map = |name: &str| {
            self.ebpf
                .map(name)
                .ok_or_else(|| Error::Other(format!("BPF object has no map {name}")))
        };

        let components: PerCpuArray<_, ComponentStats> =
            PerCpuArray::try_from(map("component_stats")?).map_err(read_err)?;
        let mut out = KernelCounts {
            components: Vec::with_capacity(MAX_COMPONENTS),
            syscalls: Vec::new(),
            misc: Vec::new(),
        };
        for values in components.iter() {
            let mut total = ComponentStats::default();
            for v in values.map_err(read_err)?.iter() {
                total.calls += v.calls;
                total.sum_cycles += v.sum_cycles;
                total.max_cycles = total.max_cycles.max(v.max_cycles);
                total.sum_arg += v.sum_arg;
                total.nonzero_arg += v.nonzero_arg;
                add_hist(&mut total.hist, &v.hist);
            }
            out.components.push(total);
        }

        let syscalls: PerCpuArray<_, SyscallStats> =
            PerCpuArray::try_from(map("syscall_stats")?).map_err(read_err)?;
        for values in syscalls.iter().take(SYSCALLS.len()) {
            let mut total = SyscallStats::default();
            for v in values.map_err(read_err)?.iter() {
                total.count += v.count;
                total.sum_ns += v.sum_ns;
                total.max_ns = total.max_ns.max(v.max_ns);
                total.failed += v.failed;
                total.sum_bytes += v.sum_bytes;
                add_hist(&mut total.hist, &v.hist);
            }
            out.syscalls.push(total);
        }

        let misc: PerCpuArray<_, u64> = PerCpuArray::try_from(map("misc")?).map_err(read_err)?;
        for values in misc.iter().take(MISC_COUNTERS.len()) {
            out.misc.push(values.map_err(read_err)?.iter().sum());
        }
        Ok(out)
    }
}

fn add_hist(total: &mut [u64; HIST_BUCKETS], cpu: &[u64; HIST_BUCKETS]) {
    for (t, c) in total.iter_mut().zip(cpu) {
        *t += c;
    }
}
