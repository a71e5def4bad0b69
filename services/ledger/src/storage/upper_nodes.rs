//! An in-memory copy of the upper levels of every tenant's Merkle tree, for proofs.
//!
//! A proof reads ~log₂ n tree nodes at random places in the store; once the store outgrows
//! memory (here at 10M entries: an 8 GiB state file, and a host that pages out file data unused
//! for a minute) each is a disk read. A stored node is the hash of a *perfect* subtree, so once
//! written it never changes and a copy can never be stale: levels ≥ [`MIN_LEVEL`] (a node per
//! 32 entries and above, ~625 k nodes or ~50 MB per 10M entries) are kept here, and the levels
//! below are recomputed from one range read of a block's leaf hashes
//! ([`super::view::TenantTree`]'s `nodes`), so a proof costs about one disk read.
//!
//! Loaded when the state is opened or replaced by a snapshot, topped up on read (new nodes),
//! and bounded by [`MAX_NODES`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use caretrail_crypto::HASH_LEN;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::error::Result;
use super::schema::{NODES, TENANTS, TenantRecord, decode};

/// Lowest cached level (level 0 = leaf hashes; a level-5 node covers 32 entries).
pub(crate) const MIN_LEVEL: u8 = 5;

/// Most nodes kept: enough for ~32M entries across all tenants, ~200 MB at the bound (the hash
/// map's slots included). Beyond it, nodes are read from the store.
pub(crate) const MAX_NODES: usize = 1 << 21;

type NodeKey = (u32, u8, u64);

#[derive(Default)]
pub(crate) struct UpperNodes {
    nodes: RwLock<HashMap<NodeKey, [u8; HASH_LEN]>>,
    /// Set once the map holds [`MAX_NODES`], so that misses stop taking the write lock.
    full: AtomicBool,
}

impl UpperNodes {
    /// Whether a node at `level` is kept here at all.
    pub(crate) fn caches(level: u8) -> bool {
        level >= MIN_LEVEL
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<NodeKey, [u8; HASH_LEN]>> {
        // A panic while holding the lock cannot leave the map half-changed (single inserts).
        self.nodes.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<NodeKey, [u8; HASH_LEN]>> {
        self.nodes.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, tenant_no: u32, level: u8, index: u64) -> Option<[u8; HASH_LEN]> {
        self.read().get(&(tenant_no, level, index)).copied()
    }

    pub(crate) fn insert(&self, tenant_no: u32, level: u8, index: u64, hash: [u8; HASH_LEN]) {
        if self.full.load(Ordering::Relaxed) {
            return;
        }
        let mut nodes = self.write();
        if nodes.len() < MAX_NODES {
            nodes.insert((tenant_no, level, index), hash);
        } else {
            self.full.store(true, Ordering::Relaxed);
        }
    }

    /// Replaces the contents with the cached levels of every tenant's tree in `db`, highest
    /// levels first (every proof uses them) in case the bound is reached; returns the number
    /// of nodes loaded.
    pub(crate) fn load(&self, db: &Database) -> Result<usize> {
        let txn = db.begin_read()?;
        let tenants = txn.open_table(TENANTS)?;
        let nodes = txn.open_table(NODES)?;
        let mut records = Vec::new();
        for item in tenants.iter()? {
            records.push(decode::<TenantRecord>(item?.1.value())?);
        }
        let mut loaded = HashMap::new();
        'levels: for level in (MIN_LEVEL..64).rev() {
            for record in records.iter().filter(|r| r.size >> level > 0) {
                for node in nodes.range((record.no, level, 0)..=(record.no, level, u64::MAX))? {
                    if loaded.len() >= MAX_NODES {
                        break 'levels;
                    }
                    let (key, hash) = node?;
                    loaded.insert(key.value(), hash.value());
                }
            }
        }
        let count = loaded.len();
        self.full.store(count >= MAX_NODES, Ordering::Relaxed);
        *self.write() = loaded;
        Ok(count)
    }

    /// Empties the map and frees its memory.
    pub(crate) fn clear(&self) {
        *self.write() = HashMap::new();
        self.full.store(false, Ordering::Relaxed);
    }

    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }
}
