//! ABI v1 glue (`spec/wasm-abi.md`): what [`export_generator!`](crate::export_generator)
//! expands to calls of. Authors do not call these directly.

use crate::doc::Document;
use crate::inventory::Inventory;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use serde::Deserialize;

pub const ABI_VERSION: i32 = 1;

/// What a generator receives: `{"abi": 1, "inventory": {...}, "params": {...}}`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Input {
    pub abi: i32,
    #[serde(default)]
    pub inventory: Inventory,
    /// Free-form parameters (`sluice compile --wasm-params FILE`); `{}` when none.
    #[serde(default)]
    pub params: serde_json::Value,
}

impl Input {
    /// The parameters as the generator's own type. A missing `params` reads as `{}`, so a
    /// struct whose fields all have defaults always succeeds then.
    pub fn params<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        let v = match &self.params {
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            v => v.clone(),
        };
        serde_json::from_value(v).map_err(|e| alloc::format!("invalid params: {e}"))
    }
}

/// Runs a generator on the input's JSON text and returns the output's JSON text: the
/// document, or `{"error": "..."}`. Public so generators can be tested on the host.
pub fn run_json(input: &[u8], generator: fn(&Input) -> Result<Document, String>) -> Vec<u8> {
    let result = match serde_json::from_slice::<Input>(input) {
        Ok(input) if input.abi != ABI_VERSION => Err(alloc::format!(
            "input is ABI version {}, this module speaks {ABI_VERSION}",
            input.abi
        )),
        Ok(input) => generator(&input),
        Err(e) => Err(alloc::format!("invalid input: {e}")),
    };
    let json = match result {
        Ok(doc) => serde_json::to_vec(&doc),
        Err(message) => serde_json::to_vec(&serde_json::json!({ "error": message })),
    };
    // Serializing these types cannot fail (no maps with non-string keys, no I/O).
    json.unwrap_or_else(|_| br#"{"error":"serialization failed"}"#.to_vec())
}

/// `sluice_alloc`: a block for the host to write the input into. Leaked on purpose: the
/// instance is discarded after one call.
pub fn alloc_input(len: i32) -> i32 {
    let Ok(len) = usize::try_from(len) else {
        return 0;
    };
    let block: Box<[u8]> = alloc::vec![0u8; len.max(1)].into_boxed_slice();
    Box::leak(block).as_mut_ptr() as usize as i32
}

/// `sluice_generate`: reads the input, runs the generator, returns `(ptr << 32) | len`.
///
/// # Safety
/// `ptr..ptr+len` must be the block `alloc_input(len)` returned, filled by the host.
pub unsafe fn generate(
    ptr: i32,
    len: i32,
    generator: fn(&Input) -> Result<Document, String>,
) -> i64 {
    // SAFETY: per this function's contract.
    let input = unsafe { core::slice::from_raw_parts(ptr as usize as *const u8, len as usize) };
    let out = Box::leak(run_json(input, generator).into_boxed_slice());
    (((out.as_ptr() as usize as u64) << 32) | out.len() as u64) as i64
}

/// Copies a string into a fixed-size array at compile time, for the metadata sections.
pub const fn bytes_of<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = b[i];
        i += 1;
    }
    out
}

/// Exports ABI v1 for `generator: fn(&Input) -> Result<Document, String>`, and records the
/// crate's name and version (or the ones given) in the `sluice.name` / `sluice.version`
/// custom sections that `sluice module inspect` shows.
///
/// ```ignore
/// sluice_wasm_sdk::export_generator!(generate);
/// sluice_wasm_sdk::export_generator!(generate, name = "pci-isolation", version = "2.1.0");
/// ```
#[macro_export]
macro_rules! export_generator {
    ($generator:path) => {
        $crate::export_generator!(
            $generator,
            name = env!("CARGO_PKG_NAME"),
            version = env!("CARGO_PKG_VERSION")
        );
    };
    ($generator:path, name = $name:expr, version = $version:expr) => {
        const _: () = {
            const NAME: &str = $name;
            const VERSION: &str = $version;
            #[cfg(target_arch = "wasm32")]
            #[used]
            #[unsafe(link_section = "sluice.name")]
            static SLUICE_NAME: [u8; NAME.len()] = $crate::abi::bytes_of(NAME);
            #[cfg(target_arch = "wasm32")]
            #[used]
            #[unsafe(link_section = "sluice.version")]
            static SLUICE_VERSION: [u8; VERSION.len()] = $crate::abi::bytes_of(VERSION);

            #[unsafe(no_mangle)]
            pub extern "C" fn sluice_abi_version() -> i32 {
                $crate::abi::ABI_VERSION
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn sluice_alloc(len: i32) -> i32 {
                $crate::abi::alloc_input(len)
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn sluice_generate(ptr: i32, len: i32) -> i64 {
                // SAFETY: the host passes back the block from `sluice_alloc`, filled.
                unsafe { $crate::abi::generate(ptr, len, $generator) }
            }
        };
    };
}
