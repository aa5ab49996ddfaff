//! What `sluice module inspect` shows: digest, declared name and version (custom sections),
//! imports, exports, and the ABI version the module reports when asked.

use crate::abi;
use crate::digest::ModuleId;
use crate::engine::{Runtime, extern_type_string};
use crate::error::{ErrorKind, RuntimeError};
use crate::limits::Limits;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportInfo {
    pub name: String,
    /// In WAT notation, e.g. `(func (param i32) (result i32))`.
    pub ty: String,
}

#[derive(Debug)]
pub struct ModuleInfo {
    pub id: ModuleId,
    pub size: usize,
    /// From the `sluice.name` custom section.
    pub name: Option<String>,
    /// From the `sluice.version` custom section.
    pub version: Option<String>,
    pub imports: Vec<ExportInfo>,
    pub exports: Vec<ExportInfo>,
    /// What `sluice_abi_version()` returned, or why it could not be called.
    pub abi_version: Result<i32, RuntimeError>,
}

impl Runtime {
    /// Reads a module's metadata. Fails only when the bytes are not a valid module; a module
    /// that is valid Wasm but breaks the ABI still gets its exports listed.
    pub fn inspect(&self, bytes: &[u8], name: &str) -> Result<ModuleInfo, RuntimeError> {
        let compiled = self.compile(bytes, name)?;
        let (declared_name, declared_version) = custom_sections(bytes)
            .map_err(|message| RuntimeError::new(&compiled.id, ErrorKind::Invalid { message }))?;
        let module = compiled.wasmtime_module();
        let imports = module
            .imports()
            .map(|i| ExportInfo {
                name: format!("{}.{}", i.module(), i.name()),
                ty: extern_type_string(&i.ty()),
            })
            .collect();
        let exports = module
            .exports()
            .map(|e| ExportInfo {
                name: e.name().to_string(),
                ty: extern_type_string(&e.ty()),
            })
            .collect();
        let limits = Limits::default();
        Ok(ModuleInfo {
            abi_version: self.abi_version(&compiled, &limits),
            id: compiled.id,
            size: bytes.len(),
            name: declared_name,
            version: declared_version,
            imports,
            exports,
        })
    }
}

type Declared = (Option<String>, Option<String>);

fn custom_sections(bytes: &[u8]) -> Result<Declared, String> {
    let (mut name, mut version) = (None, None);
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| e.to_string())?;
        if let wasmparser::Payload::CustomSection(section) = payload {
            let text = || {
                String::from_utf8(section.data().to_vec())
                    .map_err(|_| format!("custom section `{}` is not UTF-8", section.name()))
            };
            match section.name() {
                abi::SECTION_NAME => name = Some(text()?),
                abi::SECTION_VERSION => version = Some(text()?),
                _ => {}
            }
        }
    }
    Ok((name, version))
}
