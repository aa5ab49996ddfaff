//! The only place in the loader that makes raw system calls.
//!
//! Everything above this module works with typed handles; the `unsafe` blocks and `libc` calls
//! stay here, small and commented, so they can be audited in one sitting (the crate denies
//! `unsafe` everywhere else). Calls that nix or std already wrap safely (poll, statfs, mount,
//! flock, signals) go through them instead.

pub mod bpf;
pub mod clock;
pub mod fs;
pub mod netns;
pub mod poll;
pub mod signal;
pub mod socket;
