//! Durable storage of a ledger node: the Raft log ([`LogStore`], openraft's `RaftLogStorage`)
//! and the replicated per-tenant ledger ([`LedgerStateMachine`], `RaftStateMachine`), with
//! snapshots, and read access ([`LedgerView`], [`TenantTree`]) for entries, roots and proofs.
//!
//! # Engine: redb
//!
//! Both the log and the state live in [redb](https://docs.rs/redb) databases, one file each
//! (`raft-log.redb`, `state.redb`) under the node's data directory, plus `snapshots/`.
//!
//! * **Crash safety without our own recovery code.** redb is ACID: a commit with
//!   `Durability::Immediate` returns only after fsync, and every page is checksummed
//!   (XXH3-128 Merkle tree up to the commit slot), so after a `kill -9` or power loss at any
//!   point the database opens at the last completed commit; a torn write is rolled back, never
//!   half-applied. A hand-written segmented log would need that logic (torn tails, CRC per
//!   record, index rebuild) and its tests; for the state machine we would need a B-tree anyway.
//! * **Group commit is natural.** One write transaction can carry any number of entries and
//!   costs one fsync; [`LogStore`] folds every queued `append` (and vote, truncate, purge) into
//!   one transaction ([`log`] module docs), and `apply` writes a whole batch of committed
//!   entries in one.
//! * **Reads do not block writes.** MVCC read transactions see a consistent snapshot while the
//!   writer commits, so proofs (O(log n) B-tree point reads), snapshot builds and the
//!   tamper check run beside the append path.
//! * **Pure Rust, no C toolchain** (unlike RocksDB), a documented file format, a small
//!   dependency tree. fjall (an LSM tree) was the alternative: cheaper blind writes, but
//!   background compaction to run and tune, while our workload is append-mostly with point
//!   reads (proofs), which a B-tree serves directly.
//! * **Two files, two writers.** The log and the state are separate databases, so a log fsync
//!   and a state-machine fsync proceed in parallel, and log purges never rewrite state pages.
//!
//! Costs: a B-tree rewrites a few pages per commit (write amplification) and leaves pages
//! partly filled (the leaf-hash index has random keys), so the file is larger than the data.
//! Random keys also make an insert's cost grow with the tree, so the two random-key indexes
//! are split into generations of bounded size ([`generations`]), the LSM idea without the
//! merging. After an unclean shutdown redb re-verifies the file's checksums on open (time
//! grows with the size of `state.redb`). Entries are stored once in the state machine; the log
//! copy is purged after each snapshot.
//!
//! # Layout
//!
//! `<dir>/raft-log.redb` — the Raft log ([`log`]); `<dir>/state.redb` — the ledger
//! ([`schema`] lists the tables); `<dir>/snapshots/current.snap` — the current snapshot
//! ([`snapshot`] gives the format).
//!
//! # Tamper detection
//!
//! [`LedgerView::verify_store`] recomputes every leaf hash and tree node from the stored
//! entries and checks the indexes; [`TenantTree::entry`] refuses to serve an entry that does
//! not hash to its stored leaf hash.

pub mod at_rest;
pub mod error;
mod generations;
pub mod keys;
pub mod log;
pub mod schema;
pub mod snapshot;
mod snapshot_data;
pub mod state;
mod tree_cache;
pub mod types;
pub mod view;

use std::path::Path;

pub use error::StoreError;
pub use generations::DEFAULT_GENERATION_ENTRIES;
pub use log::{LogReader, LogStats, LogStore};
pub use snapshot_data::SnapshotData;
pub use state::{LedgerSnapshotBuilder, LedgerStateMachine};
pub use tree_cache::CachedNodes;
pub use types::{
    AppendRequest, Appended, CosignatureSpec, LedgerCommand, LedgerResponse, NodeId, Refusal,
    TenantRegistered, TenantSpec, TypeConfig,
};
pub use view::{
    InstitutionKey, LedgerView, Mismatch, StoredCosignature, TenantInfo, TenantTree, VerifyReport,
};

/// File name of the Raft log database inside the storage directory.
pub const LOG_FILE: &str = "raft-log.redb";

/// Default budget for leaf hashes kept in memory: 16M entries' worth (32 B each).
pub const DEFAULT_LEAF_HASH_CACHE_BYTES: u64 = 512 << 20;

/// Default page cache of the state database (redb's own, on top of the OS page cache).
pub const DEFAULT_STATE_CACHE_BYTES: usize = 256 << 20;

/// How a node's storage is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Memory for leaf hashes kept for proofs, all tenants together (32 B per entry; 0 = none).
    /// With them, an inclusion proof at 10M entries costs no disk read ([`tree_cache`] docs).
    pub leaf_hash_cache_bytes: u64,
    /// redb's page cache of the state database (filled as pages are read). At 10M entries,
    /// 256 MiB and 2 GiB gave the same append cost (docs/PERFORMANCE.md, "2026-12-02: the
    /// cluster at 10M entries").
    pub state_cache_bytes: usize,
    /// Entries per generation of the leaf-hash and request-id indexes (see the generations
    /// module docs; `ledger_index_generation_entries`).
    pub index_generation_entries: u64,
    /// Seals entries at rest ([`at_rest`]); a node always has one, derived from its
    /// checkpoint key. `None` (tests, tools) stores new entries in clear and cannot read
    /// sealed ones.
    pub at_rest_key: Option<std::sync::Arc<at_rest::AtRestKey>>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            leaf_hash_cache_bytes: DEFAULT_LEAF_HASH_CACHE_BYTES,
            state_cache_bytes: DEFAULT_STATE_CACHE_BYTES,
            index_generation_entries: generations::DEFAULT_GENERATION_ENTRIES,
            at_rest_key: None,
        }
    }
}

/// Opens (or creates) a node's storage under `dir`: the Raft log and the state machine.
pub fn open(dir: &Path) -> Result<(LogStore, LedgerStateMachine), StoreError> {
    open_with(dir, &StoreOptions::default())
}

/// [`open`] with explicit options.
pub fn open_with(
    dir: &Path,
    options: &StoreOptions,
) -> Result<(LogStore, LedgerStateMachine), StoreError> {
    std::fs::create_dir_all(dir)?;
    let log = LogStore::open(&dir.join(LOG_FILE))?;
    let sm = LedgerStateMachine::open_with(dir, options)?;
    Ok((log, sm))
}
