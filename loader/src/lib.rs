//! The sluice kernel library: it loads bundles into the kernel and swaps generations.
//!
//! It never parses policy text and never runs Wasm: it depends on the bundle crate, the one
//! contract with the compiler, and Cargo keeps it that way. `sys` holds every raw system call;
//! the other modules are typed wrappers over kernel objects, as in aya.
//!
//! `unsafe` is denied everywhere but in [`sys`], where every system call is wrapped in a
//! safe function that checks what the kernel will read and write.

#![deny(unsafe_code)]

pub mod attach;
pub mod generation;
pub mod load;
pub mod nat;
pub mod netlink;
pub mod node;
pub mod pin;
#[allow(unsafe_code)]
pub mod sys;
pub mod trace;
pub mod verdict_run;
