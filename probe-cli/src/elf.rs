//! What probe-cli needs from an ELF file: where hakmem's probe symbols and the entry point are.

use object::{Object, ObjectSegment, ObjectSymbol};
use std::path::Path;

/// The symbol hakmem's tracer flag lives at (see `hakmem::probe`).
pub const TRACE_FLAG: &str = "hakmem_trace_enabled";
/// The nop5 function hakmem reports component durations to.
pub const PROBE_FUNCTION: &str = "hakmem_probe_event";

/// Addresses in one ELF file, before any load bias.
#[derive(Clone, Debug)]
pub struct ElfInfo {
    /// `hakmem_trace_enabled`'s virtual address, if the file has hakmem.
    pub trace_flag: Option<u64>,
    /// `hakmem_probe_event`'s file offset (what a uprobe attaches to), if present.
    pub probe_offset: Option<u64>,
    /// The entry point's file offset, if the file has an entry point.
    pub entry_offset: Option<u64>,
    /// The lowest loadable virtual address, page aligned: where the mapping at file
    /// offset 0 sits before the load bias.
    pub base_vaddr: u64,
}

impl ElfInfo {
    /// True when the file carries both of hakmem's probe symbols.
    pub fn has_hakmem(&self) -> bool {
        self.trace_flag.is_some() && self.probe_offset.is_some()
    }
}

/// Reads `path` and finds the addresses probe-cli needs; one-line error text.
pub fn inspect(path: &Path) -> Result<ElfInfo, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = object::File::parse(&*data)
        .map_err(|e| format!("{}: not an ELF file ({e})", path.display()))?;

    // .dynsym has what a shared object exports; .symtab (if not stripped) has the rest.
    let find = |name: &str| {
        file.dynamic_symbols()
            .chain(file.symbols())
            .find(|s| s.name() == Ok(name) && !s.is_undefined())
            .map(|s| s.address())
    };
    let file_offset = |vaddr: u64| {
        file.segments().find_map(|seg| {
            let (offset, size) = seg.file_range();
            (vaddr >= seg.address() && vaddr < seg.address() + size)
                .then(|| vaddr - seg.address() + offset)
        })
    };
    let base_vaddr = file.segments().map(|s| s.address()).min().unwrap_or(0) & !0xfff;
    let entry = file.entry();
    Ok(ElfInfo {
        trace_flag: find(TRACE_FLAG),
        probe_offset: find(PROBE_FUNCTION).and_then(file_offset),
        entry_offset: (entry != 0).then(|| file_offset(entry)).flatten(),
        base_vaddr,
    })
}
