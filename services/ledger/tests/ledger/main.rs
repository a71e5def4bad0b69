//! The ledger's integration tests, in one binary.

mod cluster;
mod readers;
mod service;
mod storage;
