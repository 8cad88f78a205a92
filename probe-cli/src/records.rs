//! hakmem's own counts, read from a live process's memory: the per-thread
//! records of `hakmem::probe`, summed, plus the calls each thread took of
//! its grants (the fast path's counts). Counters only grow, so a read at any
//! moment is an exact total up to that moment (each counter is one aligned
//! word the owning thread stores whole; a grant's two words are read when
//! its sequence count says they belong together), and a trace reports the
//! difference from the read it made when it attached.

use crate::error::{Error, Result};
use crate::probes::add_components;
use crate::target::Target;
use hakmem::large::evolution;
use hakmem::probe;
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
    if let Some(grants) = target.elf.grants {
        for taken in read_grants(target, grants, used)? {
            for (n, components) in taken.into_iter().zip(probe::GRANTED) {
                for &c in components {
                    total.components[c as usize].calls += n;
                }
            }
        }
    }
    Ok(total)
}

/// Each size band's evolution word as `target` last published it
/// (`hakmem::large::evolution::hakmem_evolution_bands`; decode with
/// `evolution::published`), or None for a build without it or a failed read.
pub fn read_bands(target: &Target) -> Option<[u32; evolution::BANDS]> {
    let at = target.elf.evolution_bands?;
    let mut bytes = [0u8; 4 * evolution::BANDS];
    target.read(at, &mut bytes).ok()?;
    Some(std::array::from_fn(|b| {
        u32::from_ne_bytes(bytes[4 * b..4 * b + 4].try_into().expect("4 bytes"))
    }))
}

/// The calls taken of each grant of the first `used` slots at `grants`. A
/// slot's words are taken from a copy read between two reads of its
/// sequence counts that agree and are even (no change in between); a slot
/// being changed (a few stores at a thread's sample) is read again.
fn read_grants(target: &Target, grants: u64, used: usize) -> Result<Vec<[u64; probe::GRANT_OPS]>> {
    let size = std::mem::size_of::<probe::Grants>();
    let words_of = |bytes: &[u8], slot: usize| -> [u64; probe::GRANT_WORDS] {
        std::array::from_fn(|i| {
            let at = slot * size + i * 8;
            u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
        })
    };
    let mut reads = [
        vec![0u8; used * size],
        vec![0u8; used * size],
        vec![0u8; used * size],
    ];
    let mut taken = vec![None; used];
    for _ in 0..1000 {
        for r in &mut reads {
            target.read(grants, r)?;
        }
        for (slot, t) in taken.iter_mut().enumerate().filter(|(_, t)| t.is_none()) {
            let seq = |r: &[u8]| words_of(r, slot)[0];
            *t = probe::taken_in_copy(&words_of(&reads[1], slot), seq(&reads[0]), seq(&reads[2]));
        }
        if taken.iter().all(Option::is_some) {
            return Ok(taken.into_iter().flatten().collect());
        }
    }
    Err(Error::Other(format!(
        "process {}: a thread's grants kept changing while read",
        target.pid
    )))
}

/// An empty set of totals.
pub fn zero() -> Vec<ComponentStats> {
    vec![ComponentStats::default(); MAX_COMPONENTS]
}
