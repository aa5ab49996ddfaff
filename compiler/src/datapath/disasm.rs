//! `sluice compile --emit asm`: an artifact as text, read back from its ELF bytes (so it
//! shows exactly what the bundle holds): a header naming the program, its hook and its maps,
//! then one line per instruction in bpftool's syntax.

use super::{MapScope, ProgramArtifact};
use crate::bpf::disasm::disasm_insns;
use crate::bpf::insn::decode_all;
use crate::bpf::{MapRef, MapReloc, MapType, Pinning};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmTextError {
    #[error("the artifact's object cannot be read: {0}")]
    Elf(String),
    #[error("the object has no section for program `{0}`")]
    NoProgram(String),
}

fn type_name(t: MapType) -> &'static str {
    match t {
        MapType::Hash => "hash",
        MapType::Array => "array",
        MapType::ProgArray => "prog_array",
        MapType::PerfEventArray => "perf_event_array",
        MapType::PercpuHash => "percpu_hash",
        MapType::PercpuArray => "percpu_array",
        MapType::LruHash => "lru_hash",
        MapType::LruPercpuHash => "lru_percpu_hash",
        MapType::LpmTrie => "lpm_trie",
        MapType::RingBuf => "ringbuf",
    }
}

/// The artifact's program as text.
pub fn emit_asm(artifact: &ProgramArtifact) -> Result<String, AsmTextError> {
    let file = object::File::parse(&*artifact.elf).map_err(|e| AsmTextError::Elf(e.to_string()))?;
    let section_name = format!("classifier/{}", artifact.name);
    let section = file
        .section_by_name(&section_name)
        .ok_or_else(|| AsmTextError::NoProgram(artifact.name.clone()))?;
    let data = section
        .data()
        .map_err(|e| AsmTextError::Elf(e.to_string()))?;
    let insns = decode_all(data).ok_or_else(|| AsmTextError::Elf("ragged program".into()))?;
    let mut relocs = Vec::new();
    for (offset, r) in section.relocations() {
        if let RelocationTarget::Symbol(sym) = r.target() {
            let sym = file
                .symbol_by_index(sym)
                .map_err(|e| AsmTextError::Elf(e.to_string()))?;
            let name = sym.name().map_err(|e| AsmTextError::Elf(e.to_string()))?;
            relocs.push(MapReloc {
                insn: offset as usize / 8,
                map: MapRef::new(name),
            });
        }
    }

    let mut out = String::new();
    let hook = format!("tcx {}", artifact.hook.as_str());
    let _ = writeln!(
        out,
        "; program {} ({hook}), {} instructions",
        artifact.name,
        insns.len()
    );
    for m in &artifact.maps {
        let scope = match m.scope {
            MapScope::Program => "per program",
            MapScope::Generation => "per generation",
            MapScope::Persistent => "persistent",
            MapScope::Node => "per generation, completed on the node",
        };
        let pinned = if m.def.pinning == Pinning::ByName {
            ", pinned by name"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "; map {} {} key {} value {} max {} ({scope}{pinned}): {} entries",
            m.name,
            type_name(m.def.ty),
            m.def.key_size,
            m.def.value_size,
            m.def.max_entries,
            m.entries.len()
        );
    }
    out.push_str(&disasm_insns(&insns, &relocs));
    Ok(out)
}
