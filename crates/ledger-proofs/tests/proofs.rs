//! Integration tests of caretrail-ledger-proofs (one test binary; modules under `proofs/`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "proofs/bundle.rs"]
mod bundle;
#[path = "proofs/checkpoint.rs"]
mod checkpoint;
#[path = "proofs/common.rs"]
mod common;
#[path = "proofs/cosign.rs"]
mod cosign;
#[path = "proofs/entry.rs"]
mod entry;
#[path = "proofs/jcs.rs"]
mod jcs;
#[path = "proofs/merkle_exhaustive.rs"]
mod merkle_exhaustive;
#[path = "proofs/merkle_props.rs"]
mod merkle_props;
#[path = "proofs/merkle_vectors.rs"]
mod merkle_vectors;
#[path = "proofs/note.rs"]
mod note;
