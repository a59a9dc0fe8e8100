//! Audit: prove that every point in the replica was signed on the OT side, and let third parties
//! check single points without the replica.
//!
//! `audit verify` ([`verify::verify_replica`]) runs in three parts, each in its own modules:
//!
//! - **the walk** of the audit log (`walk`): every stored segment re-verified on its own
//!   (signature under a trusted key valid at its sealing time, payload hash, header against
//!   payload) and the hash chain of every `(sender, epoch)`;
//! - **the comparisons**: the stored sequences against the receiver's tracker (`streams`), the
//!   signed beacons against the epochs and heads they name (`epochs`), every point of the replica
//!   against the points the signed segments say it must hold, last write wins (`points`), and
//!   every stored chunk against what its segment wrote (`chunks`);
//! - **the report** ([`report`], its findings in [`findings`]): totals, epochs, gaps and findings,
//!   as a human summary and as JSON.
//!
//! `signed` holds what the walk hands the comparisons, `options` how verify runs, `parallel` how
//! the work is spread over threads, `ranges` the sequence-range arithmetic. [`proof`] exports the segments and chain links behind some points
//! of one series into a self-contained binary proof file (`docs/proof-format.md`); the file's codec
//! and its offline check, which needs only the sender's public keys, are `diode_common::proof`.
//! [`cli`] is `diode-receiver audit verify | proof | check-proof`.

mod chunks;
pub mod cli;
mod epochs;
pub mod findings;
mod options;
mod parallel;
mod points;
pub mod proof;
mod ranges;
pub mod report;
mod signed;
mod streams;
pub mod verify;
mod walk;
