//! Audit: re-verify every stored segment and the replica against them, export and check proofs.

pub mod cli;
