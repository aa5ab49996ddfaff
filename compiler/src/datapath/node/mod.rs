//! The node datapath: what moves packets between pods, nodes and the outside, generated in
//! the same compilation as the policy and flipped in the same generation.
//!
//! Kept apart from the per-endpoint policy programs (`from_ep`, `to_ep`), which it builds on:
//! [`wire`] decides what identity goes into a VXLAN packet and how a receiver maps it back.
//! `spec/datapath.md` ("Nodes") is the contract.

pub mod wire;
