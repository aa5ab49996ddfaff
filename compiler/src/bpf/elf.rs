//! The ELF relocatable writer: programs and map definitions in, an object aya loads out.
//!
//! The layout is the one aya 0.14 reads without BTF (see `spec/codegen.md`):
//! - one section per tc program, `classifier/<name>`, and one `xdp` section holding all
//!   XDP programs back to back (aya 0.14 reads `xdp/<x>` as an attach type); each program
//!   is one global `STT_FUNC` symbol named after it, at its offset in the section;
//! - a `license` section with `"GPL\0"`, which GPL-only helpers require;
//! - a legacy `maps` section: per map seven little-endian u32 (type, key size, value size,
//!   max entries, flags, 0, 0) and one global data symbol at its offset;
//! - an `R_BPF_64_64` relocation against the map's symbol on each `ld_imm64` map load.
//!
//! Output is deterministic: maps and programs are written in the order they were added,
//! and nothing depends on time or hashing.

use object::write::{Object, Relocation, Symbol, SymbolId, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags, SymbolKind,
    SymbolScope, elf,
};

use super::BpfError;
use super::asm::Program;

pub use sluice_bundle::map::{BPF_F_NO_PREALLOC, MapDef, MapType, Pinning};

/// The hook a program is built for; it decides the section prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgKind {
    /// tc/tcx (`BPF_PROG_TYPE_SCHED_CLS`), section `classifier/<name>`.
    Classifier,
    /// XDP, section `xdp` (shared by all XDP programs of the object).
    Xdp,
}

impl ProgKind {
    /// The ELF section a program of this kind named `name` goes in.
    pub fn section_name(self, name: &str) -> String {
        match self {
            ProgKind::Classifier => format!("classifier/{name}"),
            ProgKind::Xdp => "xdp".to_string(),
        }
    }
}

/// One object file's contents, built up and then written with [`ObjectBuilder::write`].
#[derive(Clone, Debug, Default)]
pub struct ObjectBuilder {
    maps: Vec<MapDef>,
    programs: Vec<(String, ProgKind, Program)>,
}

fn check_name(name: &str) -> Result<(), BpfError> {
    // The kernel keeps 15 bytes of object names; keep names plain C identifiers.
    let ok = !name.is_empty()
        && name.len() <= 15
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(BpfError::InvalidName(name.to_string()))
    }
}

impl ObjectBuilder {
    pub fn new() -> ObjectBuilder {
        ObjectBuilder::default()
    }

    pub fn map(&mut self, def: MapDef) -> Result<&mut Self, BpfError> {
        check_name(&def.name)?;
        if self.maps.iter().any(|m| m.name == def.name) {
            return Err(BpfError::DuplicateName(def.name));
        }
        self.maps.push(def);
        Ok(self)
    }

    pub fn program(
        &mut self,
        name: impl Into<String>,
        kind: ProgKind,
        prog: Program,
    ) -> Result<&mut Self, BpfError> {
        let name = name.into();
        check_name(&name)?;
        if self.programs.iter().any(|(n, _, _)| *n == name)
            || self.maps.iter().any(|m| m.name == name)
        {
            return Err(BpfError::DuplicateName(name));
        }
        self.programs.push((name, kind, prog));
        Ok(self)
    }

    /// Writes the ELF relocatable object.
    pub fn write(&self) -> Result<Vec<u8>, BpfError> {
        let mut obj = Object::new(BinaryFormat::Elf, Architecture::Bpf, Endianness::Little);

        let license = obj.add_section(Vec::new(), b"license".to_vec(), SectionKind::Data);
        obj.append_section_data(license, b"GPL\0", 1);

        let mut map_syms: Vec<(&str, SymbolId)> = Vec::new();
        if !self.maps.is_empty() {
            let maps = obj.add_section(Vec::new(), b"maps".to_vec(), SectionKind::Data);
            for def in &self.maps {
                let off = obj.append_section_data(maps, &def.encode(), 4);
                let sym = obj.add_symbol(Symbol {
                    name: def.name.as_bytes().to_vec(),
                    value: off,
                    size: 28,
                    kind: SymbolKind::Data,
                    scope: SymbolScope::Dynamic,
                    weak: false,
                    section: SymbolSection::Section(maps),
                    flags: SymbolFlags::None,
                });
                map_syms.push((&def.name, sym));
            }
        }

        // XDP programs share one `xdp` section (aya takes nothing after `xdp/` but an
        // attach type); each classifier gets its own section.
        let mut sections: Vec<(String, object::write::SectionId)> = Vec::new();
        for (name, kind, prog) in &self.programs {
            let section_name = kind.section_name(name);
            let sec = match sections.iter().find(|(n, _)| *n == section_name) {
                Some((_, id)) => *id,
                None => {
                    let id = obj.add_section(
                        Vec::new(),
                        section_name.clone().into_bytes(),
                        SectionKind::Text,
                    );
                    sections.push((section_name, id));
                    id
                }
            };
            let bytes = prog.bytes();
            let base = obj.append_section_data(sec, &bytes, 8);
            obj.add_symbol(Symbol {
                name: name.as_bytes().to_vec(),
                value: base,
                size: bytes.len() as u64,
                kind: SymbolKind::Text,
                scope: SymbolScope::Dynamic,
                weak: false,
                section: SymbolSection::Section(sec),
                flags: SymbolFlags::None,
            });
            for r in &prog.relocs {
                let sym = map_syms
                    .iter()
                    .find(|(n, _)| *n == r.map.name())
                    .map(|(_, s)| *s)
                    .ok_or_else(|| BpfError::UnknownMap {
                        map: r.map.name().to_string(),
                        program: name.clone(),
                    })?;
                obj.add_relocation(
                    sec,
                    Relocation {
                        offset: base + (r.insn * super::insn::Insn::SIZE) as u64,
                        symbol: sym,
                        addend: 0,
                        flags: RelocationFlags::Elf {
                            r_type: elf::R_BPF_64_64,
                        },
                    },
                )
                .map_err(|e| BpfError::Elf(e.to_string()))?;
            }
        }
        obj.write().map_err(|e| BpfError::Elf(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::insn::Reg::*;
    use crate::bpf::{Asm, Cond, Helper, MapRef};
    use object::read::{Object as _, ObjectSection as _, ObjectSymbol as _};

    fn lookup_prog(map: &str) -> Program {
        let mut a = Asm::new();
        let miss = a.label();
        a.st(crate::bpf::Size::W, R10, -4, 1)
            .mov64(R2, R10)
            .add64(R2, -4)
            .ld_map(R1, MapRef::new(map))
            .call(Helper::MapLookupElem)
            .jmp(Cond::Eq, R0, 0, miss)
            .ret(2)
            .bind(miss)
            .ret(0);
        a.finish().unwrap()
    }

    fn sample() -> ObjectBuilder {
        let mut b = ObjectBuilder::new();
        b.map(MapDef::new("ipcache", MapType::LpmTrie, 8, 4, 1024))
            .unwrap()
            .map(MapDef::new("policy", MapType::Hash, 4, 4, 16))
            .unwrap()
            .program("from_ep", ProgKind::Classifier, lookup_prog("policy"))
            .unwrap()
            .program("fast", ProgKind::Xdp, lookup_prog("ipcache"))
            .unwrap()
            .program("slow", ProgKind::Xdp, lookup_prog("ipcache"))
            .unwrap();
        b
    }

    #[test]
    fn map_def_record_layout() {
        let m = MapDef::new("t", MapType::LpmTrie, 8, 4, 1024);
        let b = m.encode();
        let words: Vec<u32> = b
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(words, [11, 8, 4, 1024, 1, 0, 0]);
        let pinned = MapDef::new("ct", MapType::LruHash, 16, 8, 64).pinned_by_name();
        assert_eq!(&pinned.encode()[24..], &1u32.to_le_bytes());
    }

    #[test]
    fn object_has_the_contract_layout() {
        let bytes = sample().write().unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        assert_eq!(file.architecture(), Architecture::Bpf);
        assert!(file.is_little_endian());
        let license = file.section_by_name("license").unwrap();
        assert_eq!(license.data().unwrap(), b"GPL\0");
        let maps = file.section_by_name("maps").unwrap();
        assert_eq!(maps.data().unwrap().len(), 56);

        let prog = file.section_by_name("classifier/from_ep").unwrap();
        assert_eq!(prog.kind(), SectionKind::Text);
        assert_eq!(prog.data().unwrap(), lookup_prog("policy").bytes());
        let relocs: Vec<_> = prog.relocations().collect();
        assert_eq!(relocs.len(), 1);
        let (off, rel) = &relocs[0];
        assert_eq!(*off, 3 * 8);
        assert_eq!(
            rel.flags(),
            RelocationFlags::Elf {
                r_type: elf::R_BPF_64_64
            }
        );
        let object::RelocationTarget::Symbol(si) = rel.target() else {
            panic!("relocation target {:?}", rel.target());
        };
        let sym = file.symbol_by_index(si).unwrap();
        assert_eq!(sym.name().unwrap(), "policy");
        assert_eq!(sym.address(), 28);
        assert_eq!(sym.kind(), SymbolKind::Data);
        assert!(sym.is_global());

        let xdp = file.section_by_name("xdp").unwrap();
        assert_eq!(xdp.size(), 2 * lookup_prog("ipcache").bytes().len() as u64);
        let slow = file.symbols().find(|s| s.name() == Ok("slow")).unwrap();
        assert_eq!(slow.address(), lookup_prog("ipcache").bytes().len() as u64);
        let offsets: Vec<u64> = xdp.relocations().map(|(o, _)| o).collect();
        assert_eq!(offsets, [24, 24 + slow.address()]);
        let func = file.symbols().find(|s| s.name() == Ok("from_ep")).unwrap();
        assert_eq!(func.kind(), SymbolKind::Text);
        assert!(func.is_global());
        assert_eq!(func.size(), prog.size());
    }

    #[test]
    fn output_is_deterministic() {
        assert_eq!(sample().write().unwrap(), sample().write().unwrap());
    }

    #[test]
    fn unknown_map_and_bad_names_are_errors() {
        let mut b = ObjectBuilder::new();
        b.program("p", ProgKind::Classifier, lookup_prog("nope"))
            .unwrap();
        assert!(matches!(
            b.write(),
            Err(BpfError::UnknownMap { map, program }) if map == "nope" && program == "p"
        ));
        let mut b = ObjectBuilder::new();
        assert!(matches!(
            b.program("bad/name", ProgKind::Xdp, Program::default()),
            Err(BpfError::InvalidName(_))
        ));
        b.map(MapDef::new("m", MapType::Array, 4, 4, 1)).unwrap();
        assert!(matches!(
            b.map(MapDef::new("m", MapType::Hash, 4, 4, 1)),
            Err(BpfError::DuplicateName(_))
        ));
    }
}
