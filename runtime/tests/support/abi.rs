//! WAT text of test policy modules with the v1 ABI, shared by the runtime's tests and the
//! loader's CLI tests (which include this file with `#[path]`; it is not a crate module).
#![allow(dead_code)]

/// A module with the full v1 ABI whose `sluice_generate` body is `generate`, plus extra
/// top-level fields first (`extra`: imports, data segments, helper functions).
pub fn abi_module_wat(generate: &str, extra: &str) -> String {
    format!(
        r#"(module
  {extra}
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  (func (export "sluice_alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (local.get $p) (local.get $len)))
    (drop (memory.grow (i32.shr_u (i32.add (local.get $len) (i32.const 65535)) (i32.const 16))))
    (local.get $p))
  (func $generate (export "sluice_generate") (param $ptr i32) (param $len i32) (result i64)
    {generate}))"#
    )
}

/// A module whose `sluice_generate` returns the JSON text `json` from a data segment.
pub fn returning_wat(json: &str) -> String {
    let escaped = json.replace('\\', "\\\\").replace('"', "\\\"");
    abi_module_wat(
        &format!(
            "(i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {}))",
            json.len()
        ),
        &format!(r#"(data (i32.const 16) "{escaped}")"#),
    )
}
