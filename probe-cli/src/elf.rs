//! What probe-cli needs from an ELF file: where hakmem's probe symbols are.

use object::{Object, ObjectSegment, ObjectSymbol};
use std::path::Path;

/// The symbol hakmem's tracer flag lives at (see `hakmem::probe`).
pub const TRACE_FLAG: &str = "hakmem_trace_enabled";
/// The pids of the attached tracers (see `hakmem::probe`; absent in older builds).
pub const TRACER_SLOTS: &str = "hakmem_tracers";
/// The function hakmem calls once at exit with its totals (the exit probe).
pub const PROBE_FUNCTION: &str = "hakmem_probe_final";
/// The per-thread records (see `hakmem::probe`).
pub const RECORDS: &str = "hakmem_records";
/// The per-thread grants of the fast path (see `hakmem::probe`; absent in
/// older builds, whose records count every call).
pub const GRANTS: &str = "hakmem_grants";
/// How many records are in use.
pub const RECORDS_USED: &str = "hakmem_records_used";
/// The sampling period of the timed operations.
pub const SAMPLE_PERIOD: &str = "hakmem_sample_period";
/// Target TSC cycles between two timed operations of a thread (0: fixed period).
pub const SAMPLE_INTERVAL: &str = "hakmem_sample_interval";
/// Non-zero: forked children keep tracing.
pub const TRACE_FOLLOW: &str = "hakmem_trace_follow";
/// Each large-block size band's evolution phase and strategy (see
/// `hakmem::large::evolution`; absent in older builds).
pub const EVOLUTION_BANDS: &str = "hakmem_evolution_bands";

/// Addresses in one ELF file, before any load bias.
#[derive(Clone, Debug)]
pub struct ElfInfo {
    /// `hakmem_trace_enabled`'s virtual address, if the file has hakmem.
    pub trace_flag: Option<u64>,
    /// `hakmem_tracers`' virtual address, if the file has it.
    pub tracer_slots: Option<u64>,
    /// `hakmem_probe_final`'s file offset (what a uprobe attaches to), if present.
    pub probe_offset: Option<u64>,
    /// `hakmem_records`' virtual address.
    pub records: Option<u64>,
    /// `hakmem_records_used`' virtual address.
    pub records_used: Option<u64>,
    /// `hakmem_records`' size in bytes, where its symbol says.
    pub records_bytes: Option<u64>,
    /// `hakmem_grants`' virtual address.
    pub grants: Option<u64>,
    /// `hakmem_sample_period`'s virtual address.
    pub sample_period: Option<u64>,
    /// `hakmem_sample_interval`'s virtual address (absent in older builds).
    pub sample_interval: Option<u64>,
    /// `hakmem_trace_follow`'s virtual address.
    pub trace_follow: Option<u64>,
    /// `hakmem_evolution_bands`' virtual address.
    pub evolution_bands: Option<u64>,
    /// The lowest loadable virtual address, page aligned: where the mapping at file
    /// offset 0 sits before the load bias.
    pub base_vaddr: u64,
}

impl ElfInfo {
    /// True when the file carries hakmem's probe symbols (of this version:
    /// the flag, the records laid out as this probe-cli reads them, and the
    /// exit probe).
    pub fn has_hakmem(&self) -> bool {
        self.trace_flag.is_some()
            && self.probe_offset.is_some()
            && self.records.is_some()
            && self.records_used.is_some()
            && self.records_layout_matches()
    }

    /// False when the records hold another number of components than this
    /// probe-cli reads (a hakmem of another build: reading it would mix
    /// slots up).
    pub fn records_layout_matches(&self) -> bool {
        let ours = hakmem::probe::MAX_RECORDS * std::mem::size_of::<hakmem_ebpf::ProcessTotals>();
        self.records_bytes.is_none_or(|n| n == ours as u64)
    }
}

/// Reads `path` and finds the addresses probe-cli needs; one-line error text.
pub fn inspect(path: &Path) -> Result<ElfInfo, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = object::File::parse(&*data)
        .map_err(|e| format!("{}: not an ELF file ({e})", path.display()))?;

    // .dynsym has what a shared object exports; .symtab (if not stripped) has the rest.
    let symbol = |name: &str| {
        file.dynamic_symbols()
            .chain(file.symbols())
            .find(|s| s.name() == Ok(name) && !s.is_undefined())
    };
    let find = |name: &str| symbol(name).map(|s| s.address());
    let file_offset = |vaddr: u64| {
        file.segments().find_map(|seg| {
            let (offset, size) = seg.file_range();
            (vaddr >= seg.address() && vaddr < seg.address() + size)
                .then(|| vaddr - seg.address() + offset)
        })
    };
    let base_vaddr = file.segments().map(|s| s.address()).min().unwrap_or(0) & !0xfff;
    Ok(ElfInfo {
        trace_flag: find(TRACE_FLAG),
        tracer_slots: find(TRACER_SLOTS),
        probe_offset: find(PROBE_FUNCTION).and_then(file_offset),
        records: find(RECORDS),
        records_used: find(RECORDS_USED),
        records_bytes: symbol(RECORDS).map(|s| s.size()).filter(|&n| n > 0),
        grants: find(GRANTS),
        sample_period: find(SAMPLE_PERIOD),
        sample_interval: find(SAMPLE_INTERVAL),
        trace_follow: find(TRACE_FOLLOW),
        evolution_bands: find(EVOLUTION_BANDS),
        base_vaddr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hakmem_whose_records_differ_is_not_this_probe_clis() {
        let exe = std::env::current_exe().unwrap();
        let mut info = inspect(&exe).unwrap();
        info.trace_flag = Some(1);
        info.probe_offset = Some(1);
        info.records = Some(1);
        info.records_used = Some(1);
        let ours = hakmem::probe::MAX_RECORDS * std::mem::size_of::<hakmem_ebpf::ProcessTotals>();
        for (bytes, ok) in [
            (None, true),
            (Some(ours as u64), true),
            (Some(16 * 560 * 256), false),
        ] {
            info.records_bytes = bytes;
            assert_eq!(info.has_hakmem(), ok, "records of {bytes:?} bytes");
        }
    }
}
