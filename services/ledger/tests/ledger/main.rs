//! The ledger's integration tests, in one binary.

mod cluster;
mod service;
mod storage;
