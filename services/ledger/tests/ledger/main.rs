//! The ledger's integration tests, in one binary.

mod service;
mod storage;
