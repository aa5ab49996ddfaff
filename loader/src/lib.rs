//! The sluice loader: it loads bundles into the kernel, swaps generations and runs the CLI.
//! It never parses policy text; the bundle is its one contract with the compiler.

pub mod attach;
pub mod cli;
pub mod conformance;
pub mod generation;
pub mod load;
pub mod netlink;
pub mod pin;
pub mod sys;
pub mod topology;
pub mod trace;
