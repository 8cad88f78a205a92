//! The kernel side of a trace: loads hakmem-ebpf's programs, keeps the set of
//! traced processes, attaches the programs, and reads their maps.

use crate::error::{Error, Result};
use aya::maps::{HashMap as BpfHashMap, PerCpuArray};
use aya::programs::uprobe::UProbeScope;
use aya::programs::{RawTracePoint, UProbe};
use aya::{Ebpf, EbpfLoader};
use hakmem_ebpf::layout::{HIST_BUCKETS, MISC_COUNTERS, SYSCALLS};
use hakmem_ebpf::{ComponentStats, ProcessTotals, SyscallStats, TracedProcess};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;

/// Everything the programs aggregated so far.
#[derive(Clone, Debug)]
pub struct KernelCounts {
    /// Component totals of every traced process (filled by the session from
    /// the processes' records and `finals`), indexed by component id.
    pub components: Vec<ComponentStats>,
    /// Indexed like `hakmem_ebpf::layout::SYSCALLS`, summed over the CPUs.
    pub syscalls: Vec<SyscallStats>,
    /// Indexed like `hakmem_ebpf::layout::MISC_COUNTERS`.
    pub misc: Vec<u64>,
    /// The traced set, by tgid.
    pub processes: BTreeMap<u32, TracedProcess>,
    /// Totals hakmem handed over at exit, by tgid.
    pub finals: BTreeMap<u32, ProcessTotals>,
}

/// The loaded programs of one trace.
pub struct Probes {
    ebpf: Ebpf,
    /// The syscall programs are attached (`--kernel-syscalls`).
    syscalls: bool,
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
    /// Loads the programs (nothing is attached, nothing is traced yet). With
    /// `follow`, children of traced processes join the traced set.
    pub fn load(follow: bool) -> Result<Probes> {
        if !Path::new("/sys/bus/event_source/devices/uprobe").exists() {
            return Err(Error::Kernel(
                "this kernel has no uprobes (CONFIG_UPROBE_EVENTS)".into(),
            ));
        }
        let follow = u32::from(follow);
        let ebpf = EbpfLoader::new()
            .override_global("follow", &follow, true)
            .load(hakmem_ebpf::BPF_OBJECT)
            .map_err(|e| bpf_error("loading the BPF programs", &e))?;
        Ok(Probes {
            ebpf,
            syscalls: false,
        })
    }

    /// Adds process `pid` to the traced set.
    pub fn watch(&mut self, pid: u32) -> Result<()> {
        let mut traced: BpfHashMap<_, u32, TracedProcess> = BpfHashMap::try_from(
            self.ebpf
                .map_mut("traced")
                .ok_or_else(|| Error::Other("BPF object has no map traced".into()))?,
        )
        .map_err(|e| bpf_error("the traced map", &e))?;
        let mut entry = TracedProcess::default();
        let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
        let mut bytes = [0u8; 16];
        for (b, c) in bytes.iter_mut().zip(comm.iter().take(15)) {
            if *c != b'\n' {
                *b = *c;
            }
        }
        entry.comm = [
            u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes")),
            u64::from_ne_bytes(bytes[8..].try_into().expect("8 bytes")),
        ];
        traced
            .insert(pid, entry, 0)
            .map_err(|e| bpf_error("adding a process to the traced set", &e))
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

    /// Attaches the exit probe to hakmem's `hakmem_probe_final`, at `offset` in
    /// `file`: in process `pid` only, or (None) in every process that maps the
    /// file, the `traced` set doing the filtering.
    pub fn attach_final(&mut self, file: &Path, offset: u64, pid: Option<u32>) -> Result<()> {
        let scope = match pid.and_then(NonZeroU32::new) {
            Some(pid) => UProbeScope::OneProcess(pid),
            None => UProbeScope::AllProcesses,
        };
        self.uprobe("hakmem_probe_final")?
            .attach(offset, file, scope)
            .map_err(|e| bpf_error(&format!("attaching a uprobe to {}", file.display()), &e))?;
        Ok(())
    }

    fn raw_tracepoint(&mut self, program: &str, event: &str) -> Result<()> {
        let p: &mut RawTracePoint = self
            .ebpf
            .program_mut(program)
            .ok_or_else(|| Error::Other(format!("BPF object has no program {program}")))?
            .try_into()
            .map_err(|e| bpf_error(program, &e))?;
        p.load()
            .map_err(|e| bpf_error(&format!("loading {program}"), &e))?;
        p.attach(event)
            .map_err(|e| bpf_error(&format!("attaching raw tracepoint {event}"), &e))?;
        Ok(())
    }

    /// Attaches the syscall latency programs: raw tracepoints, opened by name
    /// through bpf(2), so they need no tracefs mount.
    pub fn attach_syscalls(&mut self) -> Result<()> {
        self.raw_tracepoint("sys_enter", "sys_enter")?;
        self.raw_tracepoint("sys_exit", "sys_exit")?;
        self.syscalls = true;
        Ok(())
    }

    /// True once [`Probes::attach_syscalls`] succeeded: the kernel's syscall counts mean something.
    pub fn counts_syscalls(&self) -> bool {
        self.syscalls
    }

    /// Attaches the process-lifetime programs (fork, exec, exit) that keep the
    /// traced set.
    pub fn attach_lifetimes(&mut self) -> Result<()> {
        self.raw_tracepoint("follow_fork", "sched_process_fork")?;
        self.raw_tracepoint("follow_exec", "sched_process_exec")?;
        self.raw_tracepoint("follow_exit", "sched_process_exit")
    }

    /// Reads the kernel's maps (components are left empty: see `KernelCounts`).
    pub fn read(&self) -> Result<KernelCounts> {
        let read_err = |e: aya::maps::MapError| bpf_error("reading a BPF map", &e);
        let map = |name: &str| {
            self.ebpf
                .map(name)
                .ok_or_else(|| Error::Other(format!("BPF object has no map {name}")))
        };
        let mut out = KernelCounts {
            components: Vec::new(),
            syscalls: Vec::new(),
            misc: Vec::new(),
            processes: BTreeMap::new(),
            finals: BTreeMap::new(),
        };

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

        let traced: BpfHashMap<_, u32, TracedProcess> =
            BpfHashMap::try_from(map("traced")?).map_err(read_err)?;
        for item in traced.iter() {
            let (pid, p) = item.map_err(read_err)?;
            out.processes.insert(pid, p);
        }
        let finals: BpfHashMap<_, u32, ProcessTotals> =
            BpfHashMap::try_from(map("finals")?).map_err(read_err)?;
        for item in finals.iter() {
            let (pid, t) = item.map_err(read_err)?;
            out.finals.insert(pid, t);
        }
        Ok(out)
    }
}

/// Adds one log2 histogram into another.
pub fn add_hist(total: &mut [u64; HIST_BUCKETS], more: &[u64; HIST_BUCKETS]) {
    for (t, c) in total.iter_mut().zip(more) {
        *t += c;
    }
}

/// Adds `more` into `total`, component by component.
pub fn add_components(total: &mut [ComponentStats], more: &[ComponentStats]) {
    for (t, v) in total.iter_mut().zip(more) {
        t.calls += v.calls;
        t.timed += v.timed;
        t.sum_cycles += v.sum_cycles;
        t.max_cycles = t.max_cycles.max(v.max_cycles);
        t.sum_arg += v.sum_arg;
        t.nonzero_arg += v.nonzero_arg;
        add_hist(&mut t.hist, &v.hist);
    }
}

/// `now - before`, component by component (counters only grow; the max is
/// kept as it is, the largest seen since the process started).
pub fn sub_components(now: &mut [ComponentStats], before: &[ComponentStats]) {
    for (n, b) in now.iter_mut().zip(before) {
        n.calls = n.calls.saturating_sub(b.calls);
        n.timed = n.timed.saturating_sub(b.timed);
        n.sum_cycles = n.sum_cycles.saturating_sub(b.sum_cycles);
        n.sum_arg = n.sum_arg.saturating_sub(b.sum_arg);
        n.nonzero_arg = n.nonzero_arg.saturating_sub(b.nonzero_arg);
        for (x, y) in n.hist.iter_mut().zip(&b.hist) {
            *x = x.saturating_sub(*y);
        }
    }
}
