//! The sluice policy language (`*.sluice`), specified in `spec/language.md`.
//!
//! [`parse`] turns one file into a [`Document`](crate::source::ast::Document) with spans on every
//! node; [`print`] writes a document back in canonical form (what `sluice fmt` shows), and
//! [`format`] does that for text while keeping comments. [`load_with_includes`] reads a file and
//! everything it includes.

mod include;
mod lex;
mod parser;
mod printer;

pub use include::load_with_includes;
pub(crate) use parser::on_trap_word;
pub use parser::parse;
pub use printer::{format, print};

#[cfg(test)]
mod tests;
