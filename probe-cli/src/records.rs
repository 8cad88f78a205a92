//! hakmem's own counts, read from a live process's memory: the per-thread
//! records of `hakmem::probe`, summed. Counters only grow, so a read at any
//! moment is an exact total up to that moment (each counter is one aligned
//! word the owning thread stores whole), and a trace reports the difference
//! from the read it made when it attached.

use crate::error::{Error, Result};
use crate::probes::add_components;
use crate::target::Target;
use hakmem_ebpf::layout::MAX_COMPONENTS;
use hakmem_ebpf::{ComponentStats, ProcessTotals};

/// Records a process can have (`hakmem::probe::MAX_RECORDS`).
const MAX_RECORDS: usize = hakmem::probe::MAX_RECORDS;

/// The sum of every record of `target`'s hakmem, now.
pub fn read_totals(target: &Target) -> Result<ProcessTotals> {
    let (Some(records), Some(used)) = (target.elf.records, target.elf.records_used) else {
        return Err(Error::NoHakmem(format!(
            "process {} has a hakmem without per-thread records (an older build)",
            target.pid
        )));
    };
    let used = (target.read_u32(used)? as usize).min(MAX_RECORDS);
    let size = std::mem::size_of::<ProcessTotals>();
    let mut bytes = vec![0u8; used * size];
    target.read(records, &mut bytes)?;
    let mut total = ProcessTotals::default();
    for chunk in bytes.chunks_exact(size) {
        // SAFETY: ProcessTotals is plain integers (any bytes are a value), and
        // read_unaligned copes with the Vec's alignment.
        let record: ProcessTotals = unsafe { std::ptr::read_unaligned(chunk.as_ptr().cast()) };
        add_components(&mut total.components, &record.components);
    }
    Ok(total)
}

/// An empty set of totals.
pub fn zero() -> Vec<ComponentStats> {
    vec![ComponentStats::default(); MAX_COMPONENTS]
}
