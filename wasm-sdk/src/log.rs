//! `sluice.log`: lines the host shows with `-v` and keeps with the module's output. On other
//! targets (host-side tests of a generator) logging does nothing.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "sluice")]
unsafe extern "C" {
    #[link_name = "log"]
    fn sluice_log(level: i32, ptr: *const u8, len: usize);
}

pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the host reads `len` bytes at `ptr`, which `message` owns for this call.
    unsafe {
        sluice_log(level as i32, message.as_ptr(), message.len())
    };
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

pub fn error(message: &str) {
    log(Level::Error, message)
}
pub fn warn(message: &str) {
    log(Level::Warn, message)
}
pub fn info(message: &str) {
    log(Level::Info, message)
}
pub fn debug(message: &str) {
    log(Level::Debug, message)
}
