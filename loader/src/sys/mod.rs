//! The only place in the loader that makes raw system calls.
//!
//! Everything above this module works with typed handles; the `unsafe` blocks and `libc` calls
//! stay here, small and commented, so they can be audited in one sitting.

pub mod bpf;
pub mod fs;
pub mod netns;
pub mod poll;
pub mod signal;
pub mod socket;
