//! An in-memory copy of the upper levels of every tenant's Merkle tree, for proofs.
//!
//! A proof reads ~log₂ n tree nodes at random places in the store; once the store outgrows
//! memory (here at 10M entries: an 8 GiB state file, and a host that pages out file data unused
//! for a minute) each is a disk read. A stored node is the hash of a *perfect* subtree, so once
//! written it never changes and a copy can never be stale: levels ≥ [`MIN_LEVEL`] (a node per
//! 32 entries and above, ~625 k nodes or ~35 MB per 10M entries) are kept here, and the levels
//! below are recomputed from one range read of a block's leaf hashes
//! ([`super::view::TenantTree`]'s `nodes`), so a proof costs about one disk read.
//!
//! Loaded when the state is opened or replaced by a snapshot, topped up on read (new nodes),
//! and bounded by [`MAX_NODES`].

use std::collections::HashMap;
use std::sync::RwLock;

use caretrail_crypto::HASH_LEN;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::error::Result;
use super::schema::{NODES, TENANTS, TenantRecord, decode};

/// Lowest cached level (level 0 = leaf hashes; a level-5 node covers 32 entries).
pub(crate) const MIN_LEVEL: u8 = 5;

/// Most nodes kept (~120 MB): enough for ~32M entries across all tenants. Beyond it, nodes are
/// read from the store.
pub(crate) const MAX_NODES: usize = 1 << 21;

type NodeKey = (u32, u8, u64);

#[derive(Default)]
pub(crate) struct UpperNodes {
    nodes: RwLock<HashMap<NodeKey, [u8; HASH_LEN]>>,
}

impl UpperNodes {
    /// Whether a node at `level` is kept here at all.
    pub(crate) fn caches(level: u8) -> bool {
        level >= MIN_LEVEL
    }

    pub(crate) fn get(&self, tenant_no: u32, level: u8, index: u64) -> Option<[u8; HASH_LEN]> {
        let nodes = self.nodes.read().ok()?;
        nodes.get(&(tenant_no, level, index)).copied()
    }

    pub(crate) fn insert(&self, tenant_no: u32, level: u8, index: u64, hash: [u8; HASH_LEN]) {
        // A poisoned lock only means a panicking reader; the map itself is always whole.
        let mut nodes = self
            .nodes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if nodes.len() < MAX_NODES {
            nodes.insert((tenant_no, level, index), hash);
        }
    }

    /// Replaces the contents with the cached levels of every tenant's tree in `db`; returns
    /// the number of nodes loaded.
    pub(crate) fn load(&self, db: &Database) -> Result<usize> {
        let txn = db.begin_read()?;
        let tenants = txn.open_table(TENANTS)?;
        let nodes = txn.open_table(NODES)?;
        let mut loaded = HashMap::new();
        'tenants: for item in tenants.iter()? {
            let record: TenantRecord = decode(item?.1.value())?;
            for level in MIN_LEVEL..64 {
                if record.size >> level == 0 {
                    break;
                }
                for node in nodes.range((record.no, level, 0)..=(record.no, level, u64::MAX))? {
                    if loaded.len() >= MAX_NODES {
                        break 'tenants;
                    }
                    let (key, hash) = node?;
                    loaded.insert(key.value(), hash.value());
                }
            }
        }
        let count = loaded.len();
        *self
            .nodes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = loaded;
        Ok(count)
    }

    pub(crate) fn clear(&self) {
        self.nodes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.read().map_or(0, |nodes| nodes.len())
    }
}
