//! The sluice loader: it loads bundles into the kernel, swaps generations and runs the CLI.
//! It never parses policy text; the bundle is its one contract with the compiler.
//!
//! `unsafe` is denied everywhere but in [`sys`], where every system call is wrapped in a
//! safe function that checks what the kernel will read and write.

#![deny(unsafe_code)]

pub mod attach;
pub mod cli;
pub mod conformance;
pub mod generation;
pub mod load;
pub mod pin;
#[allow(unsafe_code)]
pub mod sys;
pub mod topology;
pub mod trace;
