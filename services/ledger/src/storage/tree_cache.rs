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
//! Levels 1–4 are neither kept nor stored: recomputing them from their block costs a few µs.
//! Loaded in the background ([`Loader`]) when the state is opened or replaced by a snapshot,
//! so a restart does not wait for it (17–105 s at 10M entries from a cold page cache,
//! depending on the disk); whatever is not here is read from the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use caretrail_crypto::HASH_LEN;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::error::Result;
use super::schema::{MIN_UPPER_LEVEL, NODES, TENANTS, TenantRecord, decode};

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
    /// Changed by every clear: a loader that started before stops.
    generation: AtomicU64,
    loader: Mutex<Option<JoinHandle<()>>>,
    /// Loader threads running (0 or 1: a new one starts after the last has stopped); kept
    /// apart from the handle, which whoever waits takes away.
    loaders_running: Arc<AtomicUsize>,
    /// Held by a test to keep a background load from starting its work.
    #[cfg(test)]
    load_gate: Mutex<()>,
}

impl TreeCache {
    pub(crate) fn new(leaf_hash_budget_bytes: u64) -> Self {
        Self {
            max_leaves: leaf_hash_budget_bytes / HASH_LEN as u64,
            columns: RwLock::default(),
            generation: AtomicU64::new(0),
            loader: Mutex::new(None),
            loaders_running: Arc::default(),
            #[cfg(test)]
            load_gate: Mutex::new(()),
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

    /// A column's length, and whether there is room for more at its level.
    fn column_len(&self, column: (u32, u8)) -> (u64, bool) {
        let columns = self.read();
        let len = columns.by_node.get(&column).map_or(0, |c| c.len);
        (len, self.has_room(&columns, column.1))
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
        let mut columns = self.write();
        for &(no, level, index, hash) in nodes {
            self.push(&mut columns, no, level, index, hash);
        }
    }

    /// Starts filling the cache from `db` in a background thread (see [`Loader`]), after
    /// stopping any load under way and emptying it. Opening the store does not wait: until a
    /// column is loaded, proofs read its nodes from the store.
    pub(crate) fn start_loading(self: &Arc<Self>, db: Arc<Database>) {
        self.clear();
        let generation = self.generation.load(Ordering::SeqCst);
        let cache = Arc::clone(self);
        let running = Arc::clone(&self.loaders_running);
        running.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("ledger-tree-cache".into())
            .spawn(move || {
                let _running = Running(running);
                #[cfg(test)]
                drop(cache.load_gate.lock());
                let started = Instant::now();
                match Loader::new(cache, db, generation).and_then(Loader::run) {
                    Ok(Some(counts)) => tracing::info!(
                        upper_nodes = counts.upper,
                        leaf_hashes = counts.leaves,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "tree nodes for proofs loaded into memory"
                    ),
                    Ok(None) => {}
                    Err(error) => tracing::warn!(
                        %error,
                        "loading tree nodes into memory failed; proofs read the rest from the store"
                    ),
                }
            });
        match spawned {
            Ok(handle) => *self.loader_slot() = Some(handle),
            Err(error) => {
                self.loaders_running.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!(
                    %error,
                    "could not start loading tree nodes into memory; proofs read them from the store"
                );
            }
        }
    }

    /// Waits for a load under way to finish.
    pub(crate) fn wait_loaded(&self) {
        let handle = self.loader_slot().take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::warn!("the thread loading tree nodes into memory panicked");
        }
    }

    /// Whether a load is under way.
    pub(crate) fn loading(&self) -> bool {
        self.loaders_running.load(Ordering::SeqCst) > 0
    }

    fn loader_slot(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.loader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `hashes`, stored nodes `first..` of one column, read by the loader of
    /// `generation`: each only where it extends the column, within the bounds. `None` if the
    /// cache was cleared since (the loader stops), else whether there is room for more.
    fn extend_loaded(
        &self,
        columns: &mut Columns,
        generation: u64,
        (no, level): (u32, u8),
        first: u64,
        hashes: &[Hash],
    ) -> Option<bool> {
        if self.generation.load(Ordering::SeqCst) != generation {
            return None;
        }
        for (index, hash) in (first..).zip(hashes) {
            if !self.push(columns, no, level, index, *hash) {
                return Some(false);
            }
        }
        Some(self.has_room(columns, level))
    }

    fn has_room(&self, columns: &Columns, level: u8) -> bool {
        if level == 0 {
            columns.leaves < self.max_leaves
        } else {
            level >= MIN_UPPER_LEVEL && columns.upper < MAX_UPPER_NODES
        }
    }

    /// Pushes one node if there is room and it extends its column; false only when full.
    fn push(&self, columns: &mut Columns, no: u32, level: u8, index: u64, hash: Hash) -> bool {
        if !self.has_room(columns, level) {
            return false;
        }
        let column = columns.by_node.entry((no, level)).or_default();
        if column.len == index {
            column.push(hash);
            if level == 0 {
                columns.leaves += 1;
            } else {
                columns.upper += 1;
            }
        }
        true
    }

    /// Stops a load under way (waiting for its thread, so it no longer holds the database).
    pub(crate) fn stop_loading(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.wait_loaded();
    }

    /// Stops a load under way, empties the cache and frees its memory.
    pub(crate) fn clear(&self) {
        self.stop_loading();
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

/// Counts a loader thread as running until it ends, however it ends.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Fills a [`TreeCache`] from the store while the node serves and appends, column by column:
/// every tenant's upper levels (highest first, as every proof uses them, in case the bound is
/// reached), then leaf hashes tenant by tenant until the budget is spent.
///
/// A column is read in chunks, each in its own read transaction and added without holding the
/// cache's lock. Meanwhile applies cannot extend it (their nodes are past its end), so its last
/// read is made *under* the lock: whatever was committed before is read there, and anything
/// committed after is added by its apply's `extend`, which waits for the lock and then finds
/// the column ending right before it. A tenant registered during the load is filled by its
/// applies alone.
pub(crate) struct Loader {
    cache: Arc<TreeCache>,
    db: Arc<Database>,
    generation: u64,
    /// Columns to fill, in order.
    plan: Vec<(u32, u8)>,
}

impl Loader {
    fn new(cache: Arc<TreeCache>, db: Arc<Database>, generation: u64) -> Result<Self> {
        let txn = db.begin_read()?;
        let tenants = txn.open_table(TENANTS)?;
        let mut records = Vec::new();
        for item in tenants.iter()? {
            records.push(decode::<TenantRecord>(item?.1.value())?);
        }
        records.sort_by_key(|r| r.no);
        let mut plan = Vec::new();
        for level in (MIN_UPPER_LEVEL..64).rev() {
            plan.extend(
                records
                    .iter()
                    .filter(|r| r.size >> level > 0)
                    .map(|r| (r.no, level)),
            );
        }
        if cache.max_leaves > 0 {
            plan.extend(records.iter().filter(|r| r.size > 0).map(|r| (r.no, 0)));
        }
        Ok(Self {
            cache,
            db,
            generation,
            plan,
        })
    }

    /// Fills every planned column; `None` if the cache was cleared meanwhile.
    fn run(self) -> Result<Option<CachedNodes>> {
        for &column in &self.plan {
            if !self.fill(column)? {
                return Ok(None);
            }
        }
        Ok(Some(self.cache.counts()))
    }

    /// Whether to go on (false: the cache was cleared).
    fn fill(&self, column: (u32, u8)) -> Result<bool> {
        loop {
            let (len, room) = self.cache.column_len(column);
            if !room {
                return Ok(true);
            }
            let chunk = self.read(column, len)?;
            let caught_up = chunk.len() < CHUNK;
            let mut columns = self.cache.write();
            match self
                .cache
                .extend_loaded(&mut columns, self.generation, column, len, &chunk)
            {
                None => return Ok(false),
                Some(false) => return Ok(true),
                Some(true) if caught_up => break,
                Some(true) => {}
            }
        }
        // Only what was committed since the last read (usually nothing, in hot pages) is read
        // under the lock.
        let mut columns = self.cache.write();
        let len = columns.by_node.get(&column).map_or(0, |c| c.len);
        let tail = self.read(column, len)?;
        Ok(self
            .cache
            .extend_loaded(&mut columns, self.generation, column, len, &tail)
            .is_some())
    }

    /// Up to a chunk of stored nodes of `column` from `first`, stopping at a gap.
    fn read(&self, (no, level): (u32, u8), first: u64) -> Result<Vec<Hash>> {
        let txn = self.db.begin_read()?;
        let nodes = txn.open_table(NODES)?;
        let mut out = Vec::new();
        for node in nodes.range((no, level, first)..(no, level, first + CHUNK as u64))? {
            let (key, hash) = node?;
            if key.value().2 != first + out.len() as u64 {
                break;
            }
            out.push(hash.value());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::AtomicBool;

    use redb::Durability;

    use super::*;

    /// A database holding tenant no 1 with `n` leaf hashes (column `(1, 0)`) and no upper
    /// nodes.
    fn store_with(n: u64) -> (tempfile::TempDir, Arc<Database>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("state.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let record = TenantRecord {
                no: 1,
                suite: caretrail_crypto::Suite::Intl,
                size: n,
                origin: "test".into(),
                checkpoint_key: String::new(),
                registrar_key: Vec::new(),
                registrar_key_id: String::new(),
            };
            txn.open_table(TENANTS)
                .unwrap()
                .insert(
                    "t",
                    super::super::schema::encode(&record).unwrap().as_slice(),
                )
                .unwrap();
            let mut nodes = txn.open_table(NODES).unwrap();
            for i in 0..n {
                nodes.insert((1, 0, i), hash(i)).unwrap();
            }
        }
        txn.commit().unwrap();
        (dir, Arc::new(db))
    }

    /// What an apply does: commit a node, then offer it to the cache.
    fn apply(db: &Database, cache: &TreeCache, index: u64) {
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(Durability::None).unwrap();
        txn.open_table(NODES)
            .unwrap()
            .insert((1, 0, index), hash(index))
            .unwrap();
        txn.commit().unwrap();
        cache.extend(&[(1, 0, index, hash(index))]);
    }

    fn loader(cache: &Arc<TreeCache>, db: &Arc<Database>) -> Loader {
        Loader {
            cache: Arc::clone(cache),
            db: Arc::clone(db),
            generation: cache.generation.load(Ordering::SeqCst),
            plan: vec![(1, 0)],
        }
    }

    #[test]
    fn a_load_ends_with_the_column_the_store_holds_while_applies_go_on() {
        // More than a chunk is stored, and applies go on while the loader reads, in 20 rounds
        // (each a chance for an apply to land between the loader's last read and its push).
        // Whatever the interleaving, the column must end as the store's exact prefix with
        // nothing missing, so that the next apply extends it.
        let stored = CHUNK as u64 + 100;
        let (_dir, db) = store_with(stored);
        let cache = Arc::new(TreeCache::new(u64::MAX));
        let mut next = stored;
        for round in 0..20 {
            cache.clear();
            let stop = Arc::new(AtomicBool::new(false));
            let writer = {
                let (db, cache, stop) = (Arc::clone(&db), Arc::clone(&cache), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut i = next;
                    while !stop.load(Ordering::SeqCst) || i < next + 50 {
                        apply(&db, &cache, i);
                        i += 1;
                    }
                    i
                })
            };
            let counts = loader(&cache, &db).run().unwrap();
            stop.store(true, Ordering::SeqCst);
            next = writer.join().unwrap();
            assert!(counts.is_some());
            apply(&db, &cache, next);
            next += 1;
            assert_eq!(cache.counts().leaves, next, "round {round}");
        }
        for i in [0, CHUNK as u64 - 1, CHUNK as u64, stored, next - 1] {
            assert_eq!(cache.get(1, 0, i), Some(hash(i)), "node {i}");
        }
    }

    #[test]
    fn a_load_stops_when_the_cache_is_cleared_and_respects_the_budget() {
        let (_dir, db) = store_with(100);
        let cache = Arc::new(TreeCache::new(40 * HASH_LEN as u64));
        let stale = loader(&cache, &db);
        cache.clear();
        assert_eq!(stale.run().unwrap(), None);
        assert_eq!(cache.counts(), CachedNodes::default());
        assert_eq!(
            loader(&cache, &db).run().unwrap().map(|c| c.leaves),
            Some(40)
        );
        assert_eq!(cache.get(1, 0, 39), Some(hash(39)));
        assert_eq!(cache.get(1, 0, 40), None);
        // In the background, planned from the tenants table (this store has no upper nodes).
        // Held at its start, the load is reported as running and the cache is empty until then.
        let gate = cache.load_gate.lock().unwrap();
        cache.start_loading(Arc::clone(&db));
        assert!(cache.loading());
        assert_eq!(cache.counts(), CachedNodes::default());
        drop(gate);
        cache.wait_loaded();
        assert!(!cache.loading());
        assert_eq!(
            cache.counts(),
            CachedNodes {
                upper: 0,
                leaves: 40
            }
        );
    }

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
