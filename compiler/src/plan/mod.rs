//! Planning: from resolved policy to the tables code generation compiles.
//!
//! Resolution ([`crate::resolve`]) says which rules apply to each endpoint. Planning turns that
//! into what a packet can be decided on in the kernel:
//!
//! - [`classes`]: peer classes and the ipcache. Every remote address maps (longest prefix) to a
//!   class; two addresses share a class exactly when every rule treats them alike.
//! - [`table`]: per endpoint and direction, a decision table: for each class and protocol,
//!   sorted disjoint port intervals with their verdict and deciding rule. Tiers, priorities,
//!   `pass`, deny-wins and audit are all settled here, once, so every code shape generated from
//!   a table gives the same verdicts.

pub mod classes;
pub mod table;

pub use classes::{ClassId, Classes, IpcacheEntry};
pub use table::{DecisionTable, ProfileId, Proto, Segment, Verdict};
