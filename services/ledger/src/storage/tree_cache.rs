//! In-memory copies of tree nodes, for proofs.
//!
//! A proof reads ~log₂ n tree nodes at random places in the store. Once the store outgrows
//! memory (here at 10M entries: an 8 GiB state file, on a host that pages out file data left
//! unused for a minute) each of those is a disk read of 60–120 µs. A stored node is the hash of
//! a *perfect* subtree, so once written it never changes and a copy can never be stale. Kept
//! here, per tenant and level, as a prefix (nodes `0..len`) that the state machine extends
//! after each commit:
//!
//! * levels ≥ [`MIN_UPPER_LEVEL`] (a node per 32 entries and above, ~2 B per entry), up to
//!   [`MAX_UPPER_NODES`];
//! * the leaf hashes (level 0, 32 B per entry) within a budget (`ledger_leaf_hash_cache_mb`),
//!   so that a proof's lowest siblings are recomputed from a block of 32 leaf hashes in memory
//!   instead of a range read of the store.
//!
//! Levels 1–4 are not kept: recomputing them from their block costs a few µs. Loaded when the
//! state is opened or replaced by a snapshot; whatever is not here is read from the store.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use caretrail_crypto::HASH_LEN;
use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable};

use super::error::Result;
use super::schema::{NODES, TENANTS, TenantRecord, decode};

/// Lowest upper level kept (level 0 = leaf hashes; a level-5 node covers 32 entries).
pub(crate) const MIN_UPPER_LEVEL: u8 = 5;

/// Most upper-level nodes kept: 64 MiB, enough for ~32M entries across all tenants.
pub(crate) const MAX_UPPER_NODES: u64 = 1 << 21;

/// Hashes per chunk of a column (1 MiB): growing a column never copies what it holds.
const CHUNK: usize = 1 << 15;
// A block of 2^MIN_UPPER_LEVEL leaves never straddles two chunks.
const _: () = assert!(CHUNK.is_multiple_of(1 << MIN_UPPER_LEVEL));

type Hash = [u8; HASH_LEN];

/// Nodes `0..len` of one level of one tenant's tree.
#[derive(Default)]
struct Column {
    chunks: Vec<Vec<Hash>>,
    len: u64,
}

impl Column {
    fn get(&self, index: u64) -> Option<Hash> {
        if index >= self.len {
            return None;
        }
        let i = usize::try_from(index).ok()?;
        self.chunks.get(i / CHUNK)?.get(i % CHUNK).copied()
    }

    /// Nodes `first..first + count`, if all are here and in one chunk.
    fn run(&self, first: u64, count: usize) -> Option<&[Hash]> {
        if first.checked_add(count as u64)? > self.len {
            return None;
        }
        let i = usize::try_from(first).ok()?;
        self.chunks
            .get(i / CHUNK)?
            .get(i % CHUNK..i % CHUNK + count)
    }

    fn push(&mut self, hash: Hash) {
        let chunk = match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk,
            _ => {
                self.chunks.push(Vec::new());
                let Some(chunk) = self.chunks.last_mut() else {
                    return;
                };
                chunk
            }
        };
        // Small trees are common (many tenants, dozens of levels): grow a chunk gradually,
        // but never past its fixed size.
        if chunk.len() == chunk.capacity() {
            let target = (chunk.capacity() * 2).clamp(16, CHUNK);
            chunk.reserve_exact(target - chunk.len());
        }
        chunk.push(hash);
        self.len += 1;
    }
}

#[derive(Default)]
struct Columns {
    by_node: HashMap<(u32, u8), Column>,
    upper: u64,
    leaves: u64,
}

/// How many nodes are held in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CachedNodes {
    /// Nodes at levels ≥ 5.
    pub upper: u64,
    /// Leaf hashes.
    pub leaves: u64,
}

/// See the module docs.
pub(crate) struct TreeCache {
    /// Most leaf hashes kept, all tenants together.
    max_leaves: u64,
    columns: RwLock<Columns>,
}

impl TreeCache {
    pub(crate) fn new(leaf_hash_budget_bytes: u64) -> Self {
        Self {
            max_leaves: leaf_hash_budget_bytes / HASH_LEN as u64,
            columns: RwLock::default(),
        }
    }

    /// Whether nodes at `level` are kept here at all.
    pub(crate) fn caches(&self, level: u8) -> bool {
        level >= MIN_UPPER_LEVEL || (level == 0 && self.max_leaves > 0)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Columns> {
        // A panic while holding the lock leaves at worst a column one push short: still a
        // correct prefix.
        self.columns.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> RwLockReadGuard<'_, Columns> {
        self.columns.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, tenant_no: u32, level: u8, index: u64) -> Option<Hash> {
        self.read().by_node.get(&(tenant_no, level))?.get(index)
    }

    /// Leaf hashes `first..first + count` (one block), if all are here.
    pub(crate) fn leaf_run(&self, tenant_no: u32, first: u64, count: usize) -> Option<Vec<Hash>> {
        self.read()
            .by_node
            .get(&(tenant_no, 0))?
            .run(first, count)
            .map(<[Hash]>::to_vec)
    }

    /// Adds nodes just committed, `(tenant no, level, index, hash)` in the order they were
    /// created. A node is kept only where it extends its column (so a column stays a prefix)
    /// and within the bounds; others are left to the store.
    pub(crate) fn extend(&self, nodes: &[(u32, u8, u64, Hash)]) {
        if nodes.is_empty() {
            return;
        }
        let mut guard = self.write();
        let columns = &mut *guard;
        for &(no, level, index, hash) in nodes {
            let room = if level == 0 {
                columns.leaves < self.max_leaves
            } else {
                level >= MIN_UPPER_LEVEL && columns.upper < MAX_UPPER_NODES
            };
            if !room {
                continue;
            }
            let column = columns.by_node.entry((no, level)).or_default();
            if column.len != index {
                continue;
            }
            column.push(hash);
            if level == 0 {
                columns.leaves += 1;
            } else {
                columns.upper += 1;
            }
        }
    }

    /// Replaces the contents with what `db` holds: every tenant's upper levels (highest
    /// first, as every proof uses them, in case the bound is reached), then leaf hashes
    /// tenant by tenant until the budget is spent.
    pub(crate) fn load(&self, db: &Database) -> Result<CachedNodes> {
        let txn = db.begin_read()?;
        let tenants = txn.open_table(TENANTS)?;
        let nodes = txn.open_table(NODES)?;
        let mut records = Vec::new();
        for item in tenants.iter()? {
            records.push(decode::<TenantRecord>(item?.1.value())?);
        }
        records.sort_by_key(|r| r.no);
        let mut loaded = Columns::default();
        for level in (MIN_UPPER_LEVEL..64).rev() {
            for record in records.iter().filter(|r| r.size >> level > 0) {
                let column = loaded.by_node.entry((record.no, level)).or_default();
                loaded.upper += load_prefix(
                    column,
                    &nodes,
                    record.no,
                    level,
                    MAX_UPPER_NODES - loaded.upper,
                )?;
            }
        }
        for record in &records {
            let column = loaded.by_node.entry((record.no, 0)).or_default();
            loaded.leaves += load_prefix(
                column,
                &nodes,
                record.no,
                0,
                self.max_leaves - loaded.leaves,
            )?;
        }
        let counts = CachedNodes {
            upper: loaded.upper,
            leaves: loaded.leaves,
        };
        *self.write() = loaded;
        Ok(counts)
    }

    /// Empties the cache and frees its memory.
    pub(crate) fn clear(&self) {
        *self.write() = Columns::default();
    }

    /// Drops the leaf hashes only (benchmarks of proofs without them).
    pub(crate) fn clear_leaves(&self) {
        let mut columns = self.write();
        columns.by_node.retain(|(_, level), _| *level != 0);
        columns.leaves = 0;
    }

    pub(crate) fn counts(&self) -> CachedNodes {
        let columns = self.read();
        CachedNodes {
            upper: columns.upper,
            leaves: columns.leaves,
        }
    }
}

/// Appends stored nodes `(no, level, 0..)` to an empty `column`, at most `limit` of them and
/// up to the first gap; returns how many.
fn load_prefix(
    column: &mut Column,
    nodes: &ReadOnlyTable<(u32, u8, u64), Hash>,
    no: u32,
    level: u8,
    limit: u64,
) -> Result<u64> {
    if limit == 0 {
        return Ok(0);
    }
    for node in nodes.range((no, level, 0)..(no, level, limit))? {
        let (key, hash) = node?;
        if key.value().2 != column.len {
            break;
        }
        column.push(hash.value());
    }
    Ok(column.len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u64) -> Hash {
        let mut h = [0u8; HASH_LEN];
        h[..8].copy_from_slice(&i.to_be_bytes());
        h
    }

    #[test]
    fn columns_stay_prefixes_and_within_budget() {
        let cache = TreeCache::new(3 * HASH_LEN as u64);
        assert!(cache.caches(0) && !cache.caches(1) && !cache.caches(4) && cache.caches(5));
        // A gap (index 5 before 2) and a level that is never kept are skipped.
        cache.extend(&[
            (7, 0, 0, hash(0)),
            (7, 0, 1, hash(1)),
            (7, 0, 5, hash(5)),
            (7, 2, 0, hash(9)),
            (7, 5, 0, hash(50)),
        ]);
        assert_eq!(cache.get(7, 0, 1), Some(hash(1)));
        assert_eq!(cache.get(7, 0, 5), None);
        assert_eq!(cache.get(7, 2, 0), None);
        assert_eq!(cache.get(7, 5, 0), Some(hash(50)));
        assert_eq!(cache.get(8, 0, 0), None);
        // The third leaf fills the budget; the fourth is left to the store.
        cache.extend(&[(7, 0, 2, hash(2)), (7, 0, 3, hash(3))]);
        assert_eq!(
            cache.counts(),
            CachedNodes {
                upper: 1,
                leaves: 3
            }
        );
        assert_eq!(cache.get(7, 0, 3), None);
        assert_eq!(
            cache.leaf_run(7, 0, 3),
            Some(vec![hash(0), hash(1), hash(2)])
        );
        assert_eq!(cache.leaf_run(7, 1, 3), None);
        cache.clear_leaves();
        assert_eq!(cache.get(7, 0, 0), None);
        assert_eq!(cache.get(7, 5, 0), Some(hash(50)));
        assert!(!TreeCache::new(0).caches(0));
    }

    #[test]
    fn a_column_spans_chunks() {
        let mut column = Column::default();
        let n = 2 * CHUNK as u64 + 40;
        for i in 0..n {
            column.push(hash(i));
        }
        assert_eq!(column.len, n);
        assert_eq!(column.chunks.len(), 3);
        assert!(column.chunks.iter().all(|c| c.capacity() <= CHUNK));
        for i in [0, CHUNK as u64 - 1, CHUNK as u64, n - 1] {
            assert_eq!(column.get(i), Some(hash(i)));
        }
        assert_eq!(column.get(n), None);
        let first = 2 * CHUNK as u64;
        assert_eq!(column.run(first, 32).map(|r| r[31]), Some(hash(first + 31)));
        // Past the end, and across a chunk boundary (all present, but not in one chunk).
        assert_eq!(column.run(first + 20, 32), None);
        assert_eq!(column.run(CHUNK as u64 - 16, 32), None);
        assert_eq!(
            column.run(CHUNK as u64 - 16, 16).map(|r| r[15]),
            Some(hash(CHUNK as u64 - 1))
        );
    }
}
