//! The ledger's integration tests, in one binary.

mod at_rest;
mod cluster;
mod readers;
mod service;
mod storage;
